//! The run observer: turns the runner's run events into [`Finished`] facts, asks
//! [`reactions`](super::reactions) what follows, and carries the reactions out (metrics,
//! notifications, drill events, backup gauges, retention, the guard memory).

use chrono::Utc;

use super::reactions::{self, Finished, Reaction};
use super::Autopilot;
use crate::config::NotifyKind;
use crate::journal::RunState;
use crate::notify::RunSummary;
use crate::run_context::RunEvent;

impl Autopilot {
    /// Reacts to one run event of the runner.
    pub(super) fn on_run_event(&self, ev: &RunEvent) {
        match ev {
            RunEvent::Started { run, flow, node } => {
                self.state()
                    .flow_of_run
                    .insert(run.clone(), (flow.clone(), node.clone()));
                self.react(reactions::on_start(run, flow, node.as_deref()));
            }
            RunEvent::Finished { run, state, error } => {
                let finished = self.gather(run, *state, error.as_deref());
                self.react(reactions::on_finish(&finished));
            }
            _ => {}
        }
    }

    /// What is known of a run that just ended: the rule and flow noted when it started
    /// (forgotten now), the rest from its journal record.
    fn gather(&self, run: &str, state: RunState, error: Option<&str>) -> Finished {
        let (rule, flow_node) = {
            let mut st = self.state();
            // A backup, a restore or retention may have changed the repository.
            st.backups = None;
            (st.rule_of_run.remove(run), st.flow_of_run.remove(run))
        };
        let record = self.ctx.journal.get(run).ok();
        let (flow, node) = flow_node.unwrap_or_else(|| {
            record
                .as_ref()
                .map(|r| (r.flow.clone(), r.node.clone()))
                .unwrap_or_default()
        });
        Finished {
            run: run.into(),
            state,
            error: error.map(str::to_string),
            rule,
            flow,
            node,
            dry_run: record.as_ref().is_some_and(|r| r.dry_run),
            duration: record
                .as_ref()
                .and_then(|r| r.duration())
                .map(|d| d.to_std().unwrap_or_default()),
            backup: record
                .as_ref()
                .and_then(|r| r.result.as_ref())
                .and_then(|r| r["id"].as_str())
                .map(str::to_string),
        }
    }

    /// Carries out reactions in order.
    fn react(&self, reactions: Vec<Reaction>) {
        for r in reactions {
            match r {
                Reaction::CountForRule { rule, succeeded } => {
                    self.state()
                        .engine
                        .run_finished(&rule, succeeded, Utc::now());
                    self.persist();
                }
                Reaction::RecordDuration {
                    flow,
                    state,
                    duration,
                } => crate::metrics::run_finished(&flow, state.as_str(), duration),
                Reaction::Notify { kind, summary } => self.notify(kind, &summary),
                Reaction::JudgeDrill {
                    run,
                    state,
                    error,
                    node,
                } => self.judge_drill(&run, state, error.as_deref(), node.as_deref()),
                Reaction::BackupGauges { backup } => {
                    if let Ok(m) = self.ctx.repo.manifest(&backup) {
                        crate::metrics::backup_succeeded(&m.node, m.completed_at, m.total_bytes());
                    }
                }
                Reaction::Retention { node } => self.retain(&node),
            }
        }
    }

    /// Sends a notification when `[notify]` is configured.
    pub(super) fn notify(&self, kind: NotifyKind, summary: &RunSummary) {
        if let Some(n) = &self.ctx.notifier {
            n.notify(kind, summary);
        }
    }

    /// Sets the drill gauges from the drills recorded in the repository, so a restarted
    /// daemon reports a failed drill at once instead of only after the next one.
    pub(super) fn restore_drill_gauges(&self) {
        let (backups, _) = self.ctx.repo.list().unwrap_or_default();
        for node in self.ctx.runner.nodes().keys() {
            let last = backups
                .iter()
                .filter(|m| &m.node == node)
                .filter_map(|m| m.last_drill.as_ref())
                .max_by_key(|d| d.at);
            if let Some(d) = last {
                crate::metrics::drill_finished(
                    node,
                    d.result == splice_dr_repo::DrillResult::Passed,
                    d.at,
                );
            }
        }
    }

    /// A finished drill becomes a `drill.passed` / `drill.failed` event (rules may act on
    /// it) and the node's drill gauges.
    fn judge_drill(&self, run: &str, state: RunState, error: Option<&str>, node: Option<&str>) {
        let (backups, _) = self.ctx.repo.list().unwrap_or_default();
        if let Some(o) = crate::drills::outcome(run, state, error, node, &backups) {
            crate::metrics::drill_finished(&o.node, o.passed, o.at);
            self.ctx.bus.publish(o.event);
        }
    }
}
