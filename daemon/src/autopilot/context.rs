//! What the autopilot's loops work with, handed over once at construction (in the manner
//! of kube-rs controllers' `Context`): nothing is attached later, and no loop reaches
//! through the runner for the journal, the repository or the leadership.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::events::health::HealthBoard;
use crate::events::EventBus;
use crate::flows::Runner;
use crate::journal::Journal;
use crate::leader::Leadership;
use crate::notify::Notifier;
use splice_dr_repo::Repository;

/// Everything the rule, schedule, reaction and memory loops need, built before the
/// autopilot so the service and the autopilot can be built from the same handles.
pub struct Context {
    /// Starts, queues and approves runs, and knows the nodes in force.
    pub runner: Arc<Runner>,
    /// The journal: approvals, run outcomes, the runs the memory names.
    pub journal: Journal,
    /// The repository: newest backups, drill results, retention.
    pub repo: Repository,
    /// Where the guard memory and retention's bookkeeping live.
    pub state_dir: PathBuf,
    /// Whether this replica leads: only the leader writes the memory.
    pub leadership: Leadership,
    /// Where probes, staleness and drill outcomes are published for rules.
    pub bus: EventBus,
    /// The `[notify]` webhook, when configured and valid.
    pub notifier: Option<Notifier>,
    /// The health probes' state, shared with `status`.
    pub board: Arc<HealthBoard>,
    /// How often the health probes run.
    pub health_interval: Duration,
    /// How long one health probe may take.
    pub health_timeout: Duration,
}

impl Context {
    /// The context of the daemon over `runner`, whose runs depend on `leadership`; the
    /// notifier and probe settings come from `config` (an invalid `[notify]` only
    /// disables notifications, as it always did).
    pub fn new(
        config: &Config,
        runner: Arc<Runner>,
        leadership: Leadership,
        bus: EventBus,
    ) -> Self {
        let board = Arc::new(HealthBoard::logging_to(runner.state_dir()));
        Context {
            journal: runner.journal().clone(),
            repo: runner.repo().clone(),
            state_dir: runner.state_dir().to_path_buf(),
            runner,
            leadership,
            bus,
            notifier: notifier(config),
            board,
            health_interval: config.daemon.health_interval,
            health_timeout: config.daemon.health_timeout,
        }
    }
}

fn notifier(config: &Config) -> Option<Notifier> {
    match Notifier::new(config.notify.as_ref()?) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("notifications disabled: {e}");
            None
        }
    }
}
