//! What a backend can do, declared up front and grouped by concern.
//!
//! Flows used to branch on the backend's name (`node.backend == "compose"`), so a site
//! plugin that restores volumes like compose, or a new backend, had to edit every script.
//! A backend now states its shape once in [`Capabilities`] and scripts ask for the shape:
//! "is a restore volume-level?", "which storage holds the databases, and what must stop
//! first?", "may a file be placed on the `dump` target?". The answer never depends on a
//! call succeeding, so a script can choose its path before anything is changed.

use serde::{Deserialize, Serialize};

/// Everything a flow may ask a backend before it starts, by concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// How the node's databases are restored.
    pub databases: DatabaseCapabilities,
    /// What storage the backend can keep aside, empty and fill.
    pub storage: StorageCapabilities,
    /// What the backend can do to the node's running components.
    pub workloads: WorkloadCapabilities,
}

/// How a restore replaces the node's databases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreShape {
    /// Database level: each dump is restored next to the live database
    /// (`restore_staged`) and all are switched in at once (`swap_in`), keeping the old
    /// ones; the database server keeps running.
    #[default]
    Staged,
    /// Volume level, the runbook's compose steps: the database storage is copied aside
    /// (`keep_storage`), emptied (`wipe`), the server re-creates empty databases and each
    /// dump is restored into one (`restore_into_empty`). This also recovers a node whose
    /// database server no longer starts on its data.
    Volume,
}

impl RestoreShape {
    /// The name scripts compare against (`"staged"`, `"volume"`).
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreShape::Staged => "staged",
            RestoreShape::Volume => "volume",
        }
    }
}

/// The database concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseCapabilities {
    /// The restore protocol this backend implements.
    pub restore: RestoreShape,
    /// Whether the backend takes physical backups of the node's database server
    /// (`base_backup`, `check_base_backup`) and restores them (`restore_base_backup`,
    /// then `restore_kept_storage` / `drop_kept_storage` on what it returns).
    pub physical: bool,
    /// Why it does not (not built for this backend yet, or the node's settings lack what
    /// a physical restore needs), naming the alternative; flows refuse with it before
    /// anything changes. `None` when `physical` is true, or when the backend says nothing.
    pub physical_unavailable: Option<String>,
    /// Whether the backend streams the server's WAL continuously (`stream_wal`,
    /// `wal_slot`, `drop_wal_slot`): what a restore to `latest` or to a time replays.
    pub wal_streaming: bool,
    /// Whether the backend drills physical backups (`drill_base_backup`: the copy started
    /// as a scratch server of its own and checked, never touching the node). A drill of a
    /// physical backup on a backend without it is refused naming the alternative, and not
    /// recorded: the backup is not known bad.
    pub physical_drill: bool,
    /// Why it does not (not built for this backend, or the daemon cannot start a server:
    /// running as root, no `pg_ctl`), saying what to do instead.
    pub physical_drill_unavailable: Option<String>,
}

/// The storage concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageCapabilities {
    /// The storage holding the node's databases, when the backend can keep it aside and
    /// empty it (a fresh node for re-onboarding, a volume-level restore).
    pub database_storage: Option<DatabaseStorage>,
    /// Targets [`crate::Storage::put_file`] accepts, e.g. `dump` (where a validator reads
    /// its migration dump at start).
    pub file_targets: Vec<String>,
    /// The uid that files handed to the node must belong to, when the node's processes
    /// run as a fixed user (the compose bundle's validator runs as 1001).
    pub file_owner_uid: Option<u32>,
}

/// The storage target that holds a node's databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStorage {
    /// Its name for `keep_storage` / `wipe`, e.g. `postgres`.
    pub target: String,
    /// Components to stop, in this order, before it may be kept aside and emptied (the
    /// apps first, then the database server when it lives on that storage).
    pub stop_first: Vec<String>,
}

/// The workload concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadCapabilities {
    /// Whether commands can run inside a component ([`crate::Workloads::exec`]).
    pub exec: bool,
    /// Whether values given to [`crate::Workloads::set_values`] stay in force for every later
    /// start (helm release values under `--reuse-values`). A one-time setting such as
    /// `migrating` must then be set back explicitly, or the next pod restart acts on it
    /// again; where each start gets its values anew (compose flags, a restart command),
    /// nothing stays behind.
    pub values_persist: bool,
    /// Why [`crate::Workloads::set_values`] cannot apply new start values with the backend's
    /// settings (a helm release without a chart reference): flows that restart the node
    /// with new values (a re-onboard, a network DR) refuse before changing anything,
    /// instead of failing after the node was stopped. `None` when it can.
    pub redeploy_unavailable: Option<String>,
}

/// The `physical_unavailable` answer of a backend whose physical backups are designed
/// (docs/ARCHITECTURE.md, "Physical backups") but not built yet: it names the alternative.
pub fn physical_not_built(backend: &str) -> String {
    format!(
        "physical backups are unsupported for the {backend} backend yet (designed in \
         docs/ARCHITECTURE.md, \"Physical backups\"); use logical backups: \
         backup_kind = \"logical\" (the default) or `splice-dr backup --kind logical`"
    )
}

/// The `physical_drill_unavailable` answer of a backend whose drills of physical backups
/// are designed (docs/ARCHITECTURE.md, "Drills of physical backups") but not built yet.
pub fn physical_drill_not_built(backend: &str) -> String {
    format!(
        "drills of physical backups are not built for the {backend} backend yet (designed in \
         docs/ARCHITECTURE.md, \"Drills of physical backups\"); check a physical backup with \
         `splice-dr verify ID` (checksums and pg_verifybackup), or drill logical backups"
    )
}

impl Capabilities {
    /// Whether `put_file` accepts `target`.
    pub fn accepts_file(&self, target: &str) -> bool {
        self.storage.file_targets.iter().any(|t| t == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin built before capabilities existed answers nothing more than `{}`: that
    /// reads as the conservative default (database-level restore, no storage, no exec).
    #[test]
    fn an_empty_answer_is_the_conservative_default() {
        let c: Capabilities = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Capabilities::default());
        assert_eq!(c.databases.restore, RestoreShape::Staged);
        assert!(!c.accepts_file("dump"));
    }

    #[test]
    fn shapes_have_the_names_scripts_use() {
        let v = serde_json::to_value(RestoreShape::Volume).unwrap();
        assert_eq!(v, "volume");
        assert_eq!(RestoreShape::Volume.as_str(), "volume");
        assert_eq!(RestoreShape::Staged.as_str(), "staged");
    }
}
