//! The flow engine: the automation crate's hardened Rhai engine plus the run's guard.
//!
//! Every engine splice-dr creates — to compile flows for `check`, or to run one — comes
//! from [`hardened_engine`], so a limit cannot be forgotten on one path. The limits and
//! the hardening itself are defined once, in `splice_dr_automation::hardening` (site rules
//! use the same engine); this file adds what only a flow run has: cancellation and a
//! wall-clock limit.

use crate::run_context::Guard;
use rhai::Engine;

pub use splice_dr_automation::hardening::Limits;

/// Builds an engine with every limit set, `eval` disabled, no module or file access,
/// and (when `guard` is given) cancellation and a wall-clock limit checked between
/// operations.
pub fn hardened_engine(limits: &Limits, guard: Option<Guard>) -> Engine {
    let mut engine = splice_dr_automation::hardening::hardened_engine(limits);
    if let Some(guard) = guard {
        engine.on_progress(move |_ops| guard.hard_stop().map(|r| r.into()));
    }
    engine
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn deadline_stops_a_running_script() {
        let guard = Guard::new(Instant::now() + Duration::from_millis(50))
            .with_undo_budget(Duration::from_millis(50), Duration::from_secs(1));
        let limits = Limits {
            max_operations: 0,
            ..Limits::default()
        };
        let engine = hardened_engine(&limits, Some(guard.clone()));
        let err = engine.run("loop { }").unwrap_err();
        match *err {
            rhai::EvalAltResult::ErrorTerminated(reason, _) => {
                assert!(reason.to_string().contains("wall-clock limit"), "{reason}")
            }
            other => panic!("expected termination, got {other}"),
        }
        assert!(guard.soft_stop().is_some());
    }
}
