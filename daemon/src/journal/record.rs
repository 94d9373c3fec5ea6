//! The shape of a journaled run and its steps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Owner;
pub use splice_dr_protocol::run::{Detection, PendingApproval, RunState, StepRecord, StepState};

/// One run of a flow, from request to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique, time-ordered id.
    pub id: String,
    /// Flow name, e.g. `restore`.
    pub flow: String,
    /// Node the run acts on.
    pub node: Option<String>,
    /// What started it: `cli`, `socket`, `schedule`, `rule:<name>`...
    pub trigger: String,
    /// Parameters as given.
    pub params: serde_json::Map<String, Value>,
    /// Whether this was a `--dry-run` (nothing changed).
    pub dry_run: bool,
    /// The reason given with `--force`, when safety checks were overridden.
    pub forced_reason: Option<String>,
    /// State.
    pub state: RunState,
    /// Process that executes it.
    pub owner: Owner,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it started executing.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// What a dry run would have done, in order.
    #[serde(default)]
    pub plan: Vec<String>,
    /// The flow's return value.
    pub result: Option<Value>,
    /// Why it failed, was cancelled or interrupted.
    pub error: Option<String>,
    /// Set while the run waits for `splice-dr approve` (rules with `approval = "required"`).
    #[serde(default)]
    pub approval: Option<PendingApproval>,
    /// What set it off, when a rule started it (the report starts its timeline there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// Who asked for what on this run, in order: `run by uid 0 (pid 42)`,
    /// `cancel by uid 1000 (pid 77)`; the socket's peer credentials (SO_PEERCRED).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<String>,
    /// Components this run stopped (journaled before the stop) and has not started again:
    /// start-up recovery starts them when the run died, so a kill never leaves a node down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_components: Vec<String>,
    /// Storage this run copied aside (`keep_storage`) and has not dropped: start-up
    /// recovery of an interrupted restore puts it back once the live copy was replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_storage: Vec<KeptNote>,
}

/// A copy of live storage a run made, and whether the live storage has since been wiped
/// (from then on the copy holds the only previous data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptNote {
    /// The copy, as the backend returned it.
    pub kept: splice_dr_plugin_api::KeptStorage,
    /// Set before the live storage is wiped; cleared once it was put back from the copy.
    pub live_replaced: bool,
}

impl RunRecord {
    /// A new pending run owned by the current process.
    pub fn new(id: String, flow: &str, node: Option<String>) -> Self {
        RunRecord {
            id,
            flow: flow.into(),
            node,
            trigger: "cli".into(),
            params: Default::default(),
            dry_run: false,
            forced_reason: None,
            state: RunState::Pending,
            owner: Owner::current(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            steps: Vec::new(),
            plan: Vec::new(),
            result: None,
            error: None,
            approval: None,
            detection: None,
            requests: Vec::new(),
            stopped_components: Vec::new(),
            kept_storage: Vec::new(),
        }
    }

    /// Appends a running step and returns its index.
    pub fn begin_step(&mut self, name: &str, digest: &str) -> usize {
        let depth = self
            .steps
            .iter()
            .filter(|s| s.state == StepState::Running)
            .count() as u32;
        self.steps.push(StepRecord {
            name: name.into(),
            args_digest: digest.into(),
            depth,
            state: StepState::Running,
            started_at: Utc::now(),
            finished_at: None,
            result: None,
            error: None,
            log: Vec::new(),
            progress: None,
        });
        self.steps.len() - 1
    }

    /// Closes step `idx` with its outcome.
    pub fn end_step(&mut self, idx: usize, outcome: Result<String, String>) {
        if let Some(step) = self.steps.get_mut(idx) {
            step.finished_at = Some(Utc::now());
            match outcome {
                Ok(summary) => {
                    step.state = StepState::Succeeded;
                    step.result = Some(summary);
                }
                Err(e) => {
                    step.state = StepState::Failed;
                    step.error = Some(e);
                }
            }
        }
    }

    /// Ends the run as interrupted, closing any step left running.
    pub fn interrupt(&mut self, reason: &str) {
        for step in self
            .steps
            .iter_mut()
            .filter(|s| s.state == StepState::Running)
        {
            step.state = StepState::Interrupted;
        }
        self.state = RunState::Interrupted;
        self.finished_at = Some(Utc::now());
        self.error = Some(reason.into());
    }

    /// Wall-clock duration, when finished.
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.finished_at? - self.started_at.unwrap_or(self.created_at))
    }
}
