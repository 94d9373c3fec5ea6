//! Schedules, staleness and retention with a fake clock.

use super::*;
use crate::config::{default_schedules, CronExpr};
use chrono::TimeZone;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, h, m, 0).unwrap()
}

fn sched(name: &str, cron: &str) -> ScheduleConfig {
    ScheduleConfig {
        name: name.into(),
        flow: "backup".into(),
        cron: CronExpr::parse(cron).unwrap(),
        node: Some("validator-1".into()),
        params: serde_json::Map::new(),
        max_age: Some(Duration::from_secs(4 * 3600 + 1800)),
    }
}

#[test]
fn cron_next_after_is_strict_and_utc() {
    let s = Schedule::new(sched("b", "0 */4 * * *"));
    assert_eq!(s.next_after(at(12, 0)), Some(at(16, 0)));
    assert_eq!(s.next_after(at(13, 59)), Some(at(16, 0)));
    assert_eq!(
        s.next_after(at(22, 30)),
        Some(Utc.with_ymd_and_hms(2025, 3, 2, 0, 0, 0).unwrap())
    );
    let s = Schedule::new(sched("q", "15 3 * * 1")); // Mondays 03:15; 2025-03-01 is a Saturday
    assert_eq!(
        s.next_after(at(0, 0)),
        Some(Utc.with_ymd_and_hms(2025, 3, 3, 3, 15, 0).unwrap())
    );
}

#[test]
fn cron_rejects_non_five_field_and_impossible_expressions() {
    assert!(CronExpr::parse("0 0 */4 * * *")
        .unwrap_err()
        .contains("expected 5"));
    assert!(CronExpr::parse("*/4 * *")
        .unwrap_err()
        .contains("expected 5"));
    assert!(CronExpr::parse("61 * * * *").is_err());
    assert!(CronExpr::parse("0 0 30 2 *")
        .unwrap_err()
        .contains("never fires"));
    assert!(CronExpr::parse("@daily").is_ok());
}

#[test]
fn default_schedule_is_a_backup_every_four_hours() {
    let d = default_schedules();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].flow, "backup");
    assert_eq!(d[0].cron.as_str(), "0 */4 * * *");
    let mut s = Scheduler::new(&[], at(1, 0));
    assert_eq!(s.next_wakeup(), Some(at(4, 0)));
    assert_eq!(s.due(at(4, 0))[0].flow, "backup");
}

#[test]
fn fires_once_per_due_time() {
    let mut s = Scheduler::new(&[sched("b", "0 */4 * * *")], at(11, 0));
    assert!(s.due(at(11, 59)).is_empty());
    let runs = s.due(at(12, 0));
    assert_eq!(
        runs,
        vec![ScheduledRun {
            name: "b".into(),
            flow: "backup".into(),
            node: Some("validator-1".into()),
            params: serde_json::json!({}),
            due_at: at(12, 0),
        }]
    );
    // Polled again in the same minute, or a few seconds later: no double fire.
    assert!(s.due(at(12, 0)).is_empty());
    assert!(s.due(at(12, 0) + TimeDelta::seconds(30)).is_empty());
    assert!(s.due(at(15, 59)).is_empty());
    assert_eq!(s.due(at(16, 0) + TimeDelta::seconds(2)).len(), 1);
}

#[test]
fn no_burst_after_a_long_sleep() {
    let mut s = Scheduler::new(&[sched("b", "0 */4 * * *")], at(0, 30));
    // Asleep from 00:30 until 21:10: 04, 08, 12, 16, 20 were missed.
    let runs = s.due(at(21, 10));
    assert_eq!(runs.len(), 1, "fire once, not five times");
    assert_eq!(runs[0].due_at, at(20, 0));
    assert_eq!(
        s.next_wakeup(),
        Some(Utc.with_ymd_and_hms(2025, 3, 2, 0, 0, 0).unwrap())
    );
    assert!(s.due(at(23, 59)).is_empty());
}

#[test]
fn reconfigure_keeps_due_times_of_unchanged_schedules() {
    let mut s = Scheduler::new(&[sched("b", "0 */4 * * *")], at(11, 0));
    // A reload at 12:00:30 must not skip the 12:00 run that was not yet polled.
    s.reconfigure(
        &[sched("b", "0 */4 * * *"), sched("c", "30 * * * *")],
        at(12, 0) + TimeDelta::seconds(30),
    );
    let names: Vec<_> = s.due(at(12, 1)).into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["b"]);
    assert_eq!(s.due(at(12, 30)).len(), 1);
}

#[test]
fn staleness() {
    let max = Duration::from_secs(4 * 3600 + 1800);
    assert!(stale(None, max, at(12, 0)));
    assert!(!stale(Some(at(8, 0)), max, at(12, 30)));
    assert!(!stale(Some(at(8, 0)), max, at(12, 30)));
    assert!(stale(Some(at(8, 0)), max, at(12, 31)));
    assert!(
        !stale(Some(at(13, 0)), max, at(12, 0)),
        "a future time is fresh"
    );
}

