//! The validator's user list over time. The runbook's standing gap — "you have to manually
//! re-onboard any users that were onboarded after the backup was taken" — needs to know who
//! those users were when the node itself is gone, so the daemon keeps the latest list it
//! read from the admin API in `state_dir/users/<node>.json`, and a restore compares it with
//! the restored node's list.
//!
//! A user re-onboarded without its party id gets a party the validator derives from its
//! name, which is its old one only if it was onboarded that way; a user onboarded with a
//! party of its own would lose it. The list call (`GET /v0/admin/users`) names users only;
//! the onboard call (`POST /v0/admin/users`) answers the party. So every party the
//! validator answers to splice-dr (the `onboard_user` flow, a restore's re-onboarding) is
//! kept in `state_dir/users/parties/<node>.json`, and a restore passes it back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::validator::ValidatorClient;

/// The last user list read from a node's validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// When the list was read.
    pub at: DateTime<Utc>,
    /// The user names the validator listed.
    pub users: Vec<String>,
}

/// Where a node's record lives.
pub fn record_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("users").join(format!("{node}.json"))
}

/// The node's last record, when there is one (an unreadable file counts as none).
pub fn load(state_dir: &Path, node: &str) -> Option<UserRecord> {
    let bytes = std::fs::read(record_path(state_dir, node)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replaces the node's record atomically.
pub fn save(state_dir: &Path, node: &str, record: &UserRecord) -> std::io::Result<()> {
    let path = record_path(state_dir, node);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    crate::util::write_atomic(&path, &bytes)
}

/// Where a node's party ids live (a directory of its own: no node name can clash with it).
pub fn parties_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir
        .join("users")
        .join("parties")
        .join(format!("{node}.json"))
}

/// The party ids recorded for a node's users, by user name (empty when none were, or the
/// file is unreadable: a user without a recorded party is re-onboarded without one, and
/// the restore says so).
pub fn load_parties(state_dir: &Path, node: &str) -> BTreeMap<String, String> {
    std::fs::read(parties_path(state_dir, node))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records the party the validator answered for `user` (replacing an older one: the
/// validator's latest answer is the truth).
pub fn record_party(state_dir: &Path, node: &str, user: &str, party: &str) -> std::io::Result<()> {
    let mut parties = load_parties(state_dir, node);
    if parties.get(user).map(String::as_str) == Some(party) {
        return Ok(());
    }
    parties.insert(user.to_string(), party.to_string());
    let path = parties_path(state_dir, node);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(&parties).map_err(std::io::Error::other)?;
    crate::util::write_atomic(&path, &bytes)
}

/// Reads every node's user list every `interval` until `shutdown`. A node whose validator
/// does not answer keeps its previous record: the list from before a disaster is exactly
/// the one a restore needs. `validators` names the nodes with a validator API, asked each
/// round so that reloads are seen.
pub async fn record_loop(
    validators: impl Fn() -> Vec<(String, Arc<ValidatorClient>)> + Send,
    state_dir: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        for (name, client) in validators() {
            let name = name.as_str();
            match client.users().await {
                Ok(mut users) => {
                    users.sort();
                    let changed = load(&state_dir, name).is_none_or(|r| r.users != users);
                    let record = UserRecord {
                        at: Utc::now(),
                        users,
                    };
                    if let Err(e) = save(&state_dir, name, &record) {
                        tracing::warn!(node = %name, "cannot save the user list: {e}");
                    } else if changed {
                        tracing::info!(node = %name, users = record.users.len(), "validator user list recorded");
                    }
                }
                Err(e) => tracing::debug!(node = %name, "user list not read: {e}"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), "n").is_none());
        let r = UserRecord {
            at: Utc::now(),
            users: vec!["alice".into(), "bob".into()],
        };
        save(dir.path(), "n", &r).unwrap();
        assert_eq!(load(dir.path(), "n"), Some(r));
        std::fs::write(record_path(dir.path(), "n"), b"{not json").unwrap();
        assert!(load(dir.path(), "n").is_none());
    }

    #[test]
    fn parties_are_recorded_per_user_and_the_latest_answer_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_parties(dir.path(), "n").is_empty());
        record_party(dir.path(), "n", "bob", "bob-ext::1220ab").unwrap();
        record_party(dir.path(), "n", "carol", "carol::1220ab").unwrap();
        record_party(dir.path(), "n", "bob", "bob-2::1220ab").unwrap();
        let parties = load_parties(dir.path(), "n");
        assert_eq!(parties["bob"], "bob-2::1220ab");
        assert_eq!(parties["carol"], "carol::1220ab");
        // The user list record of the same node is another file.
        assert!(load(dir.path(), "n").is_none());
        assert!(load_parties(dir.path(), "other").is_empty());
    }
}
