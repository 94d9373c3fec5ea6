//! `[[repository.offsite]]`: further repositories every backup is copied to.
//!
//! A backup that lives only on the machine that died is not a backup. Each entry names an
//! S3-compatible bucket (AWS, MinIO, Ceph, a self-hosted endpoint) or another directory
//! (an NFS mount, a second disk). Backups are written to the local `[repository] path`
//! first — pg_dump needs a directory — and then streamed to every off-site repository,
//! manifest last, so a half-copied backup is never listed.
//!
//! The table's type is the repository's ([`splice_dr_repo::config::OffsiteConfig`]),
//! with its `retention` typed here; this file resolves its paths and checks it, pointing
//! at `file:line` on error.

use std::path::{Path, PathBuf};

use super::automation::RetentionConfig;
use super::load::Locator;
use super::load::{ConfigError, KeyPath};

pub use splice_dr_repo::config::OffsiteKind;

/// One off-site repository, its `retention` table being the automation's
/// [`RetentionConfig`].
pub type OffsiteConfig = splice_dr_repo::config::OffsiteConfig<RetentionConfig>;

/// Resolves relative paths against the config file's directory.
pub(super) fn resolve_paths(list: &mut [OffsiteConfig], resolve: &dyn Fn(&mut PathBuf)) {
    for o in list {
        for p in [
            o.path.as_mut(),
            o.access_key_id_file.as_mut(),
            o.secret_access_key_file.as_mut(),
            o.session_token_file.as_mut(),
            o.ca_file.as_mut(),
            o.identity_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }
}

/// Semantic checks: names unique and well-formed, the keys each kind needs present and
/// the other kind's absent, at most one primary, valid age recipients.
pub(super) fn check(
    list: &[OffsiteConfig],
    local: &Path,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let base = KeyPath::root().key("repository").key("offsite");
    let mut names = std::collections::BTreeSet::new();
    for (i, o) in list.iter().enumerate() {
        let at = base.index(i);
        if o.name.is_empty()
            || !o
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(loc
                .error_at_value(
                    &at.key("name"),
                    format!("invalid repository name {:?}", o.name),
                )
                .with_hint("use lowercase letters, digits, - and _, e.g. name = \"s3-eu\""));
        }
        if o.name == "local" || !names.insert(o.name.clone()) {
            return Err(loc
                .error_at_value(
                    &at.key("name"),
                    format!("repository name {:?} is already used", o.name),
                )
                .with_hint(
                    "each repository needs its own name (`local` is the [repository] path)",
                ));
        }
        check_kind(o, &at, local, loc)?;
        for (j, r) in o.encrypt_to.iter().enumerate() {
            if let Err(e) = super::keys::age_recipient(r) {
                return Err(loc
                    .error_at_value(&at.key("encrypt_to").index(j), e.to_string())
                    .with_hint("an age public key looks like age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"));
            }
        }
        if let Some(r) = &o.retention {
            super::automation::check_retention(r, &at.key("retention"), loc)?;
        }
    }
    if let Some((i, _)) = list.iter().enumerate().filter(|(_, o)| o.primary).nth(1) {
        return Err(loc
            .error_at_value(&base.index(i).key("primary"), "a second primary repository")
            .with_hint("mark one off-site repository primary = true; reads try it first"));
    }
    Ok(())
}

fn check_kind(
    o: &OffsiteConfig,
    at: &KeyPath,
    local: &Path,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let s3_keys = [
        ("endpoint", o.endpoint.is_some()),
        ("bucket", o.bucket.is_some()),
        ("access_key_id_file", o.access_key_id_file.is_some()),
        ("secret_access_key_file", o.secret_access_key_file.is_some()),
        ("session_token_file", o.session_token_file.is_some()),
        ("ca_file", o.ca_file.is_some()),
    ];
    match o.kind {
        OffsiteKind::Directory => {
            let Some(p) = &o.path else {
                return Err(loc
                    .error_at_value(&at.key("kind"), "a directory repository needs `path`")
                    .with_hint("add path = \"/mnt/backup/splice-dr\""));
            };
            if p == local || p.starts_with(local) || local.starts_with(p) {
                return Err(loc
                    .error_at_value(&at.key("path"), "overlaps the local [repository] path")
                    .with_hint(
                        "an off-site copy must live somewhere else: another disk or mount",
                    ));
            }
            if let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set) {
                return Err(loc
                    .error_at_key(
                        &at.key(k),
                        format!("`{k}` is an S3 key; this repository is kind = \"directory\""),
                    )
                    .with_hint("remove it, or set kind = \"s3\""));
            }
        }
        OffsiteKind::S3 => {
            if o.bucket.as_deref().is_none_or(str::is_empty) {
                return Err(loc
                    .error_at_value(&at.key("kind"), "an s3 repository needs `bucket`")
                    .with_hint("add bucket = \"splice-dr-backups\""));
            }
            if o.path.is_some() {
                return Err(loc
                    .error_at_key(&at.key("path"), "`path` is for kind = \"directory\"")
                    .with_hint("use bucket and prefix for S3"));
            }
            if let Some(e) = &o.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(loc
                        .error_at_value(&at.key("endpoint"), format!("endpoint {e:?} is not a URL"))
                        .with_hint("e.g. endpoint = \"https://minio.internal:9000\""));
                }
            }
            if o.access_key_id_file.is_some() != o.secret_access_key_file.is_some() {
                return Err(loc
                    .error_at_value(&at.key("kind"), "set both access_key_id_file and secret_access_key_file, or neither")
                    .with_hint("with neither, credentials come from the AWS chain in the daemon's environment (docs/CONFIG.md)"));
            }
            if o.session_token_file.is_some() && o.access_key_id_file.is_none() {
                return Err(loc
                    .error_at_key(&at.key("session_token_file"), "session_token_file without access_key_id_file and secret_access_key_file")
                    .with_hint("a session token belongs to a key pair: set the two key files too, or remove it (AWS_SESSION_TOKEN goes with AWS_ACCESS_KEY_ID)"));
            }
        }
    }
    if !o.encrypt_to.is_empty() && o.identity_file.is_none() {
        return Err(loc
            .error_at_value(&at.key("encrypt_to"), "encrypted repository without `identity_file`")
            .with_hint("restores need the age secret key: set identity_file = \"/etc/splice-dr/offsite.key\" (kept off the repository)"));
    }
    Ok(())
}
