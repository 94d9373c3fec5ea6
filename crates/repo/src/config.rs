//! How an off-site repository is configured: the `[[repository.offsite]]` table of the
//! daemon's config file. The type is defined here, next to the stores it configures; the
//! daemon re-exports it, resolves its relative paths and validates it with `file:line`
//! errors.

use serde::Deserialize;
use std::path::PathBuf;

/// What kind of storage an off-site repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsiteKind {
    /// S3-compatible object storage.
    S3,
    /// A directory (another disk, an NFS mount).
    Directory,
}

/// One off-site repository, as `[[repository.offsite]]` writes it.
///
/// `Retention` is the type of its `retention` table. Which backups a repository keeps is
/// the automation's policy, applied by the daemon, not something the repository reads: it
/// is carried here, unread, so the whole table stays one serde type (unknown keys refused
/// where they stand) without this crate naming the automation's types.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteConfig<Retention> {
    /// Short name shown in `backups`, `repo check`, metrics and events.
    pub name: String,
    /// `s3` or `directory`.
    pub kind: OffsiteKind,
    /// Directory repositories: where backups go.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// S3: the endpoint URL; absent = AWS (`https://s3.<region>.amazonaws.com`). An
    /// `http://` endpoint is allowed for a self-hosted server on a private network.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// S3: key prefix inside the bucket, e.g. `prod/validator-1` (no leading `/`).
    #[serde(default)]
    pub prefix: String,
    /// S3: region (self-hosted servers accept any; `us-east-1` is the usual default).
    #[serde(default = "default_region")]
    pub region: String,
    /// S3: path-style requests (`endpoint/bucket/key`), which self-hosted servers need.
    #[serde(default)]
    pub path_style: bool,
    /// S3: file holding the access key id (kept out of the config file so the file can be
    /// shared). Absent: the standard AWS credential chain in the daemon's environment
    /// (`store::s3_auth`). Set, it wins over anything in the environment.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// S3: file holding the secret access key (with `access_key_id_file`).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// S3: file holding the session token that temporary keys (from STS, `aws sts
    /// assume-role`, a vault) come with; only with the two key files.
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// S3: PEM file of CA certificates trusted for the endpoint and for STS, besides the
    /// system's roots: a self-hosted MinIO or Ceph behind a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Reads (listing, `latest`, downloads for a restore) try this repository before the
    /// other off-site ones. At most one may be primary; the local directory is always
    /// read first when it holds the backup.
    #[serde(default)]
    pub primary: bool,
    /// Encryption at rest: age recipients (`age1…`) every object is encrypted to, the
    /// manifest included. Empty = objects are stored as they are.
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// The age secret key that decrypts this repository's objects. Kept off the
    /// repository by construction (it is a local file); needed to list and restore.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Which backups this repository keeps; absent = it keeps everything.
    #[serde(default)]
    pub retention: Option<Retention>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl<Retention> OffsiteConfig<Retention> {
    /// An S3 repository on `bucket` with every other key at its default (AWS, the
    /// credential chain, no prefix, no encryption): for code that configures a repository
    /// without a config file (benchmarks, tests), setting what differs afterwards.
    pub fn s3(name: &str, bucket: &str) -> Self {
        OffsiteConfig {
            name: name.into(),
            kind: OffsiteKind::S3,
            path: None,
            endpoint: None,
            bucket: Some(bucket.into()),
            prefix: String::new(),
            region: default_region(),
            path_style: false,
            access_key_id_file: None,
            secret_access_key_file: None,
            session_token_file: None,
            ca_file: None,
            primary: false,
            encrypt_to: Vec::new(),
            identity_file: None,
            retention: None,
        }
    }

    /// Where the repository is, for operators: `s3://bucket/prefix` or the directory.
    pub fn location(&self) -> String {
        match self.kind {
            OffsiteKind::S3 => format!(
                "s3://{}/{}",
                self.bucket.as_deref().unwrap_or("?"),
                self.prefix.trim_matches('/')
            ),
            OffsiteKind::Directory => self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}
