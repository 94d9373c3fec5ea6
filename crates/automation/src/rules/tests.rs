//! Rule behaviour with a fake clock.

use super::*;
use chrono::TimeZone;
use std::path::{Path, PathBuf};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn mins(m: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(m)
}

/// The `[automation]` and `[[rule]]` tables of a config file, as the daemon's config
/// reads them (it checks them further; these tests write valid rules).
#[derive(serde::Deserialize)]
struct Config {
    #[serde(default)]
    automation: AutomationConfig,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleConfig>,
}

fn config(rules: &str) -> Config {
    toml::from_str(rules).unwrap_or_else(|e| panic!("{e}"))
}

fn engine(rules: &str) -> RuleEngine {
    let c = config(rules);
    RuleEngine::new(&c.rules, &c.automation)
}

fn ev(name: &str, node: &str, at: DateTime<Utc>) -> Event {
    let mut e = Event::new(name, Some(node.to_string()), "probe");
    e.at = at;
    e
}

fn is_start(d: &Decision) -> bool {
    matches!(d, Decision::Start { .. })
}

fn reason(d: &Decision) -> &str {
    match d {
        Decision::Suppressed { reason, .. } => reason,
        other => panic!("expected a suppression, got {other:?}"),
    }
}

fn state_of(e: &RuleEngine, rule: &str, now: DateTime<Utc>) -> RuleState {
    e.status(now)
        .into_iter()
        .find(|s| s.rule == rule)
        .expect("rule in status")
        .state
}

const RESTORE: &str = r#"
[[rule]]
name = "restore-on-db-loss"
on = "health.postgres.down"
node = "validator-1"
flow = "restore"
params = { backup = "latest" }
"#;

#[test]
fn immediate_rule_starts_the_flow_with_params_and_node() {
    let mut e = engine(RESTORE);
    let d = e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    assert_eq!(
        d,
        vec![Decision::Start {
            rule: "restore-on-db-loss".into(),
            flow: "restore".into(),
            node: Some("validator-1".into()),
            params: serde_json::json!({"backup": "latest"}),
            approval_required: false,
            approval_expires_at: None,
            trigger: "health.postgres.down".into(),
            detected_at: Some(t0()),
            guards: "breaker 0 of 2 failures, 1 of max_runs 3 per 1h".into(),
        }]
    );
    // Another node's event and a non-matching event do nothing.
    assert!(e
        .on_event(&ev("health.postgres.down", "validator-2", t0()), t0())
        .is_empty());
    assert!(e
        .on_event(&ev("health.postgres.up", "validator-1", t0()), t0())
        .is_empty());
}

#[test]
fn rule_without_node_targets_the_events_node() {
    let mut e = engine(
        r#"
[[rule]]
name = "any"
on = "health.*.down"
flow = "restore"
"#,
    );
    let d = e.on_event(&ev("health.validator.down", "validator-2", t0()), t0());
    match &d[0] {
        Decision::Start { node, .. } => assert_eq!(node.as_deref(), Some("validator-2")),
        other => panic!("{other:?}"),
    }
}

const SUSTAIN: &str = r#"
[[rule]]
name = "sustained"
on = "health.*.down"
flow = "restore"
for = "2m"
"#;

#[test]
fn sustain_fires_only_after_for() {
    let mut e = engine(SUSTAIN);
    assert!(e
        .on_event(&ev("health.postgres.down", "validator-1", t0()), t0())
        .is_empty());
    assert_eq!(
        state_of(&e, "sustained", t0()),
        RuleState::Waiting { fires_at: mins(2) }
    );
    assert_eq!(e.next_wakeup(), Some(mins(2)));
    // A repeated down event does not restart the wait.
    assert!(e
        .on_event(&ev("health.postgres.down", "validator-1", mins(1)), mins(1))
        .is_empty());
    assert!(e.tick(mins(1)).is_empty());
    assert!(e.tick(t0() + TimeDelta::seconds(119)).is_empty());
    let d = e.tick(mins(2));
    assert_eq!(d.len(), 1);
    assert!(is_start(&d[0]), "{d:?}");
    // The run is journaled with the first observation, not the firing, and the guards.
    match &d[0] {
        Decision::Start {
            detected_at,
            guards,
            ..
        } => {
            assert_eq!(*detected_at, Some(t0()), "detected when the wait began");
            assert!(guards.starts_with("held for 2m, breaker 0 of"), "{guards}");
        }
        other => panic!("{other:?}"),
    }
    // Fired once: the wait is gone.
    assert!(e.tick(mins(3)).is_empty());
    assert_eq!(state_of(&e, "sustained", mins(3)), RuleState::Armed);
}

