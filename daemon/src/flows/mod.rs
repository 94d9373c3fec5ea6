//! Runs of flows: their live context, events, dry-run backend and the runner.

mod context;
mod event;
pub mod progress;
mod recording;
pub mod runner;
#[cfg(debug_assertions)]
mod test_pause;

pub use context::{digest, RunContext};
pub use event::RunEvent;
pub use recording::recording_backend;
pub use runner::{RunError, RunRequest, Runner};
