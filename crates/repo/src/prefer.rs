//! Which backup `restore` takes when none is named: the rule that prefers backups a drill
//! proved restorable.
//!
//! The rule, in order (backups of the node only, newest first):
//!
//! 1. the newest backup whose last drill **passed** and that may be restored (same
//!    migration id, not older than `repository.max_age`: see [`super::restore_objections`]);
//!    newer backups that were never drilled are skipped and named, so the operator can pick
//!    one with `--backup ID`;
//! 2. else the newest restorable backup that did **not fail** a drill (never drilled), said so;
//! 3. else the newest backup at all, so that restore reports why it refuses it (a failed
//!    drill, its age, its migration id) instead of a bare "nothing found".
//!
//! `drill` itself keeps using the plain newest backup: drilling it is how it gets proven.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{restore_objections, DrillResult, Manifest, RunningNode};

/// The backup chosen for a restore and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preferred {
    /// The chosen backup's id.
    pub id: String,
    /// One sentence for the run's log: which rule chose it.
    pub reason: String,
    /// Newer backups passed over (never drilled), newest first.
    pub skipped: Vec<String>,
}

fn drill_result(m: &Manifest) -> Option<DrillResult> {
    m.last_drill.as_ref().map(|d| d.result)
}

/// Applies the rule above to `backups` (any order, any nodes). `None` when the node has
/// no backup at all.
pub fn preferred_backup(
    backups: &[Manifest],
    into: &RunningNode<'_>,
    now: DateTime<Utc>,
) -> Option<Preferred> {
    let node = into.name;
    let mut mine: Vec<&Manifest> = backups.iter().filter(|m| m.node == node).collect();
    mine.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let newest = *mine.first()?;
    let restorable = |m: &Manifest| restore_objections(m, into, now).is_empty();
    if let Some(pos) = mine
        .iter()
        .position(|m| restorable(m) && drill_result(m) == Some(DrillResult::Passed))
    {
        let chosen = mine[pos];
        let skipped: Vec<String> = mine[..pos]
            .iter()
            .filter(|m| drill_result(m).is_none())
            .map(|m| m.id.clone())
            .collect();
        let mut reason = format!(
            "backup {} is the newest whose last drill passed ({})",
            chosen.id,
            chosen
                .last_drill
                .as_ref()
                .map(|d| d.at.to_rfc3339())
                .unwrap_or_default()
        );
        if !skipped.is_empty() {
            reason.push_str(&format!(
                "; newer backups never drilled were skipped: {} (restore one with --backup ID, \
                 or drill it first with `splice-dr drill --backup ID`)",
                skipped.join(", ")
            ));
        }
        return Some(Preferred {
            id: chosen.id.clone(),
            reason,
            skipped,
        });
    }
    if let Some(m) = mine
        .iter()
        .find(|m| restorable(m) && drill_result(m) != Some(DrillResult::Failed))
    {
        return Some(Preferred {
            id: m.id.clone(),
            reason: format!(
                "no restorable backup of {node} passed a drill; using the newest that did not \
                 fail one: {} (never drilled — `splice-dr drill` proves a backup restores)",
                m.id
            ),
            skipped: Vec::new(),
        });
    }
    Some(Preferred {
        id: newest.id.clone(),
        reason: format!(
            "no backup of {node} passed a drill or may be restored; taking the newest, {}",
            newest.id
        ),
        skipped: Vec::new(),
    })
}

