//! What follows a run's start or end, decided without side effects — as rules decide
//! runs: the loop gathers what it knows about the run into a [`Finished`], [`on_finish`]
//! returns the [`Reaction`]s in the order they apply, and the observer carries them out.
//! Kept pure so what a finished run sets off is tested without a runtime, a repository or
//! a webhook.

use std::time::Duration;

use crate::config::NotifyKind;
use crate::journal::RunState;
use crate::notify::RunSummary;

/// What the autopilot knows about a run that just ended.
#[derive(Debug, Clone)]
pub(super) struct Finished {
    /// Run id.
    pub(super) run: String,
    /// Final state.
    pub(super) state: RunState,
    /// The run's error, when it failed.
    pub(super) error: Option<String>,
    /// The rule that started it, when a rule did.
    pub(super) rule: Option<String>,
    /// Flow name.
    pub(super) flow: String,
    /// The node it ran on.
    pub(super) node: Option<String>,
    /// A dry run proves nothing about a backup.
    pub(super) dry_run: bool,
    /// How long it took, when the journal knows.
    pub(super) duration: Option<Duration>,
    /// The backup a backup run produced (its result's `id`).
    pub(super) backup: Option<String>,
}

/// One effect of a run's start or end; the observer applies them in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reaction {
    /// Count the run for the rule that started it (breaker, cooldown) and remember that.
    CountForRule {
        /// The rule.
        rule: String,
        /// Whether the run succeeded.
        succeeded: bool,
    },
    /// Record the run's duration metric.
    RecordDuration {
        /// Flow name.
        flow: String,
        /// Final state.
        state: RunState,
        /// How long it took.
        duration: Duration,
    },
    /// Tell the `[notify]` webhook (dropped when none is configured).
    Notify {
        /// Which transition.
        kind: NotifyKind,
        /// The run.
        summary: RunSummary,
    },
    /// Judge a drill from what it recorded: a `drill.*` event and the drill gauges.
    JudgeDrill {
        /// Run id.
        run: String,
        /// Final state.
        state: RunState,
        /// The run's error.
        error: Option<String>,
        /// The node drilled.
        node: Option<String>,
    },
    /// Set the backup gauges from the new backup's manifest.
    BackupGauges {
        /// Backup id.
        backup: String,
    },
    /// Apply retention to the node's backups in every repository.
    Retention {
        /// The node backed up.
        node: String,
    },
}

/// A run started: the webhook hears of it.
pub(super) fn on_start(run: &str, flow: &str, node: Option<&str>) -> Vec<Reaction> {
    vec![Reaction::Notify {
        kind: NotifyKind::Started,
        summary: RunSummary::new(run, flow, node.map(str::to_string)),
    }]
}

/// A run ended: count it for its rule, record its duration, notify, judge a drill, and
/// after a good backup set the gauges and apply retention.
pub(super) fn on_finish(f: &Finished) -> Vec<Reaction> {
    let succeeded = f.state == RunState::Succeeded;
    let mut out = Vec::new();
    if let Some(rule) = &f.rule {
        out.push(Reaction::CountForRule {
            rule: rule.clone(),
            succeeded,
        });
    }
    if let Some(duration) = f.duration {
        out.push(Reaction::RecordDuration {
            flow: f.flow.clone(),
            state: f.state,
            duration,
        });
    }
    out.extend(notification(f));
    // A dry run proves nothing about the backup: no event, no gauge.
    if f.flow == "drill" && !f.dry_run {
        out.push(Reaction::JudgeDrill {
            run: f.run.clone(),
            state: f.state,
            error: f.error.clone(),
            node: f.node.clone(),
        });
    }
    if succeeded && f.flow == "backup" {
        out.extend(after_backup(f));
    }
    out
}

fn notification(f: &Finished) -> Option<Reaction> {
    let kind = NotifyKind::from_final_state(f.state)?;
    let mut summary = RunSummary::new(f.run.clone(), f.flow.clone(), f.node.clone());
    if let Some(e) = &f.error {
        summary = summary.with_error(e.clone());
    }
    Some(Reaction::Notify { kind, summary })
}

