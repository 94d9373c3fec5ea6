//! Recovery runway: how long a node can still be recovered the cheap way. Splice's
//! sequencers prune after a horizon (`repository.max_age`, 30 days by default): a backup
//! older than that cannot be restored, and a node down longer than that is disabled by the
//! network (`MemberDisabled`) and can only re-onboard. Both clocks are computed here as
//! pure functions of what the daemon read (the newest restorable backup, the health log)
//! and an injected `now`; [`RunwayWatch`] turns them into change-only events, as the
//! health probes do:
//!
//! * `runway.restore.low` / `runway.restore.ok` — the newest restorable backup passes the
//!   horizon within `low_runway` (or there is none) / no longer;
//! * `runway.down.low` / `runway.down.ok` — the node has been down so long that it passes
//!   the horizon within `low_runway` / it is healthy again.

#[cfg(test)]
mod tests;

use crate::duration;
use crate::event::Event;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use splice_dr_protocol::runway::{DownRunway, RestoreRunway, RunwayView};
use std::collections::BTreeMap;
use std::time::Duration;

/// The horizon and the threshold below which a runway is low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunwayPolicy {
    /// `repository.max_age`: Splice's pruning window.
    pub horizon: Duration,
    /// `repository.low_runway`: less time left than this is low.
    pub low_below: Duration,
}

/// The backup a restore would take without `--force`, as far as the runway needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorableBackup {
    /// Its id.
    pub id: String,
    /// When it was taken (the age `repository.max_age` is measured from).
    pub taken_at: DateTime<Utc>,
}

/// One recorded health change of a node's component (the daemon's health log and the
/// probes' current state both read as these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRecord {
    /// When it was observed.
    pub at: DateTime<Utc>,
    /// The component (`postgres`, `validator`, …).
    pub component: String,
    /// Up or down from then on.
    pub up: bool,
}

/// What the health records say of the node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When the current outage began; `None` while every component is up.
    pub since: Option<DateTime<Utc>>,
    /// Whether the records show the node healthy (every component seen up) before it.
    pub seen_healthy: bool,
}

/// Records less than this apart are one probe round (the daemon records a round's
/// observations one after the other, microseconds apart, after the whole round answered):
/// judged together, so a round that finds one component up and another down never reads
/// as a healthy moment.
const ROUND: TimeDelta = TimeDelta::milliseconds(100);

/// Replays `records` (any order; sorted by time here, ties kept in order) into the node's
/// state: it is healthy while every component it has records of is up (one not recorded
/// yet counts as up: it may be new in the config), judged once per probe round ([`ROUND`]),
/// and an outage begins with the first round that leaves it unhealthy. `None` without
/// records: nothing is known.
pub fn outage(records: &[HealthRecord]) -> Option<Outage> {
    let mut sorted: Vec<&HealthRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.at);
    let mut state: BTreeMap<&str, bool> = BTreeMap::new();
    let mut out = Outage {
        since: None,
        seen_healthy: false,
    };
    let mut healthy_before = false;
    for round in sorted.chunk_by(|a, b| b.at - a.at < ROUND) {
        for r in round {
            state.insert(r.component.as_str(), r.up);
        }
        if state.values().all(|up| *up) {
            out.since = None;
            healthy_before = true;
        } else if out.since.is_none() {
            out.since = Some(round[0].at);
            out.seen_healthy = healthy_before;
        }
    }
    if out.since.is_none() {
        out.seen_healthy = healthy_before;
    }
    (!sorted.is_empty()).then_some(out)
}

/// Both halves of the runway at `now`: the restore half from the newest restorable backup
/// (none: no runway at all, and low), the down half from the node's outage (`None`:
/// health unknown, no down half).
pub fn assess(
    policy: RunwayPolicy,
    newest: Option<&RestorableBackup>,
    outage: Option<Outage>,
    now: DateTime<Utc>,
) -> RunwayView {
    RunwayView {
        at: now,
        horizon_secs: policy.horizon.as_secs(),
        low_below_secs: policy.low_below.as_secs(),
        restore: restore_runway(policy, newest, now),
        down: outage.map(|o| down_runway(policy, o, now)),
    }
}

fn horizon_of(policy: RunwayPolicy) -> TimeDelta {
    TimeDelta::from_std(policy.horizon).unwrap_or(TimeDelta::MAX)
}

fn is_low(policy: RunwayPolicy, left_secs: i64) -> bool {
    i128::from(left_secs) < i128::from(policy.low_below.as_secs())
}

fn restore_runway(
    policy: RunwayPolicy,
    newest: Option<&RestorableBackup>,
    now: DateTime<Utc>,
) -> RestoreRunway {
    let Some(b) = newest else {
        return RestoreRunway {
            backup: None,
            taken_at: None,
            expires_at: None,
            left_secs: 0,
            low: true,
        };
    };
    let expires_at = b.taken_at.checked_add_signed(horizon_of(policy));
    let left_secs = expires_at.map_or(i64::MAX, |e| (e - now).num_seconds());
    RestoreRunway {
        backup: Some(b.id.clone()),
        taken_at: Some(b.taken_at),
        expires_at,
        left_secs,
        low: is_low(policy, left_secs),
    }
}

