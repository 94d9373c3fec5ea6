//! What stops a run, and how a host call counts: forward work or undo.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether a host call moves the run forward or undoes what it did.
///
/// The distinction decides what a deadline, a cancel or a lost lease does to the call:
/// forward steps (dump, restore, swap, wipe) are refused and interrupted at once; undo
/// steps (scale back up, roll back, drop staged data, put a volume back, wait until
/// healthy) always start and run within the run's undo budget, so a `catch` block can
/// put the node back as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Changes the node towards the flow's goal; stops at the first stop request.
    Forward,
    /// Puts the node back (or only waits/reads); `need` is how long it may take at most
    /// (a `wait_ready` timeout), which extends the undo budget while it runs.
    Undo {
        /// The step's own bound; zero when it has none (the base grace applies).
        need: Duration,
    },
}

impl StepKind {
    /// An undo step with no bound of its own.
    pub const UNDO: StepKind = StepKind::Undo {
        need: Duration::ZERO,
    };

    /// Whether this is a forward step.
    pub fn is_forward(self) -> bool {
        self == StepKind::Forward
    }
}

/// What stops a running flow: an operator's cancel, the wall-clock limit, or a lost lease.
///
/// Stopping is two-stage. The first stop request makes every *forward* host call fail
/// at once with a catchable error, so the flow's `catch` blocks can still run their undo
/// calls, which are never refused. The script is terminated only once the *undo budget*
/// is spent: [`UNDO_GRACE`] after the stop, extended while undo steps run (each gets at
/// least its own `need`, and [`UNDO_GRACE`] after it ends for the script to reach the
/// next one), never beyond [`UNDO_CAP`] after the stop. The deadline therefore never
/// terminates the first statement of a `catch` block (issue #12: a rollback skipped at
/// `run_timeout` left staging databases and wiped volumes behind).
#[derive(Debug, Clone)]
pub struct Guard {
    stops: Arc<Mutex<Stops>>,
    /// Leader election: a replica that lost the lease starts no further forward step.
    leadership: Option<crate::leader::Leadership>,
    /// When the run's wall-clock limit expires.
    pub deadline: Instant,
    /// Undo time after a stop and after each undo step ([`UNDO_GRACE`] unless tested).
    grace: Duration,
    /// Ceiling of the undo budget after the stop ([`UNDO_CAP`] unless tested).
    cap: Duration,
}

#[derive(Debug, Default)]
struct Stops {
    cancel_requested: Option<Instant>,
    /// When this run first saw its replica without the lease.
    lease_lost: Option<Instant>,
    /// Undo work in progress or just finished keeps the script alive until then.
    undo_until: Option<Instant>,
}

/// Undo time granted after a stop, and after each undo step, before termination.
pub const UNDO_GRACE: Duration = Duration::from_secs(120);

/// The undo budget never extends beyond this after the stop, whatever the steps need.
pub const UNDO_CAP: Duration = Duration::from_secs(2 * 3600);

impl Guard {
    /// A guard with no cancel requested and the given deadline.
    pub fn new(deadline: Instant) -> Self {
        Guard {
            stops: Arc::new(Mutex::new(Stops::default())),
            leadership: None,
            deadline,
            grace: UNDO_GRACE,
            cap: UNDO_CAP,
        }
    }

    /// The same guard with a different undo budget (tests use short ones).
    #[cfg(test)]
    pub fn with_undo_budget(mut self, grace: Duration, cap: Duration) -> Self {
        self.grace = grace;
        self.cap = cap;
        self
    }

    /// The same guard, also stopping forward steps once `leadership` is lost.
    pub fn with_leadership(mut self, leadership: crate::leader::Leadership) -> Self {
        self.leadership = Some(leadership);
        self
    }

    fn stops(&self) -> std::sync::MutexGuard<'_, Stops> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this run's replica lost the leader lease, or holds it with less than the
    /// step margin left (a forward step must not outlive the lease).
    pub fn lost_leadership(&self) -> bool {
        let lost = self
            .leadership
            .as_ref()
            .is_some_and(|l| !l.is_leader_with_margin());
        if lost {
            self.stops().lease_lost.get_or_insert_with(Instant::now);
        }
        lost
    }

