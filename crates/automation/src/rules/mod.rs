//! Rules: which event starts which flow, and the guards around every automatic run.
//!
//! A pure, deterministic state machine: the caller feeds events ([`RuleEngine::on_event`]),
//! clock ticks ([`RuleEngine::tick`]) and run results ([`RuleEngine::run_finished`]), always
//! with the current time, and gets [`Decision`]s back. Nothing here spawns, sleeps or
//! touches files (the daemon reads the rules script and persists [`RuleMemory`]).
//!
//! Guards, checked in this order when a rule would fire (safety invariant 4):
//!
//! 1. **pause** — `[automation] paused` or `pause()`: every automatic run is suppressed;
//! 2. **breaker** — after `breaker` consecutive failed runs the rule is *tripped* until an
//!    operator runs `splice-dr reset <rule>` (a success in between resets the count);
//! 3. **cooldown** — after firing, matches are suppressed for `cooldown`;
//! 4. **rate** — at most `max_runs` runs per sliding `window`.
//!
//! A rule with `for` first waits: the condition must hold that long with no recovery
//! event for the same node (`until`, or derived: `….down` → `….up`, `alert.X` →
//! `alert.X.resolved`); the guards apply when the wait ends. A suppressed firing is
//! returned as [`Decision::Suppressed`] with the reason in operator words — the caller logs
//! and journals it; nothing is dropped silently.
//!
//! Cooldown, rate and breaker are per rule (not per node): a rule without `node` that
//! fires for two nodes at once starts the first and reports the second as suppressed
//! when a guard says so. `for` waits are per node and triggering event.
//!
//! Rhai site rules ([`script`]) produce decisions under the rule name `script:<pattern>`
//! with the default guards (`max_runs` 3 per 1h, `breaker` 2, no cooldown, approval auto).
//! Scheduled runs pass through [`RuleEngine::admit_scheduled`] (rule `schedule:<name>`),
//! which applies the pause only.

pub mod script;

#[cfg(test)]
mod tests;

use crate::config::{
    recovery_of, Approval, AutomationConfig, RuleConfig, DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_RULE_BREAKER, DEFAULT_RULE_MAX_RUNS, DEFAULT_RULE_WINDOW,
};
use crate::duration;
use crate::event::{matches, Event};
use crate::schedule::ScheduledRun;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub use script::{RuleScript, RunRequest, ScriptError};

/// One rule's guard state, as it leaves and re-enters the engine
/// ([`RuleEngine::memory`], [`RuleEngine::remember`]): a breaker that a daemon restart
/// clears is no breaker, so the daemon keeps this in its state directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleMemory {
    /// Consecutive failed runs (the breaker trips at the rule's `breaker`).
    pub failures: u32,
    /// When the rule started runs, oldest first (for `max_runs` per window).
    pub fired: Vec<DateTime<Utc>>,
    /// End of the current cooldown.
    pub cooling_until: Option<DateTime<Utc>>,
    /// Last start, for `status`.
    pub last_fired: Option<DateTime<Utc>>,
}

/// What the engine decided about one would-be automatic run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Start `flow` (or, when `approval_required`, create it pending until approved or
    /// `approval_expires_at`).
    Start {
        /// Rule name (`script:<pattern>` / `schedule:<name>` for script rules / schedules).
        rule: String,
        /// Flow to start.
        flow: String,
        /// Target node: the rule's, else the event's; `None` = the runner's default.
        node: Option<String>,
        /// Flow params (a JSON object).
        params: serde_json::Value,
        /// The run must wait for an operator's approval.
        approval_required: bool,
        /// When a pending run expires (set iff `approval_required`).
        approval_expires_at: Option<DateTime<Utc>>,
        /// What triggered it: the event name, or `schedule.<name>`.
        trigger: String,
        /// When the triggering event was first observed (the start of a `for` wait);
        /// `None` for a scheduled run. Journaled with the run for its incident report.
        detected_at: Option<DateTime<Utc>>,
        /// The guards the firing passed, in operator words (`held for 3s, breaker 0 of 2
        /// failures, ...`), journaled with the run.
        guards: String,
    },
    /// A firing that a guard stopped.
    Suppressed {
        /// Rule name.
        rule: String,
        /// Why, in operator words (`paused`, `cooling down until …`, …).
        reason: String,
        /// What triggered it.
        trigger: String,
    },
    /// A Rhai rule handler failed (error, endless loop stopped by the operation limit).
    ScriptError {
        /// `script:<pattern>`.
        rule: String,
        /// `file:line:col: …`.
        error: String,
        /// The event it was handling.
        trigger: String,
    },
}

