//! The one place the Rhai engine is hardened.
//!
//! Every engine splice-dr creates — to compile flows for `check`, or to run one — comes
//! from [`hardened_engine`], so a limit cannot be forgotten on one path. Limits are set
//! explicitly (Rhai's defaults are unlimited, and differ between debug and release).

use rhai::Engine;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resource limits for flow scripts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum Rhai operations per run (an endless loop hits this quickly; host calls
    /// such as a long restore count as one operation).
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting at global level and inside functions.
    pub max_expr_depth: (usize, usize),
    /// Maximum string length in bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum map size.
    pub max_map_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_levels: 32,
            max_expr_depth: (64, 32),
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
        }
    }
}

/// What stops a running flow: an operator's cancel or the wall-clock limit.
///
/// Cancellation is two-stage. A cancel request makes every *forward* host call (dump,
/// restore, swap, scale down) fail at once with a catchable error, so the flow's `catch`
/// blocks can still run their undo calls (rollback, drop staged data, scale up), which
/// are never refused. Only if the script is still running [`CANCEL_GRACE`] later, or the
/// wall-clock limit passes, is it terminated between operations.
#[derive(Debug, Clone)]
pub struct Guard {
    cancel_requested: Arc<Mutex<Option<Instant>>>,
    /// Leader election: a replica that lost the lease starts no further forward step.
    leadership: Option<crate::leader::Leadership>,
    /// When the run's wall-clock limit expires.
    pub deadline: Instant,
}

/// How long undo work may run after a cancel before the script is terminated.
pub const CANCEL_GRACE: Duration = Duration::from_secs(120);

impl Guard {
    /// A guard with no cancel requested and the given deadline.
    pub fn new(deadline: Instant) -> Self {
        Guard {
            cancel_requested: Arc::new(Mutex::new(None)),
            leadership: None,
            deadline,
        }
    }

    /// The same guard, also stopping forward steps once `leadership` is lost.
    pub fn with_leadership(mut self, leadership: crate::leader::Leadership) -> Self {
        self.leadership = Some(leadership);
        self
    }

    /// Whether this run's replica lost the leader lease.
    pub fn lost_leadership(&self) -> bool {
        self.leadership.as_ref().is_some_and(|l| !l.is_leader())
    }

    /// Asks the run to stop; idempotent.
    pub fn request_cancel(&self) {
        let mut at = self
            .cancel_requested
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        at.get_or_insert_with(Instant::now);
    }

    fn cancelled_at(&self) -> Option<Instant> {
        *self
            .cancel_requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Why forward progress must stop now (cancel requested, or deadline passed).
    pub fn soft_stop(&self) -> Option<&'static str> {
        if self.cancelled_at().is_some() {
            Some("cancelled by operator")
        } else if self.lost_leadership() {
            Some(crate::leader::Leadership::lost_message())
        } else if Instant::now() >= self.deadline {
            Some("wall-clock limit (daemon.run_timeout) reached")
        } else {
            None
        }
    }

    /// Why the script must be terminated now, even in the middle of undo work.
    pub fn hard_stop(&self) -> Option<&'static str> {
        if self
            .cancelled_at()
            .is_some_and(|t| t.elapsed() >= CANCEL_GRACE)
        {
            Some("cancelled by operator (undo work exceeded the grace period)")
        } else if Instant::now() >= self.deadline {
            Some("wall-clock limit (daemon.run_timeout) reached")
        } else {
            None
        }
    }
}

/// Builds an engine with every limit set, `eval` disabled, no module or file access,
/// and (when `guard` is given) cancellation and a wall-clock limit checked between
/// operations.
pub fn hardened_engine(limits: &Limits, guard: Option<Guard>) -> Engine {
    let mut engine = Engine::new();
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth.0, limits.max_expr_depth.1);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(0);
    engine.set_strict_variables(true);
    if let Some(guard) = guard {
        engine.on_progress(move |_ops| guard.hard_stop().map(|r| r.into()));
    }
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_loop_is_stopped_by_the_operation_limit() {
        let engine = hardened_engine(&Limits::default(), None);
        let err = engine.run("let x = 0; loop { x += 1; }").unwrap_err();
        assert!(err.to_string().contains("Too many operations"), "{err}");
    }

    #[test]
    fn deadline_stops_a_running_script() {
        let guard = Guard::new(Instant::now() + Duration::from_millis(50));
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

    #[test]
    fn cancel_is_soft_first() {
        let guard = Guard::new(Instant::now() + Duration::from_secs(60));
        assert!(guard.soft_stop().is_none());
        guard.request_cancel();
        assert_eq!(guard.soft_stop(), Some("cancelled by operator"));
        assert!(
            guard.hard_stop().is_none(),
            "undo work must get its grace period"
        );
    }

    #[test]
    fn eval_and_import_are_refused() {
        let engine = hardened_engine(&Limits::default(), None);
        assert!(engine.compile(r#"eval("1")"#).is_err());
        let err = engine.run(r#"import "/etc/passwd" as p;"#).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("module"), "{err}");
    }

    #[test]
    fn a_replica_without_the_lease_starts_no_forward_step() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let follower =
            Guard::new(deadline).with_leadership(crate::leader::Leadership::elected("l", "me"));
        assert!(follower.lost_leadership());
        assert_eq!(
            follower.soft_stop(),
            Some(crate::leader::Leadership::lost_message())
        );
        // Undo steps still run: only the wall clock or a cancel's grace ends them.
        assert!(follower.hard_stop().is_none());
        let leader = Guard::new(deadline).with_leadership(crate::leader::Leadership::always());
        assert!(leader.soft_stop().is_none());
    }
}
