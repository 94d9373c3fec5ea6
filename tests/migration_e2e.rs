//! After a network DR the node's migration state is the truth (issue #14 item 4), on the
//! real Splice compose bundle with splice-sim images: a migrating start that fails leaves
//! the registry on the new migration id, "unproven"; `status` says so and what to run;
//! `restart` starts the node with that id and migrating again, and records it proven once
//! the node is healthy; from then on backups dump the new migration's participant
//! database and record its id, restores of pre-DR backups are refused, and starts no
//! longer migrate — all while the config file still says the old id. (The k8s side of the
//! same path is in k8s_e2e.rs.)

mod common;
#[path = "common/compose.rs"]
mod compose;

use common::*;
use compose::{ago, backup, cli as cli_at, cli_restarting, validator_site, ComposeNode};
use serde_json::Value;
use splice_dr_protocol::{BackupList, StatusView};

fn registry(site: &std::path::Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(site.join("state/participants/validator-1.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn compose_a_failed_migrating_start_is_explained_and_finished_by_restart() {
    require_docker!();
    let mut node = ComposeNode::start("migfail");
    let site = tempfile::tempdir().unwrap();
    let (config, _key_file, _client) = validator_site(&node, site.path());
    let before = backup(&config);

    // The network is down while the node restarts migrating: the new node cannot register
    // with its SV, so it never answers readyz (the flow waits 20 s, not the default 600).
    node.stop_sv();
    let ts = ago(1);
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={ts}"),
            "--param",
            "migration_id=1",
            "--param",
            "ready_timeout=20",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // It was started with the new id and migrating, and the registry says so: every later
    // start passes both.
    assert_eq!(node.validator_migration_id().as_deref(), Some("1"));
    assert!(node.validator_migrating());
    let reg = registry(site.path());
    assert_eq!(reg["migration_id"], 1, "{reg}");
    assert_eq!(reg["migration_unproven"], true, "{reg}");

    // status explains it and names the command that finishes it, in text and as JSON.
    let out = cli_at(&config, &["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("runs migration 1 since a network DR")
            && shown.contains("migrating start to migration 1 was not seen healthy")
            && shown.contains("splice-dr run restart --node validator-1"),
        "{}",
        text(&out)
    );
    let status: StatusView = view(&cli_at(&config, &["--json", "status"]));
    let n = &status.nodes[0];
    assert_eq!(n.migration_id, Some(0), "the config still says 0");
    assert_eq!(n.running_migration_id, Some(1));
    assert!(n.migration_unproven);

    // The network is back: `restart` starts migrating to 1 again from the dump on the
    // dump volume, and once the node is healthy the migration is proven.
    node.restart_sv();
    let out = cli_restarting(
        &node,
        &config,
        &["--json", "run", "restart", "--param", "ready_timeout=120"],
    );
    assert!(out.status.success(), "restart: {}", text(&out));
    let result = flow_result(&out);
    assert_eq!(result["migration_id"], 1, "{result}");
    assert_eq!(result["migrated"], true, "{result}");
    assert_eq!(node.validator_migration_id().as_deref(), Some("1"));
    assert!(node.validator_migrating(), "this start migrated (-M)");
    assert!(node.validator_ready());
    assert_eq!(node.psql("participant-1", "SELECT 1"), "1");
    let reg = registry(site.path());
    assert_eq!(reg["migration_id"], 1, "{reg}");
    assert!(reg["migration_unproven"].is_null(), "proven: {reg}");
    let status: StatusView = view(&cli_at(&config, &["--json", "status"]));
    assert!(!status.nodes[0].migration_unproven);
    assert_eq!(status.nodes[0].running_migration_id, Some(1));

    // With the config still on 0, a backup dumps participant-1 and records migration 1.
    let id = backup(&config);
    let list: BackupList = view(&cli_at(&config, &["--json", "backups"]));
    let b = list.backups.iter().find(|b| b.id == id).unwrap();
    assert_eq!(b.migration_id, 1, "{b:?}");
    let participant = b.dumps.iter().find(|d| d.role == "participant").unwrap();
    assert_eq!(participant.database, "participant-1", "{b:?}");

    // A backup from before the DR is refused before anything changes.
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "restore",
            "--param",
            &format!("backup={before}"),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("migration"), "{err}");
    assert!(node.validator_ready(), "nothing changed");

    // A later start passes -m 1 and no longer migrates.
    let out = cli_restarting(&node, &config, &["--json", "run", "restart"]);
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(flow_result(&out)["migrated"], false);
    assert_eq!(node.validator_migration_id().as_deref(), Some("1"));
    assert!(!node.validator_migrating());
    assert!(node.validator_ready());
}
