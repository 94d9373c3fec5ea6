//! `status` on the wire: the daemon, its config, every node's latest probe, active runs,
//! flows, automation, leadership and health.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::automation::{AutomationView, LeaderView};
use crate::backup::{LastBackup, LastDrill};
use crate::run::RunSummary;

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// `daemon`, or `in-process` when the CLI answered itself.
    pub mode: String,
    /// The answering build's version (it may be older than the CLI after an upgrade).
    pub daemon_version: String,
    /// The protocol the answering build speaks.
    pub protocol: u64,
    /// The answering process.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The config in force and why the last change was rejected.
    pub config: ConfigState,
    /// Every configured node.
    pub nodes: Vec<NodeStatus>,
    /// Runs still pending or running.
    pub active_runs: Vec<RunSummary>,
    /// Flows in force.
    pub flows: Vec<FlowView>,
    /// Rules, schedules, queue and approvals; absent (null) without the daemon.
    pub automation: Option<AutomationView>,
    /// Leader election.
    pub leader: LeaderView,
    /// The run journal's size and cost.
    pub journal: JournalStats,
    /// Health probes' current view and recent changes; null without the daemon.
    pub health: Option<HealthView>,
}

/// The config file in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigState {
    /// Its path.
    pub file: String,
    /// Why the last change was rejected (the previous config stays in force).
    pub error: Option<String>,
}

/// One flow in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowView {
    /// Name.
    pub name: String,
    /// Where it came from (built-in or a site file).
    pub source: String,
    /// Whether it replaces live data (asks for confirmation).
    pub destructive: bool,
    /// Whether a site script replaced a built-in of the same name.
    pub overrides_builtin: bool,
    /// First `//!` line of the script.
    pub description: String,
}

/// The run journal's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStats {
    /// Runs in the journal.
    pub runs: usize,
    /// Run files read since start (the index answers the rest from memory).
    pub file_reads: u64,
}

/// Health probes' view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    /// The latest state of every probed component.
    pub current: Vec<HealthChange>,
    /// Recent changes, oldest first.
    pub history: Vec<HealthChange>,
}

/// One observed health state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChange {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// Node.
    pub node: String,
    /// `postgres` or a component name.
    pub component: String,
    /// New state.
    pub up: bool,
    /// Probe detail (the error when down).
    pub detail: String,
}

/// One node's part of `status`. Which fields are present depends on the probe (before the
/// first one only the node's facts and `probe`; a backend that did not answer gives
/// `components_error` instead of `components`...), so the node's identity is typed and
/// the rest is read through accessors over the fields as sent: printed back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name (absent only when probing the node panicked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Backend kind, e.g. `postgres`, `compose`, `k8s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The migration id the config gives the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_id: Option<u64>,
    /// Everything else the probe answered.
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

impl NodeStatus {
    /// A field read as `T`; `None` when absent, null or of another shape.
    fn field<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.more
            .get(key)
            .filter(|v| !v.is_null())
            .and_then(|v| T::deserialize(v).ok())
    }

    /// The node's newest backup.
    pub fn last_backup(&self) -> Option<LastBackup> {
        self.field("last_backup")
    }

    /// The node's most recent drill of any backup.
    pub fn last_drill(&self) -> Option<LastDrill> {
        self.field("last_drill")
    }

    /// Why the node has not been probed yet.
    pub fn probe(&self) -> Option<String> {
        self.field("probe")
    }

    /// The participant id every start must pass since a re-onboard.
    pub fn participant_id(&self) -> Option<String> {
        self.field("participant_id")
    }

    /// The migration id the node runs after a network DR, past the config's.
    pub fn running_migration_id(&self) -> Option<u64> {
        self.field("running_migration_id")
    }

    /// Whether the running migration id is not yet proven by a start.
    pub fn migration_unproven(&self) -> bool {
        self.field("migration_unproven").unwrap_or(false)
    }

    /// The participant id a re-onboard in progress will take.
    pub fn reonboarding(&self) -> Option<String> {
        self.field("reonboarding")
    }

    /// Seconds since the probe shown was taken.
    pub fn age_seconds(&self) -> Option<f64> {
        self.field("age_seconds")
    }

    /// A raw field as sent (components, databases, leftovers and their `_error`s).
    pub fn raw(&self, key: &str) -> &Value {
        self.more.get(key).unwrap_or(&Value::Null)
    }
}
