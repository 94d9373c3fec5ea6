//! `status` on the wire: the daemon, its config, every node's latest probe, active runs,
//! flows, automation, leadership and health.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use splice_dr_plugin_api::{ComponentStatus, DatabaseInfo, Leftovers};
use std::collections::BTreeMap;

use crate::automation::{AutomationView, LeaderView};
use crate::backup::{LastBackup, LastDrill};
use crate::run::RunSummary;
use crate::runway::RunwayView;

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

/// One node's part of `status`: its facts, newest backup and drill, identity state, and
/// what its backend answered in the backend contract's own shapes. A backend that did
/// not answer in time gives `<field>_error` instead of the field, so one hung engine never
/// hides the rest. Absent fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Why the node's status could not be assembled at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the node has not been probed yet (the daemon's first round is still running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// When the probe shown was taken (absent when answered in-process or not probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    /// Seconds since the probe shown was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// The node's newest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
    /// The node's most recent drill of any backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<LastDrill>,
    /// The participant id every start must pass since a re-onboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Why the participant-id registry could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id_error: Option<String>,
    /// The migration id the node runs after a network DR, past the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_migration_id: Option<u64>,
    /// Whether the running migration id is not yet proven by a healthy start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub migration_unproven: bool,
    /// The participant id a re-onboard in progress will take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reonboarding: Option<String>,
    /// The node's components as its backend sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentStatus>>,
    /// Why the backend did not list the components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components_error: Option<String>,
    /// The node's databases and whether each exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<DatabaseInfo>>,
    /// Why the backend did not list the databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases_error: Option<String>,
    /// State left by runs that did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leftovers: Option<LeftoversView>,
    /// Why the backend did not list the leftovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leftovers_error: Option<String>,
    /// When the leftovers shown were listed (they are listed less often than the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leftovers_checked_at: Option<DateTime<Utc>>,
    /// Time left before the newest restorable backup, and a node that stays down, pass
    /// the sequencers' pruning horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runway: Option<RunwayView>,
    /// Continuous WAL streaming of the node (`wal_streaming`), as the daemon supervises it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalView>,
}

/// One node's continuous WAL: the receiver, the slot's lag, and how old the newest WAL
/// safely stored is (the restore point objective).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalView {
    /// The server's replication slot the receiver streams through.
    pub slot: String,
    /// Whether the receiver (`pg_receivewal`) runs now.
    pub receiving: bool,
    /// Seconds since the stored WAL was last known to hold everything the server had
    /// written; absent until it first caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
    /// When the stored WAL last held everything the server had written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<DateTime<Utc>>,
    /// WAL the server holds for the slot that is not stored yet, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// The newest segment sealed into the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sealed: Option<String>,
    /// Segments sealed since the daemon started.
    pub sealed_segments: u64,
    /// Times the receiver was restarted since the daemon started.
    pub restarts: u64,
    /// Sealed WAL files not yet committed in every off-site repository.
    #[serde(default)]
    pub offsite_pending: u64,
    /// The receiver's or the archive's last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that error happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<DateTime<Utc>>,
    /// Standing hazards (e.g. `max_slot_wal_keep_size = -1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A node's leftovers with, for each kept copy, the command that removes it by hand (the
/// backend knows how its kept copies are removed; the operator should not have to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoversView {
    /// What the backend found.
    #[serde(flatten)]
    pub found: Leftovers,
    /// Kept item → the command removing it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remove_commands: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node as the daemon sends it reads back into the same value; fields with nothing
    /// to say are not sent; a field from a newer daemon is tolerated.
    #[test]
    fn a_node_status_round_trips_and_sends_only_what_it_knows() {
        let node = NodeStatus {
            name: Some("validator-1".into()),
            backend: Some("compose".into()),
            migration_id: Some(3),
            databases: Some(vec![DatabaseInfo {
                role: "validator".into(),
                name: "validator".into(),
                exists: true,
            }]),
            leftovers: Some(LeftoversView {
                found: Leftovers {
                    staged: vec![],
                    kept: vec!["vol_kept".into()],
                },
                remove_commands: BTreeMap::from([(
                    "vol_kept".into(),
                    "docker volume rm vol_kept".into(),
                )]),
            }),
            components_error: Some("no answer within 10s".into()),
            ..NodeStatus::default()
        };
        let mut wire = serde_json::to_value(&node).expect("serializes");
        assert_eq!(wire["leftovers"]["kept"][0], "vol_kept");
        assert_eq!(
            wire["leftovers"]["remove_commands"]["vol_kept"],
            "docker volume rm vol_kept"
        );
        for absent in ["components", "probe", "last_backup", "migration_unproven"] {
            assert!(wire.get(absent).is_none(), "{absent} sent: {wire}");
        }
        wire["from_a_newer_daemon"] = serde_json::json!(true);
        let back: NodeStatus = serde_json::from_value(wire).expect("reads back");
        assert_eq!(back, node);
    }
}
