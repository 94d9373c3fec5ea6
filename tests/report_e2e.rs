//! The incident report end to end: a real restore that a rule started and an operator
//! approved (real daemon, real Postgres, built-in backend), then `splice-dr report` as
//! JSON, text and an HTML page rendered by a real headless browser (Debian's chromium):
//! the page loads without a console error, its timeline holds every step of the run, and
//! the figures are there. Without a daemon the CLI builds the same report in-process.

mod common;

use common::*;
use splice_dr::report::{PhaseKind, Report};
use splice_dr_protocol::{RunDetail, RunState, RunSummary, StatusView};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RULE: &str = r#"
[[rule]]
name = "restore-on-request"
on = "operator.restore-now"
flow = "restore"
params = { backup = "latest", ready_timeout = 30 }
approval = "required"
approval_timeout = "1h"
"#;

/// Chromium, or a failure saying how to get it (the browser check is the point).
fn chromium() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "chromium is not installed: the report test renders the page in a real browser. \
         Install it with `apt-get install -y --no-install-recommends chromium` (tests/setup.sh does)"
    );
    "chromium"
}

/// What a headless chromium made of `page`: the DOM after load, and the console
/// messages it logged (errors included) — the lines of its log that carry `CONSOLE`.
fn render(page: &Path, shot: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let run = |extra: &[&str]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1100,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium failed: {}", text(&out));
        out
    };
    let dom = run(&["--dump-dom"]);
    let mut console: Vec<String> = String::from_utf8_lossy(&dom.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    let shot_arg = format!("--screenshot={}", shot.display());
    let shooting = run(&[&shot_arg]);
    console.extend(
        String::from_utf8_lossy(&shooting.stderr)
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(str::to_string),
    );
    (String::from_utf8_lossy(&dom.stdout).into_owned(), console)
}

fn report_json(site: &Site, run: &str) -> Report {
    site.json(&["report", run])
}

