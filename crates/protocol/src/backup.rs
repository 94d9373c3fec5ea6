//! Backups on the wire: what `backups` lists about each, and a node's last backup and
//! drill as `status` shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::drill::{DrillRecord, DrillResult};

/// One backup as `backups` lists it: its manifest's facts, where copies are, and whether
/// this site trusts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Backup id.
    pub id: String,
    /// Node it belongs to.
    pub node: String,
    /// The node's migration id when taken.
    pub migration_id: u64,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it was sealed.
    pub completed_at: DateTime<Utc>,
    /// Seconds since it started, as of the answer.
    pub age_secs: i64,
    /// Total size of its files.
    pub bytes: u64,
    /// Postgres `server_version` of the dumped databases.
    pub server_version: String,
    /// `logical` (database dumps) or `physical` (a base backup of the whole server); a
    /// daemon from before kinds existed sends none: logical.
    #[serde(default)]
    pub kind: splice_dr_plugin_api::BackupKind,
    /// Its last restore drill.
    pub last_drill: Option<DrillRecord>,
    /// Its database dumps, in the order taken.
    pub dumps: Vec<DumpSummary>,
    /// Repositories holding a copy (`local`, off-site names).
    pub locations: Vec<String>,
    /// Whether its signature is one this site trusts.
    pub trusted: bool,
    /// Why it is not trusted.
    pub untrusted_because: Option<String>,
}

/// One database dump of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpSummary {
    /// Database role, e.g. `validator`.
    pub role: String,
    /// Database name.
    pub database: String,
    /// When the dump started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Tables dumped.
    pub tables: usize,
    /// Rows dumped, all tables together.
    pub rows: u64,
}

/// The answer to `backups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupList {
    /// Backups, newest first.
    pub backups: Vec<BackupSummary>,
    /// Repositories or manifests that could not be read.
    pub problems: Vec<String>,
    /// Kept for clients of older daemons; always empty.
    pub unreadable: Vec<String>,
}

/// A node's newest backup, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastBackup {
    /// Backup id.
    pub id: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// Seconds since it started, as of the answer.
    pub age_secs: i64,
    /// Its last drill.
    pub drill: Option<DrillRecord>,
}

/// A node's most recent drill of any of its backups, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastDrill {
    /// The drilled backup.
    pub backup: String,
    /// When the drill ended.
    pub at: DateTime<Utc>,
    /// Its verdict.
    pub result: DrillResult,
    /// What was checked, or what failed.
    pub detail: String,
}
