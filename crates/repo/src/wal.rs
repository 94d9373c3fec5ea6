//! The repository's WAL archive: completed WAL segments (and timeline history files) of
//! each node, streamed continuously, under `<repo>/wal/<node>/`.
//!
//! ```text
//! <repo>/wal/<node>/000000010000000000000003          a completed 16 MB segment
//! <repo>/wal/<node>/000000010000000000000003.sha256   its checksum (hex)
//! <repo>/wal/<node>/00000002.history                  a timeline's history
//! ```
//!
//! A segment is sealed by copying it under a temporary name, fsyncing it and renaming it
//! into place without replacing anything, then writing its checksum the same way: a crash
//! leaves either no segment, or one whose checksum file is missing (sealed again from the
//! staging copy, which is removed only once both are in place). Segment names are Postgres'
//! own (`TTTTTTTTXXXXXXXXYYYYYYYY`, 24 hex digits); names read from disk are untrusted and
//! anything else in the directory is ignored. A segment already in the archive is never
//! replaced: the same name with other content is an error, not an overwrite.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fs::{sync_dir, write_atomic};
use crate::{io_err, sha256_file, RepoError};

/// Directory under the repository root holding every node's WAL archive (not a backup: it
/// has no manifest).
pub const WAL_DIR: &str = "wal";
/// What a segment's checksum file adds to its name.
const CHECKSUM_SUFFIX: &str = ".sha256";

/// Whether `name` is a WAL segment's name: 24 upper-case hex digits.
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// Whether `name` is a timeline history file's name: 8 upper-case hex digits and
/// `.history`.
pub fn is_history_name(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && is_segment_name(&format!("{t}{}", "0".repeat(16))))
}

/// What sealing one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// Copied into the archive.
    New,
    /// The archive already held it, byte for byte (a restarted receiver sent it again).
    Already,
}

/// One node's WAL archive directory.
#[derive(Debug, Clone)]
pub struct WalArchive {
    dir: PathBuf,
}

impl crate::Repository {
    /// The WAL archive of `node` (a name from the config, checked anyway: it becomes a
    /// directory name).
    pub fn wal_archive(&self, node: &str) -> Result<WalArchive, RepoError> {
        crate::untrusted::check_name(node).map_err(|m| RepoError::Io {
            path: self.root().join(WAL_DIR),
            message: format!("node name `{node}`: {m}"),
        })?;
        Ok(WalArchive {
            dir: self.root().join(WAL_DIR).join(node),
        })
    }
}

impl WalArchive {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals the completed segment or history file `src` (its file name is its WAL name)
    /// into the archive. A segment must be exactly `segment_bytes` long: a shorter one is
    /// still being written and is refused.
    pub fn seal(&self, src: &Path, segment_bytes: u64) -> Result<Sealed, RepoError> {
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_segment_name(n) || is_history_name(n))
            .ok_or_else(|| io_err(src, "not a WAL segment or history file name"))?;
        let len = std::fs::metadata(src).map_err(|e| io_err(src, e))?.len();
        if is_segment_name(name) && len != segment_bytes {
            return Err(io_err(
                src,
                format!("{len} bytes, a completed segment has {segment_bytes}"),
            ));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let dest = self.dir.join(name);
        let (sum, _) = sha256_file(src, &mut |_| {}).map_err(|e| io_err(src, e))?;
        if dest.exists() {
            let (theirs, _) = sha256_file(&dest, &mut |_| {}).map_err(|e| io_err(&dest, e))?;
            if theirs != sum {
                return Err(io_err(
                    &dest,
                    format!(
                        "the archive already holds {name} with other content: not replaced \
                         (two servers streaming into one node's archive?)"
                    ),
                ));
            }
            self.write_checksum(name, &sum)?;
            return Ok(Sealed::Already);
        }
        self.copy_in(src, &dest)?;
        self.write_checksum(name, &sum)?;
        Ok(Sealed::New)
    }

