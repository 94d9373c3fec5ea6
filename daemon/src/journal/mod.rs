//! The durable record of every run: what was asked, each step, and how it ended.
//!
//! One JSON file per run under `<state_dir>/runs/`, rewritten atomically on every state
//! change, so that a crash at any instant leaves a readable record. A run records the
//! process that owns it; a later process that finds a `running` run whose owner is gone
//! marks it `interrupted` (see [`Journal::mark_orphans`]) — a run is never left
//! `running` with no owner.

mod index;
mod owner;
mod record;

pub use index::{Retention, RunSummary};
pub use owner::Owner;
pub use record::{
    Detection, KeptNote, PendingApproval, RunRecord, RunState, StepRecord, StepState,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;

use index::Index;

use crate::util::write_atomic;

/// Errors reading or writing the journal.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A journal file or directory could not be read or written.
    #[error("journal {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A run file is not valid JSON (hand-edited or from an incompatible version).
    #[error("journal {path}: unreadable run record: {message}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// No run has this id.
    #[error("no run `{0}` in the journal (list them with `splice-dr runs`)")]
    NotFound(String),
}

/// Handle to the journal directory. Clones share one in-memory index (see [`RunSummary`]).
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    index: Mutex<Index>,
    /// Run files read so far (`status` shows it: proof that ticks read none).
    file_reads: AtomicU64,
    retention: Mutex<Option<Retention>>,
}

impl Journal {
    /// Opens (creating if needed) the journal under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("runs");
        std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Journal {
            dir,
            shared: Arc::default(),
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.shared.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many run files this journal (all its clones) has read.
    pub fn file_reads(&self) -> u64 {
        self.shared.file_reads.load(Ordering::Relaxed)
    }

    /// Sets the retention [`Journal::prune`] applies (`None`: keep everything).
    pub fn set_retention(&self, policy: Option<Retention>) {
        *self
            .shared
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Directory holding the run files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Path of the file whose existence asks the run's owner to cancel it; works across
    /// processes (a CLI can cancel a run owned by another CLI process).
    pub fn cancel_request_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.cancel"))
    }

    /// Allocates a fresh run id (time-ordered, so `ls` and `runs` sort naturally).
    pub fn new_run_id(&self, flow: &str) -> String {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        loop {
            let id = format!("{stamp}-{flow}-{}", crate::util::short_tag());
            if !self.path_of(&id).exists() {
                return id;
            }
        }
    }

    /// Writes a run record durably.
    pub fn save(&self, run: &RunRecord) -> Result<(), JournalError> {
        let path = self.path_of(&run.id);
        let bytes = serde_json::to_vec_pretty(run).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &bytes).map_err(|source| JournalError::Io { path, source })?;
        if let Some(runs) = self.index().runs.as_mut() {
            runs.insert(run.id.clone(), RunSummary::of(run));
        }
        Ok(())
    }

