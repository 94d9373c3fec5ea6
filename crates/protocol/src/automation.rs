//! Automation and leadership on the wire: what `status` shows of the rules, schedules,
//! queue, approvals and recent decisions, and of leader election. The rule engine and
//! the scheduler report in these shapes, so what they decide and what a client reads
//! cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The autopilot's part of `status` (absent when the CLI answered itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutomationView {
    /// Whether every automatic run is suppressed (`splice-dr pause`).
    pub paused: bool,
    /// Why the rules' memory (breakers, cooldowns) could not be written, when it could not.
    #[serde(default)]
    pub memory_error: Option<String>,
    /// Every rule and the guard that decides it now.
    #[serde(default)]
    pub rules: Vec<RuleStatus>,
    /// Every schedule and its next due time.
    #[serde(default)]
    pub schedules: Vec<ScheduleStatus>,
    /// Runs waiting for their node to be free.
    #[serde(default)]
    pub queue: Vec<QueuedRun>,
    /// Runs a rule started that wait for an operator's `approve`.
    #[serde(default)]
    pub pending_approvals: Vec<ApprovalWait>,
    /// The newest decisions first.
    #[serde(default)]
    pub recent_decisions: Vec<DecisionRecord>,
}

/// What `status` shows about one rule.
///
/// Read back through [`RuleStatusWire`]: the state's own fields sit beside the rule's
/// (`failures` is both the rule's count and a tripped state's), which serde's flatten
/// cannot read twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleStatusWire")]
pub struct RuleStatus {
    /// Rule name.
    pub rule: String,
    /// Event pattern.
    pub on: String,
    /// Flow (`None` for script rules: the handler chooses).
    pub flow: Option<String>,
    /// Node filter.
    pub node: Option<String>,
    /// The most important state (paused > tripped > waiting > cooling > rate_limited > armed).
    #[serde(flatten)]
    pub state: RuleState,
    /// Consecutive failed runs.
    pub failures: u32,
    /// Breaker threshold.
    pub breaker: u32,
    /// Runs in the current window.
    pub runs_in_window: usize,
    /// `max_runs`.
    pub max_runs: u32,
    /// `window`, as written back (`1h`).
    pub window: String,
    /// When the rule last started a run.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Running `for` waits.
    #[serde(default)]
    pub waiting: Vec<Waiting>,
}

/// A rule's state for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RuleState {
    /// Ready to fire.
    Armed,
    /// A `for` wait is running; the earliest fires at `fires_at`.
    Waiting {
        /// When the earliest wait ends.
        fires_at: DateTime<Utc>,
    },
    /// In cooldown.
    Cooling {
        /// Until when.
        until: DateTime<Utc>,
    },
    /// Breaker tripped; needs `splice-dr reset <rule>`.
    Tripped {
        /// Consecutive failed runs.
        failures: u32,
    },
    /// Automatic runs are paused globally.
    Paused,
    /// `max_runs` reached in the current window.
    RateLimited {
        /// When the oldest run in the window leaves it.
        next_allowed_at: DateTime<Utc>,
    },
}

impl RuleState {
    /// Lower-case name as shown to operators (the `state` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleState::Armed => "armed",
            RuleState::Waiting { .. } => "waiting",
            RuleState::Cooling { .. } => "cooling",
            RuleState::Tripped { .. } => "tripped",
            RuleState::Paused => "paused",
            RuleState::RateLimited { .. } => "rate_limited",
        }
    }

    /// Until when the state holds, when it has an end an operator can read.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            RuleState::Waiting { fires_at } => Some(*fires_at),
            RuleState::Cooling { until } => Some(*until),
            RuleState::RateLimited { next_allowed_at } => Some(*next_allowed_at),
            RuleState::Armed | RuleState::Tripped { .. } | RuleState::Paused => None,
        }
    }
}

/// [`RuleStatus`] as sent: the state as its tag and whichever of its fields it has.
#[derive(Deserialize)]
struct RuleStatusWire {
    rule: String,
    on: String,
    flow: Option<String>,
    node: Option<String>,
    state: String,
    fires_at: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    next_allowed_at: Option<DateTime<Utc>>,
    failures: u32,
    breaker: u32,
    runs_in_window: usize,
    max_runs: u32,
    window: String,
    last_fired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    waiting: Vec<Waiting>,
}

