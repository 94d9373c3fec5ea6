//! Runs on the wire: their state, steps, the one-line summary lists show and the full
//! record `show` answers. The journal keeps runs in these shapes, so the daemon's record
//! and what a client reads cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accepted, waiting for the node lock.
    Pending,
    /// Executing.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error (the world was left as the flow's rollback put it).
    Failed,
    /// Stopped by an operator's `cancel` or the wall-clock limit.
    Cancelled,
    /// Its owner died mid-run; found and marked by a later process.
    Interrupted,
}

impl RunState {
    /// Whether the run may still change the world.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Pending | RunState::Running)
    }

    /// Lower-case name as shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }
}

/// Lifecycle of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Started, not finished.
    Running,
    /// Finished without error.
    Succeeded,
    /// Threw an error.
    Failed,
    /// Its run died while it ran.
    Interrupted,
}

impl StepState {
    /// Lower-case name as shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Interrupted => "interrupted",
        }
    }
}

/// One journaled step: every host call that changes the world runs inside one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Human name given by the flow, e.g. `restore validator database`.
    pub name: String,
    /// Short digest of the step's name and inputs, to recognise the same step across runs.
    pub args_digest: String,
    /// Nesting depth (a step inside a step is 1).
    #[serde(default)]
    pub depth: u32,
    /// State.
    pub state: StepState,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Summary of the value the step returned.
    pub result: Option<String>,
    /// Error text when it failed.
    pub error: Option<String>,
    /// Log lines emitted by the backend during the step.
    #[serde(default)]
    pub log: Vec<String>,
    /// Last progress report, e.g. `restore validator: 1.2 GiB`.
    #[serde(default)]
    pub progress: Option<String>,
}

/// A run that a rule requested and a human must approve before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The rule that asked for it.
    pub rule: String,
    /// When the request lapses (the run then ends `cancelled`).
    pub expires_at: DateTime<Utc>,
    /// Who approved it, once approved.
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// What set off a run a rule started: the event and the guards it passed. Journaled
/// with the run so its incident report (`splice-dr report`) starts at the detection,
/// not at the run's request (absent for runs of older versions, by hand or scheduled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The triggering event, e.g. `health.validator.down`.
    pub event: String,
    /// When it was first observed (the start of the rule's `for` wait).
    pub at: DateTime<Utc>,
    /// The rule that decided.
    pub rule: String,
    /// The guards the decision passed, in operator words.
    #[serde(default)]
    pub guards: String,
}

/// A run as lists show it (`runs`, `status`'s `active_runs`): one line per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Node the run acts on.
    pub node: Option<String>,
    /// State.
    pub state: RunState,
    /// What started it: `cli`, `daemon`, `schedule`, `rule:<name>`...
    pub trigger: String,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// Wall-clock duration once it ended.
    pub duration_ms: Option<i64>,
    /// The innermost step still running.
    pub current_step: Option<String>,
    /// Why it failed, was cancelled or interrupted.
    pub error: Option<String>,
}

/// One run with its steps, as `show`, `run --follow` and `follow` answer: the journal's
/// record. The fields a client acts on are typed; what only the daemon uses (its owner
/// process, components it stopped, storage it kept) stays in `more`, so a client prints
/// the record exactly as sent and tolerates fields of a newer daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// Unique, time-ordered id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Node the run acts on.
    pub node: Option<String>,
    /// What started it.
    pub trigger: String,
    /// Parameters as given.
    pub params: Map<String, Value>,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// The reason given with `--force`.
    pub forced_reason: Option<String>,
    /// State.
    pub state: RunState,
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
    /// The approval it waits for (or got).
    #[serde(default)]
    pub approval: Option<PendingApproval>,
    /// What set it off, when a rule started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// The rest of the record, as sent.
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

impl RunDetail {
    /// Wall-clock duration, when finished.
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.finished_at? - self.started_at.unwrap_or(self.created_at))
    }

    /// Who asked for what on this run, in order (`run by uid 0 (pid 42)`, `cancel by
    /// uid 1000 (pid 77)`): the socket peers' credentials the journal records. Empty when
    /// absent (no request came over the socket) or of another shape.
    pub fn requests(&self) -> Vec<String> {
        self.more
            .get("requests")
            .and_then(|v| Vec::<String>::deserialize(v).ok())
            .unwrap_or_default()
    }
}
