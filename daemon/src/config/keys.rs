//! Keys a config names: age recipients (identities dumps, off-site encryption), trusted
//! signing keys, and where this site's own signing key lives. The parsers are the
//! repository's (`splice_dr_repo::keys`), re-exported so the config validates keys with
//! the very functions that later use them; the config depends on nothing above it.

use std::path::PathBuf;

pub use splice_dr_repo::keys::{age_recipient, public_key};
use splice_dr_repo::trust::KeySources;

use super::Config;

/// Where this site's signing key lives: `repository.signing_key`, else
/// `<state_dir>/keys/signing.key`.
pub fn signing_key_path(config: &Config) -> PathBuf {
    config
        .repository
        .signing_key
        .clone()
        .unwrap_or_else(|| config.daemon.state_dir.join("keys").join("signing.key"))
}

/// What the repository's keyring is built from, as this config sets it.
pub fn key_sources(config: &Config) -> KeySources<'_> {
    KeySources {
        signing_key: signing_key_path(config),
        repository: &config.repository.path,
        trusted_keys: &config.repository.trusted_keys,
    }
}