#[test]
fn sustain_is_cancelled_by_the_recovery_event_of_the_same_node_and_component() {
    let mut e = engine(SUSTAIN);
    e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    e.on_event(&ev("health.postgres.down", "validator-2", t0()), t0());
    // Another component coming up does not cancel; neither does another node's recovery.
    e.on_event(&ev("health.validator.up", "validator-1", mins(1)), mins(1));
    e.on_event(&ev("health.postgres.up", "validator-2", mins(1)), mins(1));
    let d = e.tick(mins(2));
    assert_eq!(d.len(), 1, "{d:?}");
    match &d[0] {
        Decision::Start { node, .. } => assert_eq!(node.as_deref(), Some("validator-1")),
        other => panic!("{other:?}"),
    }
    // validator-1 down again, recovers in time: nothing fires.
    e.on_event(
        &ev("health.postgres.down", "validator-1", mins(10)),
        mins(10),
    );
    e.on_event(&ev("health.postgres.up", "validator-1", mins(11)), mins(11));
    assert!(e.tick(mins(20)).is_empty());
}

#[test]
fn explicit_until_cancels_the_wait() {
    let mut e = engine(
        r#"
[[rule]]
name = "alerting"
on = "alert.ValidatorDown"
until = "alert.ValidatorDown.resolved"
flow = "restore"
for = "5m"
"#,
    );
    e.on_event(&ev("alert.ValidatorDown", "validator-1", t0()), t0());
    e.on_event(
        &ev("alert.ValidatorDown.resolved", "validator-1", mins(1)),
        mins(1),
    );
    assert!(e.tick(mins(6)).is_empty());
}

#[test]
fn cooldown_suppresses_matches_with_the_end_time() {
    let mut e = engine(
        r#"
[[rule]]
name = "r"
on = "health.postgres.down"
flow = "restore"
cooldown = "30m"
"#,
    );
    assert!(is_start(
        &e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0())[0]
    ));
    let d = e.on_event(
        &ev("health.postgres.down", "validator-1", mins(10)),
        mins(10),
    );
    assert_eq!(reason(&d[0]), "cooling down until 2025-03-01T12:30:00Z");
    assert_eq!(
        state_of(&e, "r", mins(10)),
        RuleState::Cooling { until: mins(30) }
    );
    assert!(is_start(
        &e.on_event(
            &ev("health.postgres.down", "validator-1", mins(30)),
            mins(30)
        )[0]
    ));
}

#[test]
fn max_runs_per_sliding_window() {
    let mut e = engine(
        r#"
[[rule]]
name = "r"
on = "health.postgres.down"
flow = "restore"
max_runs = 2
window = "1h"
"#,
    );
    let fire = |e: &mut RuleEngine, m: i64| {
        e.on_event(&ev("health.postgres.down", "validator-1", mins(m)), mins(m))
            .remove(0)
    };
    assert!(is_start(&fire(&mut e, 0)));
    assert!(is_start(&fire(&mut e, 40)));
    let d = fire(&mut e, 50);
    assert_eq!(
        reason(&d),
        "max_runs 2 per 1h reached (next run allowed after 2025-03-01T13:00:00Z)"
    );
    assert_eq!(
        state_of(&e, "r", mins(50)),
        RuleState::RateLimited {
            next_allowed_at: mins(60)
        }
    );
    // Sliding: the run at :00 leaves the window at 13:00, the one at :40 is still in it.
    assert!(is_start(&fire(&mut e, 60)));
    assert!(!is_start(&fire(&mut e, 61)));
    assert!(is_start(&fire(&mut e, 100)));
}

#[test]
fn defaults_rate_limit_every_rule() {
    let mut e = engine(RESTORE);
    let mut starts = 0;
    for m in 0..10 {
        let d = e.on_event(&ev("health.postgres.down", "validator-1", mins(m)), mins(m));
        starts += d.iter().filter(|d| is_start(d)).count();
    }
    assert_eq!(starts, 3, "default max_runs = 3 per 1h");
}

#[test]
fn breaker_trips_after_n_failures_and_reset_clears_it() {
    let mut e = engine(
        r#"
[[rule]]
name = "r"
on = "health.postgres.down"
flow = "restore"
breaker = 2
max_runs = 100
"#,
    );
    let down = |e: &mut RuleEngine, m: i64| {
        e.on_event(&ev("health.postgres.down", "validator-1", mins(m)), mins(m))
            .remove(0)
    };
    assert!(is_start(&down(&mut e, 0)));
    e.run_finished("r", false, mins(1));
    assert!(is_start(&down(&mut e, 2)));
    // A success in between resets the count.
    e.run_finished("r", true, mins(3));
    assert!(is_start(&down(&mut e, 4)));
    e.run_finished("r", false, mins(5));
    assert!(is_start(&down(&mut e, 6)));
    e.run_finished("r", false, mins(7));
    let d = down(&mut e, 8);
    assert_eq!(
        reason(&d),
        "breaker tripped after 2 failed runs: run `splice-dr reset r`"
    );
    assert_eq!(
        state_of(&e, "r", mins(8)),
        RuleState::Tripped { failures: 2 }
    );
    // Time alone does not heal it.
    assert!(!is_start(&down(&mut e, 600)));
    assert_eq!(
        e.reset("nope"),
        Err(RuleError::UnknownRule {
            rule: "nope".into(),
            known: vec!["r".into()]
        })
    );
    e.reset("r").unwrap();
    assert!(is_start(&down(&mut e, 601)));
}