pub use splice_dr_protocol::automation::{RuleState, RuleStatus, Waiting};

/// Errors of operator commands on rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `reset` named a rule that does not exist.
    #[error("no rule named \"{rule}\"; rules: {}", known.join(", "))]
    UnknownRule {
        /// The name given.
        rule: String,
        /// The rules that exist.
        known: Vec<String>,
    },
}

/// The guard settings of one rule.
#[derive(Debug, Clone)]
struct Policy {
    name: String,
    on: String,
    node: Option<String>,
    /// `None` for script rules.
    flow: Option<String>,
    params: serde_json::Value,
    sustain: Option<Duration>,
    until: Option<String>,
    cooldown: Option<Duration>,
    max_runs: u32,
    window: Duration,
    breaker: u32,
    approval_required: bool,
    approval_timeout: Duration,
}

impl Policy {
    fn from_rule(r: &RuleConfig) -> Policy {
        Policy {
            name: r.name.clone(),
            on: r.on.clone(),
            node: r.node.clone(),
            flow: Some(r.flow.clone()),
            params: serde_json::Value::Object(r.params.clone()),
            sustain: r.sustain,
            until: r.until.clone(),
            cooldown: r.cooldown,
            max_runs: r.max_runs,
            window: r.window,
            breaker: r.breaker,
            approval_required: r.approval == Approval::Required,
            approval_timeout: r.approval_timeout(),
        }
    }

