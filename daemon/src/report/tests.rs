use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use splice_dr_protocol::RunDetail;

use super::html::{escape, render, NOT_RECORDED};
use super::timeline::{layout, FRAME, MIN_BAR};
use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::seconds(secs)
}

fn step(name: &str, depth: u32, start: i64, end: Option<i64>, state: &str) -> serde_json::Value {
    json!({
        "name": name, "args_digest": "d", "depth": depth, "state": state,
        "started_at": t(start), "finished_at": end.map(t),
        "result": null, "error": if state == "failed" { json!("it broke") } else { json!(null) },
    })
}

/// A restore a rule started and an operator approved, as the journal records it.
pub(crate) fn rule_restore() -> RunDetail {
    serde_json::from_value(json!({
        "id": "20261206-100010-restore-ab12",
        "flow": "restore",
        "node": "validator-1",
        "trigger": "rule:restore-when-down",
        "params": {"backup": "latest"},
        "dry_run": false,
        "forced_reason": null,
        "state": "succeeded",
        "created_at": t(10),
        "started_at": t(20),
        "finished_at": t(80),
        "steps": [
            step("verify backup b1", 0, 21, Some(25), "succeeded"),
            step("scale components down", 0, 25, Some(26), "succeeded"),
            step("restore validator database", 0, 26, Some(50), "succeeded"),
            step("scale components up and wait until healthy", 0, 50, Some(70), "succeeded"),
            step("wait until validator ready", 1, 51, Some(70), "succeeded"),
            step("drop the replaced databases", 0, 70, Some(79), "succeeded"),
        ],
        "result": {
            "backup": "b1", "backup_taken_at": t(-3600).to_rfc3339(),
            "restored": ["validator", "participant"],
            "reonboarded_users": ["alice"],
        },
        "error": null,
        "approval": {"rule": "restore-when-down", "expires_at": t(1000), "approved_by": "uid 0 (pid 7)"},
        "detection": {"event": "health.validator.down", "at": t(0), "rule": "restore-when-down", "guards": "held for 3s, breaker 0 of 2 failures"},
        "requests": ["approve by uid 0 (pid 7)"],
    }))
    .unwrap()
}

#[test]
fn figures_come_from_the_journal_and_name_their_basis() {
    let r = Report::from_run(&rule_restore());
    let rpo = r.rpo.clone().unwrap();
    assert_eq!(rpo.seconds, 3600.0, "backup taken → detection");
    assert_eq!(
        (rpo.from.as_str(), rpo.to.as_str()),
        ("backup taken", "detection")
    );
    let rto = r.rto.clone().unwrap();
    assert_eq!(rto.seconds, 70.0, "detection → end of the last health wait");
    assert_eq!(rto.to, "healthy again");
    assert_eq!(r.healthy_at, Some(t(70)));
    assert_eq!(r.decision.rule.as_deref(), Some("restore-when-down"));
    assert_eq!(
        r.decision.guards.as_deref(),
        Some("held for 3s, breaker 0 of 2 failures")
    );
    assert_eq!(r.decision.approved_by.as_deref(), Some("uid 0 (pid 7)"));
    assert_eq!(r.users_reonboarded, Some(vec!["alice".to_string()]));
    assert_eq!(
        r.restored,
        Some(vec!["validator".to_string(), "participant".into()])
    );
    assert_eq!(r.kept, None, "not in the record");
    assert_eq!(r.rows_verified, None, "not in the record: never guessed");
    let kinds: Vec<PhaseKind> = r.timeline.iter().map(|p| p.kind).collect();
    assert_eq!(kinds.first(), Some(&PhaseKind::Detection));
    assert_eq!(kinds[1..3], [PhaseKind::Decision, PhaseKind::Approval]);
    assert_eq!(kinds[3], PhaseKind::Verification);
    assert_eq!(kinds.iter().filter(|k| **k == PhaseKind::Step).count(), 5);
    assert_eq!(
        kinds[kinds.len() - 2..],
        [PhaseKind::Healthy, PhaseKind::End]
    );
}

#[test]
fn without_detection_or_backup_time_the_figures_say_so() {
    let mut run = rule_restore();
    run.detection = None;
    run.result = Some(json!({"backup": "b1"}));
    run.trigger = "cli".into();
    run.approval = None;
    let r = Report::from_run(&run);
    assert_eq!(r.detection, None);
    assert_eq!(r.rpo, None, "no backup time recorded: no RPO");
    let rto = r.rto.clone().unwrap();
    assert_eq!((rto.from.as_str(), rto.seconds), ("run requested", 60.0));
    assert_eq!(r.users_reonboarded, None);
    let page = render(&r);
    assert!(page.contains(NOT_RECORDED));
    assert!(page.contains("no approval required"));
    let text = super::text::summary(&r);
    assert!(text.contains("RPO:            not recorded"), "{text}");
    assert!(text.contains("detection:      not recorded"), "{text}");
}

