//! One destructive flow per node at a time, also across processes.
//!
//! A run takes an exclusive `flock` on `<state_dir>/locks/<node>.lock` for its whole life.
//! The kernel releases it when the process dies, so a killed daemon never leaves a stale
//! lock, and a CLI running a flow in-process contends with the daemon on the same file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a node lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another run holds it.
    #[error("node `{node}` is busy: {holder}. Wait for it, or cancel it with `splice-dr cancel <RUN_ID>`")]
    Busy {
        /// The node.
        node: String,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The node name is not a safe file name (never built into a path).
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// The lock file could not be opened.
    #[error("lock file {path}: {source}")]
    Io {
        /// Lock file path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// A held node lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct NodeLock {
    file: File,
}

impl NodeLock {
    /// Takes the lock for `node` without waiting, recording `holder` (run id and pid).
    pub fn try_acquire(state_dir: &Path, node: &str, holder: &str) -> Result<Self, LockError> {
        crate::names::check("node", node)?;
        let dir = state_dir.join("locks");
        let path = dir.join(format!("{node}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = if text.trim().is_empty() {
                    "held by another process".to_string()
                } else {
                    format!("held by {}", text.trim())
                };
                return Err(LockError::Busy {
                    node: node.into(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{holder} (pid {})", std::process::id()).map_err(io)?;
        Ok(NodeLock { file })
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_holders_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeLock::try_acquire(dir.path(), "n1", "run A").unwrap();
        let err = NodeLock::try_acquire(dir.path(), "n1", "run B").unwrap_err();
        assert!(err.to_string().contains("run A"), "{err}");
        NodeLock::try_acquire(dir.path(), "n2", "run C").unwrap();
        drop(first);
        NodeLock::try_acquire(dir.path(), "n1", "run B").unwrap();
    }

    #[test]
    fn a_hostile_node_name_creates_no_lock_file() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let err = NodeLock::try_acquire(&state, "../../evil", "run A").unwrap_err();
        assert!(matches!(err, LockError::Name(_)), "{err}");
        assert!(!state.exists() && !root.path().join("evil.lock").exists());
    }
}
