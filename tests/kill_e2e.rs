//! Kill at every step (issue #12): runs a flow, SIGKILLs the daemon at each journaled step
//! boundary in turn (and mid-step in the long dump/restore steps), restarts it, and checks
//! that the run is `interrupted` and that start-up recovery leaves the node exactly as
//! before the run or fully restored (row digests of the live databases), its components
//! running, no scratch data left — kept data only when `status` names the exact command
//! that removes it (which the test runs) — and the participant-id registry untouched.
//!
//! Needs a debug build of the daemon (the pause hook is compiled only there).

mod common;

use common::kill::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Operator stop/start commands that mark a component up with a file.
fn components(flags: &Path) -> String {
    ["validator", "participant"]
        .iter()
        .map(|c| {
            let f = flags.join(format!("{c}.up"));
            format!(
                "[node.postgres.components.{c}]\nstop_command = \"rm -f {f}\"\nstart_command = \"touch {f}\"\n\n",
                f = f.display()
            )
        })
        .collect()
}

fn components_up(flags: &Path) -> bool {
    ["validator", "participant"]
        .iter()
        .all(|c| flags.join(format!("{c}.up")).exists())
}

/// Damages the node until its data differs from the backup; returns its digest.
fn diverge(dbs: &NodeDbs, backup: &[(String, String)]) -> Vec<(String, String)> {
    dbs.damage();
    let before = dbs.fingerprint();
    assert_ne!(
        before, backup,
        "the node must differ from the backup before the run"
    );
    before
}

fn status_json(site: &Site) -> Value {
    let out = site.cli(&["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Every database left next to the live ones must be kept data that `status` lists with
/// the exact command removing it; runs that command and checks it worked.
fn remove_listed_leftovers(site: &Site, dbs: &NodeDbs, point: KillPoint) -> usize {
    let prefix = dbs.validator.trim_end_matches("_v");
    let extra: Vec<String> = databases_like(prefix)
        .into_iter()
        .filter(|d| *d != dbs.validator && *d != dbs.participant)
        .collect();
    if extra.is_empty() {
        return 0;
    }
    let status = status_json(site);
    let left = &status["nodes"][0]["leftovers"];
    for db in &extra {
        assert!(
            left["kept"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == db.as_str())),
            "{point:?}: {db} is left behind and `status` does not list it as kept: {left}"
        );
        let cmd = left["remove_commands"][db.as_str()]
            .as_str()
            .unwrap_or_else(|| {
                panic!("{point:?}: `status` gives no command removing {db}: {left}")
            });
        sh(cmd);
    }
    assert_eq!(
        databases_like(prefix).len(),
        2,
        "{point:?}: the commands `status` printed did not remove {extra:?}"
    );
    extra.len()
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn bare_postgres_restore_killed_at_every_step_recovers_the_node() {
    let dbs = NodeDbs::create("sdr_kstep", 30_000);
    let flags = tempfile::tempdir().unwrap();
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "",
        "",
        &components(flags.path()),
    );
    let state = site.path("state");
    let registry = state.join("participants/validator-1.json");
    sh(&format!(
        "touch {0}/validator.up {0}/participant.up",
        flags.path().display()
    ));

    // The reference run: a backup, then one uninterrupted restore to learn its steps.
    let daemon = site.start_daemon();
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let backup = dbs.fingerprint();
    diverge(&dbs, &backup);
    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dbs.fingerprint(), backup);
    let steps = step_names(&newest_run(&state, "restore").unwrap());
    stop(daemon);
    let points = kill_points(&steps, &["database from"]);
    eprintln!("restore steps: {steps:?}");

    let mut exercised = 0;
    for point in points {
        let before = diverge(&dbs, &backup);
        let registry_before = read_opt(&registry);
        let paused = start_site_paused(&site, point);
        let mut client = site
            .cmd()
            .args(["restore", "--backup", &id, "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = paused.wait(&mut client, Duration::from_secs(120));
        paused.kill();
        let _ = client.wait();
        let Some(at) = reached else {
            eprintln!("{point:?}: the run finished before reaching it");
            continue;
        };
        exercised += 1;

        let daemon = site.start_daemon();
        let run = newest_run(&state, "restore").unwrap();
        assert_eq!(run["state"], "interrupted", "{point:?} ({at}): {run}");
        let now = dbs.fingerprint();
        let outcome = if now == before {
            "as before"
        } else if now == backup {
            "restored"
        } else {
            panic!("{point:?} ({at}): the node is neither as before the run nor restored")
        };
        assert!(
            components_up(flags.path()),
            "{point:?} ({at}): start-up recovery left a component stopped\n{}",
            site.daemon_log()
        );
        let removed = remove_listed_leftovers(&site, &dbs, point);
        assert_eq!(
            read_opt(&registry),
            registry_before,
            "{point:?}: participant registry changed"
        );
        eprintln!("{point:?} ({at}): node {outcome}, {removed} kept database(s) removed by the listed command");
        stop(daemon);
    }
    eprintln!("kill points exercised: {exercised}");
    assert!(
        exercised >= steps.len(),
        "every step boundary must be exercised"
    );
}
