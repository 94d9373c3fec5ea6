//! The daemon's automatic side: health probes and alerts become events, rules and
//! schedules turn events into runs, and every decision — started, queued, waiting for
//! approval, or suppressed by a guard rail — is logged and visible in `status`; nothing
//! is silently dropped. It also feeds metrics and notifications from run events, and
//! applies retention after each good backup.
//!
//! The rule and schedule logic is the pure `splice-dr-automation` crate (`rules`,
//! `schedule`); this module is the control loop around it (a kube-rs-style reconcile tick),
//! one concern per module, all working from one explicit [`Context`]:
//! - `rules_loop`: events → rule decisions → runs, the queue, approvals and their expiry;
//! - `operator`: pause, resume, reset, trigger and approve from the socket;
//! - `schedules`: due schedules, backup staleness, retention after a good backup;
//! - `runway`: each node's recovery runway as gauges and change-only events;
//! - `reactions`: what a run's start or end sets off, as pure decisions (like rules);
//! - `observer`: gathers a finished run's facts and carries the reactions out;
//! - `memory`: the guard state surviving restarts and leader changes (`guard_memory`:
//!   its file).
// Config errors (ConfigError) are rare and cold; boxing them buys nothing.
#![allow(clippy::result_large_err)]

mod context;
mod guard_memory;
mod memory;
mod observer;
mod operator;
mod reactions;
mod rules_loop;
mod runway;
mod schedules;
mod state;

pub use context::Context;

use chrono::{DateTime, Utc};
use splice_dr_protocol::automation::{ApprovalWait, AutomationView};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::{AutomationConfig, Config, ConfigError, RuleConfig, ScheduleConfig};
use crate::events::health::{run_probes, HealthBoard};
use splice_dr_automation::rules::RuleEngine;
use state::State;

/// How often rules' `for` timers, schedules, the queue and approval expiry are checked.
const TICK: Duration = Duration::from_millis(500);

/// What a config asks of the autopilot, built by [`Autopilot::prepare`] and installed by
/// [`Autopilot::new`] or [`Autopilot::apply_plan`]: kept apart so a reload can build it,
/// fail elsewhere, and drop it with nothing changed.
pub struct AutomationPlan {
    script: Option<splice_dr_automation::rules::RuleScript>,
    rules: Vec<RuleConfig>,
    automation: AutomationConfig,
    schedules: Vec<ScheduleConfig>,
    retention: crate::prune::Policies,
    low_runway: Duration,
}

/// The automatic side of one daemon.
pub struct Autopilot {
    ctx: Context,
    state: Mutex<State>,
    /// Serializes memory writes, so an older state never lands after a newer one.
    persisting: Mutex<()>,
}

impl Autopilot {
    /// The fallible half of taking a config: reads and compiles the rules script and
    /// copies the rules, schedules and retention, touching no running autopilot. Start-up
    /// and reloads both go through it (see [`crate::prepare`]), so a config whose script
    /// does not compile is rejected before anything changes.
    pub fn prepare(config: &Config) -> Result<AutomationPlan, ConfigError> {
        Ok(AutomationPlan {
            script: crate::config::load_rules_script(config)?,
            rules: config.rules.clone(),
            automation: config.automation.clone(),
            schedules: config.schedules.clone(),
            retention: crate::prune::Policies::of(config),
            low_runway: config.repository.runway_threshold(),
        })
    }