    fn for_script(pattern: &str) -> Policy {
        Policy {
            name: format!("script:{pattern}"),
            on: pattern.to_string(),
            node: None,
            flow: None,
            params: serde_json::Value::Object(Default::default()),
            sustain: None,
            until: None,
            cooldown: None,
            max_runs: DEFAULT_RULE_MAX_RUNS,
            window: DEFAULT_RULE_WINDOW,
            breaker: DEFAULT_RULE_BREAKER,
            approval_required: false,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }

    /// Whether `ev` ends a `for` wait started by `trigger`.
    fn recovers(&self, trigger: &str, ev: &Event) -> bool {
        match &self.until {
            Some(until) => matches(until, &ev.name),
            None => recovery_of(trigger).is_some_and(|r| r == ev.name),
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    since: DateTime<Utc>,
    fires_at: DateTime<Utc>,
}

/// Runtime state of one rule; survives [`RuleEngine::reconfigure`] by name.
#[derive(Debug, Clone, Default)]
struct Runtime {
    /// `(node, triggering event name)` → wait.
    pending: BTreeMap<(Option<String>, String), Pending>,
    cooling_until: Option<DateTime<Utc>>,
    fired: VecDeque<DateTime<Utc>>,
    failures: u32,
    last_fired: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Slot {
    policy: Policy,
    rt: Runtime,
}

/// The rules in force and their state.
#[derive(Debug)]
pub struct RuleEngine {
    slots: Vec<Slot>,
    script: Option<RuleScript>,
    paused: bool,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `2024-05-01T12:30:00Z`.
fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl RuleEngine {
    /// An engine for the `[[rule]]`s, paused when `[automation] paused` is set.
    pub fn new(rules: &[RuleConfig], automation: &AutomationConfig) -> Self {
        RuleEngine {
            slots: rules
                .iter()
                .map(|r| Slot {
                    policy: Policy::from_rule(r),
                    rt: Runtime::default(),
                })
                .collect(),
            script: None,
            paused: automation.paused,
        }
    }

    /// Adds the Rhai site rules (one rule `script:<pattern>` per distinct pattern).
    pub fn with_script(mut self, script: RuleScript) -> Self {
        self.set_script(Some(script));
        self
    }

    fn set_script(&mut self, script: Option<RuleScript>) {
        self.slots.retain(|s| s.policy.flow.is_some());
        if let Some(s) = &script {
            for p in s.patterns() {
                if !self
                    .slots
                    .iter()
                    .any(|x| x.policy.name == format!("script:{p}"))
                {
                    self.slots.push(Slot {
                        policy: Policy::for_script(p),
                        rt: Runtime::default(),
                    });
                }
            }
        }
        self.script = script;
    }

    /// Applies a reloaded config: rules keep their state (breaker, cooldown, runs, waits)
    /// by name, so a reload never resets a tripped breaker; the pause flag is the
    /// operator's and is kept too.
    pub fn reconfigure(&mut self, rules: &[RuleConfig], script: Option<RuleScript>) {
        let mut old: BTreeMap<String, Runtime> = self
            .slots
            .drain(..)
            .map(|s| (s.policy.name, s.rt))
            .collect();
        self.slots = rules
            .iter()
            .map(|r| Slot {
                policy: Policy::from_rule(r),
                rt: old.remove(&r.name).unwrap_or_default(),
            })
            .collect();
        self.set_script(script);
        for slot in &mut self.slots {
            if slot.policy.flow.is_none() {
                if let Some(rt) = old.remove(&slot.policy.name) {
                    slot.rt = rt;
                }
            }
        }
    }

    /// Each rule's guard state, by name, for the daemon to keep (rules never fired and
    /// never failed are left out).
    pub fn memory(&self) -> BTreeMap<String, RuleMemory> {
        self.slots
            .iter()
            .filter(|s| s.rt.failures > 0 || !s.rt.fired.is_empty() || s.rt.cooling_until.is_some())
            .map(|s| {
                let m = RuleMemory {
                    failures: s.rt.failures,
                    fired: s.rt.fired.iter().copied().collect(),
                    cooling_until: s.rt.cooling_until,
                    last_fired: s.rt.last_fired,
                };
                (s.policy.name.clone(), m)
            })
            .collect()
    }

    /// Makes the remembered guard state the engine's, by rule name: a rule absent from
    /// `rules` has none (never fired, never failed); remembered rules no longer configured
    /// are ignored (their memory goes with them). `for` waits are left as they are.
    pub fn remember(&mut self, rules: &BTreeMap<String, RuleMemory>) {
        for slot in &mut self.slots {
            let m = rules.get(&slot.policy.name).cloned().unwrap_or_default();
            slot.rt.failures = m.failures;
            slot.rt.fired = m.fired.into_iter().collect();
            slot.rt.cooling_until = m.cooling_until;
            slot.rt.last_fired = m.last_fired;
        }
    }

    /// Stops every automatic run (they are reported as suppressed) until [`Self::resume`].
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Ends a pause.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Whether automatic runs are paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Clears a tripped breaker (the failure count) of `rule`.
    pub fn reset(&mut self, rule: &str) -> Result<(), RuleError> {
        match self.slots.iter_mut().find(|s| s.policy.name == rule) {
            Some(s) => {
                s.rt.failures = 0;
                Ok(())
            }
            None => Err(RuleError::UnknownRule {
                rule: rule.to_string(),
                known: self.slots.iter().map(|s| s.policy.name.clone()).collect(),
            }),
        }
    }

    /// Records the result of a run this engine started (by [`Decision::Start::rule`]).
    /// Failures count towards the breaker; a success resets the count. Unknown rules
    /// (`schedule:…`, a rule removed by a reload) are ignored.
    pub fn run_finished(&mut self, rule: &str, succeeded: bool, _now: DateTime<Utc>) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.policy.name == rule) {
            if succeeded {
                s.rt.failures = 0;
            } else {
                s.rt.failures = s.rt.failures.saturating_add(1);
            }
        }
    }

    /// Feeds one event; returns what it decides now (a `for` rule only starts waiting).
    pub fn on_event(&mut self, ev: &Event, now: DateTime<Utc>) -> Vec<Decision> {
        let paused = self.paused;
        let mut out = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.policy.flow.is_some()) {
            let p = &slot.policy;
            if p.node.is_some() && p.node != ev.node {
                continue;
            }
            if p.sustain.is_some() {
                slot.rt
                    .pending
                    .retain(|(node, trigger), _| !(*node == ev.node && p.recovers(trigger, ev)));
            }
            if !matches(&p.on, &ev.name) {
                continue;
            }
            match p.sustain {
                Some(d) => {
                    slot.rt
                        .pending
                        .entry((ev.node.clone(), ev.name.clone()))
                        .or_insert(Pending {
                            since: now,
                            fires_at: now + delta(d),
                        });
                }
                None => out.push(fire(
                    slot,
                    paused,
                    ev.node.clone(),
                    &ev.name,
                    None,
                    now,
                    now,
                )),
            }
        }
        if let Some(script) = &self.script {
            for (pattern, result) in script.handle(ev) {
                let rule = format!("script:{pattern}");
                match result {
                    Err(error) => out.push(Decision::ScriptError {
                        rule,
                        error,
                        trigger: ev.name.clone(),
                    }),
                    Ok(requests) => {
                        let Some(slot) = self.slots.iter_mut().find(|s| s.policy.name == rule)
                        else {
                            continue;
                        };
                        for r in requests {
                            let node = r.node.clone().or_else(|| ev.node.clone());
                            out.push(fire(slot, paused, node, &ev.name, Some(r), now, now));
                        }
                    }
                }
            }
        }
        out
    }

    /// Fires the `for` waits whose time has come.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let paused = self.paused;
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let due: Vec<_> = slot
                .rt
                .pending
                .iter()
                .filter(|(_, w)| w.fires_at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                let since = slot.rt.pending.remove(&key).map_or(now, |w| w.since);
                let (node, trigger) = key;
                out.push(fire(slot, paused, node, &trigger, None, since, now));
            }
        }
        out
    }

