//! Every participant id a node has used. Splice's re-onboarding needs "a new identifier
//! … never used before", burns the old one, and requires every later start to pass the
//! new one again (`-P`). A human forgets both; this registry remembers them durably in
//! `state_dir/participants/<node>.json`, seeded from the config and from backups (the ids
//! inside them and the copy of the registry each one carries, so a fresh host learns the
//! ids another host burned).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One id and where it was seen: the repository's type, since every backup carries a
/// copy of the registry (`Manifest::participant_ids`) for a fresh host to read.
pub use splice_dr_repo::UsedParticipantId as UsedId;

/// A node's registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The id every start of the node must pass, once a re-onboard chose one.
    pub current: Option<String>,
    /// Every id ever used (never shrinks).
    pub used: Vec<UsedId>,
    /// The migration id every start passes (`-m`) since a network DR moved the node to it,
    /// until the config's `migration_id` says the same.
    #[serde(default)]
    pub migration_id: Option<u64>,
    /// The node was started migrating to `migration_id` and has not been seen healthy on
    /// it yet. Recorded *before* that start, so a daemon killed during it, or a start that
    /// failed, never leaves later starts on the old id (the network has moved on): every
    /// start passes "migrating" again (the dump stays on the node's dump volume or PVC),
    /// and a `dr_snapshot` to that id finishes the migration instead of fetching anew.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub migration_unproven: bool,
    /// The new participant id a re-onboard started the node with, until the flow saw the
    /// node healthy with its party and made the id `current`. Recorded before that start:
    /// a daemon killed during it, or a failed re-onboard, leaves a node whose storage
    /// belongs to this id while `current` is not it, and Splice cannot resume a
    /// re-onboard; plain starts are refused until `reonboard` runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reonboarding: Option<String>,
}

/// Errors reading or writing a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file cannot be read or written.
    #[error("participant-id registry {path}: {message}")]
    Io {
        /// The registry file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The participant identifier in a participant uid (`acme-1` in `acme-1::1220ab…`); the
/// repository's, which compares it when judging a restore.
pub use splice_dr_repo::identifier_of;

/// Where a node's registry lives.
pub fn registry_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("participants").join(format!("{node}.json"))
}

impl Registry {
    /// The migration id the node runs: the registry's after a network DR, else the
    /// `configured` one (the config file may lag behind the network).
    pub fn running_migration_id(&self, configured: u64) -> u64 {
        self.migration_id.unwrap_or(0).max(configured)
    }

    /// Reads a node's registry; a missing file is an empty registry, a damaged one an
    /// error (silently forgetting burned ids would let one be reused).
    pub fn load(state_dir: &Path, node: &str) -> Result<Registry, RegistryError> {
        let path = registry_path(state_dir, node);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Io {
                path,
                message: format!("unreadable ({e}); fix or move the file — it lists burned ids"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(RegistryError::Io {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Writes the registry atomically and durably.
    pub fn save(&self, state_dir: &Path, node: &str) -> Result<(), RegistryError> {
        let path = registry_path(state_dir, node);
        let err = |e: std::io::Error| RegistryError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        crate::util::write_atomic(&path, &bytes).map_err(err)
    }

    /// Whether `id` was ever used by this node.
    pub fn is_used(&self, id: &str) -> bool {
        self.used.iter().any(|u| u.id == id)
    }

    /// Records `id` as used (no-op when it already is). Returns whether it was new.
    pub fn mark_used(&mut self, id: &str, source: &str) -> bool {
        if id.is_empty() || self.is_used(id) {
            return false;
        }
        self.used.push(UsedId {
            id: id.to_string(),
            since: Utc::now(),
            source: source.to_string(),
        });
        true
    }

    /// A fresh id derived from `hint`: `<hint>-2`, `<hint>-3`, … the first never used.
    pub fn next_free(&self, hint: &str) -> String {
        (2u32..)
            .map(|n| format!("{hint}-{n}"))
            .find(|c| !self.is_used(c))
            .unwrap_or_else(|| format!("{hint}-{}", Utc::now().timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burned_ids_survive_a_reload_and_are_never_proposed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(dir.path(), "n").unwrap();
        assert!(r.mark_used("acme", "config"));
        assert!(!r.mark_used("acme", "backup b1"));
        assert!(r.mark_used("acme-2", "re-onboard run1"));
        r.current = Some("acme-2".into());
        r.save(dir.path(), "n").unwrap();
        let r = Registry::load(dir.path(), "n").unwrap();
        assert!(r.is_used("acme-2"));
        assert_eq!(r.current.as_deref(), Some("acme-2"));
        assert_eq!(r.next_free("acme"), "acme-3");
        std::fs::write(registry_path(dir.path(), "n"), b"garbage").unwrap();
        let e = Registry::load(dir.path(), "n").unwrap_err().to_string();
        assert!(e.contains("burned ids"), "{e}");
    }
}
