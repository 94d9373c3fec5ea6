//! The recovery runway end to end, with the real binary and real Postgres: a backup's time
//! left before `repository.max_age` (Splice's pruning horizon) in `status --json`, in the
//! human `status`, on `/metrics`, and as a `runway.restore.low` event that starts a rule;
//! a node that stays down counting down to the horizon, durably across a daemon restart,
//! with its `runway.down.low` event.

mod common;
#[path = "common/sim.rs"]
mod sim;

use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use splice_dr_protocol::{RunSummary, RunwayView, StatusView};
use std::time::Duration;

const DAY: i64 = 86_400;

fn status(site: &Site) -> StatusView {
    site.json(&["status"])
}

/// The first node's runway as `status --json` shows it.
fn runway(site: &Site) -> RunwayView {
    let st = status(site);
    st.nodes[0]
        .runway
        .clone()
        .unwrap_or_else(|| panic!("no runway in {:?}", st.nodes[0]))
}

/// A site whose flows directory holds a `noop` flow, with fast probes, `/metrics` on
/// `metrics_port` and `rules` after the node.
fn runway_site(dbs: &NodeDbs, repo: &str, rules: &str, metrics_port: u16) -> Site {
    let noop = (
        "noop.rhai",
        "//! a flow that only logs\nlog.info(\"noop\");\n",
    );
    let site = Site::with_flows(dbs, "health_interval = \"300ms\"", rules, &[noop]);
    let cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("max_age = \"30d\"\n", repo);
    let cfg = format!("{cfg}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    std::fs::write(&site.config, cfg).unwrap();
    site
}

/// The value of `series` (a full `name{labels}`) in a scrape of `/metrics`, if present.
fn metric(port: u16, series: &str) -> Option<f64> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Moves a backup's creation back by `by` and signs it again, as if taken then.
fn backdate(site: &Site, id: &str, by: ChronoDuration, sign: bool) {
    let path = site.path("repo").join(id).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for field in ["created_at", "completed_at"] {
        let at: chrono::DateTime<Utc> = serde_json::from_value(m[field].clone()).unwrap();
        m[field] = serde_json::to_value(at - by).unwrap();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    if sign {
        resign(&path, &site.path("state/keys/signing.key"));
    }
}

fn backup(site: &Site) -> String {
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn noop_runs(site: &Site) -> Vec<RunSummary> {
    let runs: Vec<RunSummary> = site.json(&["runs", "--limit", "100"]);
    runs.into_iter().filter(|r| r.flow == "noop").collect()
}

fn assert_near(got: i64, want: i64, what: &str) {
    assert!(
        (got - want).abs() <= 120,
        "{what}: {got} s, expected about {want} s"
    );
}

#[test]
fn a_backup_near_the_horizon_shows_its_runway_everywhere_and_its_low_event_starts_a_rule() {
    let dbs = NodeDbs::create("sdr_runway", 10);
    let port = sim::closed_port();
    let rule = "[[rule]]\nname = \"runway-low\"\non = \"runway.restore.low\"\nflow = \"noop\"\n";
    // The defaults: a 30-day horizon, low below 7 days.
    let site = runway_site(&dbs, "max_age = \"30d\"\n", rule, port);
    let id = backup(&site);

    // Taken 25 days ago, but its signature no longer matches: an untrusted backup is no
    // runway (restore refuses it without --force).
    backdate(&site, &id, ChronoDuration::days(25), false);
    let r = runway(&site);
    assert_eq!(r.restore.backup, None, "{r:?}");
    assert_eq!(r.restore.left_secs, 0);
    assert!(r.restore.low);
    assert!(
        r.down.is_none(),
        "no daemon and no health log: no down half: {r:?}"
    );

    // Signed again: 5 days left, low; in-process `status` already shows it.
    backdate(&site, &id, ChronoDuration::zero(), true);
    let r = runway(&site);
    assert_eq!(r.restore.backup.as_deref(), Some(id.as_str()), "{r:?}");
    assert_near(r.restore.left_secs, 5 * DAY, "in-process restore runway");
    assert!(r.restore.low);
    assert_eq!(
        (r.horizon_secs, r.low_below_secs),
        (30 * 86_400, 7 * 86_400)
    );

    // After a network DR the registry runs the node at migration 1: the backup belongs to
    // the old synchronizer and is no runway, whatever the config file still says.
    let registry = site.path("state/participants/validator-1.json");
    std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
    std::fs::write(
        &registry,
        r#"{"current": null, "used": [], "migration_id": 1}"#,
    )
    .unwrap();
    assert_eq!(runway(&site).restore.backup, None);
    std::fs::remove_file(&registry).unwrap();

    let daemon = site.start_daemon();
    wait_for(
        Duration::from_secs(20),
        "the rule on runway.restore.low",
        || noop_runs(&site).len() == 1,
    );
    assert!(
        site.daemon_log().contains("runway.restore.low"),
        "{}",
        site.daemon_log()
    );
    let probed = || runway(&site).down.is_some();
    if std::panic::catch_unwind(|| wait_for(Duration::from_secs(10), "a down half", probed))
        .is_err()
    {
        panic!(
            "no down half in {:?}\nhealth log: {:?}\n{}",
            status(&site),
            std::fs::read_to_string(site.path("state/health/validator-1.jsonl")),
            site.daemon_log()
        );
    }
    let r = runway(&site);
    assert_near(r.restore.left_secs, 5 * DAY, "the daemon's restore runway");
    assert!(r.restore.low);
    let down = r.down.expect("the daemon probes the node");
    assert_eq!((down.since, down.down_secs), (None, 0), "healthy: {down:?}");
    assert_eq!(down.left_secs, 30 * DAY, "healthy: the whole horizon");
    assert!(!down.low);

    let series = "splice_dr_restore_runway_seconds{node=\"validator-1\"}";
    wait_for(Duration::from_secs(10), "the runway gauges", || {
        metric(port, series).is_some()
    });
    assert_near(metric(port, series).unwrap() as i64, 5 * DAY, "the gauge");
    assert_eq!(
        metric(port, "splice_dr_down_seconds{node=\"validator-1\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(port, "splice_dr_down_runway_seconds{node=\"validator-1\"}"),
        Some((30 * DAY) as f64)
    );
    let human = text(&site.cli(&["status"]));
    assert!(
        human.contains(&format!("until {id} passes the 30days horizon")) && human.contains("LOW"),
        "{human}"
    );

    // A fresh backup gives the whole horizon back: `ok`, once, and the rule not again.
    let fresh = backup(&site);
    wait_for(Duration::from_secs(20), "runway.restore.ok", || {
        site.daemon_log().contains("runway.restore.ok")
    });
    let r = runway(&site);
    assert_eq!(r.restore.backup.as_deref(), Some(fresh.as_str()));
    assert_near(r.restore.left_secs, 30 * DAY, "after a fresh backup");
    assert!(!r.restore.low);
    assert_near(metric(port, series).unwrap() as i64, 30 * DAY, "the gauge");
    assert_eq!(noop_runs(&site).len(), 1, "the low event fired once");
    stop(daemon);
}

#[test]
fn a_node_that_stays_down_counts_down_to_the_horizon_across_a_restart() {
    let dbs = NodeDbs::create("sdr_runway_down", 10);
    let port = sim::closed_port();
    // A component that never answers: the node is down from its first probe.
    let node = format!(
        "[node.postgres.components.validator]\nhealth_url = \"http://127.0.0.1:{}/readyz\"\n\n\
         [[rule]]\nname = \"down-too-long\"\non = \"runway.down.low\"\nflow = \"noop\"\n",
        sim::closed_port()
    );
    // A short horizon (the config accepts any), low when less than 35 s are left.
    let site = runway_site(
        &dbs,
        "max_age = \"40s\"\nlow_runway = \"35s\"\n",
        &node,
        port,
    );
    let daemon = site.start_daemon();
    wait_for(
        Duration::from_secs(20),
        "the rule on runway.down.low",
        || noop_runs(&site).len() == 1,
    );
    let r = runway(&site);
    let down = r.down.clone().expect("probed");
    let since = down.since.expect("down");
    assert!(!down.seen_healthy, "never seen healthy: {down:?}");
    assert!(down.low && down.left_secs < 35, "{down:?}");
    assert_eq!(down.left_secs, 40 - down.down_secs as i64, "{down:?}");
    assert!(site.daemon_log().contains("runway.down.low"));
    let human = text(&site.cli(&["status"]));
    assert!(human.contains("down for: at least"), "{human}");
    wait_for(Duration::from_secs(10), "the down gauge", || {
        metric(port, "splice_dr_down_seconds{node=\"validator-1\"}").is_some_and(|v| v >= 1.0)
    });
    stop(daemon);

    // The outage is in the durable health log: a new daemon counts from the same start.
    let daemon = site.start_daemon();
    wait_for(
        Duration::from_secs(20),
        "the first probe after the restart",
        || runway(&site).down.is_some(),
    );
    let down = runway(&site).down.expect("probed");
    assert_eq!(down.since, Some(since), "{down:?}");
    assert!(down.left_secs < 35, "{down:?}");
    stop(daemon);
}
