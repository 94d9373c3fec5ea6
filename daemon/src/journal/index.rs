//! The journal's in-memory index: one small summary per run (state, flow, node, times),
//! so `status`, `runs` and the autopilot's twice-a-second tick answer from memory instead
//! of re-reading every run file.
//!
//! The index is built from the files once, on first use, and updated by every save and
//! removal of this process. Another process (the CLI in-process while no daemon answered)
//! may also write runs: a sync compares the directory's mtime — every save is a rename
//! into the directory, so it changes — and only when it moved lists the file names,
//! reading just the files it does not know and the active runs other processes own.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::{Owner, PendingApproval, RunRecord, RunState};

/// What lists of runs show about one run, kept in memory for every run in the journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Node the run acts on.
    pub node: Option<String>,
    /// What started it.
    pub trigger: String,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// State.
    pub state: RunState,
    /// Process that executes it.
    #[serde(skip)]
    pub owner: Owner,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it started executing.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The innermost step still running.
    pub current_step: Option<String>,
    /// Why it failed, was cancelled or interrupted.
    pub error: Option<String>,
    /// The approval it waits for (or got).
    pub approval: Option<PendingApproval>,
    /// Whether its record still names components it stopped or storage it copied aside:
    /// the only written trace of that state, so retention keeps it.
    #[serde(skip)]
    pub left_undone: bool,
}

impl RunSummary {
    /// The summary of a full record.
    pub fn of(r: &RunRecord) -> Self {
        RunSummary {
            id: r.id.clone(),
            flow: r.flow.clone(),
            node: r.node.clone(),
            trigger: r.trigger.clone(),
            dry_run: r.dry_run,
            state: r.state,
            owner: r.owner.clone(),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            current_step: r
                .steps
                .iter()
                .rev()
                .find(|s| s.finished_at.is_none())
                .map(|s| s.name.clone()),
            error: r.error.clone(),
            approval: r.approval.clone(),
            left_undone: !r.stopped_components.is_empty() || !r.kept_storage.is_empty(),
        }
    }

    /// Wall-clock time from start to end (or to now while running).
    pub fn duration(&self) -> Option<chrono::Duration> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or_else(Utc::now) - start)
    }

    /// Whether the run waits for `splice-dr approve`.
    pub fn awaits_approval(&self) -> bool {
        self.state == RunState::Pending
            && self
                .approval
                .as_ref()
                .is_some_and(|a| a.approved_by.is_none())
    }
}

/// How many finished runs the journal keeps (`[journal]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest N finished runs are kept.
    pub keep_runs: usize,
    /// Finished runs that ended longer ago than this are removed.
    pub keep_for: Option<Duration>,
}

/// A directory mtime this recent may still change within the same clock tick without
/// looking changed, so it is not trusted yet (the "racy git" rule).
const RACY: Duration = Duration::from_secs(2);

/// The index proper; `runs` is `None` until first use.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) runs: Option<BTreeMap<String, RunSummary>>,
    /// The directory's mtime at the last sync.
    pub(super) seen_mtime: Option<SystemTime>,
}

