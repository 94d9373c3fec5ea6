//! Rollbacks always run (issue #12 item 3): a restore stopped by `daemon.run_timeout` in
//! the middle of its forward steps still runs its `catch` block to the end, so the run
//! ends stopped with the node exactly as it was and no staging or kept database left.
//!
//! The restore is made slower than the run's deadline with a `pg_restore` wrapper
//! (configured through `node.postgres.bin_dir`) that stalls only the participant restore,
//! after the validator database is already staged: the undo work (drop the staged
//! validator database) must happen after the deadline.

mod common;

use common::*;
use splice_dr_protocol::{RunState, RunSummary};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A `bin_dir` whose `pg_dump`/`psql` are the real ones and whose `pg_restore` sleeps
/// `stall_secs` before restoring a participant dump into a database (not on `--list`); its process
/// group is killed at the stop.
fn slow_restore_bin_dir(root: &Path, stall_secs: u64) -> std::path::PathBuf {
    let dir = root.join("slow-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let real = |tool: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for tool in ["pg_dump", "psql"] {
        std::os::unix::fs::symlink(real(tool), dir.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *--dbname=*/participant) sleep {stall_secs};;\nesac\nexec {} \"$@\"\n",
        real("pg_restore")
    );
    let wrapper = dir.join("pg_restore");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_restore_past_run_timeout_rolls_back_completely_on_bare_postgres() {
    let dbs = NodeDbs::create("rbto", 3000);
    let prefix = dbs.validator.trim_end_matches("_v").to_string();
    let root = tempfile::tempdir().unwrap();
    let bin = slow_restore_bin_dir(root.path(), 120);
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "run_timeout = \"1h\"",
        "",
        &format!("bin_dir = \"{}\"", bin.display()),
    );
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    dbs.damage();
    let before = dbs.fingerprint();
    let config = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        config.replace("run_timeout = \"1h\"", "run_timeout = \"4s\""),
    )
    .unwrap();

    let started = Instant::now();
    let out = site.cli(&["--json", "restore", "--backup", &id, "--yes"]);
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "the restore must not succeed: {}",
        text(&out)
    );
    assert!(
        took < Duration::from_secs(60),
        "the stalled pg_restore must be stopped at the deadline, took {took:?}"
    );

    let listed: Vec<RunSummary> = view(&site.cli(&["--json", "runs"]));
    let run = listed
        .iter()
        .find(|r| r.flow == "restore")
        .unwrap_or_else(|| panic!("a restore run in {listed:?}"));
    assert!(
        matches!(run.state, RunState::Cancelled | RunState::Failed),
        "stopped run state: {run:?}"
    );
    let shown = site.cli(&["--json", "show", &run.id]);
    let shown_text = text(&shown);
    assert!(
        shown_text.contains("run_timeout"),
        "the run says the deadline stopped it: {shown_text}"
    );
    assert!(
        shown_text.contains("drop staged databases"),
        "the catch block's undo step ran: {shown_text}"
    );
    assert!(
        !shown_text.contains("undo work exceeded"),
        "the undo work was not terminated: {shown_text}"
    );

    assert_eq!(
        databases_like(&prefix),
        vec![dbs.participant.clone(), dbs.validator.clone()],
        "no staging or kept database may be left"
    );
    assert_eq!(
        dbs.fingerprint(),
        before,
        "the live databases are untouched"
    );
}
