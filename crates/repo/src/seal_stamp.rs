//! What the seal saw of each file, kept in memory for the verify that follows it.
//!
//! A backup is verified right after it is sealed ("a backup that cannot be read back is
//! not a backup"). Hashing every file again at that moment reads the same bytes from the
//! page cache that the seal hashed a second earlier: it proves nothing the seal did not,
//! and on a gigabyte of uncompressed dumps it was an eighth of the backup's time. What can
//! still go wrong between the two is that a file changes; that is what a stamp catches.
//!
//! A stamp is a file's identity (device, inode), size and change time (`ctime`, which the
//! kernel sets on every write or metadata change and no caller can set back), taken
//! *before* the file is hashed, with the hash the seal computed. A verify in the same
//! process trusts the seal's hash only for files whose stamp still matches exactly and
//! whose manifest entry carries that same hash; any other file is hashed again. Stamps
//! never leave the process: a later verify (`splice-dr verify`, a drill, a restore) hashes
//! everything.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file as the seal saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
    sha256: String,
}

/// The stamps of one sealed backup's files, by their path relative to the backup.
#[derive(Debug, Clone, Default)]
pub struct SealStamps {
    files: BTreeMap<String, FileStamp>,
}

/// A file's identity, size and change time now.
fn identity(path: &Path) -> std::io::Result<(u64, u64, u64, (i64, i64))> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino(), m.len(), (m.ctime(), m.ctime_nsec())))
}

impl SealStamps {
    /// Records `rel`'s identity before it is hashed; [`SealStamps::hashed`] completes it.
    /// A file that cannot be stat'ed gets no stamp (it is hashed again by the verify).
    pub(crate) fn stamp(&mut self, rel: &str, path: &Path) {
        if let Ok((dev, ino, size, ctime)) = identity(path) {
            self.files.insert(
                rel.to_string(),
                FileStamp {
                    dev,
                    ino,
                    size,
                    ctime,
                    sha256: String::new(),
                },
            );
        }
    }

    /// Completes `rel`'s stamp with the hash and size the seal computed; a file whose size
    /// changed while it was hashed loses its stamp.
    pub(crate) fn hashed(&mut self, rel: &str, sha256: &str, size: u64) {
        match self.files.get_mut(rel) {
            Some(s) if s.size == size => s.sha256 = sha256.to_string(),
            _ => {
                self.files.remove(rel);
            }
        }
    }

    /// Whether `path` (at `rel` in the backup, `size` bytes and `sha256` in the manifest)
    /// is the very file the seal hashed, unchanged since: same device and inode, same
    /// size and change time, and the manifest says the hash the seal computed.
    pub(crate) fn unchanged(&self, rel: &str, path: &Path, size: u64, sha256: &str) -> bool {
        let Some(s) = self.files.get(rel) else {
            return false;
        };
        if s.sha256.is_empty() || s.sha256 != sha256 || s.size != size {
            return false;
        }
        matches!(identity(path), Ok((dev, ino, now_size, ctime))
            if dev == s.dev && ino == s.ino && now_size == s.size && ctime == s.ctime)
    }

    /// Files stamped.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is stamped.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
