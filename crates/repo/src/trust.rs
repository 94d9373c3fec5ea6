//! Which backups this site trusts: manifests signed with ed25519 by this site's key or a
//! key in `repository.trusted_keys`.
//!
//! Whoever can write a bucket can write a manifest that looks newer and drilled
//! (`created_at` in 2099, `last_drill: passed`). Checksums only prove files match their
//! manifest, so the manifest itself is signed: over its canonical bytes (the compact JSON
//! of every field but the signature, `last_drill` included, so a drill re-signs).
//! Unsigned, wrongly signed, foreign-signed and future-dated manifests are *untrusted*:
//! listed, but never chosen by `latest`/`preferred`, and restored or drilled only with
//! `--force --reason`.
//!
//! The secret key is a file on the host (`repository.signing_key`, default
//! `state_dir/keys/signing.key`, mode 0600), never in a repository.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Manifest;

/// Parses a public key line; the config parses `trusted_keys` with it.
pub use crate::keys::public_key as parse_public;
/// Prefix of a public key line (`ed25519:<64 hex>`), as `keys public` prints it.
use crate::keys::SIGNING_KEY_PREFIX as KEY_PREFIX;

/// How far in the future a manifest's dates may be (clocks of two sites disagree a
/// little); beyond it the manifest is untrusted.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Errors of keys and signing.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The signing key file cannot be read, written or parsed.
    #[error("signing key {path}: {message}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A `repository.trusted_keys` entry is not a public key.
    #[error("repository.trusted_keys[{index}]: {message}")]
    TrustedKey {
        /// Index in the list.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// A manifest's signature: the signing public key and the signature, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// `ed25519:<64 hex>`: the public key that signed.
    pub key: String,
    /// 128 hex digits: the ed25519 signature of the canonical manifest bytes.
    pub sig: String,
}

/// This site's signing key and every key whose signatures it trusts.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    signer: Option<SigningKey>,
    trusted: Vec<VerifyingKey>,
}

/// Where a site's keyring comes from, as its config sets it (the daemon builds this from
/// `[repository]`), so this crate needs no daemon config type.
#[derive(Debug, Clone)]
pub struct KeySources<'a> {
    /// This site's secret signing key file (`repository.signing_key` or its default).
    pub signing_key: PathBuf,
    /// The local repository's root: the signing key must never be inside it.
    pub repository: &'a Path,
    /// `repository.trusted_keys`: public key lines of other sites.
    pub trusted_keys: &'a [String],
}

/// The keys of `repository.trusted_keys`; the error names the first bad one.
fn trusted_keys(sources: &KeySources<'_>) -> Result<Vec<VerifyingKey>, TrustError> {
    let keys = sources.trusted_keys.iter().enumerate();
    keys.map(|(index, line)| {
        parse_public(line).map_err(|message| TrustError::TrustedKey { index, message })
    })
    .collect()
}

/// The public key line for `key` (`ed25519:<hex>`), what `trusted_keys` lists.
pub fn public_line(key: &VerifyingKey) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(key.to_bytes()))
}

fn key_err(path: &Path, message: impl std::fmt::Display) -> TrustError {
    TrustError::KeyFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Creates a new signing key at `path` (mode 0600, its directory 0700). Refuses to
/// replace an existing file: backups signed by it would become untrusted.
pub fn generate(path: &Path) -> Result<VerifyingKey, TrustError> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|e| key_err(path, format!("no randomness: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| key_err(path, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => key_err(
                path,
                "already exists: refusing to overwrite it (backups it signed would become \
                 untrusted); choose another --out or remove it deliberately",
            ),
            _ => key_err(path, e),
        })?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| key_err(path, e))?;
    Ok(key.verifying_key())
}

