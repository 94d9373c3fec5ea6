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
use splice_dr_protocol::{Reply, RunDetail, RunEvent, RunState, RunSummary};
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
        "#!/bin/sh\ncase \"$*\" in\n  *--dbname=*/participant) touch {}; sleep {stall_secs};;\nesac\nexec {} \"$@\"\n",
        stalled_marker(&dir).display(),
        real("pg_restore")
    );
    let wrapper = dir.join("pg_restore");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The file the slow `pg_restore` creates when it starts stalling.
fn stalled_marker(bin_dir: &Path) -> std::path::PathBuf {
    bin_dir.join("stalled")
}

/// Waits until the restore `cli` runs has reached its stalled participant `pg_restore`.
fn wait_until_stalled(bin_dir: &Path, cli: &mut std::process::Child) {
    let marker = stalled_marker(bin_dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(
            cli.try_wait().unwrap().is_none(),
            "the restore ended before its participant pg_restore started"
        );
        assert!(
            Instant::now() < deadline,
            "pg_restore never reached the participant"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line names `needle` (the slow wrapper runs as `sh DIR/pg_restore`).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// A bare-Postgres node with a backup taken, then damaged, whose `pg_restore` stalls
/// `stall_secs` on the participant database.
struct StalledRestore {
    dbs: NodeDbs,
    /// The node's database name prefix (staging and kept databases start with it).
    prefix: String,
    /// Holds the slow `bin_dir`.
    _root: tempfile::TempDir,
    bin: std::path::PathBuf,
    site: Site,
    /// The backup to restore.
    id: String,
    /// The damaged databases' fingerprint: what a rolled-back restore must leave.
    before: Vec<(String, String)>,
}

impl StalledRestore {
    fn new(name: &str, stall_secs: u64, extra_daemon: &str) -> StalledRestore {
        let dbs = NodeDbs::create(name, 3000);
        let prefix = dbs.validator.trim_end_matches("_v").to_string();
        let root = tempfile::tempdir().unwrap();
        let bin = slow_restore_bin_dir(root.path(), stall_secs);
        let site = Site::with(
            &dbs.validator,
            &dbs.participant,
            BackendChoice::Builtin,
            extra_daemon,
            "",
            &format!("bin_dir = \"{}\"", bin.display()),
        );
        let out = site.cli(&["backup"]);
        assert!(out.status.success(), "backup: {}", text(&out));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        dbs.damage();
        let before = dbs.fingerprint();
        StalledRestore {
            dbs,
            prefix,
            _root: root,
            bin,
            site,
            id,
            before,
        }
    }

    /// Starts `restore --backup ID --yes` (through the daemon when one runs) and returns
    /// once it stalls in the participant's `pg_restore`.
    fn spawn_restore(&self, output: impl Fn() -> std::process::Stdio) -> std::process::Child {
        let mut cli = self
            .site
            .cmd()
            .args(["restore", "--backup", &self.id, "--yes"])
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap();
        wait_until_stalled(&self.bin, &mut cli);
        cli
    }

    /// See [`assert_rolled_back`].
    fn assert_rolled_back(&self) {
        assert_rolled_back(&self.dbs, &self.prefix, &self.before);
    }
}

/// The node exactly as before the restore: its two live databases with their damaged
/// content, and no staging or kept database beside them.
fn assert_rolled_back(dbs: &NodeDbs, prefix: &str, before: &[(String, String)]) {
    assert_eq!(
        databases_like(prefix),
        vec![dbs.participant.clone(), dbs.validator.clone()],
        "no staging or kept database may be left"
    );
    assert_eq!(
        dbs.fingerprint(),
        before,
        "the live databases are untouched"
    );
}

#[test]
fn a_restore_past_run_timeout_rolls_back_completely_on_bare_postgres() {
    let StalledRestore {
        dbs,
        prefix,
        site,
        id,
        before,
        _root,
        ..
    } = StalledRestore::new("rbto", 120, "run_timeout = \"1h\"");
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

    assert_rolled_back(&dbs, &prefix, &before);
}

/// Ctrl-C on a restore the CLI runs in-process (no daemon): the terminal's SIGINT reaches
/// only the CLI (its tools run in their own process groups). The run must be cancelled
/// and rolled back, and the stalled `pg_restore` ended, instead of the CLI dying and
/// leaving the tool writing into a half-staged node.
#[test]
fn ctrl_c_on_an_in_process_restore_rolls_back_and_ends_its_tools() {
    let node = StalledRestore::new("rbint", 300, "");
    let StalledRestore { site, bin, .. } = &node;
    let cli = node.spawn_restore(std::process::Stdio::piped);
    let sent = std::process::Command::new("kill")
        .args(["-INT", &cli.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = cli.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a cancelled restore fails: {err}");
    assert!(
        err.contains("interrupt: cancelling"),
        "says what Ctrl-C did: {err}"
    );

    // The tool is gone as soon as the run has ended: its group was killed before the
    // run's undo steps ran, and the CLI waited for them.
    let bin_path = bin.display().to_string();
    assert_eq!(
        processes_naming(&bin_path),
        Vec::<String>::new(),
        "no pg_restore left running"
    );

    let listed: Vec<RunSummary> = view(&site.cli(&["--json", "runs"]));
    let run = listed
        .iter()
        .find(|r| r.flow == "restore")
        .unwrap_or_else(|| panic!("a restore run in {listed:?}"));
    assert_eq!(run.state, RunState::Cancelled, "stopped run: {run:?}");
    let shown = text(&site.cli(&["--json", "show", &run.id]));
    assert!(
        shown.contains("Ctrl-C on the in-process CLI"),
        "who cancelled: {shown}"
    );
    assert!(
        shown.contains("drop staged databases"),
        "the undo step ran: {shown}"
    );
    node.assert_rolled_back();
}

/// `--json runs --follow RUN`: a program following a run reads each event as one JSON line
/// while the run goes on (the socket protocol's `{"type":"event",…}` line), and the run's
/// end as the last line (`{"type":"ok","result":<run record>}`), exiting as a text follow
/// does.
#[test]
fn json_follow_streams_a_runs_events_as_lines_until_its_end() {
    let node = StalledRestore::new("rbfol", 300, "");
    let site = &node.site;
    let daemon = site.start_daemon();
    let mut restore = node.spawn_restore(std::process::Stdio::null);
    let runs: Vec<RunSummary> = view(&site.cli(&["--json", "runs"]));
    let run = runs
        .iter()
        .find(|r| r.flow == "restore" && r.state.is_active())
        .unwrap_or_else(|| panic!("an active restore in {runs:?}"))
        .id
        .clone();

    let mut follow = site
        .cmd()
        .args(["--json", "runs", "--follow", &run])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The stalled pg_restore reports progress every half second: one line arrives while
    // the run is still going, so the stream is live (and the follower subscribed).
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("an event line while the run goes on");
    let first: Reply = serde_json::from_str(&first).unwrap();
    assert!(
        matches!(first, Reply::Event { .. }),
        "first line is an event: {first:?}"
    );
    assert!(follow.try_wait().unwrap().is_none(), "still following");

    let out = site.cli(&["cancel", &run]);
    assert!(out.status.success(), "cancel: {}", text(&out));
    let mut replies = vec![first];
    for line in lines.iter() {
        replies.push(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a reply line ({e}): {line}")),
        );
    }
    let status = follow.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled run's follow exits 1");

    let (last, events) = replies.split_last().unwrap();
    let Reply::Ok { result } = last else {
        panic!("the last line is the run's end: {last:?}")
    };
    let record: RunDetail = serde_json::from_value(result.clone()).unwrap();
    assert_eq!(
        (record.id.as_str(), record.state),
        (run.as_str(), RunState::Cancelled)
    );
    assert!(
        events.iter().all(|r| matches!(r, Reply::Event { .. })),
        "every line before the last is an event: {events:?}"
    );
    assert!(
        events.iter().any(|r| matches!(
            r,
            Reply::Event { event: RunEvent::StepStarted { name, .. } } if name == "drop staged databases"
        )),
        "the rollback's steps are in the stream: {events:?}"
    );
    let _ = restore.wait();
    stop(daemon);
    node.assert_rolled_back();
}
