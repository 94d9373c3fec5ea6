//! `manifest.json`: what a backup holds and how to prove it is intact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use splice_dr_plugin_api::{BackupKind, BaseBackupInfo, DumpInfo};
pub use splice_dr_protocol::drill::{DrillRecord, DrillResult};

/// Version of the manifest layout written by this build.
pub const MANIFEST_FORMAT: u32 = 1;

/// One file of a backup, with what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// One database dump inside a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpEntry {
    /// Directory (relative to the backup) holding the dump.
    pub dir: String,
    /// What the backend recorded about the dump.
    #[serde(flatten)]
    pub info: DumpInfo,
}

/// The physical copy of the database server inside a physical backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackupEntry {
    /// Directory (relative to the backup) holding the copy, as `pg_basebackup -Fp` wrote
    /// it (with its own `backup_manifest`).
    pub dir: String,
    /// What the backend recorded about it.
    #[serde(flatten)]
    pub info: BaseBackupInfo,
}

/// The manifest of one complete backup. Its presence in a backup's directory is what
/// makes the backup exist: it is written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`] of the writer.
    pub format: u32,
    /// Backup id (also the directory name).
    pub id: String,
    /// Node the backup belongs to.
    pub node: String,
    /// The node's migration id when the backup was taken; restore refuses others.
    pub migration_id: u64,
    /// splice-dr version that wrote it.
    pub tool_version: String,
    /// Postgres `server_version` of the dumped databases.
    pub server_version: String,
    /// When the backup started.
    pub created_at: DateTime<Utc>,
    /// When it was sealed.
    pub completed_at: DateTime<Utc>,
    /// `logical` (the dumps below) or `physical` (the base backup below). Absent on
    /// logical backups, so their manifests — and signatures — read as before kinds existed.
    #[serde(default, skip_serializing_if = "BackupKind::is_logical")]
    pub kind: BackupKind,
    /// Database dumps, in the order taken (validator strictly before participant); empty
    /// in a physical backup.
    pub dumps: Vec<DumpEntry>,
    /// The physical copy of the whole database server (a physical backup only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<BaseBackupEntry>,
    /// Every file with size and checksum.
    pub files: Vec<FileEntry>,
    /// The node identities dump, encrypted (absent when no validator API is configured).
    #[serde(default)]
    pub identities: Option<IdentitiesEntry>,
    /// The validator operator party at backup time.
    #[serde(default)]
    pub validator_party: Option<String>,
    /// Users onboarded on the validator at backup time (to re-onboard later ones after a restore).
    #[serde(default)]
    pub users: Vec<String>,
    /// The last restore drill of this backup: proof that it restores, or why not.
    #[serde(default)]
    pub last_drill: Option<DrillRecord>,
    /// The host that took the backup; absent on backups made before splice-dr recorded
    /// it (an unknown host: restores and re-onboards treat it as another host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<BackupHost>,
    /// Every participant id the node had used when the backup was taken (its
    /// participant-id registry), so that a fresh host reading the repository never
    /// chooses a burned id. Empty on backups made before splice-dr recorded it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant_ids: Vec<UsedParticipantId>,
    /// This site's (or a trusted site's) signature over everything above
    /// (`trust.rs`); absent on backups made before splice-dr signed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::trust::ManifestSignature>,
}

/// Where a backup keeps its identities dump and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitiesEntry {
    /// File (relative to the backup) holding the age-encrypted dump.
    pub file: String,
    /// The participant id inside the dump.
    pub participant_id: String,
    /// The age recipients it was encrypted to (public keys only).
    pub recipients: Vec<String>,
}

/// The host that took a backup. A restore or re-onboard on any other host could start a
/// second live copy of the node's identity, which makes Canton lose data on the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHost {
    /// The host's identity: 32 lower-case hex digits generated once into the daemon's
    /// state directory (`state_dir/host-id`), so the same daemon installation (the same
    /// machine, or on k8s the same state volume of one namespace) always says the same.
    pub id: String,
    /// What to call it in messages (its hostname; on k8s the namespace and pod): not
    /// part of the identity, a pod's name changes on every restart.
    pub name: String,
    /// The base URL (as `[node.validator] url`) other hosts reach the node's validator
    /// at, when the taking host knew one: a restore elsewhere checks it no longer answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
}

/// One participant id a node has used, and where it was seen (the daemon's registry
/// records these; every backup carries a copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedParticipantId {
    /// The participant identifier.
    pub id: String,
    /// When it was first recorded.
    pub since: DateTime<Utc>,
    /// Why it counts as used (`config`, `backup <id>`, `re-onboard <run>`).
    pub source: String,
}

impl Manifest {
    /// Total size of the backup's files (saturating: a damaged or forged manifest's sizes
    /// may add up past `u64::MAX`, which panicked in debug builds and wrapped in release).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |total, f| total.saturating_add(f.size))
    }

    /// The dump of a role, if the backup has one.
    pub fn dump(&self, role: &str) -> Option<&DumpEntry> {
        self.dumps.iter().find(|d| d.info.role == role)
    }
}

/// The participant identifier in a participant uid: `acme-1` in `acme-1::1220ab…` or
/// `PAR::acme-1::1220ab…` (identities dumps carry the uid; `-P` takes the identifier).
/// Here because a manifest records the uid and restore compares identifiers
/// ([`crate::restore_objections`]); the daemon's participant registry uses it too.
pub fn identifier_of(uid: &str) -> &str {
    let rest = uid.strip_prefix("PAR::").unwrap_or(uid);
    rest.split("::").next().unwrap_or(rest)
}

#[cfg(test)]
impl Manifest {
    /// A minimal manifest of node `n1` created at `at`, for unit tests.
    pub(crate) fn for_test(id: &str, at: DateTime<Utc>) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            id: id.into(),
            node: "n1".into(),
            migration_id: 0,
            tool_version: "t".into(),
            server_version: "15".into(),
            created_at: at,
            completed_at: at,
            kind: BackupKind::Logical,
            dumps: vec![],
            base_backup: None,
            files: vec![],
            identities: None,
            validator_party: None,
            users: vec![],
            last_drill: None,
            host: None,
            participant_ids: vec![],
            signature: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::identifier_of;

    #[test]
    fn identifiers_come_out_of_uids() {
        assert_eq!(identifier_of("acme-1::1220ab"), "acme-1");
        assert_eq!(identifier_of("PAR::acme-1::1220ab"), "acme-1");
        assert_eq!(identifier_of("acme-1"), "acme-1");
    }
}
