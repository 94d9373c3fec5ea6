//! Schedules, backup staleness and retention: pure functions of the configured policy and
//! an injected `now`, so the daemon's timer loop stays trivial and tests need no clock.
//!
//! * [`Scheduler::due`] fires each `[[schedule]]` once per due time. After a long sleep
//!   (suspend, daemon stopped, clock jump) it fires **once** and moves on to the next due
//!   time after `now`: no burst of catch-up runs.
//! * [`stale`] / [`Scheduler::check_staleness`]: whether the last good backup is older than
//!   a schedule's `max_age` (the latter returns a `backup.stale` event on the transition).
//! * [`select_expired`]: which backups `[retention]` lets go; never the newest verified one.

#[cfg(test)]
mod tests;

use crate::config::{RetentionConfig, ScheduleConfig};
use crate::duration;
use crate::event::Event;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Serialize;
use std::time::Duration;

/// One configured schedule with its parsed cron expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// What the operator wrote.
    pub config: ScheduleConfig,
}

impl Schedule {
    /// Wraps a validated `[[schedule]]`.
    pub fn new(config: ScheduleConfig) -> Self {
        Schedule { config }
    }

    /// The first due time strictly after `now` (UTC, whole minutes); `None` if the
    /// expression never fires again.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.config.cron.next_after(now)
    }
}

/// A run a schedule asks for (pass it to `RuleEngine::admit_scheduled`, which applies
/// the global pause).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledRun {
    /// Schedule name.
    pub name: String,
    /// Flow to start.
    pub flow: String,
    /// Target node; `None` = the runner's default.
    pub node: Option<String>,
    /// Flow params (a JSON object).
    pub params: serde_json::Value,
    /// The due time this run is for (the latest one passed, when several were missed).
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Entry {
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
    stale: bool,
}

/// The schedules in force and their next due times.
#[derive(Debug, Clone)]
pub struct Scheduler {
    entries: Vec<Entry>,
}

pub use splice_dr_protocol::automation::ScheduleStatus;

impl Scheduler {
    /// A scheduler whose first due times are the first after `now`. An empty list means
    /// the defaults ([`crate::config::default_schedules`]).
    pub fn new(schedules: &[ScheduleConfig], now: DateTime<Utc>) -> Self {
        let configs = if schedules.is_empty() {
            crate::config::default_schedules()
        } else {
            schedules.to_vec()
        };
        Scheduler {
            entries: configs
                .into_iter()
                .map(|c| {
                    let schedule = Schedule::new(c);
                    Entry {
                        next: schedule.next_after(now),
                        schedule,
                        stale: false,
                    }
                })
                .collect(),
        }
    }

    /// Applies a reloaded config: a schedule whose cron is unchanged keeps its next due
    /// time (a reload neither skips nor repeats a run); others start afresh from `now`.
    pub fn reconfigure(&mut self, schedules: &[ScheduleConfig], now: DateTime<Utc>) {
        let mut fresh = Scheduler::new(schedules, now);
        for e in &mut fresh.entries {
            if let Some(old) = self.entries.iter().find(|o| {
                o.schedule.config.name == e.schedule.config.name
                    && o.schedule.config.cron == e.schedule.config.cron
            }) {
                e.next = old.next;
                e.stale = old.stale;
            }
        }
        *self = fresh;
    }

