//! Where backups are copied off the machine: the [`BackupStore`] trait and its two
//! implementations, a directory ([`dir::DirStore`]) and S3-compatible object storage
//! ([`s3::S3Store`]).
//!
//! A store is a flat namespace of keys (`<backup-id>/<file>`) holding bytes. It knows
//! nothing of manifests, checksums or encryption: `crate::offsite` builds those on top, so
//! both kinds get the same commit rule (manifest last) and the same checks on download.
//!
//! Calls block; they must be made from a thread that may block (a flow's thread, a CLI
//! command, `spawn_blocking`), never from inside an async task.

pub mod dir;
pub mod s3;
pub mod s3_auth;

use std::io::{Read, Write};
use thiserror::Error;

/// Errors of a store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("{0}: no such object")]
    NotFound(String),
    /// Anything else: unreachable endpoint, refused credentials, full disk...
    #[error("{0}")]
    Failed(String),
}

/// Fills an object: called once with the sink the object's bytes must be written to.
pub type Fill<'a> = &'a mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>;

/// One object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's root, e.g. `node-a-20261124-101500/manifest.json`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A place backups can be written to and read back from.
pub trait BackupStore: Send + Sync {
    /// Where the store is, for operators (`s3://bucket/prefix`, a directory).
    fn location(&self) -> String;

    /// Writes the object `key` from what `fill` writes into the sink. Streams: the store
    /// holds at most a bounded buffer. Nothing is visible under `key` unless this returns
    /// `Ok` (an S3 multipart upload is aborted, a directory's temp file removed).
    fn put(&self, key: &str, fill: Fill<'_>) -> Result<(), StoreError>;

    /// Streams the object `key`.
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StoreError>;

    /// The first-level "directories" (backup ids) under the root.
    fn list_dirs(&self) -> Result<Vec<String>, StoreError>;

    /// Every object under `dir/`.
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Whether the object `key` exists (a HEAD request, nothing read).
    fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Deletes one object; a missing one is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Free bytes where the store can tell (a filesystem), `None` for object storage,
    /// whose quota S3 does not report.
    fn free_bytes(&self) -> Option<u64>;

    /// Writes a small object from memory.
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(key, &mut |w| w.write_all(bytes))
    }

    /// Reads a small object into memory.
    fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.get(key)?
            .read_to_end(&mut out)
            .map_err(|e| StoreError::Failed(format!("{key}: {e}")))?;
        Ok(out)
    }
}
