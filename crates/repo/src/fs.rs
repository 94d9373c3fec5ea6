//! File-system helpers the repository writes with, shared by the daemon's journal and
//! state files: one atomic write, one directory fsync, one free-space probe, one short
//! random tag, so every file the project writes survives a crash the same way.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old or the new content, never
/// a torn file: write a sibling temp file, fsync it, rename over, fsync the directory.
///
/// The temp file is created with `O_EXCL` under a random name (mode 0600), so a symlink
/// or file planted at a guessable name cannot redirect the write; it is removed on any
/// error, so a failed write leaves no partial copy of possibly secret bytes behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .rand_bytes(12)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Fsyncs a directory so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Bytes available to an unprivileged writer on the file system holding `path` (or its
/// nearest existing ancestor); `None` when it cannot be read.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut probe = path;
    while !probe.exists() {
        probe = probe.parent()?;
    }
    let s = rustix::fs::statvfs(probe).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// A short pseudo-random hex tag for ids; unique enough within one second on one host.
pub fn short_tag() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = nanos ^ (std::process::id().rotate_left(16)) ^ (nanos >> 7);
    format!("{:04x}", mixed & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink planted at the old predictable temp name must not be followed.
    #[test]
    fn write_atomic_ignores_symlink_at_old_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("state.json");
        let old_tmp = dir
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&old_tmp)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// When the final rename fails, the temp file is gone and nothing else is left.
    #[test]
    fn write_atomic_removes_temp_on_error() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("occupied");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inner"), b"x").unwrap();
        assert!(write_atomic(&target, b"secret").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("occupied")]);
    }

    /// The temp (and so the final) file is 0600: secrets never sit world-readable.
    #[test]
    fn write_atomic_creates_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, b"x").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