/// Reads a signing key file written by [`generate`]; refuses one others can read.
pub fn read_key(path: &Path) -> Result<SigningKey, TrustError> {
    let meta = std::fs::metadata(path).map_err(|e| key_err(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "mode {:o} lets other users read the secret key: `chmod 600` it (and consider \
                 it leaked if others could log in)",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| key_err(path, e))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            key_err(
                path,
                "not a splice-dr signing key (64 hex digits; `splice-dr keys generate` writes one)",
            )
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The canonical bytes a signature covers: the manifest without its signature, compact.
pub fn canonical_bytes(m: &Manifest) -> Vec<u8> {
    let unsigned = Manifest {
        signature: None,
        ..m.clone()
    };
    serde_json::to_vec(&unsigned).unwrap_or_default()
}

impl Keyring {
    /// This site's keyring from config: the signing key (generated on first use when the
    /// file does not exist, so a new site signs its first backup) and the trusted keys.
    pub fn load(sources: &KeySources<'_>) -> Result<Keyring, TrustError> {
        Keyring::build(sources, true)
    }

    /// [`Keyring::load`] without generating a missing signing key (then there is none):
    /// `splice-dr check` validates the key settings but writes nothing.
    pub fn inspect(sources: &KeySources<'_>) -> Result<Keyring, TrustError> {
        Keyring::build(sources, false)
    }

    fn build(sources: &KeySources<'_>, generate_missing: bool) -> Result<Keyring, TrustError> {
        let path = &sources.signing_key;
        if path.starts_with(sources.repository) {
            return Err(key_err(
                path,
                "is inside the backup repository: the secret key must never be stored with \
                 the backups it vouches for; set repository.signing_key elsewhere",
            ));
        }
        if !path.exists() && !generate_missing {
            return Ok(Keyring::from_keys(None, trusted_keys(sources)?));
        }
        if !path.exists() {
            match generate(path) {
                Ok(public) => tracing::warn!(
                    "generated this site's backup signing key at {} (public key {}); put the \
                     public key in other sites' repository.trusted_keys",
                    path.display(),
                    public_line(&public)
                ),
                // Another replica sharing the state directory made it first.
                Err(_) if path.exists() => {}
                Err(e) => return Err(e),
            }
        }
        let signer = read_key(path)?;
        Ok(Keyring::from_keys(Some(signer), trusted_keys(sources)?))
    }

    /// A keyring from keys in memory (tests).
    pub fn from_keys(signer: Option<SigningKey>, trusted: Vec<VerifyingKey>) -> Keyring {
        let mut all: Vec<VerifyingKey> = signer.iter().map(SigningKey::verifying_key).collect();
        all.extend(trusted);
        Keyring {
            signer,
            trusted: all,
        }
    }

    /// Signs `m` with this site's key (replacing any signature). Without a key (a bare
    /// repository opened by a test) the manifest stays unsigned, hence untrusted.
    pub fn sign(&self, m: &mut Manifest) {
        let Some(key) = &self.signer else {
            m.signature = None;
            return;
        };
        let sig = key.sign(&canonical_bytes(m));
        m.signature = Some(ManifestSignature {
            key: public_line(&key.verifying_key()),
            sig: hex::encode(sig.to_bytes()),
        });
    }

    /// Why `m` is not trusted at `now`, `None` when it is: dated in the future, unsigned,
    /// signed by an unknown key, or its signature does not match.
    pub fn untrusted_because(&self, m: &Manifest, now: DateTime<Utc>) -> Option<String> {
        let latest = m.created_at.max(m.completed_at);
        if latest > now + CLOCK_SKEW {
            return Some(format!(
                "dated {} — in the future beyond the {} min clock-skew allowance (forged, or \
                 a clock is wrong)",
                latest.to_rfc3339(),
                CLOCK_SKEW.num_minutes()
            ));
        }
        let Some(s) = &m.signature else {
            return Some(
                "unsigned: made before splice-dr signed backups, or not by a trusted site \
                 (restore or drill it only with --force --reason)"
                    .into(),
            );
        };
        let key = match parse_public(&s.key) {
            Ok(k) => k,
            Err(e) => return Some(format!("signature key unreadable: {e}")),
        };
        if !self.trusted.contains(&key) {
            return Some(format!(
                "signed by {}, which is neither this site's key nor in repository.trusted_keys",
                s.key
            ));
        }
        let sig = hex::decode(&s.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b));
        match sig {
            Some(sig) if key.verify_strict(&canonical_bytes(m), &sig).is_ok() => None,
            _ => Some(format!(
                "the signature by {} does not match the manifest: changed after signing",
                s.key
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn signed_by(k: &SigningKey) -> Manifest {
        let mut m = Manifest::for_test("b1", Utc::now());
        Keyring::from_keys(Some(k.clone()), vec![]).sign(&mut m);
        m
    }

    #[test]
    fn own_and_listed_keys_are_trusted_others_are_not() {
        let ring = Keyring::from_keys(Some(key(1)), vec![key(2).verifying_key()]);
        let now = Utc::now();
        assert_eq!(ring.untrusted_because(&signed_by(&key(1)), now), None);
        assert_eq!(ring.untrusted_because(&signed_by(&key(2)), now), None);
        let why = ring.untrusted_because(&signed_by(&key(3)), now).unwrap();
        assert!(why.contains("trusted_keys"), "{why}");
        let why = ring
            .untrusted_because(&Manifest::for_test("b1", now), now)
            .unwrap();
        assert!(why.starts_with("unsigned"), "{why}");
    }

    #[test]
    fn any_change_after_signing_breaks_the_signature_last_drill_included() {
        let ring = Keyring::from_keys(Some(key(1)), vec![]);
        let mut m = signed_by(&key(1));
        m.last_drill = Some(crate::DrillRecord {
            at: Utc::now(),
            result: crate::DrillResult::Passed,
            duration_ms: 1,
            detail: String::new(),
            run: "r".into(),
        });
        let why = ring.untrusted_because(&m, Utc::now()).unwrap();
        assert!(why.contains("does not match"), "{why}");
        ring.sign(&mut m);
        assert_eq!(ring.untrusted_because(&m, Utc::now()), None);
    }

    #[test]
    fn a_signed_manifest_dated_in_the_future_is_untrusted() {
        let ring = Keyring::from_keys(Some(key(1)), vec![]);
        let mut m = Manifest::for_test("b1", Utc::now() + chrono::Duration::minutes(10));
        ring.sign(&mut m);
        let why = ring.untrusted_because(&m, Utc::now()).unwrap();
        assert!(why.contains("future"), "{why}");
        let mut m = Manifest::for_test("b1", Utc::now() + chrono::Duration::minutes(2));
        ring.sign(&mut m);
        assert_eq!(
            ring.untrusted_because(&m, Utc::now()),
            None,
            "within the skew"
        );
    }

    #[test]
    fn key_files_are_0600_never_overwritten_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let public = generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&path).unwrap().verifying_key(), public);
        let e = generate(&path).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(parse_public(&public_line(&public)).unwrap(), public);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }
}
