//! What a finished `drill` run tells the rest of the daemon: a `drill.passed` /
//! `drill.failed` event for rules, and the values of the drill metrics.
//!
//! The outcome is read from the manifest the drill recorded (`last_drill.run` is the run
//! id), so the event names the backup and carries the drill's own detail (the table,
//! index or check that failed). A drill that failed before it could record anything (no
//! backup, a damaged repository) is still a failed drill, with the run's error.

use chrono::{DateTime, Utc};

use crate::events::Event;
use splice_dr_protocol::RunState;
use splice_dr_repo::Manifest;

/// A finished drill, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillOutcome {
    /// The node drilled.
    pub node: String,
    /// Whether the backup passed.
    pub passed: bool,
    /// When the drill ended.
    pub at: DateTime<Utc>,
    /// The event for the bus.
    pub event: Event,
}

/// The outcome of drill run `run` that ended in `state`.
/// `None` for a cancelled or interrupted run that recorded nothing: it proved nothing
/// either way.
pub fn outcome(
    run: &str,
    state: RunState,
    error: Option<&str>,
    node: Option<&str>,
    backups: &[Manifest],
) -> Option<DrillOutcome> {
    let recorded = backups.iter().find_map(|m| {
        m.last_drill
            .as_ref()
            .filter(|d| d.run == run)
            .map(|d| (m, d))
    });
    let (node, passed, at, backup, detail) = match recorded {
        Some((m, d)) => (
            m.node.clone(),
            d.result == splice_dr_repo::DrillResult::Passed,
            d.at,
            Some(m.id.clone()),
            d.detail.clone(),
        ),
        None if state == RunState::Failed => (
            node?.to_string(),
            false,
            Utc::now(),
            None,
            error.unwrap_or("the drill failed").to_string(),
        ),
        None => return None,
    };
    let name = if passed {
        "drill.passed"
    } else {
        "drill.failed"
    };
    let message = match &backup {
        Some(id) if passed => format!("backup {id} passed its drill: {detail}"),
        Some(id) => format!("backup {id} failed its drill: {detail}"),
        None => format!("drill failed: {detail}"),
    };
    let mut event = Event::new(name, Some(node.clone()), message).with_label("run", run);
    if let Some(id) = backup {
        event = event.with_label("backup", id);
    }
    Some(DrillOutcome {
        node,
        passed,
        at,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(run: &str, result: &str) -> Manifest {
        let json = serde_json::json!({
            "format": 1, "id": "n1-b1", "node": "n1", "migration_id": 0, "tool_version": "t",
            "server_version": "15", "created_at": Utc::now(), "completed_at": Utc::now(),
            "dumps": [], "files": [],
            "last_drill": {"at": Utc::now(), "result": result, "duration_ms": 5,
                           "detail": "public.t: expected 3 rows, found 1", "run": run},
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_recorded_failure_names_backup_and_detail() {
        let o = outcome(
            "r1",
            RunState::Failed,
            Some("x"),
            Some("n1"),
            &[manifest("r1", "failed")],
        )
        .unwrap();
        assert!(!o.passed);
        assert_eq!(o.event.name, "drill.failed");
        assert_eq!(o.event.node.as_deref(), Some("n1"));
        assert_eq!(o.event.labels["backup"], "n1-b1");
        assert!(o.event.message.contains("public.t"), "{}", o.event.message);
    }

    #[test]
    fn a_pass_and_an_unrecorded_failure_and_a_cancel() {
        let o = outcome(
            "r1",
            RunState::Succeeded,
            None,
            Some("n1"),
            &[manifest("r1", "passed")],
        )
        .unwrap();
        assert!(o.passed);
        assert_eq!(o.event.name, "drill.passed");
        let o = outcome(
            "r2",
            RunState::Failed,
            Some("no backup"),
            Some("n1"),
            &[manifest("r1", "passed")],
        )
        .unwrap();
        assert_eq!(o.event.name, "drill.failed");
        assert!(o.event.message.contains("no backup"));
        assert!(outcome("r3", RunState::Cancelled, None, Some("n1"), &[]).is_none());
    }
}