fn down_runway(policy: RunwayPolicy, o: Outage, now: DateTime<Utc>) -> DownRunway {
    let horizon_secs = i64::try_from(policy.horizon.as_secs()).unwrap_or(i64::MAX);
    let Some(since) = o.since else {
        return DownRunway {
            since: None,
            seen_healthy: o.seen_healthy,
            down_secs: 0,
            disabled_at: None,
            left_secs: horizon_secs,
            low: is_low(policy, horizon_secs),
        };
    };
    let down_secs = (now - since).num_seconds().max(0);
    let left_secs = horizon_secs.saturating_sub(down_secs);
    DownRunway {
        since: Some(since),
        seen_healthy: o.seen_healthy,
        down_secs: u64::try_from(down_secs).unwrap_or_default(),
        disabled_at: since.checked_add_signed(horizon_of(policy)),
        left_secs,
        low: is_low(policy, left_secs),
    }
}

/// Which half of the runway an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Half {
    Restore,
    Down,
}

impl Half {
    fn name(self) -> &'static str {
        match self {
            Half::Restore => "restore",
            Half::Down => "down",
        }
    }
}

/// Remembers, per node and half, whether the runway was low at the last check, so only
/// changes become events (a first check that is low counts as a change; one that is not
/// is quiet, as a healthy first probe is).
#[derive(Debug, Clone, Default)]
pub struct RunwayWatch {
    low: BTreeMap<(String, Half), bool>,
}

impl RunwayWatch {
    /// The events `view` of `node` sets off: `runway.<half>.low` when a half becomes low,
    /// `runway.<half>.ok` when it no longer is. A down half that is unknown changes nothing.
    pub fn check(&mut self, node: &str, view: &RunwayView) -> Vec<Event> {
        let mut out = Vec::new();
        let restore = (view.restore.low, restore_message(view));
        let down = view.down.as_ref().map(|d| (d.low, down_message(view, d)));
        for (half, now) in [(Half::Restore, Some(restore)), (Half::Down, down)] {
            let Some((low, message)) = now else { continue };
            let before = self.low.insert((node.to_string(), half), low);
            if before == Some(low) || (before.is_none() && !low) {
                continue;
            }
            let state = if low { "low" } else { "ok" };
            let left = match half {
                Half::Restore => view.restore.left_secs,
                Half::Down => view.down.as_ref().map_or(0, |d| d.left_secs),
            };
            let mut ev = Event::new(
                format!("runway.{}.{state}", half.name()),
                Some(node.to_string()),
                message,
            )
            .with_label("left_secs", left.to_string())
            .with_label("horizon_secs", view.horizon_secs.to_string());
            ev.at = view.at;
            out.push(ev);
        }
        out
    }

    /// Forgets nodes no longer configured (a node added back starts quiet again).
    pub fn retain(&mut self, nodes: &[String]) {
        self.low.retain(|(n, _), _| nodes.contains(n));
    }
}

/// `secs` as words (`4days 23h`), the sign said in words by the caller.
fn words(secs: i64) -> String {
    duration::format(Duration::from_secs(secs.unsigned_abs()))
}

fn stamp(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(String::new, |t| {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    })
}

fn restore_message(view: &RunwayView) -> String {
    let r = &view.restore;
    let horizon = words(view.horizon_secs as i64);
    match &r.backup {
        None => "no restorable backup (same node, running migration id and participant, \
                 trusted, not failed by a drill): take one with `splice-dr backup`"
            .to_string(),
        Some(id) if r.left_secs < 0 => format!(
            "the newest restorable backup {id} passed the {horizon} pruning horizon {} ago ({}): \
             it can no longer be restored; take a backup with `splice-dr backup`",
            words(r.left_secs),
            stamp(r.expires_at)
        ),
        Some(id) => format!(
            "the newest restorable backup {id} passes the {horizon} pruning horizon in {} ({}): \
             take a backup with `splice-dr backup`",
            words(r.left_secs),
            stamp(r.expires_at)
        ),
    }
}

fn down_message(view: &RunwayView, d: &DownRunway) -> String {
    let horizon = words(view.horizon_secs as i64);
    let Some(since) = d.since else {
        return format!("the node is healthy: {horizon} of runway");
    };
    let at_least = if d.seen_healthy { "" } else { "at least " };
    let down = format!(
        "the node has been down for {at_least}{} (since {})",
        words(d.down_secs as i64),
        stamp(Some(since))
    );
    if d.left_secs < 0 {
        format!(
            "{down}, past the {horizon} pruning horizon: the network has likely disabled it \
             (MemberDisabled); only `splice-dr reonboard` recovers it"
        )
    } else {
        format!(
            "{down}: the network disables it (MemberDisabled) in {} ({}), after which only \
             `splice-dr reonboard` recovers it; bring it back (e.g. `splice-dr restore`) before",
            words(d.left_secs),
            stamp(d.disabled_at)
        )
    }
}
