//! Restore drills beyond the bare-Postgres basics (issue #8): drills on a docker-compose
//! node inside its own postgres container (live data untouched, a damaged table named),
//! amcheck over every index, the site's sanity queries, a failed drill as an event a rule
//! reacts to and as a metric, and `restore` preferring the newest backup a drill proved.
//! Real binary, real Postgres, real Docker engine.

use super::common::{self, *};
use splice_dr_protocol::{DrillRecord, DrillResult, RunState, RunSummary};
use splice_dr_repo::Manifest;
use std::time::Duration;

#[path = "../common/compose.rs"]
mod compose;

use compose::{cli, last_run, ComposeNode};

fn manifest_of(repo: &std::path::Path, id: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(repo.join(id).join("manifest.json")).unwrap()).unwrap()
}

/// The last drill a backup's manifest records.
fn last_drill(repo: &std::path::Path, id: &str) -> DrillRecord {
    manifest_of(repo, id)
        .last_drill
        .unwrap_or_else(|| panic!("backup {id} records no drill"))
}

/// Every database of the compose node's cluster, sorted.
fn databases(node: &ComposeNode) -> String {
    node.psql(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    )
}

const PASSING_CHECK: &str = "\n[[node.drill_check]]\nname = \"items restored\"\ndatabase = \"validator\"\nsql = \"SELECT count(*) FROM app.items\"\nexpect = \"400\"\n";

#[test]
fn a_compose_drill_passes_checks_every_index_and_leaves_the_live_node_untouched() {
    crate::require_docker!();
    let node = ComposeNode::start("drill_ok");
    node.seed(400);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), PASSING_CHECK);
    let id = compose::backup(&config);
    let (live, dbs_before) = (node.fingerprint(), databases(&node));
    // What a drill that crashed mid-restore leaves: status lists it, the next start drops it.
    let leftover = "validator__sdr_staging_crashed0";
    node.psql("postgres", &format!("CREATE DATABASE \"{leftover}\""));
    let status = cli(&config, &["--json", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(leftover)
            || String::from_utf8_lossy(&status.stderr).contains(leftover),
        "{}",
        text(&status)
    );

    let out = cli(&config, &["drill", "--backup", &id]);
    assert!(out.status.success(), "drill: {}", text(&out));
    let drill = last_drill(&site.path().join("repo"), &id);
    assert_eq!(drill.result, DrillResult::Passed, "{drill:?}");
    let detail = &drill.detail;
    assert!(detail.contains("indexes checked with amcheck"), "{detail}");
    assert!(detail.contains("1 site checks passed"), "{detail}");
    let run = last_run(&config, "drill");
    let result = run.result.unwrap_or_default();
    assert!(
        result["indexes_checked"].as_u64().unwrap_or(0) >= 2,
        "both app.items primary keys were checked: {result}"
    );

    assert_eq!(node.fingerprint(), live, "the live databases are untouched");
    assert_eq!(databases(&node), dbs_before, "no scratch database is left");
    let status = cli(&config, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("newest backup's drill: passed"), "{status}");
}