#[test]
fn approval_required_sets_the_flag_and_expiry() {
    let mut e = engine(
        r#"
[[rule]]
name = "r"
on = "health.postgres.down"
flow = "restore"
approval = "required"
approval_timeout = "45m"

[[rule]]
name = "d"
on = "health.validator.down"
flow = "restore"
approval = "required"
"#,
    );
    match &e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0())[0] {
        Decision::Start {
            approval_required,
            approval_expires_at,
            ..
        } => {
            assert!(*approval_required);
            assert_eq!(*approval_expires_at, Some(mins(45)));
        }
        other => panic!("{other:?}"),
    }
    match &e.on_event(&ev("health.validator.down", "validator-1", t0()), t0())[0] {
        Decision::Start {
            approval_expires_at,
            ..
        } => assert_eq!(*approval_expires_at, Some(mins(30)), "default 30m"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pause_suppresses_until_resume() {
    let mut e = engine(RESTORE);
    e.pause();
    assert!(e.is_paused());
    let d = e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    assert_eq!(reason(&d[0]), "paused");
    assert_eq!(state_of(&e, "restore-on-db-loss", t0()), RuleState::Paused);
    e.resume();
    assert!(is_start(
        &e.on_event(&ev("health.postgres.down", "validator-1", mins(1)), mins(1))[0]
    ));
}

#[test]
fn paused_at_start_from_config_and_sustained_rules_are_suppressed_at_firing() {
    let mut e = engine(&format!("[automation]\npaused = true\n{SUSTAIN}"));
    assert!(e.is_paused());
    e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    let d = e.tick(mins(2));
    assert_eq!(reason(&d[0]), "paused");
}

#[test]
fn scheduled_runs_respect_the_pause() {
    let mut e = engine("");
    let run = ScheduledRun {
        name: "backup".into(),
        flow: "backup".into(),
        node: None,
        params: serde_json::json!({}),
        due_at: t0(),
    };
    assert!(is_start(&e.admit_scheduled(&run)));
    e.pause();
    assert_eq!(reason(&e.admit_scheduled(&run)), "paused");
}

#[test]
fn reconfigure_keeps_a_tripped_breaker() {
    let c = config(
        r#"
[[rule]]
name = "r"
on = "health.postgres.down"
flow = "restore"
breaker = 1
"#,
    );
    let mut e = RuleEngine::new(&c.rules, &c.automation);
    e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    e.run_finished("r", false, mins(1));
    e.reconfigure(&c.rules, None);
    assert_eq!(
        state_of(&e, "r", mins(2)),
        RuleState::Tripped { failures: 1 }
    );
}

#[test]
fn a_new_engine_given_the_memory_keeps_breaker_rate_and_cooldown() {
    let c = config(
        r#"
[[rule]]
name = "tripped"
on = "health.postgres.down"
flow = "restore"
breaker = 1

[[rule]]
name = "limited"
on = "health.participant.down"
flow = "restore"
max_runs = 1
cooldown = "2h"
"#,
    );
    let mut before = RuleEngine::new(&c.rules, &c.automation);
    before.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    before.run_finished("tripped", false, mins(1));
    before.on_event(&ev("health.participant.down", "validator-1", t0()), t0());
    let memory = before.memory();
    assert_eq!(memory.len(), 2, "{memory:?}");

    // What a restarted daemon builds: a fresh engine, then the memory.
    let mut after = RuleEngine::new(&c.rules, &c.automation);
    assert!(is_start(
        &after.on_event(&ev("health.postgres.down", "validator-1", mins(2)), mins(2))[0]
    ));
    let mut after = RuleEngine::new(&c.rules, &c.automation);
    after.remember(&memory);
    assert_eq!(
        state_of(&after, "tripped", mins(2)),
        RuleState::Tripped { failures: 1 }
    );
    let d = after.on_event(
        &ev("health.participant.down", "validator-1", mins(2)),
        mins(2),
    );
    assert!(reason(&d[0]).starts_with("cooling down until"), "{d:?}");
    assert_eq!(after.memory(), memory);
    // Memory of a rule no longer configured is dropped, not an error.
    let mut other = engine(RESTORE);
    other.remember(&memory);
    assert!(other.memory().is_empty());
}

#[test]
fn status_serializes_for_the_socket() {
    let mut e = engine(SUSTAIN);
    e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    let v = serde_json::to_value(e.status(t0())).unwrap();
    assert_eq!(v[0]["state"], "waiting");
    assert_eq!(v[0]["fires_at"], "2025-03-01T12:02:00Z");
    assert_eq!(v[0]["window"], "1h");
    let d = serde_json::to_value(Decision::Suppressed {
        rule: "r".into(),
        reason: "paused".into(),
        trigger: "x".into(),
    })
    .unwrap();
    assert_eq!(d["decision"], "suppressed");
}

fn script(text: &str) -> RuleScript {
    RuleScript::compile(text, Path::new("/etc/splice-dr/rules.rhai"))
        .unwrap_or_else(|e| panic!("{e}"))
}

const SITE_RULES: &str = r#"
// Restore validator-1 when any of its components goes down.
on("health.*.down", |e| {
    if e.node == "validator-1" {
        run("restore", #{ backup: "latest", reason: e.name });
    }
});
"#;

#[test]
fn rhai_rule_fires_with_params() {
    let mut e = engine("").with_script(script(SITE_RULES));
    let d = e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    assert_eq!(
        d,
        vec![Decision::Start {
            rule: "script:health.*.down".into(),
            flow: "restore".into(),
            node: Some("validator-1".into()),
            params: serde_json::json!({"backup": "latest", "reason": "health.postgres.down"}),
            approval_required: false,
            approval_expires_at: None,
            trigger: "health.postgres.down".into(),
            detected_at: Some(t0()),
            guards: "breaker 0 of 2 failures, 1 of max_runs 3 per 1h".into(),
        }]
    );
    // The handler decided not to run for validator-2.
    assert!(e
        .on_event(&ev("health.postgres.down", "validator-2", t0()), t0())
        .is_empty());
    // Subject to pause, and visible in status.
    e.pause();
    let d = e.on_event(&ev("health.postgres.down", "validator-1", mins(1)), mins(1));
    assert_eq!(reason(&d[0]), "paused");
    assert!(e
        .status(mins(1))
        .iter()
        .any(|s| s.rule == "script:health.*.down"));
}

#[test]
fn rhai_rules_are_breaker_guarded_by_default() {
    let mut e = engine("").with_script(script(SITE_RULES));
    for m in 0..2 {
        e.on_event(&ev("health.postgres.down", "validator-1", mins(m)), mins(m));
        e.run_finished("script:health.*.down", false, mins(m));
    }
    let d = e.on_event(&ev("health.postgres.down", "validator-1", mins(5)), mins(5));
    assert!(reason(&d[0]).starts_with("breaker tripped after 2 failed runs"));
}

#[test]
fn rhai_endless_loop_in_a_handler_is_an_error_not_a_hang() {
    let mut e = engine("").with_script(script(
        "on(\"health.*.down\", |e| {\n    let n = 0;\n    loop { n += 1; }\n});\n",
    ));
    let started = std::time::Instant::now();
    let d = e.on_event(&ev("health.postgres.down", "validator-1", t0()), t0());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    match &d[..] {
        [Decision::ScriptError { rule, error, .. }] => {
            assert_eq!(rule, "script:health.*.down");
            assert!(error.contains("Too many operations"), "{error}");
            assert!(
                error.starts_with("/etc/splice-dr/rules.rhai:1:1:"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rhai_compile_and_top_level_errors_are_located() {
    let e = RuleScript::compile(
        "on(\"a.b\", |e| {\n  run(\"x\" \n});\n",
        Path::new("/etc/rules.rhai"),
    )
    .unwrap_err();
    assert_eq!(e.file, PathBuf::from("/etc/rules.rhai"));
    assert_eq!(e.line, Some(3), "{e}");
    let e =
        RuleScript::compile("on(\"a..b\", |e| {});\n", Path::new("/etc/rules.rhai")).unwrap_err();
    assert!(e.message.contains("empty segment"), "{e}");
    assert_eq!(e.line, Some(1), "{e}");
    let e = RuleScript::compile("run(\"restore\");\n", Path::new("/etc/rules.rhai")).unwrap_err();
    assert!(e.message.contains("inside an on(…) handler"), "{e}");
    // A runtime error inside a handler is located at its line.
    let s = script("on(\"a.b\", |e| {\n  let x = 1;\n  x.nope();\n});\n");
    let out = s.handle(&ev("a.b", "validator-1", t0()));
    let err = out[0].1.as_ref().unwrap_err();
    assert!(err.starts_with("/etc/splice-dr/rules.rhai:3:"), "{err}");
    // No host access beyond on/run: files and eval are refused at compile time.
    assert!(RuleScript::compile("eval(\"1\");", Path::new("/etc/rules.rhai")).is_err());
}

#[test]
fn engine_is_send() {
    fn send<T: Send>() {}
    send::<RuleEngine>();
}