/// The newest backup of `into` that a restore would accept once its age is set aside: same
/// node, the running migration id and participant, both dumps, and no failed drill — the
/// backup the recovery runway counts down (it passes `into.max_age` at `created_at +
/// max_age`, which the caller measures). Trust is the caller's to check (it holds the
/// keyring). `None` when no backup qualifies.
pub fn newest_restorable<'a>(
    backups: &'a [Manifest],
    into: &RunningNode<'_>,
) -> Option<&'a Manifest> {
    backups
        .iter()
        .filter(|m| m.node == into.name && drill_result(m) != Some(DrillResult::Failed))
        // Judged as of its own creation, where its age is nil: every other rule applies.
        .filter(|m| restore_objections(m, into, m.created_at).is_empty())
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DrillRecord;

    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

    fn backup(id: &str, days_ago: i64, drill: Option<&str>) -> Manifest {
        let at = Utc::now() - chrono::Duration::days(days_ago);
        let dump = |role: &str| crate::DumpEntry {
            dir: role.into(),
            info: splice_dr_plugin_api::DumpInfo {
                role: role.into(),
                database: role.into(),
                format: "custom".into(),
                started_at: at,
                finished_at: at,
                server_version: "15".into(),
                tables: vec![],
            },
        };
        Manifest {
            dumps: vec![dump("validator"), dump("participant")],
            last_drill: drill.map(|r| DrillRecord {
                at,
                result: serde_json::from_value(serde_json::json!(r)).unwrap(),
                duration_ms: 1,
                detail: String::new(),
                run: "r".into(),
            }),
            ..Manifest::for_test(id, at)
        }
    }

    fn into(name: &str) -> RunningNode<'_> {
        RunningNode {
            name,
            migration_id: 0,
            participant: None,
            max_age: 30 * DAY,
            participant_db: None,
        }
    }

    fn pick(all: &[Manifest]) -> Preferred {
        preferred_backup(all, &into("n1"), Utc::now()).unwrap()
    }

    #[test]
    fn the_newest_passed_backup_wins_and_newer_undrilled_ones_are_named() {
        let all = [
            backup("b3", 1, None),
            backup("b2", 2, Some("failed")),
            backup("b1", 3, Some("passed")),
            backup("b0", 4, Some("passed")),
        ];
        let p = pick(&all);
        assert_eq!(p.id, "b1");
        assert_eq!(p.skipped, vec!["b3".to_string()]);
        assert!(p.reason.contains("--backup ID"), "{}", p.reason);
    }

    #[test]
    fn without_a_passed_drill_the_newest_not_failed_backup_is_taken() {
        let all = [backup("b2", 1, Some("failed")), backup("b1", 2, None)];
        let p = pick(&all);
        assert_eq!(p.id, "b1");
        assert!(p.reason.contains("did not fail"), "{}", p.reason);
    }

    #[test]
    fn a_passed_backup_too_old_to_restore_is_not_preferred() {
        let all = [backup("new", 1, None), backup("old", 40, Some("passed"))];
        assert_eq!(pick(&all).id, "new");
    }

    #[test]
    fn the_runway_counts_down_the_newest_backup_a_restore_would_accept_whatever_its_age() {
        let newest = |all: &[Manifest], into: &RunningNode<'_>| {
            newest_restorable(all, into).map(|m| m.id.clone())
        };
        assert_eq!(newest(&[], &into("n1")), None, "no backup");
        let failed = [
            backup("b2", 1, Some("failed")),
            backup("b1", 2, Some("failed")),
        ];
        assert_eq!(
            newest(&failed, &into("n1")),
            None,
            "all failed their drills"
        );
        let all = [
            backup("b3", 1, Some("failed")),
            backup("b2", 2, None),
            backup("b1", 3, Some("passed")),
        ];
        assert_eq!(newest(&all, &into("n1")).as_deref(), Some("b2"));
        assert_eq!(newest(&all, &into("other")), None, "another node's backups");
        let moved_on = RunningNode {
            migration_id: 1,
            ..into("n1")
        };
        assert_eq!(
            newest(&all, &moved_on),
            None,
            "taken at another migration id"
        );
        // Past max_age it is still the one counted down (its runway is then negative).
        let old = [backup("old", 40, None)];
        assert_eq!(newest(&old, &into("n1")).as_deref(), Some("old"));
        let mut incomplete = backup("half", 1, None);
        incomplete.dumps.pop();
        assert_eq!(newest(&[incomplete], &into("n1")), None, "a dump missing");
    }

    #[test]
    fn when_nothing_qualifies_the_newest_is_returned_for_restore_to_refuse() {
        let all = [backup("b1", 1, Some("failed"))];
        assert_eq!(pick(&all).id, "b1");
        assert!(preferred_backup(&all, &into("other"), Utc::now()).is_none());
    }
}
