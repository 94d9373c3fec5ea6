//! Node identities dumps: validation and encryption at rest.
//!
//! An identities dump (`GET /v0/admin/participant/identities`) holds the participant's
//! private keys. It is the one thing that lets an operator re-onboard after losing
//! everything, and the one thing that must never sit readable on a disk: it is checked
//! for the fields a re-onboard needs (Splice operators once had these backups silently
//! broken for days), encrypted to age recipients from the config, and written mode 0600.
//! The decryption key is never in the repository.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use thiserror::Error;

/// What can go wrong with an identities dump.
#[derive(Debug, Error)]
pub enum IdentitiesError {
    /// The dump lacks what a re-onboard needs.
    #[error("the identities dump is invalid: {0}; the backup is refused rather than keeping an unusable identities backup")]
    Invalid(String),
    /// No or bad age recipients configured.
    #[error("repository.identities_recipients: {0}")]
    Recipients(String),
    /// Encryption or decryption failed.
    #[error("{0}")]
    Crypto(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
}

fn io(path: &Path, e: impl std::fmt::Display) -> IdentitiesError {
    IdentitiesError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Checks a dump has what a re-onboard needs (Splice's `NodeIdentitiesDump`: a non-empty
/// `id`, non-empty `keys`, an `authorizedStoreSnapshot`); returns the participant id.
pub fn validate_dump(bytes: &[u8]) -> Result<String, IdentitiesError> {
    crate::validator::parse_identities(bytes)
        .map(|dump| dump.id)
        .map_err(IdentitiesError::Invalid)
}

/// The largest identities dump file a re-onboard reads: a dump holds a few keys and the
/// participant's authorized topology store, megabytes at most; anything far larger is not one.
pub const MAX_DUMP_FILE: u64 = 64 * 1024 * 1024;

/// The namespace fingerprint of a participant uid or party id: `1220ab…` in
/// `acme-1::1220ab…`, `PAR::acme-1::1220ab…` or `alice::1220ab…`.
fn namespace_of(uid: &str) -> Option<&str> {
    let rest = uid.strip_prefix("PAR::").unwrap_or(uid);
    rest.split_once("::")
        .map(|(_, ns)| ns)
        .filter(|ns| !ns.is_empty())
}

/// Checks an identities dump file handed to a re-onboard (`params.identities_file`) before
/// anything is changed: a readable regular file of sane size holding a Splice
/// `NodeIdentitiesDump` ([`validate_dump`]'s rules) and, when the validator party is known,
/// the keys of that party's namespace (a node's validator party lives in its participant's
/// namespace; a dump of another node would bring up another party). Returns the dump's
/// participant uid.
pub fn check_dump_file(
    path: &Path,
    validator_party: Option<&str>,
) -> Result<String, IdentitiesError> {
    let bad = |message: String| IdentitiesError::Io {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    if meta.len() > MAX_DUMP_FILE {
        return Err(bad(format!(
            "is {} bytes, more than an identities dump can be ({MAX_DUMP_FILE})",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DUMP_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot be read ({e})")))?;
    let dump = crate::validator::parse_identities(&bytes)
        .map_err(|e| bad(format!("is not a Splice NodeIdentitiesDump: {e}")))?;
    if let (Some(party), Some(ns)) = (validator_party, namespace_of(&dump.id)) {
        if namespace_of(party).is_some_and(|p| p != ns) {
            return Err(bad(format!(
                "holds the identities of participant {}, whose namespace is not the one of \
                 the backup's validator party {party}: it is another node's dump",
                dump.id
            )));
        }
    }
    Ok(dump.id)
}

/// Parses age recipients (`age1…`).
pub fn parse_recipients(list: &[String]) -> Result<Vec<age::x25519::Recipient>, IdentitiesError> {
    if list.is_empty() {
        return Err(IdentitiesError::Recipients(
            "no recipients configured: identities hold private keys and are only stored encrypted; \
             generate a key with `age-keygen` and list its public key here"
                .into(),
        ));
    }
    list.iter()
        .map(|r| crate::config::keys::age_recipient(r).map_err(IdentitiesError::Recipients))
        .collect()
}

/// Encrypts `plain` to `recipients` into a new file at `path`, mode 0600.
pub fn encrypt_to_file(
    path: &Path,
    plain: &[u8],
    recipients: &[age::x25519::Recipient],
) -> Result<(), IdentitiesError> {
    encrypt_reader_to_file(path, &mut &plain[..], recipients).map(drop)
}

/// Encrypts everything `plain` yields to `recipients` into a new file at `path`, mode
/// 0600, as it is read (a DR data snapshot runs to gigabytes); returns the bytes read.
pub fn encrypt_reader_to_file(
    path: &Path,
    plain: &mut dyn std::io::Read,
    recipients: &[age::x25519::Recipient],
) -> Result<u64, IdentitiesError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| IdentitiesError::Crypto(format!("cannot encrypt identities: {e}")))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    let mut writer = encryptor.wrap_output(file).map_err(|e| io(path, e))?;
    let n = std::io::copy(plain, &mut writer).map_err(|e| io(path, e))?;
    let file = writer.finish().map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))?;
    Ok(n)
}

/// Decrypts an identities file with the age identities in `identity_file`.
pub fn decrypt_file(path: &Path, identity_file: &Path) -> Result<Vec<u8>, IdentitiesError> {
    let identities = age::IdentityFile::from_file(identity_file.display().to_string())
        .map_err(|e| io(identity_file, e))?
        .into_identities()
        .map_err(|e| IdentitiesError::Crypto(format!("{}: {e}", identity_file.display())))?;
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let decryptor = age::Decryptor::new(file)
        .map_err(|e| IdentitiesError::Crypto(format!("{}: {e}", path.display())))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            IdentitiesError::Crypto(format!(
                "cannot decrypt {} with {}: {e} (is it the key whose public half is in repository.identities_recipients?)",
                path.display(),
                identity_file.display()
            ))
        })?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| io(path, e))?;
    Ok(out)
}

/// Writes decrypted identities for a re-onboard: a new file, mode 0600, never overwriting.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentitiesError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    const DUMP: &str = r#"{"id":"participant::1220ab","keys":[{"keyPair":"abc","name":"k1"}],"authorizedStoreSnapshot":"c25hcA==","version":"0.4.15"}"#;

