use super::*;

const DAY: i64 = 86_400;

fn policy() -> RunwayPolicy {
    RunwayPolicy {
        horizon: Duration::from_secs(30 * DAY as u64),
        low_below: Duration::from_secs(7 * DAY as u64),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
        .expect("a fixed instant")
        .with_timezone(&Utc)
}

fn ago(secs: i64) -> DateTime<Utc> {
    now() - TimeDelta::seconds(secs)
}

fn backup(secs_ago: i64) -> RestorableBackup {
    RestorableBackup {
        id: "validator-1-20261101-120000".into(),
        taken_at: ago(secs_ago),
    }
}

fn rec(secs_ago: i64, component: &str, up: bool) -> HealthRecord {
    HealthRecord {
        at: ago(secs_ago),
        component: component.into(),
        up,
    }
}

#[test]
fn no_backup_is_no_runway_and_low() {
    let v = assess(policy(), None, None, now());
    assert_eq!(v.restore.backup, None);
    assert_eq!(v.restore.left_secs, 0);
    assert!(v.restore.low);
    assert_eq!(v.horizon_secs, 30 * DAY as u64);
    assert_eq!(v.low_below_secs, 7 * DAY as u64);
    assert!(v.down.is_none(), "no health records: no down half");
}

#[test]
fn the_restore_runway_is_the_horizon_minus_the_age() {
    let v = assess(policy(), Some(&backup(DAY)), None, now());
    assert_eq!(v.restore.left_secs, 29 * DAY);
    assert!(!v.restore.low);
    assert_eq!(v.restore.expires_at, Some(ago(DAY) + TimeDelta::days(30)));
    let v = assess(policy(), Some(&backup(25 * DAY)), None, now());
    assert_eq!(v.restore.left_secs, 5 * DAY);
    assert!(v.restore.low);
}

#[test]
fn a_backup_exactly_at_the_horizon_has_zero_left_and_one_past_it_is_negative() {
    let v = assess(policy(), Some(&backup(30 * DAY)), None, now());
    assert_eq!(v.restore.left_secs, 0);
    assert_eq!(v.restore.expires_at, Some(now()));
    assert!(v.restore.low);
    let v = assess(policy(), Some(&backup(30 * DAY + 1)), None, now());
    assert_eq!(v.restore.left_secs, -1);
    // The threshold is strict: exactly `low_below` left is not low yet.
    let v = assess(policy(), Some(&backup(23 * DAY)), None, now());
    assert_eq!(v.restore.left_secs, 7 * DAY);
    assert!(!v.restore.low);
}

#[test]
fn a_node_healthy_now_has_the_whole_horizon() {
    let records = [rec(100, "validator", false), rec(50, "validator", true)];
    let o = outage(&records).expect("records");
    assert_eq!(o.since, None);
    let d = assess(policy(), None, Some(o), now()).down.expect("known");
    assert_eq!(d.down_secs, 0);
    assert_eq!(d.left_secs, 30 * DAY);
    assert!(!d.low);
    assert!(d.seen_healthy);
}

#[test]
fn a_node_never_healthy_is_down_since_its_first_record_at_least() {
    let records = [
        rec(20 * DAY, "validator", false),
        rec(DAY, "validator", false),
    ];
    let o = outage(&records).expect("records");
    assert_eq!(o.since, Some(ago(20 * DAY)));
    assert!(!o.seen_healthy);
    let d = assess(policy(), None, Some(o), now()).down.expect("known");
    assert_eq!(d.down_secs, 20 * DAY as u64);
    assert_eq!(d.left_secs, 10 * DAY);
    assert_eq!(d.disabled_at, Some(ago(20 * DAY) + TimeDelta::days(30)));
    assert!(!d.low);
    assert!(outage(&[]).is_none(), "no records: unknown");
}

#[test]
fn a_round_with_one_component_up_and_another_down_is_no_healthy_moment() {
    // The daemon logs a first observation that is up (postgres) just before the same
    // round's first observation that is down (validator).
    let records = [rec(100, "postgres", true), rec(100, "validator", false)];
    let mut shifted = records.clone();
    shifted[1].at += TimeDelta::milliseconds(3);
    let o = outage(&shifted).expect("records");
    assert_eq!(o.since, Some(ago(100)));
    assert!(!o.seen_healthy, "{o:?}");
    // A later round that is all up is.
    let o = outage(&[
        shifted[0].clone(),
        shifted[1].clone(),
        rec(50, "validator", true),
    ])
    .expect("records");
    assert_eq!(o.since, None);
    assert!(o.seen_healthy);
}

#[test]
fn an_outage_begins_when_the_first_component_fails_and_lasts_until_all_are_up() {
    // Out of order on purpose: the log and the probes' state are merged unsorted.
    let records = [
        rec(10 * DAY, "participant", true),
        rec(24 * DAY, "validator", false),
        rec(30 * DAY, "validator", true),
        rec(25 * DAY, "participant", false),
        rec(30 * DAY, "participant", true),
    ];
    let o = outage(&records).expect("records");
    assert_eq!(o.since, Some(ago(25 * DAY)), "{o:?}");
    assert!(o.seen_healthy);
    let d = assess(policy(), None, Some(o), now()).down.expect("known");
    assert_eq!(d.left_secs, 5 * DAY);
    assert!(d.low);
    // Past the horizon: negative.
    let o = outage(&[rec(31 * DAY, "postgres", false)]).expect("records");
    let d = assess(policy(), None, Some(o), now()).down.expect("known");
    assert_eq!(d.left_secs, -DAY);
}

#[test]
fn the_watch_reports_changes_only() {
    let mut w = RunwayWatch::default();
    let fresh = assess(policy(), Some(&backup(DAY)), None, now());
    assert!(
        w.check("n", &fresh).is_empty(),
        "a first check that is fine is quiet"
    );
    let old = assess(policy(), Some(&backup(25 * DAY)), None, now());
    let evs = w.check("n", &old);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].name, "runway.restore.low");
    assert_eq!(evs[0].node.as_deref(), Some("n"));
    assert_eq!(evs[0].labels["left_secs"], (5 * DAY).to_string());
    assert!(
        evs[0].message.contains("validator-1-20261101-120000"),
        "{}",
        evs[0].message
    );
    assert!(
        w.check("n", &old).is_empty(),
        "no repeat while it stays low"
    );
    let evs = w.check("n", &fresh);
    assert_eq!(evs[0].name, "runway.restore.ok");

    // The down half: a node first seen low is reported at once; healthy again is `ok`.
    let down = outage(&[rec(28 * DAY, "validator", false)]);
    let evs = w.check("n", &assess(policy(), Some(&backup(DAY)), down, now()));
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].name, "runway.down.low");
    assert!(
        evs[0].message.contains("MemberDisabled"),
        "{}",
        evs[0].message
    );
    assert!(evs[0].message.contains("at least"), "{}", evs[0].message);
    let up = outage(&[rec(28 * DAY, "validator", false), rec(1, "validator", true)]);
    let evs = w.check("n", &assess(policy(), Some(&backup(DAY)), up, now()));
    assert_eq!(evs[0].name, "runway.down.ok");
    // Unknown health changes nothing; another node has its own memory.
    assert!(w.check("n", &fresh).is_empty());
    assert_eq!(
        w.check("m", &assess(policy(), None, None, now()))[0].name,
        "runway.restore.low"
    );
    w.retain(&["n".to_string()]);
    assert_eq!(w.check("m", &assess(policy(), None, None, now())).len(), 1);
}