impl Index {
    /// Whether the directory may hold changes the index does not know.
    pub(super) fn stale(&self, mtime: Option<SystemTime>) -> bool {
        let racy = mtime
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < RACY);
        racy || mtime != self.seen_mtime
    }

    /// Ids whose files must be read to bring the index in line with `on_disk` (the run
    /// ids found in the directory): unknown ones and active runs of other processes.
    /// Entries whose files are gone are dropped.
    pub(super) fn unread(&mut self, on_disk: &BTreeSet<String>, me: &Owner) -> Vec<String> {
        let Some(runs) = self.runs.as_mut() else {
            return on_disk.iter().cloned().collect();
        };
        runs.retain(|id, _| on_disk.contains(id));
        on_disk
            .iter()
            .filter(|id| {
                runs.get(*id)
                    .is_none_or(|s| s.state.is_active() && s.owner != *me)
            })
            .cloned()
            .collect()
    }

    /// The runs retention removes at `now`: finished ones past the newest `keep_runs`
    /// finished ones (by creation), or that ended before `now - keep_for` (a run that
    /// just ended is never one: its observers still read it). Never an unfinished run,
    /// nor one that left components stopped or storage aside.
    pub(super) fn expired(&self, policy: Retention, now: DateTime<Utc>) -> Vec<String> {
        let Some(runs) = &self.runs else {
            return Vec::new();
        };
        let mut finished: Vec<&RunSummary> = runs
            .values()
            .filter(|r| !r.state.is_active() && !r.left_undone)
            .collect();
        finished.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let cutoff = policy
            .keep_for
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now - d);
        finished
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i >= policy.keep_runs
                    || cutoff.is_some_and(|c| r.finished_at.unwrap_or(r.created_at) < c)
            })
            .map(|(_, r)| r.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, state: RunState, age_days: i64) -> RunSummary {
        let mut r = RunRecord::new(id.into(), "backup", None);
        r.state = state;
        r.created_at = Utc::now() - chrono::Duration::days(age_days);
        RunSummary::of(&r)
    }

    fn index(runs: Vec<RunSummary>) -> Index {
        Index {
            runs: Some(runs.into_iter().map(|r| (r.id.clone(), r)).collect()),
            seen_mtime: None,
        }
    }

    #[test]
    fn retention_keeps_the_newest_finished_runs_and_every_unfinished_one() {
        let idx = index(vec![
            run("old-running", RunState::Running, 30),
            run("old-pending", RunState::Pending, 29),
            run("f1", RunState::Succeeded, 5),
            run("f2", RunState::Failed, 4),
            run("f3", RunState::Interrupted, 3),
            run("f4", RunState::Cancelled, 2),
            run("f5", RunState::Succeeded, 1),
            RunSummary {
                left_undone: true,
                ..run("kept-volume", RunState::Interrupted, 40)
            },
        ]);
        let mut gone = idx.expired(
            Retention {
                keep_runs: 2,
                keep_for: None,
            },
            Utc::now(),
        );
        gone.sort();
        assert_eq!(gone, ["f1", "f2", "f3"]);
        let gone = idx.expired(
            Retention {
                keep_runs: 100,
                keep_for: Some(Duration::from_secs(3 * 86_400 + 3600)),
            },
            Utc::now(),
        );
        let mut gone = gone;
        gone.sort();
        assert_eq!(
            gone,
            ["f1", "f2"],
            "age limit; unfinished runs and runs that left work undone stay"
        );
    }

    #[test]
    fn a_sync_reads_only_unknown_files_and_other_processes_active_runs() {
        let me = Owner::current();
        let mut foreign = run("foreign-running", RunState::Running, 0);
        foreign.owner = Owner {
            pid: me.pid + 1,
            ..me.clone()
        };
        let mut mine = run("mine-running", RunState::Running, 0);
        mine.owner = me.clone();
        let mut idx = index(vec![
            foreign,
            mine,
            run("done", RunState::Succeeded, 0),
            run("deleted", RunState::Succeeded, 0),
        ]);
        let on_disk: BTreeSet<String> = ["foreign-running", "mine-running", "done", "new"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(idx.unread(&on_disk, &me), ["foreign-running", "new"]);
        assert!(!idx.runs.as_ref().unwrap().contains_key("deleted"));
    }

    #[test]
    fn a_recent_or_moved_directory_mtime_is_stale_and_an_old_unchanged_one_is_not() {
        let old = SystemTime::now() - Duration::from_secs(60);
        let mut idx = Index::default();
        assert!(idx.stale(Some(old)), "never synced");
        idx.seen_mtime = Some(old);
        assert!(!idx.stale(Some(old)));
        assert!(idx.stale(Some(SystemTime::now())), "racy");
        assert!(idx.stale(None));
    }
}