    /// Asks the run to stop; idempotent.
    pub fn request_cancel(&self) {
        self.stops()
            .cancel_requested
            .get_or_insert_with(Instant::now);
    }

    /// Why forward progress must stop now (cancel requested, lease lost, deadline passed).
    pub fn soft_stop(&self) -> Option<&'static str> {
        if self.stops().cancel_requested.is_some() {
            Some("cancelled by operator")
        } else if self.lost_leadership() {
            Some(crate::leader::Leadership::lost_message())
        } else if Instant::now() >= self.deadline {
            Some("wall-clock limit (daemon.run_timeout) reached")
        } else {
            None
        }
    }

    /// When forward work was first told to stop, if it was.
    fn stopped_at(&self) -> Option<Instant> {
        self.lost_leadership();
        let s = self.stops();
        let deadline = (Instant::now() >= self.deadline).then_some(self.deadline);
        [s.cancel_requested, s.lease_lost, deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Notes that an undo step of `kind` starts now: the budget covers its own need.
    pub fn begin_undo(&self, kind: StepKind) {
        if let StepKind::Undo { need } = kind {
            self.extend_undo(need.max(self.grace));
        }
    }

    /// Notes that an undo step ended: the script gets the grace to reach the next one.
    pub fn end_undo(&self) {
        self.extend_undo(self.grace);
    }

    fn extend_undo(&self, by: Duration) {
        let until = Instant::now() + by;
        let mut s = self.stops();
        s.undo_until = Some(s.undo_until.map_or(until, |u| u.max(until)));
    }

    /// Why the script must be terminated now: the undo budget after a stop is spent.
    pub fn hard_stop(&self) -> Option<&'static str> {
        let stop = self.stopped_at()?;
        let now = Instant::now();
        let undo_until = self.stops().undo_until;
        let base = stop + self.grace;
        let budget_end = undo_until.map_or(base, |u| u.max(base));
        if now < budget_end.min(stop + self.cap) {
            return None;
        }
        Some(match self.soft_stop() {
            Some("cancelled by operator") => {
                "cancelled by operator (undo work exceeded its budget)"
            }
            Some(why) if why == crate::leader::Leadership::lost_message() => {
                "this replica lost the leader lease (undo work exceeded its budget)"
            }
            _ => "wall-clock limit (daemon.run_timeout) reached (undo work exceeded its budget)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn stopped_guard(grace_ms: u64, cap_ms: u64) -> Guard {
        let guard = Guard::new(Instant::now() + Duration::from_secs(60)).with_undo_budget(
            Duration::from_millis(grace_ms),
            Duration::from_millis(cap_ms),
        );
        guard.request_cancel();
        guard
    }

    #[test]
    fn the_deadline_stops_forward_work_but_leaves_the_undo_grace() {
        let guard = Guard::new(Instant::now());
        assert!(
            guard.soft_stop().is_some(),
            "forward work stops at the deadline"
        );
        assert!(
            guard.hard_stop().is_none(),
            "the catch block's first statement must not be terminated"
        );
    }

    #[test]
    fn an_undo_step_gets_its_own_need_beyond_the_grace() {
        let guard = stopped_guard(50, 10_000);
        guard.begin_undo(StepKind::Undo {
            need: Duration::from_millis(400),
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(guard.hard_stop().is_none(), "still within the step's need");
        guard.end_undo();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            guard.hard_stop().is_none(),
            "grace to reach the next undo step"
        );
        std::thread::sleep(Duration::from_millis(400));
        let why = guard.hard_stop().expect("the budget is spent");
        assert!(why.contains("undo work exceeded its budget"), "{why}");
    }

    #[test]
    fn the_undo_budget_is_capped() {
        let guard = stopped_guard(50, 200);
        guard.begin_undo(StepKind::Undo {
            need: Duration::from_secs(3600),
        });
        assert!(guard.hard_stop().is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(guard.hard_stop().is_some(), "no step outlives the cap");
    }

    #[test]
    fn forward_steps_do_not_extend_the_budget() {
        let guard = stopped_guard(50, 10_000);
        guard.begin_undo(StepKind::Forward);
        std::thread::sleep(Duration::from_millis(80));
        assert!(guard.hard_stop().is_some());
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