    #[test]
    fn a_dump_file_is_checked_for_shape_size_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ids.json");
        std::fs::write(&good, DUMP).unwrap();
        assert_eq!(
            check_dump_file(&good, Some("acme::1220ab")).unwrap(),
            "participant::1220ab"
        );
        assert_eq!(check_dump_file(&good, None).unwrap(), "participant::1220ab");
        let e = check_dump_file(&good, Some("acme::1220ff"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ids.json") && e.contains("another node"), "{e}");
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{\"id\":\"x::1\",\"keys\":[]}").unwrap();
        let e = check_dump_file(&garbage, None).unwrap_err().to_string();
        assert!(
            e.contains("garbage.json") && e.contains("NodeIdentitiesDump") && e.contains("`keys`"),
            "{e}"
        );
        let e = check_dump_file(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = check_dump_file(&dir.path().join("missing"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
        let big = dir.path().join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_DUMP_FILE + 1)
            .unwrap();
        let e = check_dump_file(&big, None).unwrap_err().to_string();
        assert!(e.contains("more than an identities dump"), "{e}");
    }

    #[test]
    fn validation_names_the_missing_field() {
        assert_eq!(
            validate_dump(DUMP.as_bytes()).unwrap(),
            "participant::1220ab"
        );
        let no_keys = r#"{"id":"x","keys":[],"authorizedStoreSnapshot":"s"}"#;
        assert!(validate_dump(no_keys.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("`keys`"));
        let no_snap = r#"{"id":"x","keys":[{"keyPair":"abc","name":"k1"}]}"#;
        assert!(validate_dump(no_snap.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("authorizedStoreSnapshot"));
        assert!(validate_dump(b"<html>404</html>")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }

    #[test]
    fn encrypted_file_is_private_and_opens_only_with_the_right_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipients = parse_recipients(&[key.to_public().to_string()]).unwrap();
        let enc = dir.path().join("identities.json.age");
        encrypt_to_file(&enc, DUMP.as_bytes(), &recipients).unwrap();
        let mode = std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let raw = std::fs::read(&enc).unwrap();
        assert!(
            !String::from_utf8_lossy(&raw).contains("keyPair"),
            "must not be plaintext"
        );

        let good = dir.path().join("good.key");
        std::fs::write(&good, key.to_string().expose_secret()).unwrap();
        assert_eq!(decrypt_file(&enc, &good).unwrap(), DUMP.as_bytes());
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, other.to_string().expose_secret()).unwrap();
        assert!(decrypt_file(&enc, &bad)
            .unwrap_err()
            .to_string()
            .contains("cannot decrypt"));
    }

    #[test]
    fn recipients_are_required_and_checked() {
        assert!(parse_recipients(&[])
            .unwrap_err()
            .to_string()
            .contains("no recipients"));
        assert!(parse_recipients(&["age1nope".into()]).is_err());
    }
}
