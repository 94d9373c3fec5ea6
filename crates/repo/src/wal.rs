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

    /// The paths of the sealed WAL file `name` and of its checksum file, when both are
    /// there (a name of Postgres' form only).
    pub fn sealed_files(&self, name: &str) -> Result<(PathBuf, PathBuf), RepoError> {
        if !(is_segment_name(name) || is_history_name(name)) {
            return Err(io_err(&self.dir.join(name), "not a WAL file name"));
        }
        let (data, sum) = (
            self.dir.join(name),
            self.dir.join(format!("{name}{CHECKSUM_SUFFIX}")),
        );
        if !(data.is_file() && sum.is_file()) {
            return Err(io_err(&data, "not sealed in the archive"));
        }
        Ok((data, sum))
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

/// The directory the daemon's WAL receiver of `node` writes into, under the daemon's state
/// directory: completed segments wait there until sealed, and the open one
/// (`<segment>.partial`) stays there, the newest WAL a restore to `latest` replays.
pub fn staging_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("wal").join(node)
}

/// A WAL position (`X/Y`, as Postgres prints it) as a byte offset; `None` when malformed.
pub fn parse_lsn(lsn: &str) -> Option<u64> {
    let (hi, lo) = lsn.split_once('/')?;
    let hex = |s: &str| (!s.is_empty() && s.len() <= 8).then(|| u64::from_str_radix(s, 16).ok())?;
    Some((hex(hi)? << 32) | hex(lo)?)
}

/// The name of the segment of timeline `timeline` holding position `lsn`, with segments of
/// `segment_bytes` (a power of two between 1 MB and 1 GB): Postgres' own naming.
pub fn segment_name(timeline: u32, lsn: u64, segment_bytes: u64) -> String {
    let per_log = (1u64 << 32) / segment_bytes.max(1);
    let segno = lsn / segment_bytes.max(1);
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log.max(1),
        segno % per_log.max(1)
    )
}

/// A segment name's timeline and segment number, with segments of `segment_bytes`.
fn segment_parts(name: &str, segment_bytes: u64) -> Option<(u32, u64)> {
    if !is_segment_name(name) {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&name[r], 16).ok();
    let per_log = (1u64 << 32) / segment_bytes.max(1);
    let timeline = u32::try_from(hex(0..8)?).ok()?;
    Some((timeline, hex(8..16)? * per_log + hex(16..24)?))
}

/// The segment after `name` on its timeline.
pub fn next_segment(name: &str, segment_bytes: u64) -> Option<String> {
    let (timeline, segno) = segment_parts(name, segment_bytes)?;
    Some(segment_name(
        timeline,
        (segno + 1).checked_mul(segment_bytes)?,
        segment_bytes,
    ))
}

/// The WAL a restore replays after a base backup, as the archive and the receiver's
/// staging directory hold it: contiguous segments from the one holding the backup's end,
/// each checked against its recorded checksum, then the open segment when it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayChain {
    /// The files in replay order; the last may be the open `<segment>.partial`.
    pub files: Vec<PathBuf>,
    /// Every timeline history file the archive holds (a promoted server must pick a
    /// timeline none of them names).
    pub histories: Vec<PathBuf>,
    /// The first segment missing while later ones of the timeline are stored: WAL past it
    /// cannot be reached.
    pub gap_at: Option<String>,
}

