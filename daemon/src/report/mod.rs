//! The incident report of one run (`splice-dr report RUN`): what happened, in order, and
//! the figures an operator writes down after a recovery — RPO, RTO, rows verified, users
//! re-onboarded, what was kept and dropped, who approved.
//!
//! Built only from what the journal records (the `show` answer, [`RunDetail`]): a figure
//! the journal does not hold is `None` here and "not recorded" on the page, never guessed.
//! [`timeline`] lays the phases out, [`html`] renders the self-contained page, [`text`]
//! the terminal summary, [`file`] writes the page.

pub mod file;
pub mod html;
pub mod text;
pub mod timeline;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use splice_dr_protocol::Detection;
use splice_dr_protocol::{RunDetail, RunState, StepState};

/// One run's incident report: the typed value `report --json` prints and the page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Run id.
    pub run: String,
    /// Flow name (`restore`, `reonboard`, ...).
    pub flow: String,
    /// Node the run acted on.
    pub node: Option<String>,
    /// How the run ended (or that it has not).
    pub state: RunState,
    /// Whether it was a dry run (nothing changed).
    pub dry_run: bool,
    /// Why it failed, was cancelled or interrupted.
    pub error: Option<String>,
    /// The reason given with `--force` (safety checks were overridden).
    pub forced_reason: Option<String>,
    /// What set it off, when a rule did and the journal recorded the event.
    pub detection: Option<Detection>,
    /// Who or what decided to run it.
    pub decision: Decision,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it started executing.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the node was healthy again: the end of the last successful step that waited
    /// for health or readiness, in a run that succeeded.
    pub healthy_at: Option<DateTime<Utc>>,
    /// The backup the run restored, from the flow's result.
    pub backup: Option<String>,
    /// When that backup was taken, from the flow's result.
    pub backup_taken_at: Option<DateTime<Utc>>,
    /// Age of the restored backup at the failure (or, without a recorded detection, when
    /// the run was requested): the data lost at most.
    pub rpo: Option<Span>,
    /// From detection (or the run's request) to healthy again (or the run's end).
    pub rto: Option<Span>,
    /// Rows compared against the backup, when the flow recorded them.
    pub rows_verified: Option<u64>,
    /// Users re-onboarded after the restore; `None` when the flow did not record it.
    pub users_reonboarded: Option<Vec<String>>,
    /// Users that could not be re-onboarded (to do by hand).
    pub users_not_reonboarded: Vec<String>,
    /// Databases (or volumes) restored from the backup, now live.
    pub restored: Option<Vec<String>>,
    /// Previous data the run kept aside and left in place (to look at or drop by hand).
    pub kept: Option<Vec<String>>,
    /// Previous data the run dropped once the restored data was proven.
    pub dropped: Option<Vec<String>>,
    /// Detection, decision, each step, verification and healthy again, in time order.
    pub timeline: Vec<Phase>,
}

/// Who or what decided to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// What started it: `cli`, `socket`, `schedule`, `rule:<name>`.
    pub trigger: String,
    /// The rule, when a rule started it.
    pub rule: Option<String>,
    /// The guards the rule's decision passed, when the journal recorded them.
    pub guards: Option<String>,
    /// Whether an operator's approval was required.
    pub approval_required: bool,
    /// Who approved it (`uid 0 (pid 42)`), once approved.
    pub approved_by: Option<String>,
    /// Who asked for what on this run over the socket, in order.
    pub requests: Vec<String>,
}

/// A duration between two named moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Length in seconds.
    pub seconds: f64,
    /// The moment it starts from, in words (`backup taken`, `detection`).
    pub from: String,
    /// The moment it ends at, in words (`healthy again`, `run ended`).
    pub to: String,
}

/// What a timeline entry stands for (it decides its lane and colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// The triggering event.
    Detection,
    /// The run was requested (rule fired or operator asked).
    Decision,
    /// Waiting for, then given, an operator's approval.
    Approval,
    /// One journaled step.
    Step,
    /// A step that verified data.
    Verification,
    /// The node healthy again.
    Healthy,
    /// The run ended.
    End,
}

/// One entry of the timeline: a moment (no `end`) or an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Lane and colour.
    pub kind: PhaseKind,
    /// What it was, e.g. a step's name.
    pub label: String,
    /// When it began.
    pub start: DateTime<Utc>,
    /// When it ended; `None` for a moment, or a step the journal never closed.
    pub end: Option<DateTime<Utc>>,
    /// Outcome of a step: `succeeded`, `failed`, ...
    pub outcome: Option<String>,
    /// Nesting depth of a step.
    pub depth: u32,
    /// Error text of a failed step.
    pub error: Option<String>,
}

impl Phase {
    /// How long it lasted, as the chart and the tables show it; `None` for a moment or
    /// an unclosed step.
    pub fn took(&self) -> Option<String> {
        self.end
            .map(|e| timeline::human_secs((e - self.start).num_milliseconds() as f64 / 1000.0))
    }
}