    /// The earliest time [`Self::tick`] has something to do (the daemon ticks every
    /// 500 ms instead; tests check the engine's notion of "next").
    #[cfg(test)]
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.slots
            .iter()
            .flat_map(|s| s.rt.pending.values().map(|w| w.fires_at))
            .min()
    }

    /// Lets a scheduled run through unless automatic runs are paused.
    pub fn admit_scheduled(&self, run: &ScheduledRun) -> Decision {
        let rule = format!("schedule:{}", run.name);
        let trigger = format!("schedule.{}", run.name);
        if self.paused {
            return Decision::Suppressed {
                rule,
                reason: "paused".into(),
                trigger,
            };
        }
        Decision::Start {
            rule,
            flow: run.flow.clone(),
            node: run.node.clone(),
            params: run.params.clone(),
            approval_required: false,
            approval_expires_at: None,
            trigger,
            detected_at: None,
            guards: "not paused".into(),
        }
    }

    /// Every rule's state at `now`, config rules first, then script rules.
    pub fn status(&self, now: DateTime<Utc>) -> Vec<RuleStatus> {
        self.slots
            .iter()
            .map(|s| {
                let p = &s.policy;
                let window_start = now - delta(p.window);
                let in_window: Vec<_> = s.rt.fired.iter().filter(|t| **t > window_start).collect();
                let waiting: Vec<Waiting> =
                    s.rt.pending
                        .iter()
                        .map(|((node, event), w)| Waiting {
                            node: node.clone(),
                            event: event.clone(),
                            since: w.since,
                            fires_at: w.fires_at,
                        })
                        .collect();
                let state = if self.paused {
                    RuleState::Paused
                } else if s.rt.failures >= p.breaker {
                    RuleState::Tripped {
                        failures: s.rt.failures,
                    }
                } else if let Some(fires_at) = waiting.iter().map(|w| w.fires_at).min() {
                    RuleState::Waiting { fires_at }
                } else if let Some(until) = s.rt.cooling_until.filter(|u| *u > now) {
                    RuleState::Cooling { until }
                } else if in_window.len() >= p.max_runs as usize {
                    RuleState::RateLimited {
                        next_allowed_at: *in_window[0] + delta(p.window),
                    }
                } else {
                    RuleState::Armed
                };
                RuleStatus {
                    rule: p.name.clone(),
                    on: p.on.clone(),
                    flow: p.flow.clone(),
                    node: p.node.clone(),
                    state,
                    failures: s.rt.failures,
                    breaker: p.breaker,
                    runs_in_window: in_window.len(),
                    max_runs: p.max_runs,
                    window: duration::format(p.window),
                    last_fired_at: s.rt.last_fired,
                    waiting,
                }
            })
            .collect()
    }
}

