//! Schedules and retention: due schedules become rule decisions, schedules with a
//! `max_age` watch their node's newest backup (a stale one is an event for rules), and
//! a good backup is followed by retention in every repository.

use chrono::{DateTime, Utc};
use splice_dr_repo::Manifest;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::state::State;
use super::{blocking, Autopilot};
use splice_dr_automation::rules::Decision;

/// How long the tick trusts its listing of the repository (backups made by another
/// process, e.g. the CLI in-process, are seen within this; the daemon's own at once).
const BACKUP_RESCAN: Duration = Duration::from_secs(60);

/// The schedules due at `now`, each admitted (or suppressed) by the rule engine's guards.
pub(super) fn due(st: &mut State, now: DateTime<Utc>) -> Vec<Decision> {
    let runs = st.scheduler.due(now);
    runs.iter()
        .map(|run| st.engine.admit_scheduled(run))
        .collect()
}

impl Autopilot {
    /// The local repository's backups, listed at most every [`BACKUP_RESCAN`] (and after
    /// every run), not on each tick: the tick runs twice a second and listing reads every
    /// manifest.
    pub(super) fn listing(&self) -> Arc<Vec<Manifest>> {
        if let Some((at, backups)) = &self.state().backups {
            if at.elapsed() < BACKUP_RESCAN {
                return backups.clone();
            }
        }
        let (backups, _) = blocking(|| self.ctx.repo.list().unwrap_or_default());
        let backups = Arc::new(backups);
        self.state().backups = Some((std::time::Instant::now(), backups.clone()));
        backups
    }

    /// The newest backup's completion time per node.
    fn newest_backups(&self) -> HashMap<String, DateTime<Utc>> {
        let mut newest: HashMap<String, DateTime<Utc>> = HashMap::new();
        for m in self.listing().iter() {
            let t = newest.entry(m.node.clone()).or_insert(m.completed_at);
            *t = (*t).max(m.completed_at);
        }
        newest
    }

    /// Sets the staleness gauges and publishes a staleness event for each schedule whose
    /// node's newest backup is older than its `max_age` (the built-in schedules when the
    /// config has none).
    pub(super) fn check_staleness(&self, now: DateTime<Utc>) {
        let newest = self.newest_backups();
        let default_node = self.ctx.runner.nodes().keys().next().cloned();
        let mut st = self.state();
        let schedules = st.schedules.clone();
        let effective = if schedules.is_empty() {
            crate::config::default_schedules()
        } else {
            schedules
        };
        for s in effective.iter().filter(|s| s.max_age.is_some()) {
            let node = s.node.clone().or_else(|| default_node.clone());
            let last = node.as_ref().and_then(|n| newest.get(n)).copied();
            if let Some(node) = &node {
                if let Some(max) = s.max_age {
                    crate::metrics::backup_stale(
                        node,
                        splice_dr_automation::schedule::stale(last, max, now),
                    );
                }
            }
            if let Some(ev) = st.scheduler.check_staleness(&s.name, last, now) {
                drop(st);
                self.ctx.bus.publish(ev);
                st = self.state();
            }
        }
    }

    /// Retention in every repository after a good backup of `node` (local by
    /// `[retention]`, off-site by their own); every deletion is a decision in `status`.
    pub(super) fn retain(&self, node: &str) {
        let policy = self.state().retention.clone();
        let (repo, state_dir) = (&self.ctx.repo, &self.ctx.state_dir);
        // Off-site repositories answer over the network: do not hold an async worker.
        let plans = blocking(|| {
            let mut plans = crate::prune::plan(repo, &policy, Some(node), Utc::now());
            crate::prune::apply(repo, state_dir, &mut plans);
            plans
        });
        for p in &plans {
            for id in &p.deleted {
                tracing::info!(node = %node, "retention: deleted backup {id} from {}", p.repository);
                self.record(
                    "retention",
                    "backup",
                    format!("deleted {id} from {}", p.repository),
                );
            }
            for e in &p.errors {
                tracing::warn!(node = %node, "retention in {}: {e}", p.repository);
            }
        }
    }
}