impl Report {
    /// The journaled steps among the phases, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Phase> {
        self.timeline.iter().filter(|p| p.outcome.is_some())
    }

    /// The report of `run`, from its journal record only.
    pub fn from_run(run: &RunDetail) -> Report {
        let rule = run.trigger.strip_prefix("rule:").map(str::to_string);
        let detection = run.detection.clone();
        // Only a run that succeeded brought the node back on the restored data: a failed
        // one may have passed a health wait before it rolled back.
        let healthy_at = run
            .steps
            .iter()
            .filter(|s| s.state == StepState::Succeeded && waits_for_health(&s.name))
            .filter_map(|s| s.finished_at)
            .max()
            .filter(|_| run.state == RunState::Succeeded);
        let result = run.result.as_ref().filter(|v| v.is_object());
        let field = |k: &str| result.and_then(|r| r.get(k));
        let backup = field("backup").and_then(Value::as_str).map(str::to_string);
        let backup_taken_at = field("backup_taken_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let (failure, failure_word) = match &detection {
            Some(d) => (d.at, "detection"),
            None => (run.created_at, "run requested"),
        };
        let rpo = backup_taken_at.map(|b| span(b, "backup taken", failure, failure_word));
        let end = match (healthy_at, run.finished_at) {
            (Some(h), _) => Some((h, "healthy again")),
            (None, Some(f)) if run.state == RunState::Succeeded => Some((f, "run ended")),
            _ => None,
        };
        let rto = end.map(|(t, word)| span(failure, failure_word, t, word));
        let strings = |k: &str| -> Option<Vec<String>> {
            field(k).and_then(|v| Vec::<String>::deserialize(v).ok())
        };
        let mut report = Report {
            run: run.id.clone(),
            flow: run.flow.clone(),
            node: run.node.clone(),
            state: run.state,
            dry_run: run.dry_run,
            error: run.error.clone(),
            forced_reason: run.forced_reason.clone(),
            decision: Decision {
                trigger: run.trigger.clone(),
                guards: detection
                    .as_ref()
                    .map(|d| d.guards.clone())
                    .filter(|g| !g.is_empty()),
                rule,
                approval_required: run.approval.is_some(),
                approved_by: run.approval.as_ref().and_then(|a| a.approved_by.clone()),
                requests: run.requests(),
            },
            detection,
            requested_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            healthy_at,
            backup,
            backup_taken_at,
            rpo,
            rto,
            rows_verified: field("rows_verified").and_then(Value::as_u64),
            users_reonboarded: strings("reonboarded_users"),
            users_not_reonboarded: strings("users_not_reonboarded").unwrap_or_default(),
            restored: strings("restored"),
            kept: strings("kept"),
            dropped: strings("dropped"),
            timeline: Vec::new(),
        };
        report.timeline = phases(run, &report);
        report
    }
}

/// Whether a step's name says it waited for the node to be healthy or ready.
fn waits_for_health(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("healthy") || n.contains("ready")
}

/// Whether a step's name says it verified data.
fn verifies(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("verif")
}

fn span(from: DateTime<Utc>, from_word: &str, to: DateTime<Utc>, to_word: &str) -> Span {
    Span {
        seconds: (to - from).num_milliseconds() as f64 / 1000.0,
        from: from_word.into(),
        to: to_word.into(),
    }
}

/// Detection, decision, approval, each step, healthy again and the end, in time order.
fn phases(run: &RunDetail, r: &Report) -> Vec<Phase> {
    let moment = |kind, label: String, at| Phase {
        kind,
        label,
        start: at,
        end: None,
        outcome: None,
        depth: 0,
        error: None,
    };
    let mut out = Vec::new();
    if let Some(d) = &r.detection {
        out.push(moment(
            PhaseKind::Detection,
            format!("detected: {}", d.event),
            d.at,
        ));
    }
    let asked = match &r.decision.rule {
        Some(rule) => format!("rule {rule} decided"),
        None => format!("requested ({})", r.decision.trigger),
    };
    out.push(moment(PhaseKind::Decision, asked, run.created_at));
    if run.approval.is_some() {
        let label = match &r.decision.approved_by {
            Some(by) => format!("approved by {by}"),
            None => "awaiting approval".into(),
        };
        out.push(Phase {
            end: run.started_at.or(run.finished_at),
            ..moment(PhaseKind::Approval, label, run.created_at)
        });
    }
    for s in &run.steps {
        let kind = if verifies(&s.name) {
            PhaseKind::Verification
        } else {
            PhaseKind::Step
        };
        out.push(Phase {
            end: s.finished_at,
            outcome: Some(s.state.as_str().into()),
            depth: s.depth,
            error: s.error.clone(),
            ..moment(kind, s.name.clone(), s.started_at)
        });
    }
    if let Some(h) = r.healthy_at {
        out.push(moment(PhaseKind::Healthy, "healthy again".into(), h));
    }
    if let Some(f) = run.finished_at {
        out.push(moment(
            PhaseKind::End,
            format!("run {}", run.state.as_str()),
            f,
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