/// Applies the guards to one firing of `slot`; records it when it starts.
fn fire(
    slot: &mut Slot,
    paused: bool,
    node: Option<String>,
    trigger: &str,
    request: Option<RunRequest>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let p = &slot.policy;
    let rt = &mut slot.rt;
    let suppressed = |reason: String| Decision::Suppressed {
        rule: p.name.clone(),
        reason,
        trigger: trigger.to_string(),
    };
    if paused {
        return suppressed("paused".into());
    }
    if rt.failures >= p.breaker {
        return suppressed(format!(
            "breaker tripped after {} failed runs: run `splice-dr reset {}`",
            rt.failures, p.name
        ));
    }
    if let Some(until) = rt.cooling_until.filter(|u| *u > now) {
        return suppressed(format!("cooling down until {}", at(until)));
    }
    let window_start = now - delta(p.window);
    while rt.fired.front().is_some_and(|t| *t <= window_start) {
        rt.fired.pop_front();
    }
    if rt.fired.len() >= p.max_runs as usize {
        let next = rt.fired[0] + delta(p.window);
        return suppressed(format!(
            "max_runs {} per {} reached (next run allowed after {})",
            p.max_runs,
            duration::format(p.window),
            at(next)
        ));
    }
    let mut guards = Vec::new();
    if let Some(d) = p.sustain {
        guards.push(format!("held for {}", duration::format(d)));
    }
    guards.push(format!("breaker {} of {} failures", rt.failures, p.breaker));
    if let Some(c) = p.cooldown {
        guards.push(format!("cooldown {} clear", duration::format(c)));
    }
    guards.push(format!(
        "{} of max_runs {} per {}",
        rt.fired.len() + 1,
        p.max_runs,
        duration::format(p.window)
    ));
    rt.fired.push_back(now);
    rt.last_fired = Some(now);
    rt.cooling_until = p.cooldown.map(|c| now + delta(c));
    let (flow, params, node) = match request {
        Some(r) => (r.flow, r.params, node),
        None => (
            p.flow.clone().unwrap_or_default(),
            p.params.clone(),
            p.node.clone().or(node),
        ),
    };
    Decision::Start {
        rule: p.name.clone(),
        flow,
        node,
        params,
        approval_required: p.approval_required,
        approval_expires_at: p.approval_required.then(|| now + delta(p.approval_timeout)),
        trigger: trigger.to_string(),
        detected_at: Some(since),
        guards: guards.join(", "),
    }
}
