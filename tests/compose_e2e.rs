//! The docker-compose backend end to end on a real Docker engine: the test bundle (same
//! service, volume and database names as the Splice one) started with its start.sh, the
//! real splice-dr binary backing it up and restoring it the runbook's way, and the backend
//! library's volume and file operations. Skipped loudly only when no engine answers.

mod common;
#[path = "common/compose.rs"]
mod compose;

use common::text;
use compose::{backup, cli, last_run, step_names, ComposeNode};
use splice_dr_compose::{ComposeBackend, ComposeConfig};
use splice_dr_plugin_api::{Databases, OpContext, Storage, StorageTarget, Workloads};
use splice_dr_protocol::RunState;
use std::path::Path;
use std::process::{Command, Stdio};

/// Damages a file of a sealed backup and re-seals the manifest, so that only the restore
/// itself can notice (the repository's checksums pass).
fn corrupt_and_reseal(repo: &Path, id: &str, rel: &str) {
    let dir = repo.join(id);
    let mut bytes = std::fs::read(dir.join(rel)).unwrap();
    let len = bytes.len();
    assert!(len > 4096, "{rel} is too small to damage");
    for b in &mut bytes[len / 2..len / 2 + 2048] {
        *b = !*b;
    }
    common::replace_and_reseal(&dir, rel, &bytes);
}

#[test]
fn backup_and_restore_bring_back_every_row_the_runbook_way() {
    require_docker!();
    let node = ComposeNode::start("restore");
    // Large enough (a few MB of dump) that streams outgrow socket buffers.
    node.seed(150_000);
    let before = node.fingerprint();
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");

    let id = backup(&config);
    let out = cli(&config, &["verify", &id]);
    assert!(out.status.success(), "verify: {}", text(&out));

    // The disaster: rows lost in one database, rows added in the other.
    node.psql("validator", "DELETE FROM app.items WHERE id % 3 = 0");
    node.psql(
        "participant-0",
        "INSERT INTO app.items VALUES (999999, 'late')",
    );
    assert_ne!(node.fingerprint(), before);

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert_eq!(
        node.fingerprint(),
        before,
        "every row as it was at the backup"
    );
    assert!(
        node.validator_ready(),
        "the validator answers readyz after the restore"
    );
    assert!(
        node.kept_volumes().is_empty(),
        "the copy is deleted once the restore is proven"
    );

    let run = last_run(&config, "restore");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let steps = step_names(&run).join("\n");
    for expected in [
        "stop validator and participant",
        "stop postgres",
        "copy the postgres volume aside",
        "wipe the postgres volume",
        "start only postgres on the empty volume",
        "restore validator database",
        "restore participant database",
        "start participant and validator and wait until healthy",
    ] {
        assert!(
            steps.contains(expected),
            "step `{expected}` missing in:\n{steps}"
        );
    }
    let v = steps.find("restore validator database").unwrap();
    let p = steps.find("restore participant database").unwrap();
    assert!(v < p, "the validator database is restored first");
}

#[test]
fn a_restore_failing_midway_puts_the_old_volume_back() {
    require_docker!();
    let node = ComposeNode::start("rollback");
    node.seed(20_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);

    // Data written after the backup: the node's current state, which must survive.
    node.psql(
        "validator",
        "INSERT INTO app.items VALUES (777777, 'after the backup')",
    );
    let current = node.fingerprint();
    corrupt_and_reseal(
        &site.path().join("repo"),
        &id,
        "participant/database.pgdump",
    );

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "restore must fail: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg_restore"),
        "the failing tool is named: {err}"
    );

    assert_eq!(
        node.fingerprint(),
        current,
        "the node is back on its previous data"
    );
    assert!(node.validator_ready(), "and healthy");
    assert!(
        node.kept_volumes().is_empty(),
        "the copy goes once the node is back on it"
    );
    let run = last_run(&config, "restore");
    assert_eq!(run.state, RunState::Failed);
    let steps = step_names(&run).join("\n");
    assert!(
        steps.contains("put ") && steps.contains(" back from "),
        "{steps}"
    );
}

#[test]
fn wrong_project_and_missing_container_are_clear_errors() {
    require_docker!();
    let node = ComposeNode::start("errors");
    let site = tempfile::tempdir().unwrap();

    // A project name that matches nothing: the error names the label query to try.
    let config = node.site_config(site.path(), "");
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        &format!("project = \"{}\"", node.project),
        "project = \"no-such-project\"",
    );
    std::fs::write(&config, text_cfg).unwrap();
    let out = cli(&config, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no container of service `postgres-splice` in compose project `no-such-project`"
        ),
        "{err}"
    );
    assert!(
        err.contains("--filter label=com.docker.compose.project=no-such-project"),
        "{err}"
    );

    // A container removed behind the backend's back.
    let backend = ComposeBackend::new(ComposeConfig::with_project(&node.project), 0).unwrap();
    let ctx = OpContext::detached(Default::default());
    let status = Command::new("docker")
        .args(["rm", "-f", &node.container("participant")])
        .output()
        .unwrap();
    assert!(status.status.success());
    // Nothing runs to stop (a node after stop.sh is stopped); starting it alone is refused
    // with the way to start it.
    backend.scale(&ctx, "participant", 0).unwrap();
    let e = backend
        .scale(&ctx, "participant", 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no container of service `participant`"), "{e}");
    assert!(e.contains("start.sh"), "{e}");
    let comps = backend.components(&ctx).unwrap();
    let p = comps.iter().find(|c| c.name == "participant").unwrap();
    assert_eq!(p.state, "missing");
}

