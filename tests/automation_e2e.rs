//! The daemon's automatic side, end to end over its socket: rules with sustain, cooldown,
//! max_runs, breaker + reset, approval + approve + expiry, pause/resume, a busy node
//! queueing the run, health probes against splice-sim, the Alertmanager receiver, and
//! Prometheus metrics — with the real binary, real Postgres and real HTTP.

mod common;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use splice_dr_protocol::{BackupList, RuleState, RuleStatus, RunState, RunSummary, StatusView};
use std::time::Duration;

const FLOWS: &[(&str, &str)] = &[
    ("noop.rhai", "//! a flow that only logs\nlog.info(`noop ${params}`);\nparams\n"),
    ("fail.rhai", "//! a flow that always fails\nthrow \"deliberate failure\";\n"),
    // Holds the node lock for a few seconds: waits on a component whose health URL never answers.
    ("slow.rhai", "//! holds the node for a while\ntry { node.wait_ready(\"blocker\", 3); } catch (e) { log.info(\"done waiting\"); }\n"),
];

fn automation_site(dbs: &NodeDbs, rules: &str) -> Site {
    let blocker = format!(
        "[node.postgres.components.blocker]\nhealth_url = \"http://127.0.0.1:{}/never\"\n",
        sim::closed_port()
    );
    Site::with_flows(
        dbs,
        "health_interval = \"300ms\"",
        &format!("{blocker}\n{rules}"),
        FLOWS,
    )
}

fn runs(site: &Site) -> Vec<RunSummary> {
    site.json(&["runs", "--limit", "100"])
}

fn runs_of(site: &Site, flow: &str) -> Vec<RunSummary> {
    runs(site).into_iter().filter(|r| r.flow == flow).collect()
}

fn status(site: &Site) -> StatusView {
    site.json(&["status"])
}

/// `status`'s automation part (the daemon answers, so it is present).
fn automation(site: &Site) -> splice_dr_protocol::AutomationView {
    status(site)
        .automation
        .expect("the daemon shows its automation")
}

fn decisions(site: &Site) -> Vec<String> {
    automation(site)
        .recent_decisions
        .iter()
        .map(|d| format!("{}: {}", d.rule, d.outcome))
        .collect()
}

