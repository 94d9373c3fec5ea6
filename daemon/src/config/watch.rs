//! Hot reload: notice when the config file changes, re-load it, and hand the result to the
//! daemon, which decides what to apply (a bad edit must never take the daemon down, so errors
//! are sent, not raised).
//!
//! The file's *directory* is watched, not the file: editors save by writing a temporary file
//! and renaming it over the original, which replaces the inode a file watch would be holding.
//! Kubernetes ConfigMap volumes swap a `..data` symlink instead, so events on that name count
//! too. Events are debounced (~300 ms) so one save yields one reload.

use super::load::{load, ConfigError};
use super::schema::Config;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// How long the file must stay quiet before it is re-read.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Name of the symlink Kubernetes swaps atomically when a mounted ConfigMap changes.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Keeps the watch alive; dropping it stops watching (the debouncer thread ends within one
/// tick and no further message is sent).
pub struct ConfigWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    path: PathBuf,
}

impl ConfigWatcher {
    /// The config file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .finish()
    }
}

/// Watches the config file at `path` and sends the result of every re-load to `tx`: `Ok` with
/// the new config, or `Err` saying where the edit went wrong.
///
/// A reload is sent only when the file's bytes differ from the last ones seen (starting from
/// the file as it is when the watch begins), so `touch` or a save without changes is quiet.
/// Fails if the file's directory cannot be watched.
pub fn watch(
    path: &Path,
    tx: Sender<Result<Config, ConfigError>>,
) -> Result<ConfigWatcher, ConfigError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| ConfigError::new(path, format!("cannot watch: {e}")))?;
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| ConfigError::new(path, "cannot watch: the path has no directory"))?;
    let name: OsString = absolute
        .file_name()
        .map(|n| n.to_os_string())
        .ok_or_else(|| ConfigError::new(path, "cannot watch: the path names no file"))?;

    let origin = path.to_path_buf();
    let mut last_seen: Option<Vec<u8>> = std::fs::read(path).ok();
    let handler = move |result: DebounceEventResult| {
        let relevant = match &result {
            Ok(events) => events.iter().any(|event| {
                is_content_change(&event.kind)
                    && event.paths.iter().any(|p| {
                        p.file_name()
                            .is_some_and(|n| n == name.as_os_str() || n == KUBERNETES_DATA_LINK)
                    })
            }),
            // The watcher itself failed (e.g. inotify queue overflow): re-read to be safe.
            Err(_) => true,
        };
        if !relevant {
            return;
        }
        let bytes = std::fs::read(&origin).ok();
        if bytes.is_some() && bytes == last_seen {
            return;
        }
        last_seen = bytes;
        // Sent from the debouncer's own thread, never from a runtime worker, so blocking is
        // fine. A closed channel means the daemon is shutting down: nothing to do.
        let _ = tx.blocking_send(load(&origin));
    };

    let mut debouncer = new_debouncer(DEBOUNCE, None, handler)
        .map_err(|e| ConfigError::new(path, format!("cannot watch: {e}")))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| {
            ConfigError::new(
                path,
                format!("cannot watch directory {}: {e}", dir.display()),
            )
        })?;
    Ok(ConfigWatcher {
        _debouncer: debouncer,
        path: path.to_path_buf(),
    })
}

/// Whether an event can mean new content. Opening or reading the file (which the reload
/// itself does) must not trigger another reload.
fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}
