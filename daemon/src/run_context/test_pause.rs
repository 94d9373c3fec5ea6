//! TEST HOOK, compiled only into debug builds (`cfg(debug_assertions)`): lets the
//! kill-at-every-step harness (tests/kill_e2e.rs) freeze a run at an exact point so it can
//! SIGKILL the daemon there. A release build has neither this module nor its calls.
//!
//! - `SPLICE_DR_TEST_PAUSE_AT_STEP=N`: block once the N-th journaled step of a run (counted
//!   from 1 in journal order, nested steps included) is on disk and before it does anything.
//! - `SPLICE_DR_TEST_PAUSE_AT_STEP_NAMED=PREFIX`: the same at the first step whose name
//!   starts with PREFIX (for flows whose step count depends on the node).
//! - `SPLICE_DR_TEST_PAUSE_IN_STEP=N`: block inside the N-th step, at its first progress
//!   report with work done (`done > 0`): mid-way through a dump or a restore.
//! - `SPLICE_DR_TEST_PAUSE_MARKER=PATH`: written (atomically, `STEP NAME`) once blocked, so
//!   the test knows the daemon is frozen where it asked.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A process pauses at most once: whatever else runs after is not frozen.
static PAUSED: AtomicBool = AtomicBool::new(false);

fn wanted(var: &str) -> Option<usize> {
    std::env::var(var).ok()?.trim().parse().ok()
}

/// Called when step `number` (1-based) has been journaled as started.
pub fn at_step_start(number: usize, name: &str) {
    let by_name = std::env::var("SPLICE_DR_TEST_PAUSE_AT_STEP_NAMED")
        .is_ok_and(|prefix| !prefix.is_empty() && name.starts_with(&prefix));
    if by_name || wanted("SPLICE_DR_TEST_PAUSE_AT_STEP") == Some(number) {
        pause(number, name);
    }
}

/// Called at every progress report of step `number` (1-based).
pub fn in_step(number: usize, name: &str, done: u64) {
    if done > 0 && wanted("SPLICE_DR_TEST_PAUSE_IN_STEP") == Some(number) {
        pause(number, name);
    }
}

/// Writes the marker and blocks this thread for good (the test kills the process).
fn pause(number: usize, name: &str) {
    if PAUSED.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::warn!("TEST HOOK: pausing at step {number} ({name}) until killed");
    if let Some(marker) = std::env::var_os("SPLICE_DR_TEST_PAUSE_MARKER").map(PathBuf::from) {
        let tmp = marker.with_extension("tmp");
        if std::fs::write(&tmp, format!("{number} {name}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &marker);
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
