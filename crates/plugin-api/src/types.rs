//! Value types exchanged between flows and backends.
//!
//! All of them are plain serde data: scripts see them as maps, plugins receive them as
//! JSON, and the journal records them verbatim.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The two databases of a Splice validator node, by role rather than by physical name
/// (which differs between compose, helm and hand-run setups).
pub const DB_ROLES: [&str; 2] = ["validator", "participant"];

/// Observed state of one component (validator app, participant, postgres...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// The component's name as flows address it.
    pub name: String,
    /// `running`, `stopped`, or `unknown` when the backend cannot observe it.
    pub state: String,
    /// Whether it answers its readiness check.
    pub ready: bool,
    /// Why it is in that state, for the operator.
    pub detail: String,
    /// Whether flows may scale it (a component with no stop/start command cannot be).
    pub managed: bool,
}

/// A database of the node and where it physically lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// `validator` or `participant`.
    pub role: String,
    /// The physical database name, e.g. `participant-0`.
    pub name: String,
    /// Whether it currently exists.
    pub exists: bool,
}

/// Exact row count of one table, taken in the same snapshot as the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Rows in the dump's snapshot.
    pub rows: u64,
}

/// What a dump contains and when it was taken; recorded in the backup manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpInfo {
    /// `validator` or `participant`.
    pub role: String,
    /// Physical name of the database that was dumped.
    pub database: String,
    /// Dump format, e.g. `directory` (pg_dump -Fd).
    pub format: String,
    /// When the dump's snapshot was taken.
    pub started_at: DateTime<Utc>,
    /// When the dump finished writing.
    pub finished_at: DateTime<Utc>,
    /// `server_version` of the Postgres that was dumped.
    pub server_version: String,
    /// Row counts per table, consistent with the dump.
    pub tables: Vec<TableCount>,
}

/// Result of reading a dump's table of contents without restoring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpCheck {
    /// Number of TOC entries `pg_restore --list` read.
    pub entries: u64,
    /// Number of table-data entries among them.
    pub table_data: u64,
}

/// A database restored next to the live one, not yet in service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedDb {
    /// `validator` or `participant`.
    pub role: String,
    /// The live name it will take.
    pub live: String,
    /// The name it was restored under.
    pub staging: String,
}

/// A live database that was replaced and is kept until the new one is proven good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptDb {
    /// `validator` or `participant`.
    pub role: String,
    /// The live name it had (and gets back on rollback).
    pub live: String,
    /// The name it is kept under.
    pub kept: String,
    /// Whether there was a live database at all (a restore onto an empty node keeps nothing).
    pub existed: bool,
}

/// State left behind by runs that did not finish; shown in `status` and cleaned at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Half-restored databases (safe to drop: never in service).
    pub staged: Vec<String>,
    /// Replaced databases still kept (the previous live data).
    pub kept: Vec<String>,
}

/// Output of a command run inside a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output, truncated to a bounded size.
    pub stdout: String,
    /// Standard error, truncated to a bounded size.
    pub stderr: String,
}

/// Where `put_file` and `wipe` act: a volume, a PVC, a directory or a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTarget {
    /// Backend-specific name, e.g. `domain-upgrade-dump`.
    pub name: String,
    /// Path inside the target, when it matters.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// A storage target (volume, PVC) copied aside before it is wiped, so a failed restore can
/// put the node back exactly as it was. Kept copies are listed in [`Leftovers::kept`] until
/// they are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptStorage {
    /// The storage target's role name as flows address it, e.g. `postgres`.
    pub target: String,
    /// The physical name of the live storage, e.g. `splice-validator_postgres-splice`.
    pub live: String,
    /// The physical name of the copy, e.g. `splice-validator_postgres-splice__sdr_kept_…`.
    pub kept: String,
    /// Bytes copied, for the journal.
    pub bytes: u64,
}

/// What a backup is made of: one logical dump per database (`pg_dump`, the runbook's
/// format, restored database by database) or one physical copy of the whole database
/// server (`pg_basebackup`, restored at disk speed with no index builds, replacing every
/// database of that server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// `pg_dump` of each database.
    #[default]
    Logical,
    /// `pg_basebackup` of the database server's data directory.
    Physical,
}