#[test]
fn a_failed_run_has_no_rto_and_shows_its_failed_step() {
    let mut run = rule_restore();
    run.state = RunState::Failed;
    // It passed a health wait, then failed and rolled back: not healthy on restored data.
    run.steps.truncate(5);
    run.steps[2] = serde_json::from_value(step(
        "restore validator database",
        0,
        26,
        Some(30),
        "failed",
    ))
    .unwrap();
    run.error = Some("it broke".into());
    let r = Report::from_run(&run);
    assert_eq!(r.rto, None, "never healthy again");
    assert_eq!(r.healthy_at, None);
    assert!(r.timeline.iter().all(|p| p.kind != PhaseKind::Healthy));
    let step = r
        .timeline
        .iter()
        .find(|p| p.outcome.as_deref() == Some("failed"))
        .unwrap();
    assert_eq!(step.error.as_deref(), Some("it broke"));
}

#[test]
fn the_layout_is_proportional_with_visible_instants_and_open_steps() {
    let mut run = rule_restore();
    // An instant step and one the journal never closed.
    run.steps
        .push(serde_json::from_value(step("instant", 0, 79, Some(79), "succeeded")).unwrap());
    run.steps
        .push(serde_json::from_value(step("never closed", 0, 79, None, "interrupted")).unwrap());
    let r = Report::from_run(&run);
    let l = layout(&r.timeline, FRAME);
    assert_eq!(l.rows.len(), r.timeline.len());
    let axis = FRAME.axis_right - FRAME.axis_left;
    // Detection at t=0 is the left edge; the run's end at t=80 the right edge.
    assert_eq!(l.rows[0].x, FRAME.axis_left);
    assert_eq!(l.rows[0].width, None, "detection is a moment");
    let end = l.rows.last().unwrap();
    assert!((end.x - FRAME.axis_right).abs() < 1e-9);
    // "restore validator database": 26 s → 50 s of 80 s.
    let restore = &l.rows[r
        .timeline
        .iter()
        .position(|p| p.label == "restore validator database")
        .unwrap()];
    assert!((restore.x - (FRAME.axis_left + axis * 26.0 / 80.0)).abs() < 1e-9);
    assert!((restore.width.unwrap() - axis * 24.0 / 80.0).abs() < 1e-9);
    let instant = &l.rows[r
        .timeline
        .iter()
        .position(|p| p.label == "instant")
        .unwrap()];
    assert_eq!(instant.width, Some(MIN_BAR));
    let open = &l.rows[r
        .timeline
        .iter()
        .position(|p| p.label == "never closed")
        .unwrap()];
    assert!(open.open);
    assert!((open.x + open.width.unwrap() - FRAME.axis_right).abs() < 1e-9);
    // Rows never overlap; the SVG is tall enough for all.
    for w in l.rows.windows(2) {
        assert_eq!(w[1].y - w[0].y, FRAME.row);
    }
    assert!(l.height >= l.rows.last().unwrap().y + FRAME.row);
    assert_eq!(l.ticks.first().unwrap().label, "+0.0s");
    assert_eq!(l.ticks.last().unwrap().label, "+1m20s");
}

#[test]
fn a_timeline_of_one_moment_does_not_divide_by_zero() {
    let r = Report::from_run(&rule_restore());
    let one = &r.timeline[..1];
    let l = layout(one, FRAME);
    assert_eq!(l.rows[0].x, FRAME.axis_left);
    assert!(l.ticks.iter().all(|t| t.x.is_finite()));
    assert!(layout(&[], FRAME).rows.is_empty());
}

#[test]
fn journal_text_is_escaped_everywhere_it_appears() {
    let mut run = rule_restore();
    let evil = "<script>alert('x')</script> & \"quoted\"";
    run.id = format!("run-{evil}");
    run.node = Some(evil.into());
    run.error = Some(evil.into());
    run.steps[2] = serde_json::from_value(step(evil, 0, 26, Some(50), "failed")).unwrap();
    run.steps[2].error = Some(evil.into());
    run.approval.as_mut().unwrap().approved_by = Some(evil.into());
    run.result = Some(json!({"backup": evil, "reonboarded_users": [evil], "restored": [evil]}));
    let page = render(&Report::from_run(&run));
    assert!(!page.contains("<script"), "no journal text becomes markup");
    assert!(!page.contains("alert('x')"), "quotes are escaped too");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;")
    );
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

#[test]
fn the_page_is_self_contained_and_counts_every_step() {
    let run = rule_restore();
    let page = render(&Report::from_run(&run));
    assert_eq!(page.matches(" data-step=\"").count(), run.steps.len());
    for forbidden in [
        "<script", "<link", "@import", "url(", "src=", "http://", "https://",
    ] {
        let outside_ns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !outside_ns.contains(forbidden),
            "external or active content: {forbidden}"
        );
    }
    assert!(page.contains("<svg"));
    assert!(page.contains("1h00m"), "the RPO is shown");
}