#[test]
fn volume_in_use_is_refused_and_files_land_owned_by_1001() {
    require_docker!();
    let node = ComposeNode::start("volumes");
    let backend = ComposeBackend::new(ComposeConfig::with_project(&node.project), 0).unwrap();
    let ctx = OpContext::detached(Default::default());
    let pg = StorageTarget {
        name: "postgres".into(),
        path: None,
    };
    let e = backend.keep_storage(&ctx, &pg).unwrap_err().to_string();
    assert!(e.contains("in use by running container"), "{e}");
    let e = backend.wipe(&ctx, &pg).unwrap_err().to_string();
    assert!(e.contains("in use by running container"), "{e}");

    // The migration dump goes onto the dump volume owned by the validator's uid/gid.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("dump.json");
    std::fs::write(&src, br#"{"migration_id": 1, "payload": "x"}"#).unwrap();
    let dump = StorageTarget {
        name: "dump".into(),
        path: None,
    };
    backend.put_file(&ctx, &dump, &src).unwrap();
    let out = Command::new("docker")
        .args(["exec", &node.container("validator")])
        .args([
            "sh",
            "-c",
            "stat -c '%u:%g %a' /domain-upgrade-dump/domain_migration_dump.json && cat /domain-upgrade-dump/domain_migration_dump.json",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.starts_with("1001:1001 644\n"), "{shown}");
    assert!(shown.contains(r#""migration_id": 1"#), "{shown}");

    // Keep / wipe / put back / drop on a stopped postgres, through the library.
    node.seed(500);
    let before = node.fingerprint();
    for c in ["validator", "participant", "postgres"] {
        backend.scale(&ctx, c, 0).unwrap();
    }
    let kept = backend.keep_storage(&ctx, &pg).unwrap();
    assert!(kept.kept.contains("__sdr_kept_"), "{kept:?}");
    assert!(kept.bytes > 0);
    assert_eq!(
        backend.leftovers(&ctx).unwrap().kept,
        vec![kept.kept.clone()]
    );
    backend.wipe(&ctx, &pg).unwrap();
    backend.restore_kept_storage(&ctx, &kept).unwrap();
    for c in ["postgres", "participant", "validator"] {
        backend.scale(&ctx, c, 1).unwrap();
    }
    backend
        .wait_ready(&ctx, "postgres", std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(node.fingerprint(), before);
    backend.drop_kept_storage(&ctx, &kept).unwrap();
    assert!(backend.leftovers(&ctx).unwrap().kept.is_empty());
    // Only kept copies can be dropped.
    let mut live = kept.clone();
    live.kept = kept.live.clone();
    let e = backend
        .drop_kept_storage(&ctx, &live)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a copy splice-dr kept"), "{e}");
}

#[test]
fn cancel_during_the_database_restore_puts_the_old_volume_back() {
    require_docker!();
    let node = ComposeNode::start("cancel");
    node.seed(300_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);
    node.psql(
        "validator",
        "INSERT INTO app.items VALUES (888888, 'after the backup')",
    );
    let current = node.fingerprint();

    let restore = Command::new(common::bin())
        .arg("--config")
        .arg(&config)
        .args(["restore", "--backup", &id, "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cancel once the live volume has been wiped: from then on only the kept copy holds
    // the node's data.
    // The journal files are read directly (cheap, so the window is not missed).
    let runs_dir = site.path().join("state/runs");
    let mut run_id = String::new();
    common::wait_for(
        std::time::Duration::from_secs(120),
        "the restore to reach the database restore",
        || {
            std::fs::read_dir(&runs_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .any(|e| {
                    let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let hit = t.contains("\"flow\": \"restore\"")
                        && t.contains("\"state\": \"running\"")
                        && (t.contains("\"wipe the postgres volume")
                            || t.contains("\"start only postgres"));
                    if hit {
                        run_id = e.path().file_stem().unwrap().to_string_lossy().into_owned();
                    }
                    hit
                })
        },
    );
    let out = cli(&config, &["cancel", &run_id]);
    assert!(out.status.success(), "cancel: {}", text(&out));
    let out = restore.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    assert_eq!(node.fingerprint(), current, "the previous data is back");
    assert!(node.validator_ready());
    assert!(node.kept_volumes().is_empty(), "{:?}", node.kept_volumes());
    let run = last_run(&config, "restore");
    assert_eq!(run.state, RunState::Cancelled, "{run:?}");
}

/// Issue #12 item 3 on compose: a restore whose `run_timeout` passes in the middle of the
/// restore (after the live volume was kept and wiped) still puts the previous volume back
/// and deletes the copy. The deadline is set between the wipe and the database restore as
/// measured on a first, unhurried restore of the same backup.
#[test]
fn a_restore_past_run_timeout_puts_the_old_volume_back() {
    require_docker!();
    let node = ComposeNode::start("rbtimeout");
    node.seed(300_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "measuring restore: {}", text(&out));
    let measured = last_run(&config, "restore");
    let started = measured.started_at.expect("the measured run started");
    let step_start = |prefix: &str| {
        let step = measured
            .steps
            .iter()
            .find(|s| s.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("a step `{prefix}…` in {measured:?}"));
        step.started_at - started
    };
    // Between wiping the live volume and restoring into it: only the kept copy holds the
    // node's data, and forward work has most of the restore still to do.
    let from = step_start("wipe the postgres volume");
    let to = step_start("restore validator database");
    let deadline_ms = ((from + to).num_milliseconds() / 2).max(1);
    eprintln!("wipe at {from}, database restore at {to}: run_timeout {deadline_ms}ms");

    node.psql(
        "validator",
        "INSERT INTO app.items VALUES (777777, 'after the backup')",
    );
    let current = node.fingerprint();
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "state_dir = \"state\"\n",
        &format!("state_dir = \"state\"\nrun_timeout = \"{deadline_ms}ms\"\n"),
    );
    std::fs::write(&config, text_cfg).unwrap();

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = last_run(&config, "restore");
    assert_eq!(run.state, RunState::Cancelled, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("run_timeout"),
        "{run:?}"
    );
    assert!(
        step_names(&run).iter().any(|s| s.starts_with("put ")),
        "the previous volume was put back: {:?}",
        step_names(&run)
    );
    assert_eq!(node.fingerprint(), current, "the previous data is back");
    assert!(node.validator_ready());
    assert!(node.kept_volumes().is_empty(), "{:?}", node.kept_volumes());
}

/// A command that exits without reading its input (`pg_restore --list` reads only the
/// table of contents of a dump fed on stdin): the engine closes the exec's connection
/// with our input still unread, which on its Unix socket reads as "connection reset",
/// not end of file. That is the normal end of such a command — its output and exit code
/// are whole — and must not fail the verification of a sound backup (a CI run did).
#[test]
fn a_command_that_leaves_its_input_unread_ends_normally() {
    require_docker!();
    let node = ComposeNode::start("unread");
    let backend = ComposeBackend::new(ComposeConfig::with_project(&node.project), 0).unwrap();
    let ctx = OpContext::detached(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, vec![7u8; 8 << 20]).unwrap();
    let argv: Vec<String> = ["sh", "-c", "head -c 100 >/dev/null; echo toc; exit 3"]
        .map(String::from)
        .into();
    for round in 0..20 {
        let out = backend
            .exec(&ctx, "postgres", &argv, Some(&input))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (3, "toc\n"),
            "round {round}"
        );
    }
}

/// The runbook's catastrophic case: the operator ran `./stop.sh` (`docker compose down`), so
/// no container of the node exists, only its volumes. The restore creates postgres from the
/// bundle's own files, refills it, and starts the node with its start.sh: every row is back
/// and the validator answers through nginx as `wallet.localhost`.
#[test]
fn a_node_stopped_with_stop_sh_is_restored_with_every_row() {
    require_docker!();
    let node = ComposeNode::start("stopped");
    node.seed(20_000);
    let before = node.fingerprint();
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);
    node.psql("validator", "DELETE FROM app.items WHERE id % 2 = 0");

    let out = node.stop_sh();
    assert!(out.status.success(), "stop.sh: {}", text(&out));
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={}", node.project))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "stop.sh removed every container"
    );
    assert!(!node.validator_ready());

    let out = compose::cli_restarting(&node, &config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert!(
        node.validator_ready(),
        "the node runs again and answers through nginx"
    );
    assert_eq!(node.fingerprint(), before, "every row of the backup");
    assert!(
        node.kept_volumes().is_empty(),
        "the copy is gone once proven"
    );
    let run = last_run(&config, "restore");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let log = run
        .steps
        .iter()
        .flat_map(|s| s.log.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        log.contains("docker compose up --no-start postgres-splice"),
        "postgres came from the bundle's files:\n{log}"
    );
    assert!(
        log.contains("./start.sh"),
        "the node started with start.sh:\n{log}"
    );
}