#[test]
fn a_compose_drill_of_a_damaged_dump_fails_naming_the_table() {
    crate::require_docker!();
    let node = ComposeNode::start("drill_bad");
    node.seed(300);
    let site = tempfile::tempdir().unwrap();
    // Uncompressed, so one row can be damaged in place (same length: the dump stays readable).
    let config = node.site_config(site.path(), "compress = 0\n");
    let id = compose::backup(&config);
    let repo = site.path().join("repo");
    let rel = "participant/database.pgdump";
    let mut bytes = std::fs::read(repo.join(&id).join(rel)).unwrap();
    // Each row of an uncompressed custom dump is its own length-prefixed chunk.
    let at = (1..bytes.len() - 4)
        .find(|&i| &bytes[i..i + 4] == b"250\t" && !bytes[i - 1].is_ascii_digit())
        .expect("row 250 of app.items in the dump");
    bytes[at] = b'x';
    common::replace_and_reseal(&repo.join(&id), rel, &bytes);
    assert!(
        cli(&config, &["verify", &id]).status.success(),
        "checksums and the table of contents cannot see it"
    );
    let (live, dbs_before) = (node.fingerprint(), databases(&node));

    let out = cli(&config, &["drill", "--backup", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("table items does not restore"), "{err}");
    assert!(err.contains("COPY items, line 250"), "{err}");
    let drill = last_drill(&repo, &id);
    assert_eq!(drill.result, DrillResult::Failed, "{drill:?}");
    assert!(
        drill.detail.contains("table items does not restore"),
        "{drill:?}"
    );

    assert_eq!(node.fingerprint(), live, "the live databases are untouched");
    assert_eq!(
        databases(&node),
        dbs_before,
        "the scratch database was dropped"
    );
    let listed = cli(&config, &["backups"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("failed"));
}

#[test]
fn a_failing_site_check_fails_the_drill_naming_the_check() {
    let dbs = NodeDbs::create("sdr_drill_check", 300);
    let check = "\n[[node.drill_check]]\nname = \"few contracts\"\ndatabase = \"participant\"\nsql = \"SELECT count(*) FROM contracts\"\nexpect = \"1\"\n\n[[node.drill_check]]\nname = \"users exist\"\ndatabase = \"validator\"\nsql = \"SELECT count(*) > 0 FROM users\"\n";
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "",
        "",
        check,
    );
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let live = dbs.fingerprint();

    let out = site.cli(&["drill", "--backup", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("site check \"few contracts\" returned 300, expected 1"),
        "{err}"
    );
    assert!(
        !err.contains("users exist"),
        "the passing check is not blamed: {err}"
    );
    assert!(last_drill(&site.path("repo"), &id)
        .detail
        .contains("few contracts"));
    assert_eq!(dbs.fingerprint(), live);
    assert_eq!(
        databases_like(&dbs.participant),
        vec![dbs.participant.clone()]
    );
}

#[test]
fn a_failed_drill_is_an_event_a_rule_reacts_to_and_a_zero_metric() {
    let dbs = NodeDbs::create("sdr_drill_event", 100);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "\n[[node.drill_check]]\nname = \"impossible\"\ndatabase = \"validator\"\nsql = \"SELECT 0\"\n\n\
         [[rule]]\nname = \"on-drill-failure\"\non = \"drill.failed\"\nflow = \"noop\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    );
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "scripts_dir = \"flows\"",
        "",
        &extra,
    );
    std::fs::create_dir_all(site.path("flows")).unwrap();
    std::fs::write(
        site.path("flows/noop.rhai"),
        "//! stands in for a site's reaction to a failed drill\nlog.info(`reacting to ${params}`);\nparams\n",
    )
    .unwrap();
    let _daemon = site.start_daemon();
    assert!(site.cli(&["backup"]).status.success());
    let out = site.cli(&["drill"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    wait_for(Duration::from_secs(20), "the rule's run", || {
        let out = site.cli(&["--json", "runs"]);
        let runs: Vec<RunSummary> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        runs.iter().any(|r| {
            r.flow == "noop"
                && r.trigger == "rule:on-drill-failure"
                && r.state == RunState::Succeeded
        })
    });
    let body = ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        body.contains("splice_dr_last_drill_success{node=\"validator-1\"} 0"),
        "{body}"
    );
    assert!(body.contains("splice_dr_last_drill_timestamp_seconds{node=\"validator-1\"}"));
    let status = site.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("DRILL FAILED") && status.contains("impossible"),
        "{status}"
    );
}

#[test]
fn restore_of_latest_takes_the_newest_backup_a_drill_proved_and_says_so() {
    let dbs = NodeDbs::create("sdr_drill_prefer", 200);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let backup = |site: &Site| {
        let out = site.cli(&["backup"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let proven = backup(&site);
    let at_proven = dbs.fingerprint();
    assert!(site.cli(&["drill", "--backup", &proven]).status.success());
    dbs.damage();
    std::thread::sleep(Duration::from_millis(1100)); // a distinct backup id and time
    let undrilled = backup(&site);
    assert_ne!(dbs.fingerprint(), at_proven);

    let out = site.cli(&["restore", "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert_eq!(
        dbs.fingerprint(),
        at_proven,
        "the proven backup was restored"
    );
    let runs: Vec<RunSummary> = view(&site.cli(&["--json", "runs"]));
    let run_id = runs
        .iter()
        .find(|r| r.flow == "restore")
        .unwrap()
        .id
        .clone();
    let shown = String::from_utf8_lossy(&site.cli(&["--json", "show", &run_id]).stdout).to_string();
    assert!(
        shown.contains(&format!(
            "backup {proven} is the newest whose last drill passed"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("never drilled were skipped: {undrilled}")),
        "{shown}"
    );
}
