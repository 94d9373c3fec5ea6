//! What a backend operation can see of the run that called it.
//!
//! Backends log and report progress through the context rather than through `tracing`:
//! a dynamically loaded plugin has its own copy of tracing's statics, so only a callback
//! into the host reaches the journal and the operator's terminal.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{BackendError, KeptStorage};

/// Something a backend tells the host while an operation runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OpEvent {
    /// A log line.
    Log {
        /// `info`, `warn` or `error`.
        level: String,
        /// The message (never a secret).
        message: String,
    },
    /// Progress of a long step (dump, restore, upload).
    Progress {
        /// What is progressing, e.g. `restore participant-0`.
        what: String,
        /// Units done so far.
        done: u64,
        /// Total units when known.
        total: Option<u64>,
        /// `bytes`, `tables`, `rows`...
        unit: String,
    },
    /// The backend moved live storage aside and is replacing it within this one call (a
    /// physical restore renames the data directory, then lays the copy down): the host
    /// journals it at once, so a daemon killed before the call returns puts it back at
    /// start-up instead of leaving a half-laid copy in service.
    KeptAside {
        /// The storage moved aside.
        kept: KeptStorage,
    },
    /// The backend put storage it had announced with [`OpEvent::KeptAside`] back in place
    /// (its call failed and undid itself): nothing is left to put back.
    PutBack {
        /// The storage put back.
        kept: KeptStorage,
    },
}

type CancelFn = dyn Fn() -> bool + Send + Sync;
type EventFn = dyn Fn(OpEvent) + Send + Sync;

/// Cancellation and reporting handles passed to every backend call.
#[derive(Clone)]
pub struct OpContext {
    cancel: Arc<CancelFn>,
    events: Arc<EventFn>,
}

impl std::fmt::Debug for OpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpContext")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl OpContext {
    /// Builds a context from a cancellation probe and an event sink.
    pub fn new(
        cancel: impl Fn() -> bool + Send + Sync + 'static,
        events: impl Fn(OpEvent) + Send + Sync + 'static,
    ) -> Self {
        OpContext {
            cancel: Arc::new(cancel),
            events: Arc::new(events),
        }
    }

    /// A context that is cancelled when `flag` is set and drops every event; for tests
    /// and one-off calls outside a run.
    pub fn detached(flag: Arc<AtomicBool>) -> Self {
        OpContext::new(move || flag.load(Ordering::Relaxed), |_| {})
    }

    /// A context that cancels itself once `limit` has passed, dropping every event: for
    /// calls that must answer in bounded time whatever the backend does (`status`, health
    /// probes, start-up recovery). A backend stuck on a hung engine or API server then
    /// gives up at its next cancellation check instead of holding a thread for ever.
    pub fn with_deadline(limit: std::time::Duration) -> Self {
        let deadline = std::time::Instant::now() + limit;
        OpContext::new(move || std::time::Instant::now() >= deadline, |_| {})
    }

    /// Whether the run has been cancelled; long operations poll this.
    pub fn is_cancelled(&self) -> bool {
        (self.cancel)()
    }

    /// Returns `Err(Cancelled)` when the run was cancelled, so loops can `?` it.
    pub fn check_cancelled(&self, what: &str) -> Result<(), BackendError> {
        if self.is_cancelled() {
            Err(BackendError::Cancelled { what: what.into() })
        } else {
            Ok(())
        }
    }

    /// Sends an event to the host.
    pub fn emit(&self, event: OpEvent) {
        (self.events)(event)
    }

    /// Logs an informational line into the run's journal.
    pub fn info(&self, message: impl Into<String>) {
        self.log("info", message)
    }

    /// Logs a warning into the run's journal.
    pub fn warn(&self, message: impl Into<String>) {
        self.log("warn", message)
    }

    fn log(&self, level: &str, message: impl Into<String>) {
        self.emit(OpEvent::Log {
            level: level.into(),
            message: message.into(),
        })
    }

    /// Announces live storage moved aside within this call (see [`OpEvent::KeptAside`]).
    pub fn kept_aside(&self, kept: &KeptStorage) {
        self.emit(OpEvent::KeptAside { kept: kept.clone() })
    }

    /// Announces storage put back within this call (see [`OpEvent::PutBack`]).
    pub fn put_back(&self, kept: &KeptStorage) {
        self.emit(OpEvent::PutBack { kept: kept.clone() })
    }

    /// Reports progress of a long operation.
    pub fn progress(&self, what: &str, done: u64, total: Option<u64>, unit: &str) {
        self.emit(OpEvent::Progress {
            what: what.into(),
            done,
            total,
            unit: unit.into(),
        })
    }
}
