//! `manifest.json`: what a backup holds and how to prove it is intact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use splice_dr_plugin_api::DumpInfo;
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
    /// Database dumps, in the order taken (validator strictly before participant).
    pub dumps: Vec<DumpEntry>,
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
            dumps: vec![],
            files: vec![],
            identities: None,
            validator_party: None,
            users: vec![],
            last_drill: None,
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