#[test]
fn stale_event_only_on_the_transition() {
    let mut s = Scheduler::new(&[sched("b", "0 */4 * * *")], at(0, 0));
    assert!(s.check_staleness("b", Some(at(8, 0)), at(12, 0)).is_none());
    let ev = s
        .check_staleness("b", Some(at(8, 0)), at(13, 0))
        .expect("became stale");
    assert_eq!(ev.name, "backup.stale");
    assert_eq!(ev.node.as_deref(), Some("validator-1"));
    assert_eq!(ev.at, at(13, 0));
    assert_eq!(ev.labels.get("schedule").map(String::as_str), Some("b"));
    assert!(ev.message.contains("5h"), "{}", ev.message);
    assert!(s.check_staleness("b", Some(at(8, 0)), at(14, 0)).is_none());
    assert!(s.status()[0].stale);
    // Fresh again, then stale again: a new event.
    assert!(s.check_staleness("b", Some(at(14, 0)), at(14, 5)).is_none());
    assert!(s.check_staleness("b", Some(at(14, 0)), at(19, 0)).is_some());
    assert!(s.check_staleness("nope", None, at(19, 0)).is_none());
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, d, 0, 0, 0).unwrap()
}

#[test]
fn retention_keep_last() {
    let backups: Vec<(&str, DateTime<Utc>, bool)> = vec![
        ("d", day(4), true),
        ("a", day(1), true),
        ("c", day(3), true),
        ("b", day(2), true),
    ];
    let policy = RetentionConfig {
        keep_last: Some(2),
        keep_days: None,
        ..Default::default()
    };
    assert_eq!(select_expired(&backups, &policy, day(5)), vec!["a", "b"]);
}

#[test]
fn retention_keep_days_or_keep_last() {
    let backups = vec![
        (1, day(1), true),
        (2, day(10), true),
        (3, day(20), true),
        (4, day(25), true),
    ];
    let days = RetentionConfig {
        keep_last: None,
        keep_days: Some(7),
        ..Default::default()
    };
    // now = day 28: kept are those created on or after day 21.
    assert_eq!(select_expired(&backups, &days, day(28)), vec![1, 2, 3]);
    // Either rule keeps: the 3 newest are kept by count even though older than 7 days.
    let both = RetentionConfig {
        keep_last: Some(3),
        keep_days: Some(7),
        ..Default::default()
    };
    assert_eq!(select_expired(&backups, &both, day(28)), vec![1]);
    // Nothing configured: nothing expires.
    assert!(select_expired(&backups, &RetentionConfig::default(), day(28)).is_empty());
}

#[test]
fn retention_never_selects_the_newest_verified_backup() {
    // The newest backups failed verification; the last good one is old.
    let backups = vec![
        ("good-old", day(1), true),
        ("older", day(1) - TimeDelta::days(1), true),
        ("bad1", day(20), false),
        ("bad2", day(21), false),
    ];
    let policy = RetentionConfig {
        keep_last: Some(1),
        keep_days: Some(3),
        ..Default::default()
    };
    let expired = select_expired(&backups, &policy, day(28));
    assert_eq!(expired, vec!["older", "bad1"]);
    assert!(!expired.contains(&"good-old"));
    // A single, old, verified backup survives any policy.
    let one = vec![("only", day(1), true)];
    assert!(select_expired(&one, &policy, day(28)).is_empty());
}

#[test]
fn keep_daily_and_weekly_keep_the_newest_backup_of_each_recent_period() {
    use chrono::TimeZone;
    let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
    // Two backups a day on 2..=22 November 2026 (Mon 2 Nov starts ISO week 45).
    let mut backups = Vec::new();
    for d in 2..=22 {
        backups.push((format!("{d}-a"), at(d, 1), true));
        backups.push((format!("{d}-b"), at(d, 13), true));
    }
    let now = at(22, 20);
    let daily = RetentionConfig {
        keep_daily: Some(3),
        ..Default::default()
    };
    let expired = select_expired(&backups, &daily, now);
    let kept: Vec<&String> = backups
        .iter()
        .map(|(id, _, _)| id)
        .filter(|id| !expired.contains(id))
        .collect();
    assert_eq!(kept, vec!["20-b", "21-b", "22-b"]);

    let weekly = RetentionConfig {
        keep_weekly: Some(2),
        ..Default::default()
    };
    let expired = select_expired(&backups, &weekly, now);
    let kept: Vec<&String> = backups
        .iter()
        .map(|(id, _, _)| id)
        .filter(|id| !expired.contains(id))
        .collect();
    // Week 46 ends Sunday 15 November, week 47 on the 22nd.
    assert_eq!(kept, vec!["15-b", "22-b"]);
}