fn trigger(site: &Site, event: &str) {
    let out = site.cli(&["trigger", event, "--node", "validator-1"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn wait_runs(site: &Site, flow: &str, n: usize, what: &str) {
    wait_for(Duration::from_secs(20), what, || {
        let done = runs_of(site, flow);
        done.len() >= n && done.iter().all(|r| r.state != RunState::Running)
    });
}

#[test]
fn cooldown_and_max_runs_suppress_visibly() {
    let dbs = NodeDbs::create("sdr_auto_cool", 1);
    let rules = r#"
[[rule]]
name = "cool"
on = "operator.cool"
flow = "noop"
cooldown = "1h"

[[rule]]
name = "rate"
on = "operator.rate"
flow = "noop"
max_runs = 2
window = "1h"
"#;
    let site = automation_site(&dbs, rules);
    let daemon = site.start_daemon();
    trigger(&site, "operator.cool");
    wait_runs(&site, "noop", 1, "the first run");
    trigger(&site, "operator.cool");
    wait_for(Duration::from_secs(10), "cooldown suppression", || {
        decisions(&site)
            .iter()
            .any(|d| d.starts_with("cool: suppressed: cooling down"))
    });
    assert_eq!(runs_of(&site, "noop").len(), 1);

    for _ in 0..3 {
        trigger(&site, "operator.rate");
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_for(Duration::from_secs(10), "max_runs suppression", || {
        decisions(&site)
            .iter()
            .any(|d| d.starts_with("rate: suppressed") && d.contains("max_runs"))
    });
    wait_runs(&site, "noop", 3, "two rate-limited runs");
    assert_eq!(
        runs_of(&site, "noop").len(),
        3,
        "1 cooled + 2 rate-limited runs"
    );
    let triggers: Vec<String> = runs_of(&site, "noop")
        .into_iter()
        .map(|r| r.trigger)
        .collect();
    assert!(
        triggers.iter().all(|t| t.starts_with("rule:")),
        "{triggers:?}"
    );
    stop(daemon);
}

#[test]
fn breaker_trips_after_failures_and_reset_rearms_it() {
    let dbs = NodeDbs::create("sdr_auto_brk", 1);
    let rules = "[[rule]]\nname = \"flaky\"\non = \"operator.go\"\nflow = \"fail\"\nbreaker = 2\nmax_runs = 10\n";
    let site = automation_site(&dbs, rules);
    let daemon = site.start_daemon();
    for n in 1..=2 {
        trigger(&site, "operator.go");
        wait_runs(&site, "fail", n, "a failed run");
    }
    wait_for(Duration::from_secs(5), "breaker tripped in status", || {
        automation(&site)
            .rules
            .first()
            .is_some_and(|r| matches!(r.state, RuleState::Tripped { .. }))
    });
    trigger(&site, "operator.go");
    wait_for(Duration::from_secs(10), "breaker suppression", || {
        decisions(&site)
            .iter()
            .any(|d| d.contains("breaker tripped") && d.contains("splice-dr reset"))
    });
    assert_eq!(runs_of(&site, "fail").len(), 2, "no run while tripped");

    let out = site.cli(&["reset", "flaky"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = site.cli(&["reset", "no-such-rule"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    trigger(&site, "operator.go");
    wait_runs(&site, "fail", 3, "a run after reset");
    stop(daemon);
}

#[test]
fn approval_required_waits_until_approved_or_expires() {
    let dbs = NodeDbs::create("sdr_auto_appr", 1);
    let rules = r#"
[[rule]]
name = "careful"
on = "operator.careful"
flow = "noop"
approval = "required"
approval_timeout = "1h"
max_runs = 10

[[rule]]
name = "lapsing"
on = "operator.lapse"
flow = "noop"
approval = "required"
approval_timeout = "1s"
max_runs = 10
"#;
    let site = automation_site(&dbs, rules);
    let daemon = site.start_daemon();
    trigger(&site, "operator.careful");
    wait_for(Duration::from_secs(10), "a pending approval", || {
        automation(&site).pending_approvals.len() == 1
    });
    let pending = automation(&site).pending_approvals[0].run.clone();
    assert_eq!(runs_of(&site, "noop")[0].state, RunState::Pending);
    let out = site.cli(&["approve", &pending]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        Duration::from_secs(10),
        "the approved run to succeed",
        || {
            runs_of(&site, "noop")
                .iter()
                .any(|r| r.id == pending && r.state == RunState::Succeeded)
        },
    );
    let out = site.cli(&["approve", &pending]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "approving twice is refused: {}",
        text(&out)
    );

    trigger(&site, "operator.lapse");
    wait_for(Duration::from_secs(10), "the approval to expire", || {
        runs_of(&site, "noop").iter().any(|r| {
            r.state == RunState::Cancelled
                && r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("approval expired"))
        })
    });
    stop(daemon);
}

#[test]
fn pause_stops_automatic_runs_but_not_manual_ones() {
    let dbs = NodeDbs::create("sdr_auto_pause", 1);
    let site = automation_site(
        &dbs,
        "[[rule]]\nname = \"r\"\non = \"operator.go\"\nflow = \"noop\"\nmax_runs = 10\n",
    );
    let daemon = site.start_daemon();
    assert!(site.cli(&["pause"]).status.success());
    assert!(automation(&site).paused);
    trigger(&site, "operator.go");
    wait_for(Duration::from_secs(10), "paused suppression", || {
        decisions(&site)
            .iter()
            .any(|d| d == "r: suppressed: paused")
    });
    let out = site.cli(&["run", "noop"]);
    assert!(
        out.status.success(),
        "manual runs still work: {}",
        text(&out)
    );
    assert_eq!(runs_of(&site, "noop").len(), 1);
    assert!(site.cli(&["resume"]).status.success());
    trigger(&site, "operator.go");
    wait_runs(&site, "noop", 2, "an automatic run after resume");
    stop(daemon);
}

#[test]
fn sustain_fires_only_if_the_condition_holds() {
    let dbs = NodeDbs::create("sdr_auto_for", 1);
    let site = automation_site(&dbs, "[[rule]]\nname = \"held\"\non = \"operator.thing.down\"\nflow = \"noop\"\nfor = \"2s\"\nmax_runs = 10\n");
    let daemon = site.start_daemon();
    trigger(&site, "operator.thing.down");
    std::thread::sleep(Duration::from_millis(500));
    trigger(&site, "operator.thing.up");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        runs_of(&site, "noop").is_empty(),
        "recovered within `for`: no run"
    );
    trigger(&site, "operator.thing.down");
    wait_runs(&site, "noop", 1, "the sustained condition to fire");
    stop(daemon);
}

#[test]
fn a_busy_node_queues_the_automatic_run_instead_of_dropping_it() {
    let dbs = NodeDbs::create("sdr_auto_q", 1);
    let site = automation_site(
        &dbs,
        "[[rule]]\nname = \"q\"\non = \"operator.go\"\nflow = \"noop\"\nmax_runs = 10\n",
    );
    let daemon = site.start_daemon();
    let mut slow = site
        .cmd()
        .args(["run", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the slow run", || {
        runs_of(&site, "slow")
            .iter()
            .any(|r| r.state == RunState::Running)
    });
    trigger(&site, "operator.go");
    wait_for(Duration::from_secs(10), "queued decision", || {
        decisions(&site).iter().any(|d| d.starts_with("q: queued"))
    });
    assert!(
        runs_of(&site, "noop").is_empty(),
        "not started while the node is busy"
    );
    assert!(slow.wait().unwrap().success());
    wait_runs(&site, "noop", 1, "the queued run once the node is free");
    assert_eq!(runs_of(&site, "noop")[0].state, RunState::Succeeded);
    stop(daemon);
}

#[test]
fn an_unhealthy_validator_is_detected_and_its_rule_fires() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dbs = sim::SimDbs::new("autohealth");
    let node = rt.block_on(dbs.start());
    let info = node.info().clone();
    let rules = format!(
        "[node.postgres.components.validator]\nhealth_url = \"{}/readyz\"\n\n[[rule]]\nname = \"react\"\non = \"health.validator.down\"\nflow = \"noop\"\nfor = \"1s\"\n",
        node.api_url()
    );
    let site = Site::with(
        &info.validator_db,
        &info.participant_db,
        BackendChoice::Builtin,
        "scripts_dir = \"flows\"\nhealth_interval = \"200ms\"",
        "",
        &rules,
    );
    std::fs::create_dir_all(site.path("flows")).unwrap();
    std::fs::write(site.path("flows/noop.rhai"), FLOWS[0].1).unwrap();
    let daemon = site.start_daemon();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        runs_of(&site, "noop").is_empty(),
        "a healthy node triggers nothing"
    );

    node.faults().apply(splice_sim::FaultsPatch {
        unhealthy: Some(true),
        ..Default::default()
    });
    wait_runs(
        &site,
        "noop",
        1,
        "the rule reacting to health.validator.down",
    );
    let history = status(&site)
        .health
        .expect("the daemon probes health")
        .history;
    assert!(
        history.iter().any(|h| h.component == "validator" && !h.up),
        "{history:?}"
    );
    assert!(
        site.daemon_log().contains("health.validator.down"),
        "{}",
        site.daemon_log()
    );

    // Back up: an `up` event, and no second run from the same outage.
    node.faults().apply(splice_sim::FaultsPatch {
        unhealthy: Some(false),
        ..Default::default()
    });
    wait_for(Duration::from_secs(10), "recovery observed", || {
        status(&site)
            .health
            .into_iter()
            .flat_map(|h| h.current)
            .any(|h| h.component == "validator" && h.up)
    });
    assert_eq!(runs_of(&site, "noop").len(), 1);
    stop(daemon);
    rt.block_on(node.shutdown());
}

#[test]
fn alertmanager_payload_triggers_a_rule_and_metrics_show_the_run() {
    let dbs = NodeDbs::create("sdr_auto_am", 1);
    let am_port = sim::closed_port();
    let metrics_port = sim::closed_port();
    let site = automation_site(
        &dbs,
        "[[rule]]\nname = \"on-alert\"\non = \"alert.ValidatorDown\"\nflow = \"noop\"\n",
    );
    std::fs::write(site.path("am-token"), "s3cret-token\n").unwrap();
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(&format!("\n[alertmanager]\nlisten = \"127.0.0.1:{am_port}\"\ntoken_file = \"am-token\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"));
    std::fs::write(&site.config, cfg).unwrap();
    let daemon = site.start_daemon();
    let url = format!("http://127.0.0.1:{am_port}/api/v1/alerts");
    let payload = serde_json::json!({
        "version": "4", "groupKey": "g", "status": "firing", "receiver": "splice-dr",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{"status": "firing", "labels": {"alertname": "ValidatorDown", "node": "validator-1"},
                    "annotations": {"summary": "validator down"}, "startsAt": "2026-01-01T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom", "fingerprint": "abc"}]
    });
    wait_for(Duration::from_secs(10), "the alert receiver", || {
        std::net::TcpStream::connect(("127.0.0.1", am_port)).is_ok()
    });
    let wrong = ureq::post(&url)
        .header("Authorization", "Bearer nope")
        .header("Content-Type", "application/json")
        .send(payload.to_string());
    assert!(
        matches!(wrong, Err(ureq::Error::StatusCode(401))),
        "{wrong:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        runs_of(&site, "noop").is_empty(),
        "a refused alert triggers nothing"
    );
    let ok = ureq::post(&url)
        .header("Authorization", "Bearer s3cret-token")
        .header("Content-Type", "application/json")
        .send(payload.to_string())
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    wait_runs(&site, "noop", 1, "the alert's rule");

    // The run is counted by the autopilot's reaction to its end, which follows the
    // journal's record of it: wait for the count, then read the rest of that scrape.
    let scrape = || {
        ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    let counted = "splice_dr_runs_total{flow=\"noop\",result=\"succeeded\"} 1";
    wait_for(Duration::from_secs(10), "the run counted", || {
        scrape().contains(counted)
    });
    let body = scrape();
    assert!(body.contains(counted), "{body}");
    assert!(body.contains("splice_dr_run_duration_seconds"), "{body}");
    assert!(body.contains("splice_dr_pending_approvals 0"), "{body}");
    assert!(
        body.contains("splice_dr_rule_breaker_tripped{rule=\"on-alert\"} 0"),
        "{body}"
    );
    // Every backend call is measured by the layer on the call path (the health probes
    // read the node's components every 300 ms).
    let measured =
        r#"splice_dr_backend_call_seconds_count{node="validator-1",op="components",outcome="ok"}"#;
    wait_for(Duration::from_secs(10), "a measured backend call", || {
        ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .is_some_and(|b| b.contains(measured))
    });
    stop(daemon);
}

#[test]
fn scheduled_backup_fires_and_retention_deletes_the_oldest() {
    let dbs = NodeDbs::create("sdr_auto_sched", 100);
    let site = automation_site(
        &dbs,
        "[[schedule]]\nname = \"minutely\"\nflow = \"backup\"\ncron = \"* * * * *\"\n\n[retention]\nkeep_last = 1\n",
    );
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    let manual = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let daemon = site.start_daemon();
    let st = automation(&site);
    assert_eq!(st.schedules[0].cron, "* * * * *", "{st:?}");
    // The schedule fires at the next minute boundary.
    wait_for(Duration::from_secs(75), "the scheduled backup", || {
        runs_of(&site, "backup")
            .iter()
            .any(|r| r.trigger.contains("schedule") && r.state == RunState::Succeeded)
    });
    wait_for(
        Duration::from_secs(10),
        "retention to delete the older backup",
        || {
            let list: BackupList = view(&site.cli(&["--json", "backups"]));
            let ids: Vec<&str> = list.backups.iter().map(|b| b.id.as_str()).collect();
            ids.len() == 1 && ids[0] != manual
        },
    );
    assert!(
        decisions(&site)
            .iter()
            .any(|d| d.contains(&format!("deleted {manual}"))),
        "{:?}",
        decisions(&site)
    );
    stop(daemon);
}

/// The memory of the guard rails after the daemon restarted.
fn rule_state(site: &Site, rule: &str) -> Option<RuleStatus> {
    automation(site).rules.into_iter().find(|r| r.rule == rule)
}

/// Whether `rule` is listed with its breaker tripped.
fn tripped(site: &Site, rule: &str) -> bool {
    rule_state(site, rule).is_some_and(|r| matches!(r.state, RuleState::Tripped { .. }))
}

#[test]
fn guard_rails_survive_restarts_and_a_run_the_daemon_died_in_counts_as_failed() {
    let dbs = NodeDbs::create("sdr_auto_mem", 1);
    let rules = r#"
[[rule]]
name = "flaky"
on = "operator.go"
flow = "fail"
breaker = 1
max_runs = 10

[[rule]]
name = "rate"
on = "operator.rate"
flow = "noop"
max_runs = 1
window = "1h"

[[rule]]
name = "held"
on = "operator.slow"
flow = "slow"
breaker = 1
max_runs = 10
"#;
    let site = automation_site(&dbs, rules);
    let daemon = site.start_daemon();
    trigger(&site, "operator.go");
    wait_runs(&site, "fail", 1, "the failed run");
    trigger(&site, "operator.rate");
    wait_runs(&site, "noop", 1, "the rate-limited rule's one run");
    wait_for(
        Duration::from_secs(15),
        "tripped before the restart",
        || tripped(&site, "flaky"),
    );
    stop(daemon);

    // A clean restart: the breaker stays tripped and the rate window stays full.
    let daemon = site.start_daemon();
    assert!(tripped(&site, "flaky"), "{}", site.daemon_log());
    trigger(&site, "operator.go");
    trigger(&site, "operator.rate");
    wait_for(
        Duration::from_secs(10),
        "both suppressed after the restart",
        || {
            let d = decisions(&site);
            d.iter()
                .any(|d| d.starts_with("flaky: suppressed: breaker tripped"))
                && d.iter()
                    .any(|d| d.starts_with("rate: suppressed: max_runs 1"))
        },
    );
    assert_eq!(runs_of(&site, "fail").len(), 1, "no run while tripped");
    assert_eq!(runs_of(&site, "noop").len(), 1, "no run past max_runs");

    // The daemon is killed while a rule's run holds the node: the next daemon counts the
    // interrupted run as the rule's failure, so its breaker (1) is tripped.
    trigger(&site, "operator.slow");
    wait_for(Duration::from_secs(15), "the slow run", || {
        runs_of(&site, "slow")
            .iter()
            .any(|r| r.state == RunState::Running)
    });
    drop(daemon); // SIGKILL
    let daemon = site.start_daemon();
    wait_for(
        Duration::from_secs(5),
        "the interrupted run counted",
        || tripped(&site, "held"),
    );
    assert!(
        decisions(&site).iter().any(|d| d.starts_with("held: run ")
            && d.contains("interrupted")
            && d.contains("counted as a failure")),
        "{:?}",
        decisions(&site)
    );
    assert_eq!(runs_of(&site, "slow")[0].state, RunState::Interrupted);

    // The operator's pause outlives a restart; so does the resume. A reset is remembered.
    assert!(site.cli(&["pause"]).status.success());
    assert!(site.cli(&["reset", "flaky"]).status.success());
    stop(daemon);
    let daemon = site.start_daemon();
    assert!(automation(&site).paused);
    let flaky = rule_state(&site, "flaky").expect("rule flaky listed");
    assert_eq!(
        (&flaky.state, flaky.failures),
        (&RuleState::Paused, 0),
        "{flaky:?}"
    );
    assert_eq!(
        rule_state(&site, "rate").map(|r| r.runs_in_window),
        Some(1),
        "the window is remembered"
    );
    assert!(site.cli(&["resume"]).status.success());
    stop(daemon);
    let daemon = site.start_daemon();
    assert!(!automation(&site).paused);
    trigger(&site, "operator.go");
    wait_runs(&site, "fail", 2, "a run after the remembered reset");

    // A memory that cannot be written is shown in status until a write succeeds again.
    let file = site.path("state/rules-memory.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    assert!(site.cli(&["pause"]).status.success());
    wait_for(Duration::from_secs(15), "the write error in status", || {
        automation(&site)
            .memory_error
            .is_some_and(|e| e.contains("rules-memory.json"))
    });
    let shown = site.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("RULES MEMORY NOT WRITTEN"),
        "{}",
        text(&shown)
    );
    std::fs::remove_dir(&file).unwrap();
    wait_for(Duration::from_secs(15), "the memory written again", || {
        automation(&site).memory_error.is_none()
    });
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("\"operator_paused\": true"), "{written}");
    stop(daemon);

    // An unreadable memory is moved aside and automation starts paused, saying why.
    std::fs::write(&file, "{ half a file").unwrap();
    let daemon = site.start_daemon();
    let st = automation(&site);
    assert!(st.paused, "{st:?}");
    assert!(
        decisions(&site)
            .iter()
            .any(|d| d.contains("rules memory was unreadable") && d.contains("splice-dr resume")),
        "{:?}",
        decisions(&site)
    );
    let aside: Vec<_> = std::fs::read_dir(site.path("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rules-memory.json.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file kept for the operator");
    stop(daemon);
}
