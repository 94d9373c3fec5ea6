//! The short answers: `ping`, starting a run, and the acknowledgements of operator
//! commands (`trigger`, `pause`, `resume`, `reset`, `approve`, `cancel`), plus the
//! repository reports of `prune` and `repo-check`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The answer to `ping`: which daemon answers, and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// Always true.
    pub pong: bool,
    /// `daemon`, or `in-process`.
    pub mode: String,
    /// The answering build's version.
    pub daemon_version: String,
    /// The protocol it speaks.
    pub protocol: u64,
}

/// `run` without `follow`: the run was accepted under this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStarted {
    /// Run id.
    pub run: String,
}

/// `trigger`: the event published for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Event name.
    pub published: String,
}

/// `pause` / `resume`: whether automatic triggers are now paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// True after `pause`, false after `resume`.
    pub paused: bool,
}

/// `reset`: the rule whose circuit breaker was cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReset {
    /// Rule name.
    pub reset: String,
}

/// `approve`: the run that now starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approved {
    /// Run id.
    pub started: String,
}

/// `cancel`: the run asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequested {
    /// Run id.
    pub cancel_requested: String,
}

/// `prune`: what retention deletes (or deleted) in every repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Whether every repository was pruned without error.
    pub ok: bool,
    /// One plan per repository.
    pub repositories: Vec<RepoPlan>,
}

/// `repo-check`: every repository's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoCheckReport {
    /// Whether every repository passed.
    pub ok: bool,
    /// One report per repository.
    pub repositories: Vec<CheckReport>,
}

/// What retention does in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoPlan {
    /// `local` or the off-site repository's name.
    pub repository: String,
    /// The policy in force (`None`: this repository keeps everything).
    pub policy: Option<RetentionPolicyView>,
    /// Backups to delete, oldest first.
    pub delete: Vec<Candidate>,
    /// How many backups it keeps.
    pub keep: usize,
    /// Why the repository could not be planned or a deletion failed.
    pub errors: Vec<String>,
    /// Backups actually deleted (empty for a dry run).
    pub deleted: Vec<String>,
}

/// A retention policy as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicyView {
    /// `keep_last`.
    pub keep_last: Option<u32>,
    /// `keep_days`.
    pub keep_days: Option<u32>,
    /// `keep_daily`.
    pub keep_daily: Option<u32>,
    /// `keep_weekly`.
    pub keep_weekly: Option<u32>,
}

impl RetentionPolicyView {
    /// The policy's settings as `keep_last=7 keep_days=30`, unset ones left out.
    pub fn describe(&self) -> String {
        [
            ("keep_last", self.keep_last),
            ("keep_days", self.keep_days),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// One backup retention lets go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Backup id.
    pub id: String,
    /// Its node.
    pub node: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

/// What `repo check` found about one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Repository name (`local` for the `[repository] path`).
    pub repository: String,
    /// Where it is.
    pub location: String,
    /// True when it could be listed, written, read back and cleaned.
    pub ok: bool,
    /// Sealed backups listed.
    pub backups: usize,
    /// Backup directories without a manifest (interrupted uploads).
    pub incomplete: Vec<String>,
    /// Free bytes, where the storage reports them.
    pub free_bytes: Option<u64>,
    /// Each check and its outcome, e.g. `writable: ok`.
    pub checks: Vec<String>,
}
