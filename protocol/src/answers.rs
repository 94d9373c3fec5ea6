//! The short answers: `ping`, starting a run, and the acknowledgements of operator
//! commands (`trigger`, `pause`, `resume`, `reset`, `approve`, `cancel`), plus the
//! repository reports of `prune` and `repo-check`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// One plan per repository: `repository`, `policy`, `keep`, `delete`, `errors`.
    pub repositories: Vec<Value>,
}

/// `repo-check`: every repository's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoCheckReport {
    /// Whether every repository passed.
    pub ok: bool,
    /// One report per repository: `repository`, `ok`, `free_bytes`, `backups`...
    pub repositories: Vec<Value>,
}