#[test]
fn a_rule_driven_restore_reports_its_timeline_and_figures_in_a_real_browser() {
    chromium();
    let dbs = NodeDbs::create("sdr_report", 2000);
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "health_interval = \"300ms\"",
        "",
        RULE,
    );
    let daemon = site.start_daemon();
    let before = dbs.fingerprint();
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    let backup = String::from_utf8_lossy(&out.stdout).trim().to_string();
    dbs.damage();

    // Detection: the event; decision: the rule, waiting for approval; then approved.
    let out = site.cli(&["trigger", "operator.restore-now", "--node", "validator-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut pending = String::new();
    wait_for(
        Duration::from_secs(20),
        "the rule's pending restore",
        || {
            let st: StatusView = site.json(&["status"]);
            match st
                .automation
                .and_then(|a| a.pending_approvals.first().cloned())
            {
                Some(p) => {
                    pending = p.run;
                    true
                }
                None => false,
            }
        },
    );
    let out = site.cli(&["approve", &pending]);
    assert!(out.status.success(), "approve: {}", text(&out));
    wait_for(
        Duration::from_secs(120),
        "the approved restore to end",
        || {
            let runs: Vec<RunSummary> = site.json(&["runs"]);
            runs.iter().any(|r| r.id == pending && !r.state.is_active())
        },
    );
    let run: RunDetail = site.json(&["show", &pending]);
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    assert_eq!(
        dbs.fingerprint(),
        before,
        "the restore brought the backup back"
    );

    // The typed report: every figure the journal holds, and "not recorded" as null.
    let r = report_json(&site, &pending);
    let det = r
        .detection
        .clone()
        .expect("a rule's run records its detection");
    assert_eq!(det.event, "operator.restore-now");
    assert_eq!(det.rule, "restore-on-request");
    assert!(det.at <= run.created_at, "detected before the decision");
    assert!(
        r.decision
            .guards
            .as_deref()
            .is_some_and(|g| g.contains("breaker 0 of")),
        "{:?}",
        r.decision
    );
    let approver = r.decision.approved_by.clone().expect("approved_by");
    assert!(approver.starts_with("uid "), "{approver}");
    assert_eq!(r.backup.as_deref(), Some(backup.as_str()));
    let rpo = r
        .rpo
        .clone()
        .expect("the flow records when its backup was taken");
    assert_eq!(
        (rpo.from.as_str(), rpo.to.as_str()),
        ("backup taken", "detection")
    );
    assert!(rpo.seconds >= 0.0 && rpo.seconds < 600.0, "{rpo:?}");
    let rto = r.rto.clone().expect("RTO");
    assert_eq!(
        (rto.from.as_str(), rto.to.as_str()),
        ("detection", "healthy again")
    );
    assert!(rto.seconds > 0.0, "{rto:?}");
    // The restore compared every table with the counts the dump's snapshot took: the
    // report's figure is the manifest's total.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(site.path("repo").join(&backup).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let in_manifest: u64 = manifest["dumps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["tables"].as_array().unwrap())
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    assert!(in_manifest > 2000, "the test data: {in_manifest}");
    assert_eq!(r.rows_verified, Some(in_manifest));
    assert_eq!(
        r.users_reonboarded,
        Some(vec![]),
        "no validator API configured: none"
    );
    assert_eq!(
        r.restored,
        Some(vec![dbs.validator.clone(), dbs.participant.clone()])
    );
    assert_eq!(r.kept, Some(vec![]));
    assert_eq!(r.dropped.as_ref().map(Vec::len), Some(2), "{:?}", r.dropped);
    let steps = r.timeline.iter().filter(|p| p.outcome.is_some()).count();
    assert_eq!(steps, run.steps.len());
    assert!(r.timeline.iter().any(|p| p.kind == PhaseKind::Verification));
    assert!(r.timeline.iter().any(|p| p.kind == PhaseKind::Healthy));

    // Text, then the page: private, its path on stdout.
    let out = site.cli(&["report", &pending]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    for line in ["detection:      operator.restore-now", "RPO:"] {
        assert!(summary.contains(line), "`{line}` missing:\n{summary}");
    }
    let rows_line = format!("rows verified:  {in_manifest}");
    assert!(
        summary.contains(&rows_line),
        "`{rows_line}` missing:\n{summary}"
    );
    let page = site.path("incident.html");
    let out = site.cli(&["report", &pending, "--html", page.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        page.to_str().unwrap()
    );
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the page names hosts and users: private");

    // A real browser loads it without a console error; the timeline has every step.
    let shot = site.path("incident.png");
    let (dom, console) = render(&page, &shot);
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert_eq!(
        dom.matches(" data-step=\"").count(),
        run.steps.len(),
        "one timeline element per step"
    );
    for s in &run.steps {
        assert!(dom.contains(&s.name), "step `{}` not on the page", s.name);
    }
    for figure in [
        "RPO",
        "RTO",
        "Rows verified",
        "not recorded",
        &approver,
        &backup,
        "operator.restore-now",
    ] {
        assert!(dom.contains(figure), "`{figure}` not on the page");
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    if let Some(keep) = std::env::var_os("SPLICE_DR_REPORT_SHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // Without a daemon: the same report, in-process.
    stop(daemon);
    assert_eq!(report_json(&site, &pending), r);
}

#[test]
fn the_console_check_sees_an_error_so_its_silence_means_something() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom from the page')</script></body></html>",
    )
    .unwrap();
    let (_, console) = render(&page, &dir.path().join("bad.png"));
    assert!(
        console.iter().any(|l| l.contains("boom from the page")),
        "chromium's console log was not captured: {console:?}"
    );
}

#[test]
fn an_unknown_run_or_a_missing_run_id_is_a_clear_usage_error() {
    let dbs = NodeDbs::create("sdr_report_unknown", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    // As `show`, `cancel` and `runs --follow`: an id the journal lacks is a request to
    // change (exit 2), named with where to find the real ones.
    let out = site.cli(&["report", "20260101-000000-restore-nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run `20260101-000000-restore-nope`"),
        "{}",
        text(&out)
    );
    assert_eq!(
        site.cli(&["show", "20260101-000000-restore-nope"])
            .status
            .code(),
        Some(2),
        "the same code as show"
    );
    let out = site.cli(&["report"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