    /// The runs due at `now`: each schedule whose due time has passed fires once, and its
    /// next due time becomes the first one after `now` (missed times are skipped).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<ScheduledRun> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            let Some(next) = e.next else { continue };
            if next > now {
                continue;
            }
            // The latest due time not after `now`, for the record.
            let mut due_at = next;
            while let Some(n) = e.schedule.next_after(due_at).filter(|n| *n <= now) {
                due_at = n;
            }
            e.next = e.schedule.next_after(now);
            let c = &e.schedule.config;
            out.push(ScheduledRun {
                name: c.name.clone(),
                flow: c.flow.clone(),
                node: c.node.clone(),
                params: serde_json::Value::Object(c.params.clone()),
                due_at,
            });
        }
        out
    }

    /// The earliest next due time (the daemon ticks every 500 ms instead; tests check
    /// the scheduler's notion of "next").
    #[cfg(test)]
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.entries.iter().filter_map(|e| e.next).min()
    }

    /// Staleness check of schedule `name` (one with `max_age`) given the time of the last
    /// good (verified) backup it produces: returns a `backup.stale` event when the backup
    /// *becomes* stale (not again until a fresh backup was seen). `None` for an unknown
    /// schedule or one without `max_age`.
    pub fn check_staleness(
        &mut self,
        name: &str,
        last_good_backup_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Event> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.schedule.config.name == name)?;
        let max_age = e.schedule.config.max_age?;
        let is_stale = stale(last_good_backup_at, max_age, now);
        let became = is_stale && !e.stale;
        e.stale = is_stale;
        if !became {
            return None;
        }
        let c = &e.schedule.config;
        let message = match last_good_backup_at {
            Some(t) => format!(
                "last good {} backup is {} old (max_age {}, taken {})",
                c.flow,
                duration::format(age(t, now)),
                duration::format(max_age),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!(
                "no good {} backup exists (max_age {})",
                c.flow,
                duration::format(max_age)
            ),
        };
        let mut ev = Event::new("backup.stale", c.node.clone(), message)
            .with_label("schedule", c.name.clone());
        ev.at = now;
        Some(ev)
    }

    /// Every schedule's next due time and staleness.
    pub fn status(&self) -> Vec<ScheduleStatus> {
        self.entries
            .iter()
            .map(|e| ScheduleStatus {
                name: e.schedule.config.name.clone(),
                flow: e.schedule.config.flow.clone(),
                cron: e.schedule.config.cron.as_str().to_string(),
                next_at: e.next,
                stale: e.stale,
            })
            .collect()
    }
}

/// `now - t`, whole seconds, zero for a time in the future.
fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// Whether the last good backup is older than `max_age` at `now` (no backup at all is
/// stale).
pub fn stale(
    last_good_backup_at: Option<DateTime<Utc>>,
    max_age: Duration,
    now: DateTime<Utc>,
) -> bool {
    match last_good_backup_at {
        None => true,
        Some(t) => age(t, now) > max_age,
    }
}

/// The backups `policy` lets go, oldest first. `backups` are `(id, created_at, verified)`
/// in any order. A backup is kept when it is among the `keep_last` newest (verified or
/// not), or younger than `keep_days` days, or the newest of one of the last `keep_daily`
/// days (UTC) or `keep_weekly` ISO weeks that have a backup, or it is the newest verified
/// backup (always kept, whatever the policy). With no key set nothing is selected.
pub fn select_expired<I: Clone>(
    backups: &[(I, DateTime<Utc>, bool)],
    policy: &RetentionConfig,
    now: DateTime<Utc>,
) -> Vec<I> {
    if policy.keep_last.is_none()
        && policy.keep_days.is_none()
        && policy.keep_daily.is_none()
        && policy.keep_weekly.is_none()
    {
        return Vec::new();
    }
    // Newest first; ties keep input order (stable sort), so the result is deterministic.
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by(|a, b| backups[*b].1.cmp(&backups[*a].1));
    let mut keep = std::collections::BTreeSet::new();
    keep.extend(order.iter().copied().find(|i| backups[*i].2));
    if let Some(n) = policy.keep_last {
        keep.extend(order.iter().copied().take(n as usize));
    }
    if let Some(d) = policy.keep_days {
        let cutoff = now - TimeDelta::days(i64::from(d));
        keep.extend(order.iter().copied().filter(|i| backups[*i].1 >= cutoff));
    }
    if let Some(n) = policy.keep_daily {
        keep.extend(newest_per_period(backups, &order, n, |t| {
            t.date_naive().to_string()
        }));
    }
    if let Some(n) = policy.keep_weekly {
        keep.extend(newest_per_period(backups, &order, n, |t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }));
    }
    let mut expired: Vec<usize> = order.into_iter().filter(|i| !keep.contains(i)).collect();
    expired.reverse();
    expired.into_iter().map(|i| backups[i].0.clone()).collect()
}

/// The newest backup of each of the `n` most recent periods that have one (`order` is
/// newest first, `period` names a backup's day or week).
fn newest_per_period<I>(
    backups: &[(I, DateTime<Utc>, bool)],
    order: &[usize],
    n: u32,
    period: impl Fn(&DateTime<Utc>) -> String,
) -> Vec<usize> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for &i in order {
        if seen.len() >= n as usize {
            break;
        }
        if seen.insert(period(&backups[i].1)) {
            out.push(i);
        }
    }
    out
}