impl BackupKind {
    /// The name configs, scripts and the CLI use (`logical`, `physical`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Logical => "logical",
            BackupKind::Physical => "physical",
        }
    }

    /// Whether this is the default kind (manifests leave it out, so a logical backup's
    /// manifest and its signature read exactly as before kinds existed).
    pub fn is_logical(&self) -> bool {
        *self == BackupKind::Logical
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logical" => Ok(BackupKind::Logical),
            "physical" => Ok(BackupKind::Physical),
            other => Err(format!(
                "backup kind `{other}` is neither `logical` nor `physical`"
            )),
        }
    }
}

/// What a physical base backup holds and where its WAL ends; recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupInfo {
    /// Layout of the copy: `plain` (`pg_basebackup -Fp`: the data directory's files as
    /// they are, with pg_basebackup's own `backup_manifest`).
    pub format: String,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When it finished (the copy holds the WAL up to here: `--wal-method=fetch`).
    pub finished_at: DateTime<Utc>,
    /// `server_version` of the server copied.
    pub server_version: String,
    /// The server's timeline when the backup was taken.
    pub timeline: u32,
    /// WAL position the backup starts at (its checkpoint's redo point).
    pub start_lsn: String,
    /// WAL position the backup is consistent at: a restore to `backup-end` replays up to here.
    pub end_lsn: String,
    /// The databases of the server when the backup was taken (every one is replaced by a
    /// restore); a restore checks each accepts connections afterwards.
    pub databases: Vec<String>,
    /// Every directory of the copy, relative and `/`-separated: a repository holds files
    /// only, and Postgres needs its empty ones (`pg_notify`, `pg_replslot`…) to start.
    pub dirs: Vec<String>,
}

/// What `pg_verifybackup` (or the backend's equivalent) proved about a base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupCheck {
    /// Files the backup's own manifest lists, each checked (size and checksum).
    pub files: u64,
    /// Whether the WAL the backup needs was found complete and parsable.
    pub wal_checked: bool,
}

/// The server's side of continuous WAL streaming into one replication slot: how far the
/// receiver has safely stored the WAL, how far the server has written, and the setting
/// that decides whether an abandoned slot can fill the server's disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalSlot {
    /// Whether the slot exists on the server.
    pub exists: bool,
    /// Whether a receiver is connected to it now.
    pub active: bool,
    /// The position the receiver reported flushed (the slot's `restart_lsn`), when known.
    pub flushed_lsn: Option<String>,
    /// The server's current WAL write position (`pg_current_wal_lsn()`).
    pub current_lsn: String,
    /// `current_lsn - flushed_lsn` in bytes: WAL the server holds for the slot and the
    /// archive does not yet.
    pub lag_bytes: Option<u64>,
    /// The server's timeline now.
    pub timeline: u32,
    /// `wal_segment_size` in bytes: the size of every completed segment.
    pub segment_bytes: u64,
    /// `max_slot_wal_keep_size` in MB; -1 is unlimited (an abandoned slot keeps every
    /// segment until the disk is full).
    pub max_slot_wal_keep_size_mb: i64,
}

/// Where a physical restore replays the stored WAL to, past the base backup's own end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum RecoveryTarget {
    /// The end of the stored WAL: every commit it holds.
    Latest,
    /// Every commit at or before this time, none after.
    Time(DateTime<Utc>),
}

/// The stored WAL a physical restore replays after laying the base backup down, as the
/// daemon found and checked it in the repository (see `ReplayChain` there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalReplay {
    /// Contiguous segments from the one holding the backup's end, in order; the last may
    /// be the receiver's open `<segment>.partial`.
    pub segments: Vec<PathBuf>,
    /// The timeline history files stored: a promoted server picks a timeline none names.
    pub histories: Vec<PathBuf>,
    /// The first segment missing while later ones are stored: nothing past it replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_at: Option<String>,
    /// How far to replay.
    pub target: RecoveryTarget,
}