impl WalArchive {
    /// The segment size of the archive's completed segments (all alike), if it holds one.
    fn segment_bytes(&self, names: &[String]) -> Result<Option<u64>, RepoError> {
        let mut size = None;
        for n in names.iter().filter(|n| is_segment_name(n)) {
            let p = self.dir.join(n);
            let len = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?.len();
            match size {
                None => size = Some(len),
                Some(s) if s != len => {
                    return Err(io_err(
                        &p,
                        format!("{len} bytes where the archive's other segments have {s}"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(size)
    }

    /// The WAL to replay after a base backup of timeline `timeline` ending at `end_lsn`,
    /// with the open segment from `staging` when it continues the archive. Every archived
    /// segment of the chain is checked against its checksum first. Errors when the stored
    /// WAL does not reach back to the backup's end (streaming started after it).
    pub fn replay_chain(
        &self,
        timeline: u32,
        end_lsn: &str,
        staging: &Path,
    ) -> Result<ReplayChain, RepoError> {
        let names = self.list()?;
        let partial = open_segment(staging)?;
        let segment_bytes = match (self.segment_bytes(&names)?, &partial) {
            (Some(b), _) => b,
            (None, Some(p)) => std::fs::metadata(p).map_err(|e| io_err(p, e))?.len(),
            (None, None) => {
                return Err(io_err(&self.dir, "restoring past a backup's end needs continuous WAL, and none is stored for this node \
                     (wal_streaming was never on, or has sealed nothing yet): restore to \
                     backup-end"))
            }
        };
        if !segment_bytes.is_power_of_two() || segment_bytes < 1 << 20 {
            return Err(io_err(
                &self.dir,
                format!("segments of {segment_bytes} bytes are not Postgres WAL segments"),
            ));
        }
        let end = parse_lsn(end_lsn).ok_or_else(|| {
            io_err(
                &self.dir,
                format!("the backup's end `{end_lsn}` is not a WAL position"),
            )
        })?;
        let mut want = segment_name(timeline, end, segment_bytes);
        let first = want.clone();
        let stored: std::collections::BTreeSet<&String> = names.iter().collect();
        let mut files = Vec::new();
        while stored.contains(&want) {
            self.verify(&want)?;
            files.push(self.dir.join(&want));
            want = next_segment(&want, segment_bytes)
                .ok_or_else(|| io_err(&self.dir, "WAL position overflow"))?;
        }
        let open_follows = partial.as_ref().is_some_and(|p| {
            p.file_name().and_then(|n| n.to_str()) == Some(&format!("{want}.partial"))
        });
        if open_follows {
            files.extend(partial.clone());
        }
        if files.is_empty() {
            return Err(io_err(&self.dir, format!("the stored WAL does not reach back to the backup's end (segment {first}): streaming started after this backup was taken; restore it to backup-end, or a newer backup")));
        }
        let prefix = format!("{timeline:08X}");
        let later_partial = partial.as_ref().and_then(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".partial")
                .map(str::to_string)
        });
        let gap_at = (!open_follows
            && names
                .iter()
                .chain(later_partial.as_ref())
                .any(|n| is_segment_name(n) && n.starts_with(&prefix) && *n > want))
        .then_some(want);
        let histories = names
            .iter()
            .filter(|n| is_history_name(n))
            .map(|n| self.dir.join(n))
            .collect();
        Ok(ReplayChain {
            files,
            histories,
            gap_at,
        })
    }
}

/// The receiver's open segment in `staging` (`<segment>.partial`), the newest if several.
fn open_segment(staging: &Path) -> Result<Option<PathBuf>, RepoError> {
    let entries = match std::fs::read_dir(staging) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(staging, e)),
    };
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.strip_suffix(".partial").is_some_and(is_segment_name))
        .max()
        .map(|n| staging.join(n)))
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

    #[test]
    fn positions_map_to_postgres_segment_names() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x3000060));
        assert_eq!(parse_lsn("1A/FF"), Some((0x1A << 32) | 0xFF));
        for bad in ["", "0/", "/1", "x/1", "0/123456789", "0-1"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
        assert_eq!(
            segment_name(1, 0x3000060, 16 << 20),
            "000000010000000000000003"
        );
        assert_eq!(
            segment_name(2, (1 << 32) + (5 << 20), 1 << 20),
            "000000020000000100000005"
        );
        assert_eq!(
            next_segment("0000000100000000000000FF", 16 << 20).as_deref(),
            Some("000000010000000100000000")
        );
        assert_eq!(
            next_segment("000000010000000000000003", 1 << 20).as_deref(),
            Some("000000010000000000000004")
        );
    }

    /// The chain runs from the backup's end segment through contiguous sealed segments to
    /// the open one; a hole stops it and is reported; a damaged segment is refused; WAL
    /// that starts after the backup is refused.
    #[test]
    fn the_replay_chain_is_contiguous_checked_and_ends_at_the_open_segment() {
        let (tmp, a) = archive();
        let staging = tmp.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let seal = |name: &str| {
            let src = tmp.path().join(name);
            std::fs::write(&src, vec![1u8; SEG as usize]).unwrap();
            a.seal(&src, SEG).unwrap();
        };
        for n in [
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
        ] {
            seal(n);
        }
        std::fs::write(
            staging.join("000000010000000000000005.partial"),
            vec![0u8; SEG as usize],
        )
        .unwrap();
        let c = a.replay_chain(1, "0/300060", &staging).unwrap();
        let names: Vec<_> = c
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000003",
                "000000010000000000000004",
                "000000010000000000000005.partial"
            ]
        );
        assert_eq!(c.gap_at, None);
        // A hole: 4 is gone, so 5 cannot be reached.
        std::fs::remove_file(a.dir().join("000000010000000000000004")).unwrap();
        let c = a.replay_chain(1, "0/300060", &staging).unwrap();
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.gap_at.as_deref(), Some("000000010000000000000004"));
        // Damage is refused.
        std::fs::write(
            a.dir().join("000000010000000000000003"),
            vec![9u8; SEG as usize],
        )
        .unwrap();
        assert!(a.replay_chain(1, "0/300060", &staging).is_err());
        // WAL that starts after the backup's end.
        let e = a.replay_chain(1, "0/100060", &staging).unwrap_err();
        assert!(e.to_string().contains("does not reach back"), "{e}");
        assert!(a.replay_chain(1, "garbage", &staging).is_err());
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
