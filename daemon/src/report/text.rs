//! The report as a terminal summary (`report RUN` without `--html` or `--json`).

use std::fmt::Write;

use super::html::NOT_RECORDED;
use super::timeline::human_secs;
use super::{Report, Span};

fn span(s: &Option<Span>) -> String {
    match s {
        Some(s) => format!("{} ({} → {})", human_secs(s.seconds), s.from, s.to),
        None => NOT_RECORDED.into(),
    }
}

fn or_nr(v: Option<String>) -> String {
    v.unwrap_or_else(|| NOT_RECORDED.into())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A few lines: what ran, how it ended, the figures, then one line per step.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "incident report: {} run {} on {}: {}{}",
        r.flow,
        r.run,
        r.node.as_deref().unwrap_or("-"),
        r.state.as_str(),
        r.error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    let detection = r
        .detection
        .as_ref()
        .map(|d| format!("{} at {}", d.event, d.at.to_rfc3339()));
    let _ = writeln!(s, "  detection:      {}", or_nr(detection));
    let decided = match &r.decision.rule {
        Some(rule) => format!(
            "rule {rule}; guards {}",
            r.decision.guards.as_deref().unwrap_or(NOT_RECORDED)
        ),
        None => format!("requested by hand ({})", r.decision.trigger),
    };
    let _ = writeln!(s, "  decision:       {decided}");
    let approval = match (&r.decision.approved_by, r.decision.approval_required) {
        (Some(by), _) => by.clone(),
        (None, true) => "required, not approved".into(),
        (None, false) => "not required".into(),
    };
    let _ = writeln!(s, "  approved by:    {approval}");
    let backup = r.backup.as_ref().map(|b| match r.backup_taken_at {
        Some(t) => format!("{b} (taken {})", t.to_rfc3339()),
        None => b.clone(),
    });
    let _ = writeln!(s, "  backup:         {}", or_nr(backup));
    let _ = writeln!(s, "  RPO:            {}", span(&r.rpo));
    let _ = writeln!(s, "  RTO:            {}", span(&r.rto));
    let _ = writeln!(
        s,
        "  rows verified:  {}",
        or_nr(r.rows_verified.map(|n| n.to_string()))
    );
    let users = r.users_reonboarded.as_ref().map(|u| {
        format!(
            "{} {}",
            u.len(),
            if u.is_empty() {
                String::new()
            } else {
                format!("({})", u.join(", "))
            }
        )
    });
    let _ = writeln!(s, "  re-onboarded:   {}", or_nr(users).trim_end());
    if !r.users_not_reonboarded.is_empty() {
        let _ = writeln!(
            s,
            "  TO RE-ONBOARD BY HAND: {}",
            r.users_not_reonboarded.join(", ")
        );
    }
    for (key, items) in [
        ("restored:", &r.restored),
        ("kept:", &r.kept),
        ("dropped:", &r.dropped),
    ] {
        let v = items
            .as_deref()
            .map(list)
            .unwrap_or_else(|| NOT_RECORDED.into());
        let _ = writeln!(s, "  {key:<15} {v}");
    }
    let _ = writeln!(s, "  steps:");
    for p in r.steps() {
        let took = p.took().unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "    {}{} [{}, {took}]{}",
            "  ".repeat(p.depth as usize),
            p.label,
            p.outcome.as_deref().unwrap_or(""),
            p.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    s
}