/// Gauges for the new backup, then retention for its node (none without a backup id:
/// nothing is known to have been written).
fn after_backup(f: &Finished) -> Vec<Reaction> {
    let Some(backup) = &f.backup else {
        return Vec::new();
    };
    let mut out = vec![Reaction::BackupGauges {
        backup: backup.clone(),
    }];
    if let Some(node) = &f.node {
        out.push(Reaction::Retention { node: node.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(flow: &str, state: RunState) -> Finished {
        Finished {
            run: "r1".into(),
            state,
            error: None,
            rule: None,
            flow: flow.into(),
            node: Some("n1".into()),
            dry_run: false,
            duration: Some(Duration::from_secs(3)),
            backup: None,
        }
    }

    fn summary(flow: &str) -> RunSummary {
        RunSummary::new("r1", flow, Some("n1".into()))
    }

    #[test]
    fn a_start_is_notified() {
        assert_eq!(
            on_start("r1", "backup", Some("n1")),
            vec![Reaction::Notify {
                kind: NotifyKind::Started,
                summary: summary("backup"),
            }]
        );
    }

    #[test]
    fn a_good_backup_of_a_rule_counts_then_gauges_then_retention() {
        let f = Finished {
            rule: Some("nightly".into()),
            backup: Some("b1".into()),
            ..finished("backup", RunState::Succeeded)
        };
        assert_eq!(
            on_finish(&f),
            vec![
                Reaction::CountForRule {
                    rule: "nightly".into(),
                    succeeded: true,
                },
                Reaction::RecordDuration {
                    flow: "backup".into(),
                    state: RunState::Succeeded,
                    duration: Duration::from_secs(3),
                },
                Reaction::Notify {
                    kind: NotifyKind::Succeeded,
                    summary: summary("backup"),
                },
                Reaction::BackupGauges {
                    backup: "b1".into()
                },
                Reaction::Retention { node: "n1".into() },
            ]
        );
    }

    #[test]
    fn a_failed_backup_counts_as_a_failure_and_prunes_nothing() {
        let f = Finished {
            rule: Some("nightly".into()),
            error: Some("disk full".into()),
            backup: Some("b1".into()),
            ..finished("backup", RunState::Failed)
        };
        let r = on_finish(&f);
        assert_eq!(
            r[0],
            Reaction::CountForRule {
                rule: "nightly".into(),
                succeeded: false,
            }
        );
        assert!(r.contains(&Reaction::Notify {
            kind: NotifyKind::Failed,
            summary: summary("backup").with_error("disk full"),
        }));
        assert!(!r.iter().any(|x| matches!(
            x,
            Reaction::Retention { .. } | Reaction::BackupGauges { .. }
        )));
    }

    #[test]
    fn a_manual_run_is_charged_to_no_rule() {
        let r = on_finish(&finished("backup", RunState::Succeeded));
        assert!(!r.iter().any(|x| matches!(x, Reaction::CountForRule { .. })));
    }

    #[test]
    fn a_backup_without_an_id_or_node_applies_no_retention() {
        let no_id = on_finish(&finished("backup", RunState::Succeeded));
        assert!(!no_id.iter().any(|x| matches!(
            x,
            Reaction::Retention { .. } | Reaction::BackupGauges { .. }
        )));
        let no_node = on_finish(&Finished {
            node: None,
            backup: Some("b1".into()),
            ..finished("backup", RunState::Succeeded)
        });
        assert!(no_node.contains(&Reaction::BackupGauges {
            backup: "b1".into()
        }));
        assert!(!no_node
            .iter()
            .any(|x| matches!(x, Reaction::Retention { .. })));
    }

    #[test]
    fn a_drill_is_judged_whatever_its_state_unless_dry() {
        let failed = Finished {
            error: Some("rows differ".into()),
            ..finished("drill", RunState::Failed)
        };
        assert!(on_finish(&failed).contains(&Reaction::JudgeDrill {
            run: "r1".into(),
            state: RunState::Failed,
            error: Some("rows differ".into()),
            node: Some("n1".into()),
        }));
        let dry = Finished {
            dry_run: true,
            ..finished("drill", RunState::Succeeded)
        };
        assert!(!on_finish(&dry)
            .iter()
            .any(|x| matches!(x, Reaction::JudgeDrill { .. })));
    }

    #[test]
    fn a_run_without_a_duration_or_final_state_records_and_notifies_nothing() {
        let f = Finished {
            duration: None,
            ..finished("restore", RunState::Running)
        };
        assert!(on_finish(&f).is_empty());
    }
}