    /// Copies `src` to a temporary name next to `dest`, fsyncs it and renames it into
    /// place, never over an existing file.
    fn copy_in(&self, src: &Path, dest: &Path) -> Result<(), RepoError> {
        let mut from = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".wal.tmp-")
            .tempfile_in(&self.dir)
            .map_err(|e| io_err(&self.dir, e))?;
        std::io::copy(&mut from, tmp.as_file_mut()).map_err(|e| io_err(dest, e))?;
        tmp.as_file_mut().flush().map_err(|e| io_err(dest, e))?;
        tmp.as_file().sync_all().map_err(|e| io_err(dest, e))?;
        tmp.persist_noclobber(dest)
            .map_err(|e| io_err(dest, e.error))?;
        sync_dir(&self.dir).map_err(|e| io_err(&self.dir, e))
    }

    fn write_checksum(&self, name: &str, sum: &str) -> Result<(), RepoError> {
        let path = self.dir.join(format!("{name}{CHECKSUM_SUFFIX}"));
        write_atomic(&path, format!("{sum}\n").as_bytes()).map_err(|e| io_err(&path, e))
    }

    /// The segments and history files the archive holds, sorted by name (timeline, then
    /// position); a segment counts only once its checksum file is there. Anything else in
    /// the directory is ignored.
    pub fn list(&self) -> Result<Vec<String>, RepoError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, e)),
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_segment_name(n) || is_history_name(n))
            .filter(|n| self.dir.join(format!("{n}{CHECKSUM_SUFFIX}")).is_file())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Checks `name` against its recorded checksum.
    pub fn verify(&self, name: &str) -> Result<(), RepoError> {
        if !(is_segment_name(name) || is_history_name(name)) {
            return Err(io_err(&self.dir.join(name), "not a WAL file name"));
        }
        let path = self.dir.join(name);
        let sum_path = self.dir.join(format!("{name}{CHECKSUM_SUFFIX}"));
        let recorded = std::fs::read_to_string(&sum_path).map_err(|e| io_err(&sum_path, e))?;
        let (actual, _) = sha256_file(&path, &mut |_| {}).map_err(|e| io_err(&path, e))?;
        if recorded.trim() == actual {
            Ok(())
        } else {
            Err(io_err(
                &path,
                "sha256 mismatch: the segment was changed or damaged",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 1 << 20;

    fn archive() -> (tempfile::TempDir, WalArchive) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = crate::Repository::open(&tmp.path().join("repo")).unwrap();
        let a = repo.wal_archive("validator-1").unwrap();
        (tmp, a)
    }

    #[test]
    fn wal_names_are_postgres_own_and_nothing_else() {
        assert!(is_segment_name("000000010000000000000003"));
        assert!(is_history_name("00000002.history"));
        for bad in [
            "00000001000000000000003",
            "000000010000000000000003.partial",
            "00000001000000000000000g",
            "000000010000000000000003x",
            "../00000001000000000000",
            "0000000a0000000000000003",
            "0000000G.history",
            "2.history",
        ] {
            assert!(!is_segment_name(bad) && !is_history_name(bad), "{bad}");
        }
    }

    /// A completed segment lands in the archive with its checksum; sealing it again (a
    /// restarted receiver) is harmless; other content under the same name is refused and
    /// the archived segment stays as it was.
    #[test]
    fn a_segment_is_sealed_once_and_never_replaced() {
        let (tmp, a) = archive();
        let src = tmp.path().join("000000010000000000000003");
        std::fs::write(&src, vec![7u8; SEG as usize]).unwrap();
        assert_eq!(a.seal(&src, SEG).unwrap(), Sealed::New);
        assert_eq!(a.list().unwrap(), ["000000010000000000000003"]);
        a.verify("000000010000000000000003").unwrap();
        assert_eq!(a.seal(&src, SEG).unwrap(), Sealed::Already);
        std::fs::write(&src, vec![8u8; SEG as usize]).unwrap();
        let e = a.seal(&src, SEG).unwrap_err();
        assert!(e.to_string().contains("other content"), "{e}");
        a.verify("000000010000000000000003").unwrap();
        // Damage is found.
        std::fs::write(a.dir().join("000000010000000000000003"), b"x").unwrap();
        assert!(a.verify("000000010000000000000003").is_err());
        // No temporary file is left behind.
        let stray: Vec<_> = std::fs::read_dir(a.dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    /// A segment still being written (short), a `.partial` and a foreign name are not
    /// sealed; a file without its checksum (a crash between the two renames) is not listed.
    #[test]
    fn only_complete_wal_files_are_sealed_and_listed() {
        let (tmp, a) = archive();
        let short = tmp.path().join("000000010000000000000004");
        std::fs::write(&short, vec![0u8; 100]).unwrap();
        assert!(a.seal(&short, SEG).is_err());
        let partial = tmp.path().join("000000010000000000000004.partial");
        std::fs::write(&partial, vec![0u8; SEG as usize]).unwrap();
        assert!(a.seal(&partial, SEG).is_err());
        let history = tmp.path().join("00000002.history");
        std::fs::write(&history, b"1\t0/3000000\tno recovery target specified\n").unwrap();
        assert_eq!(a.seal(&history, SEG).unwrap(), Sealed::New);
        std::fs::write(a.dir().join("000000010000000000000009"), b"x").unwrap();
        std::fs::write(a.dir().join("notes.txt"), b"x").unwrap();
        assert_eq!(a.list().unwrap(), ["00000002.history"]);
        let repo = crate::Repository::open(&tmp.path().join("repo")).unwrap();
        assert!(repo.wal_archive("../x").is_err());
    }
}
