//! What a run tells its watchers while it executes (CLI progress, `runs --follow`).

use serde::{Deserialize, Serialize};

use crate::run::RunState;

/// One live update about a run. Sent on the daemon's broadcast bus and streamed over the
/// socket as JSON lines; the journal keeps the durable version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run took its lock and started executing.
    Started {
        /// Run id.
        run: String,
        /// Flow name.
        flow: String,
        /// Node.
        node: Option<String>,
    },
    /// A step began.
    StepStarted {
        /// Run id.
        run: String,
        /// Step index in the journal.
        index: usize,
        /// Step name.
        name: String,
        /// Nesting depth.
        depth: u32,
    },
    /// A step ended.
    StepFinished {
        /// Run id.
        run: String,
        /// Step index.
        index: usize,
        /// Step name.
        name: String,
        /// Error text when it failed.
        error: Option<String>,
        /// How long it took.
        millis: u64,
    },
    /// A log line from the flow or the backend.
    Log {
        /// Run id.
        run: String,
        /// `info`, `warn`, `error`.
        level: String,
        /// Text.
        message: String,
    },
    /// Progress of a long operation.
    Progress {
        /// Run id.
        run: String,
        /// What is progressing.
        what: String,
        /// Units done.
        done: u64,
        /// Total when known.
        total: Option<u64>,
        /// Unit name.
        unit: String,
    },
    /// The run ended.
    Finished {
        /// Run id.
        run: String,
        /// Final state.
        state: RunState,
        /// Error text.
        error: Option<String>,
    },
}

impl RunEvent {
    /// The run the event belongs to.
    pub fn run_id(&self) -> &str {
        match self {
            RunEvent::Started { run, .. }
            | RunEvent::StepStarted { run, .. }
            | RunEvent::StepFinished { run, .. }
            | RunEvent::Log { run, .. }
            | RunEvent::Progress { run, .. }
            | RunEvent::Finished { run, .. } => run,
        }
    }
}
