//! The autopilot's mutable state, behind one lock: the rule engine and scheduler, the
//! queue, the decisions shown in `status` and the bookkeeping the guard memory keeps.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};

use super::guard_memory::GuardMemory;
use crate::config::ScheduleConfig;
use crate::flows::RunRequest;
use splice_dr_automation::rules::RuleEngine;
use splice_dr_automation::schedule::Scheduler;

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
    /// When the repository was last listed, and each node's newest backup then.
    pub(super) newest_backups: Option<(std::time::Instant, HashMap<String, DateTime<Utc>>)>,
}

impl State {
    /// A fresh state: nothing queued, remembered or decided yet.
    pub(super) fn new(
        engine: RuleEngine,
        schedules: Vec<ScheduleConfig>,
        retention: crate::prune::Policies,
        config_paused: bool,
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
            newest_backups: None,
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