impl TryFrom<RuleStatusWire> for RuleStatus {
    type Error = String;

    fn try_from(w: RuleStatusWire) -> Result<Self, String> {
        let missing = |field: &str| format!("rule state `{}` without `{field}`", w.state);
        let state = match w.state.as_str() {
            "armed" => RuleState::Armed,
            "paused" => RuleState::Paused,
            "tripped" => RuleState::Tripped {
                failures: w.failures,
            },
            "waiting" => RuleState::Waiting {
                fires_at: w.fires_at.ok_or_else(|| missing("fires_at"))?,
            },
            "cooling" => RuleState::Cooling {
                until: w.until.ok_or_else(|| missing("until"))?,
            },
            "rate_limited" => RuleState::RateLimited {
                next_allowed_at: w
                    .next_allowed_at
                    .ok_or_else(|| missing("next_allowed_at"))?,
            },
            other => return Err(format!("unknown rule state `{other}`")),
        };
        Ok(RuleStatus {
            rule: w.rule,
            on: w.on,
            flow: w.flow,
            node: w.node,
            state,
            failures: w.failures,
            breaker: w.breaker,
            runs_in_window: w.runs_in_window,
            max_runs: w.max_runs,
            window: w.window,
            last_fired_at: w.last_fired_at,
            waiting: w.waiting,
        })
    }
}

/// One `for` wait, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The event's node.
    pub node: Option<String>,
    /// The triggering event name.
    pub event: String,
    /// When the condition was first seen.
    pub since: DateTime<Utc>,
    /// When the rule fires unless the recovery event comes first.
    pub fires_at: DateTime<Utc>,
}

/// Status of one schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// Schedule name.
    pub name: String,
    /// Flow.
    pub flow: String,
    /// Cron expression as written.
    pub cron: String,
    /// Next due time.
    pub next_at: Option<DateTime<Utc>>,
    /// Whether the last staleness check found the last good backup too old.
    pub stale: bool,
}

/// A run a rule or schedule wants while its node is busy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRun {
    /// Since when it waits.
    pub since: DateTime<Utc>,
    /// The rule (or `schedule:<name>`) that wants it.
    pub rule: String,
    /// What triggered it.
    pub trigger: String,
}

/// A run waiting for an operator's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalWait {
    /// The run (approve it with `splice-dr approve RUN`).
    pub run: String,
    /// Its flow.
    pub flow: String,
    /// Its node.
    pub node: Option<String>,
    /// The rule that asked for it.
    pub rule: Option<String>,
    /// When the request lapses unanswered.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One decision of the autopilot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Rule (or `schedule:<name>`).
    pub rule: String,
    /// What triggered it.
    pub trigger: String,
    /// `started <run>`, `queued`, `pending approval <run>`, `suppressed: …`, `error: …`.
    pub outcome: String,
}

/// Leader election as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// Whether `[leader_election]` is configured (without it every replica runs flows).
    pub enabled: bool,
    /// Whether this replica runs flows.
    pub leader: bool,
    /// This replica's identity in the Lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The Lease object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// The replica holding the Lease, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_state_reads_back_as_the_flattened_tag_it_was_written_as() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        for state in [
            RuleState::Armed,
            RuleState::Paused,
            RuleState::Tripped { failures: 2 },
            RuleState::Waiting { fires_at: at },
            RuleState::Cooling { until: at },
            RuleState::RateLimited {
                next_allowed_at: at,
            },
        ] {
            let r = RuleStatus {
                rule: "r".into(),
                on: "alert.*".into(),
                flow: Some("restore".into()),
                node: None,
                state,
                failures: 2,
                breaker: 2,
                runs_in_window: 1,
                max_runs: 3,
                window: "1h".into(),
                last_fired_at: None,
                waiting: vec![],
            };
            let v = serde_json::to_value(&r).expect("encodes");
            assert_eq!(v["state"], r.state.as_str());
            let back: RuleStatus = serde_json::from_value(v).expect("decodes");
            assert_eq!(back, r);
        }
    }

    #[test]
    fn a_disabled_election_says_only_that_every_replica_leads() {
        let v = LeaderView {
            enabled: false,
            leader: true,
            identity: None,
            lease: None,
            holder: None,
        };
        assert_eq!(
            serde_json::to_value(&v).expect("encodes"),
            serde_json::json!({"enabled": false, "leader": true})
        );
    }
}
