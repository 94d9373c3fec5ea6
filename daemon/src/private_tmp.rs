//! Directories that hold secrets in the clear. `state_dir/tmp`, where decrypted identities
//! wait for a re-onboard, is a 0700 directory (never a symlink), and whatever a crashed run
//! left there is removed when the daemon starts; the kept DR data snapshots live in 0700
//! directories too.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of the decrypted identities files (the only files the daemon puts there).
pub const IDENTITIES_PREFIX: &str = "identities-";

/// Prefix of the DR data snapshots in the clear, waiting to start a migrating node.
pub const SNAPSHOT_PREFIX: &str = "snapshot-";

/// Prefixes of the plaintext files start-up removes (and the only ones a flow may remove).
pub const PLAINTEXT_PREFIXES: &[&str] = &[IDENTITIES_PREFIX, SNAPSHOT_PREFIX];

/// Path of `state_dir/tmp`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("tmp")
}

/// Creates `state_dir/tmp` mode 0700 (tightening an existing one); refuses a symlink,
/// which could point the plaintext somewhere world-readable.
pub fn ensure(state_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = path(state_dir);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory (a symlink?): remove it so splice-dr can create a private one",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Creates `base/name` with both levels mode 0700 (tightening existing ones): the DR data
/// snapshot kept there is the node's whole ledger state in the clear. Files in it are
/// written 0600 by [`crate::util::write_atomic`].
pub fn private_dirs(base: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = base.join(name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    for d in [base, dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", d.display())))?;
    }
    Ok(dir)
}

/// Removes one plaintext file a flow placed in `state_dir/tmp` under `prefix`; refuses
/// any other path (a script bug, or a parameter naming some other file, must not delete
/// it). A file already gone is fine.
pub fn remove_plaintext(state_dir: &Path, file: &Path, prefix: &str) -> Result<(), String> {
    let ours = file.parent() == Some(path(state_dir).as_path())
        && file
            .file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(prefix) && !f.contains('/'));
    if !ours {
        return Err(format!(
            "refusing to delete {}: not a file this flow placed in {}",
            file.display(),
            path(state_dir).display()
        ));
    }
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", file.display())),
    }
}

/// Removes the decrypted files a previous run left in `state_dir/tmp` and returns them
/// (for the log). A missing directory is nothing to clean.
pub fn remove_leftovers(state_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(path(state_dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if PLAINTEXT_PREFIXES.iter().any(|p| name.starts_with(p)) {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Start-up: makes the directory private and removes leftovers, logging each one.
pub fn recover(state_dir: &Path) {
    if let Err(e) = ensure(state_dir) {
        tracing::error!("cannot make {} private: {e}", path(state_dir).display());
    }
    match remove_leftovers(state_dir) {
        Ok(removed) => {
            for p in removed {
                tracing::warn!(
                    "removed {} (decrypted secrets left by an interrupted run)",
                    p.display()
                );
            }
        }
        Err(e) => tracing::error!(
            "cannot clean {}: {e}; remove decrypted files there by hand",
            path(state_dir).display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_open_tmp_dir_is_made_0700() {
        let state = tempfile::tempdir().unwrap();
        let dir = path(state.path());
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure(state.path()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_symlinked_tmp_dir_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), path(state.path())).unwrap();
        let e = ensure(state.path()).expect_err("symlink");
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn a_flow_removes_only_its_own_plaintext() {
        let state = tempfile::tempdir().unwrap();
        let tmp = ensure(state.path()).unwrap();
        let snap = tmp.join("snapshot-n1-dump.json");
        std::fs::write(&snap, b"{}").unwrap();
        let other = state.path().join("snapshot-elsewhere.json");
        std::fs::write(&other, b"{}").unwrap();
        let err = remove_plaintext(state.path(), &other, SNAPSHOT_PREFIX).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
        let ids = tmp.join("identities-n1.json");
        std::fs::write(&ids, b"{}").unwrap();
        assert!(remove_plaintext(state.path(), &ids, SNAPSHOT_PREFIX).is_err());
        let dotted = tmp.join("snapshot-x/../../escape.json");
        assert!(remove_plaintext(state.path(), &dotted, SNAPSHOT_PREFIX).is_err());
        remove_plaintext(state.path(), &snap, SNAPSHOT_PREFIX).unwrap();
        assert!(!snap.exists() && other.exists() && ids.exists());
        remove_plaintext(state.path(), &snap, SNAPSHOT_PREFIX).unwrap();
    }

    #[test]
    fn leftover_plaintext_is_removed_and_reported() {
        let state = tempfile::tempdir().unwrap();
        let dir = ensure(state.path()).unwrap();
        std::fs::write(dir.join("identities-b1-42.json"), b"secret").unwrap();
        std::fs::write(dir.join("snapshot-m3.json"), b"secret").unwrap();
        std::fs::write(dir.join("operator-note.txt"), b"keep").unwrap();
        let mut removed = remove_leftovers(state.path()).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                dir.join("identities-b1-42.json"),
                dir.join("snapshot-m3.json")
            ]
        );
        assert!(dir.join("operator-note.txt").exists());
    }

    #[test]
    fn snapshot_dirs_are_0700_even_when_they_existed_open() {
        let repo = tempfile::tempdir().unwrap();
        let base = repo.path().join("snapshots");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = private_dirs(&base, "validator-1").unwrap();
        for d in [&base, &dir] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
    }
}
