//! splice-dr's automation: what the daemon may start on its own, decided without doing it.
//!
//! Safety invariant 4 (automatic runs are rate-limited, breaker-guarded and pausable) is
//! only as good as the code that decides, so that code is kept pure and testable with a
//! fake clock: the daemon feeds [`Event`]s, clock ticks and run results with the current
//! time, and gets [`rules::Decision`]s, [`schedule::ScheduledRun`]s and retention choices
//! back. Nothing here spawns, sleeps, reads or writes files: the daemon owns the event
//! sources, the timers, the rules script's file and the persisted guard memory.
//!
//! * [`config`] — the `[automation]`, `[[rule]]`, `[[schedule]]` and `[retention]` tables
//!   as the operator writes them ([`duration`] reads their durations);
//! * [`rules`] — the rule engine (pause, breaker, cooldown, rate, `for` waits, approvals)
//!   and Rhai site rules;
//! * [`schedule`] — cron schedules, backup staleness and retention selection;
//! * [`runway`] — the recovery runway (restore and down halves) and its change-only events;
//! * [`hardening`] — the limits every splice-dr Rhai engine runs under.

pub mod config;
pub mod duration;
pub mod event;
pub mod hardening;
pub mod rules;
pub mod runway;
pub mod schedule;

pub use event::{matches, Event};