    /// Reads one run.
    pub fn get(&self, id: &str) -> Result<RunRecord, JournalError> {
        // Never build a path from an unchecked id: `show ../x` is simply not a run.
        if crate::names::check("run", id).is_err() {
            return Err(JournalError::NotFound(id.into()));
        }
        let path = self.path_of(id);
        self.shared.file_reads.fetch_add(1, Ordering::Relaxed);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NotFound(id.into()))
            }
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// The ids of the run files in the directory.
    fn ids_on_disk(&self) -> Result<BTreeSet<String>, JournalError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| JournalError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".json")?;
                (!id.starts_with('.')).then(|| id.to_string())
            })
            .collect())
    }

    /// Every run, newest first, read from the files. Unreadable files are skipped (and
    /// reported by `check`). Lists that need no steps use [`Journal::summaries`].
    pub fn list(&self) -> Result<Vec<RunRecord>, JournalError> {
        let mut runs: Vec<RunRecord> = self
            .ids_on_disk()?
            .iter()
            .filter_map(|id| self.get(id).ok())
            .collect();
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(runs)
    }

    /// Every run's summary, newest first, from the in-memory index: built from the files
    /// on first use, then kept by this process's saves; a sync reads only runs another
    /// process wrote since (see the `index` module).
    pub fn summaries(&self) -> Result<Vec<RunSummary>, JournalError> {
        let mut idx = self.index();
        let mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if idx.runs.is_none() || idx.stale(mtime) {
            let on_disk = self.ids_on_disk()?;
            let read: BTreeMap<String, RunSummary> = idx
                .unread(&on_disk, &Owner::current())
                .iter()
                .filter_map(|id| self.get(id).ok())
                .map(|r| (r.id.clone(), RunSummary::of(&r)))
                .collect();
            idx.runs.get_or_insert_with(BTreeMap::new).extend(read);
            idx.seen_mtime = mtime;
        }
        let mut runs: Vec<RunSummary> = idx
            .runs
            .as_ref()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(runs)
    }

    /// [`Journal::prune`], logged (`when`: "at start-up", "after run X"); retention never
    /// fails a run or the daemon's start.
    pub fn apply_retention(&self, when: &str) {
        match self.prune() {
            Ok(removed) if !removed.is_empty() => tracing::info!(
                "journal retention {when}: removed {} finished run(s)",
                removed.len()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("journal retention {when}: {e}"),
        }
    }

    /// Removes finished runs past the retention set by [`Journal::set_retention`]; never
    /// a running, pending or approval-waiting run. Returns the removed ids.
    pub fn prune(&self) -> Result<Vec<String>, JournalError> {
        let policy = *self
            .shared
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(policy) = policy else {
            return Ok(Vec::new());
        };
        self.summaries()?;
        let mut idx = self.index();
        let expired = idx.expired(policy, chrono::Utc::now());
        let mut removed = Vec::new();
        for id in expired {
            let path = self.path_of(&id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(JournalError::Io { path, source }),
            }
            let _ = std::fs::remove_file(self.cancel_request_path(&id));
            if let Some(runs) = idx.runs.as_mut() {
                runs.remove(&id);
            }
            removed.push(id);
        }
        Ok(removed)
    }

    /// Marks every `running` or `pending` run whose owner process is gone as
    /// `interrupted`, naming the step it died in. Returns the runs it changed.
    pub fn mark_orphans(&self) -> Result<Vec<RunRecord>, JournalError> {
        let mut changed = Vec::new();
        for mut run in self.list()? {
            if !run.state.is_active() || run.owner.is_alive() {
                continue;
            }
            let during = run
                .steps
                .iter()
                .rev()
                .find(|s| s.state == StepState::Running)
                .map(|s| format!(" during step `{}`", s.name))
                .unwrap_or_default();
            let reason = format!(
                "owner process {} ended without finishing the run{during} (killed, crashed or rebooted)",
                run.owner.pid
            );
            run.interrupt(&reason);
            self.save(&run)?;
            changed.push(run);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_run_is_marked_interrupted_with_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut run = RunRecord::new(j.new_run_id("restore"), "restore", Some("n1".into()));
        run.owner = Owner {
            pid: u32::MAX - 1,
            start_ticks: 1,
            ..Owner::current()
        };
        run.state = RunState::Running;
        run.begin_step("swap in restored databases", "d1");
        j.save(&run).unwrap();
        let mut live = RunRecord::new(j.new_run_id("backup"), "backup", None);
        live.state = RunState::Running;
        j.save(&live).unwrap();

        let changed = j.mark_orphans().unwrap();
        assert_eq!(changed.len(), 1);
        let back = j.get(&run.id).unwrap();
        assert_eq!(back.state, RunState::Interrupted);
        assert!(back
            .error
            .as_deref()
            .unwrap()
            .contains("swap in restored databases"));
        assert_eq!(back.steps[0].state, StepState::Interrupted);
        assert_eq!(j.get(&live.id).unwrap().state, RunState::Running);
    }

    #[test]
    fn unknown_and_hostile_ids_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(matches!(j.get("nope"), Err(JournalError::NotFound(_))));
        assert!(matches!(
            j.get("../../etc/passwd"),
            Err(JournalError::NotFound(_))
        ));
    }

    /// `show` sends the journal's record; clients read it as the protocol's `RunDetail`,
    /// which must keep every field as sent (`--json` prints it back).
    #[test]
    fn a_record_reads_as_a_run_detail_losslessly() {
        let mut run = RunRecord::new("r1".into(), "restore", Some("n1".into()));
        run.begin_step("stop", "d1");
        run.stopped_components.push("validator".into());
        run.requests.push("run by uid 0 (pid 1)".into());
        run.detection = Some(Detection {
            event: "health.validator.down".into(),
            at: chrono::Utc::now(),
            rule: "r".into(),
            guards: "held for 3s".into(),
        });
        let sent = serde_json::to_value(&run).unwrap();
        let detail: splice_dr_protocol::RunDetail = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(detail.state, RunState::Pending);
        assert_eq!(detail.steps.len(), 1);
        assert_eq!(serde_json::to_value(&detail).unwrap(), sent);
    }

    /// Records of versions before `detection` existed read as runs without one, and a
    /// run without one is written without the key (older readers see what they knew).
    #[test]
    fn detection_is_optional_both_ways() {
        let run = RunRecord::new("r1".into(), "restore", None);
        let mut old = serde_json::to_value(&run).unwrap();
        assert!(old.get("detection").is_none(), "not written when absent");
        old.as_object_mut().unwrap().remove("detection");
        let back: RunRecord = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(back.detection, None);
        let detail: splice_dr_protocol::RunDetail = serde_json::from_value(old).unwrap();
        assert_eq!(detail.detection, None);
    }
}