    /// Builds the autopilot from its context and a prepared plan (rules, schedules). It
    /// reads nothing yet: [`Autopilot::recall_at_start`] settles what the guard memory
    /// names once start-up recovery has marked the runs a dead daemon left.
    pub fn new(ctx: Context, plan: AutomationPlan) -> Arc<Self> {
        let mut engine = RuleEngine::new(&plan.rules, &plan.automation);
        if let Some(script) = plan.script {
            engine = engine.with_script(script);
        }
        let state = State::new(
            engine,
            plan.schedules,
            plan.retention,
            plan.automation.paused,
            plan.low_runway,
        );
        Arc::new(Autopilot {
            ctx,
            state: Mutex::new(state),
            persisting: Mutex::new(()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The health board (current state and recent changes).
    pub fn health(&self) -> &Arc<HealthBoard> {
        &self.ctx.board
    }

    /// The infallible half of a reload: installs a plan [`Autopilot::prepare`] built
    /// (breaker and cooldown state survive, by rule name; unchanged schedules keep their
    /// next due time). It cannot fail, so the caller applies it together with the rest of
    /// the config once everything was built.
    pub fn apply_plan(&self, plan: AutomationPlan) {
        let mut st = self.state();
        st.engine.reconfigure(&plan.rules, plan.script);
        st.config_paused = plan.automation.paused;
        st.scheduler.reconfigure(&plan.schedules, Utc::now());
        st.schedules = plan.schedules;
        st.retention = plan.retention;
        st.low_runway = plan.low_runway;
        // Judged again at once under the new horizon and threshold.
        st.runway_checked = None;
    }

    /// Starts the probe, event, tick and run-observer loops until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        self.restore_drill_gauges();
        let runner = self.ctx.runner.clone();
        tokio::spawn(run_probes(
            move || {
                runner
                    .nodes()
                    .iter()
                    .map(|(n, rt)| (n.clone(), rt.backend.clone()))
                    .collect()
            },
            self.ctx.board.clone(),
            self.ctx.bus.clone(),
            self.ctx.health_interval,
            self.ctx.health_timeout,
            shutdown.clone(),
        ));
        tokio::spawn(self.clone().event_loop(shutdown.clone()));
        tokio::spawn(self.clone().run_loop(shutdown.clone()));
        tokio::spawn(self.clone().tick_loop(shutdown));
    }

    /// Bus events → rules, until `stop`.
    async fn event_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut rx = self.ctx.bus.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => self.on_event(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::error!("rules missed {n} events (bus lagged)"),
                    Err(_) => return,
                },
            }
        }
    }

    /// Run events → reactions, until `stop`.
    async fn run_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut rx = self.ctx.runner.subscribe();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = rx.recv() => if let Ok(ev) = ev { self.on_run_event(&ev) },
            }
        }
    }

    /// The reconcile tick every [`TICK`], until `stop`.
    async fn tick_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => self.tick(Utc::now()),
            }
        }
    }

    /// One reconcile step: leadership, rule timers and due schedules, the queue,
    /// approvals, staleness, runways, breaker gauges, and the memory if it changed.
    fn tick(&self, now: DateTime<Utc>) {
        self.on_leadership();
        let decisions = {
            let mut st = self.state();
            let mut d = st.engine.tick(now);
            d.extend(schedules::due(&mut st, now));
            d
        };
        self.apply(decisions);
        self.retry_queue();
        self.expire_approvals(now);
        self.check_staleness(now);
        self.check_runway(now);
        self.breaker_gauges(now);
        self.persist();
    }

    fn breaker_gauges(&self, now: DateTime<Utc>) {
        let st = self.state();
        for r in st.engine.status(now) {
            crate::metrics::breaker_state(
                &r.rule,
                matches!(
                    r.state,
                    splice_dr_automation::rules::RuleState::Tripped { .. }
                ),
            );
        }
    }

    /// Keeps a decision for `status`.
    fn record(&self, rule: &str, trigger: &str, outcome: String) {
        self.state().record(rule, trigger, outcome);
    }

    /// The automatic side's state for `status`.
    pub fn status(&self) -> AutomationView {
        let now = Utc::now();
        let st = self.state();
        let pending_approvals = self
            .ctx
            .journal
            .summaries()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.awaits_approval())
            .map(|r| ApprovalWait {
                rule: r.approval.as_ref().map(|a| a.rule.clone()),
                expires_at: r.approval.as_ref().map(|a| a.expires_at),
                run: r.id,
                flow: r.flow,
                node: r.node,
            })
            .collect();
        AutomationView {
            paused: st.engine.is_paused(),
            memory_error: st.memory_error.clone(),
            rules: st.engine.status(now),
            schedules: st.scheduler.status(),
            queue: st.queue.iter().map(|q| q.view()).collect(),
            pending_approvals,
            recent_decisions: st.recent.iter().rev().cloned().collect(),
        }
    }
}

/// Runs blocking work from the control loop: through `block_in_place` on the daemon's
/// multi-threaded runtime, directly elsewhere (tests, a current-thread runtime).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
