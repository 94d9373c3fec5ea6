//! Runs of flows: the runner and the dry-run backend. A run's live
//! context is [`crate::run_context`], below the script layer it is handed to.

mod recording;
pub mod runner;

pub use recording::recording_backend;
pub use runner::{RunError, RunRequest, Runner};
