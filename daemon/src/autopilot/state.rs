//! The autopilot's mutable state, behind one lock: the rule engine and scheduler, the
//! queue, the decisions shown in `status` and the bookkeeping the guard memory keeps.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::guard_memory::GuardMemory;
use crate::config::ScheduleConfig;
use crate::flows::RunRequest;
use splice_dr_automation::rules::RuleEngine;
use splice_dr_automation::runway::RunwayWatch;
use splice_dr_automation::schedule::Scheduler;
use splice_dr_repo::Manifest;

/// Decisions kept for `status`.
const RECENT: usize = 50;

pub use splice_dr_protocol::automation::DecisionRecord;
use splice_dr_protocol::automation::QueuedRun;

/// A run a rule or schedule wants while its node is busy; started as soon as it is free.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub(super) since: DateTime<Utc>,
    pub(super) rule: String,
    pub(super) trigger: String,
    pub(super) request: RunRequest,
}

impl Queued {
    /// What `status` shows of it.
    pub(super) fn view(&self) -> QueuedRun {
        QueuedRun {
            since: self.since,
            rule: self.rule.clone(),
            trigger: self.trigger.clone(),
        }
    }
}

/// Everything the loops change, guarded by the autopilot's one state lock.
pub(super) struct State {
    pub(super) engine: RuleEngine,
    pub(super) scheduler: Scheduler,
    pub(super) schedules: Vec<ScheduleConfig>,
    pub(super) retention: crate::prune::Policies,
    pub(super) queue: VecDeque<Queued>,
    pub(super) recent: VecDeque<DecisionRecord>,
    /// Automatic runs not finished yet → the rule that started them (kept in the memory).
    pub(super) rule_of_run: HashMap<String, String>,
    pub(super) flow_of_run: HashMap<String, (String, Option<String>)>,
    /// The operator's last pause (true) or resume (false), kept across restarts.
    pub(super) operator_paused: Option<bool>,
    /// `[automation] paused` of the config: a remembered resume does not override it.
    pub(super) config_paused: bool,
    /// What the memory file holds (written only when this changes).
    pub(super) saved: Option<GuardMemory>,
    /// Why the last write of the memory failed, until one succeeds.
    pub(super) memory_error: Option<String>,
    /// Whether this replica led at the last check (a new leader reads the memory).
    pub(super) was_leader: bool,
    /// When the repository was last listed, and what it listed then.
    pub(super) backups: Option<(std::time::Instant, Arc<Vec<Manifest>>)>,
    /// Which runways were low at the last check (only changes are events).
    pub(super) runway_watch: RunwayWatch,
    /// When the runways were last checked.
    pub(super) runway_checked: Option<std::time::Instant>,
    /// `repository.low_runway` in force.
    pub(super) low_runway: Duration,
}

impl State {
    /// A fresh state: nothing queued, remembered or decided yet.
    pub(super) fn new(
        engine: RuleEngine,
        schedules: Vec<ScheduleConfig>,
        retention: crate::prune::Policies,
        config_paused: bool,
        low_runway: Duration,
    ) -> Self {
        State {
            engine,
            scheduler: Scheduler::new(&schedules, Utc::now()),
            schedules,
            retention,
            queue: VecDeque::new(),
            recent: VecDeque::new(),
            rule_of_run: HashMap::new(),
            flow_of_run: HashMap::new(),
            operator_paused: None,
            config_paused,
            saved: None,
            memory_error: None,
            was_leader: false,
            backups: None,
            runway_watch: RunwayWatch::default(),
            runway_checked: None,
            low_runway,
        }
    }

    /// Keeps a decision for `status`, dropping the oldest past [`RECENT`].
    pub(super) fn record(&mut self, rule: &str, trigger: &str, outcome: String) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(DecisionRecord {
            at: Utc::now(),
            rule: rule.into(),
            trigger: trigger.into(),
            outcome,
        });
    }
}
