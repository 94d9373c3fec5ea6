//! The daemon's automatic side: health probes and alerts become events, rules and
//! schedules turn events into runs, and every decision — started, queued, waiting for
//! approval, or suppressed by a guard rail — is logged and visible in `status`; nothing
//! is silently dropped. It also feeds metrics and notifications from run events, and
//! applies retention after each good backup.
//!
//! The rule and schedule logic is the pure [`crate::rules`] / [`crate::schedule`]
//! library; this module is the control loop around it (a kube-rs-style reconcile tick).
//! The guard state survives restarts through [`memory`].
// Config errors (ConfigError) are rare and cold; boxing them buys nothing.
#![allow(clippy::result_large_err)]

mod memory;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AutomationConfig, Config, ConfigError, NotifyKind, RetentionConfig, RuleConfig, ScheduleConfig,
};
use crate::events::health::{run_probes, HealthBoard};
use crate::events::{Event, EventBus};
use crate::flows::{RunError, RunRequest, Runner};
use crate::journal::{PendingApproval, RunState};
use crate::notify::{Notifier, RunSummary};
use crate::rules::{Decision, GuardMemory, RuleEngine};
use crate::run_context::RunEvent;
use crate::schedule::Scheduler;

/// How often rules' `for` timers, schedules, the queue and approval expiry are checked.
const TICK: Duration = Duration::from_millis(500);
/// How long the tick trusts its listing of the repository (backups made by another
/// process, e.g. the CLI in-process, are seen within this; the daemon's own at once).
const BACKUP_RESCAN: Duration = Duration::from_secs(60);
/// Decisions kept for `status`.
const RECENT: usize = 50;

/// One decision, as shown in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Rule (or `schedule:<name>`).
    pub rule: String,
    /// What triggered it.
    pub trigger: String,
    /// `started <run>`, `queued`, `pending approval <run>`, `suppressed: …`, `error: …`.
    pub outcome: String,
}

/// A run a rule or schedule wants while its node is busy; started as soon as it is free.
#[derive(Debug, Clone, Serialize)]
struct Queued {
    since: DateTime<Utc>,
    rule: String,
    trigger: String,
    #[serde(skip)]
    request: RunRequest,
}

struct State {
    engine: RuleEngine,
    scheduler: Scheduler,
    schedules: Vec<ScheduleConfig>,
    retention: Option<RetentionConfig>,
    queue: VecDeque<Queued>,
    recent: VecDeque<DecisionRecord>,
    /// Automatic runs not finished yet → the rule that started them (kept in the memory).
    rule_of_run: HashMap<String, String>,
    flow_of_run: HashMap<String, (String, Option<String>)>,
    /// The operator's last pause (true) or resume (false), kept across restarts.
    operator_paused: Option<bool>,
    /// `[automation] paused` of the config: a remembered resume does not override it.
    config_paused: bool,
    /// What the memory file holds (written only when this changes).
    saved: Option<GuardMemory>,
    /// Why the last write of the memory failed, until one succeeds.
    memory_error: Option<String>,
    /// Whether this replica led at the last check (a new leader reads the memory).
    was_leader: bool,
    /// When the repository was last listed, and each node's newest backup then.
    newest_backups: Option<(std::time::Instant, HashMap<String, DateTime<Utc>>)>,
}

/// What a config asks of the autopilot, built by [`Autopilot::prepare`] and installed by
/// [`Autopilot::new`] or [`Autopilot::apply_plan`]: kept apart so a reload can build it,
/// fail elsewhere, and drop it with nothing changed.
pub struct AutomationPlan {
    script: Option<crate::rules::RuleScript>,
    rules: Vec<RuleConfig>,
    automation: AutomationConfig,
    schedules: Vec<ScheduleConfig>,
    retention: Option<RetentionConfig>,
}

/// The automatic side of one daemon.
pub struct Autopilot {
    runner: Arc<Runner>,
    bus: EventBus,
    board: Arc<HealthBoard>,
    notifier: Option<Notifier>,
    state: Mutex<State>,
    /// Serializes memory writes, so an older state never lands after a newer one.
    persisting: Mutex<()>,
    health_interval: Duration,
    health_timeout: Duration,
}

fn params_map(v: &Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

impl Autopilot {
    /// The fallible half of taking a config: reads and compiles the rules script and
    /// copies the rules, schedules and retention, touching no running autopilot. Start-up
    /// and reloads both go through it (see [`crate::prepare`]), so a config whose script
    /// does not compile is rejected before anything changes.
    pub fn prepare(config: &Config) -> Result<AutomationPlan, ConfigError> {
        Ok(AutomationPlan {
            script: crate::rules::load_script(config)?,
            rules: config.rules.clone(),
            automation: config.automation.clone(),
            schedules: config.schedules.clone(),
            retention: config.retention.clone(),
        })
    }

    /// Builds the autopilot from a prepared plan (rules, schedules) and `config`'s
    /// notifier and probe settings.
    pub fn new(
        config: &Config,
        plan: AutomationPlan,
        runner: Arc<Runner>,
        bus: EventBus,
    ) -> Arc<Self> {
        let mut engine = RuleEngine::new(&plan.rules, &plan.automation);
        if let Some(script) = plan.script {
            engine = engine.with_script(script);
        }
        let now = Utc::now();
        let notifier = match &config.notify {
            Some(n) => match Notifier::new(n) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!("notifications disabled: {e}");
                    None
                }
            },
            None => None,
        };
        let was_leader = runner.leadership().is_leader();
        let autopilot = Arc::new(Autopilot {
            runner,
            bus,
            board: Arc::new(HealthBoard::default()),
            notifier,
            state: Mutex::new(State {
                engine,
                scheduler: Scheduler::new(&plan.schedules, now),
                schedules: plan.schedules,
                retention: plan.retention,
                queue: VecDeque::new(),
                recent: VecDeque::new(),
                rule_of_run: HashMap::new(),
                flow_of_run: HashMap::new(),
                operator_paused: None,
                config_paused: plan.automation.paused,
                saved: None,
                memory_error: None,
                was_leader,
                newest_backups: None,
            }),
            persisting: Mutex::new(()),
            health_interval: config.daemon.health_interval,
            health_timeout: config.daemon.health_timeout,
        });
        autopilot.recall();
        autopilot
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The health board (current state and recent changes).
    pub fn health(&self) -> &Arc<HealthBoard> {
        &self.board
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
    }

    /// Starts the probe, event, tick and run-observer loops until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        self.restore_drill_gauges();
        let runner = self.runner.clone();
        tokio::spawn(run_probes(
            move || {
                runner
                    .nodes()
                    .iter()
                    .map(|(n, rt)| (n.clone(), rt.backend.clone()))
                    .collect()
            },
            self.board.clone(),
            self.bus.clone(),
            self.health_interval,
            self.health_timeout,
            shutdown.clone(),
        ));
        let me = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut rx = me.bus.subscribe();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = rx.recv() => match ev {
                        Ok(ev) => me.on_event(&ev),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::error!("rules missed {n} events (bus lagged)"),
                        Err(_) => return,
                    },
                }
            }
        });
        let me = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut rx = me.runner.subscribe();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = rx.recv() => if let Ok(ev) = ev { me.on_run_event(&ev) },
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(TICK) => me.tick(Utc::now()),
                }
            }
        });
    }

    fn on_event(&self, ev: &Event) {
        if let Some(component) = ev.labels.get("component") {
            if let (Some(node), Some(state)) = (&ev.node, ev.name.rsplit('.').next()) {
                let component = self.board.bounded_component(node, component);
                crate::metrics::component_health(node, component, state == "up");
            }
        }
        let decisions = self.state().engine.on_event(ev, Utc::now());
        self.apply(decisions);
    }

    fn tick(&self, now: DateTime<Utc>) {
        self.on_leadership();
        let decisions = {
            let mut st = self.state();
            let mut d = st.engine.tick(now);
            let due = st.scheduler.due(now);
            for run in due {
                d.push(st.engine.admit_scheduled(&run));
            }
            d
        };
        self.apply(decisions);
        self.retry_queue();
        self.expire_approvals(now);
        self.check_staleness(now);
        {
            let st = self.state();
            for r in st.engine.status(now) {
                crate::metrics::breaker_state(
                    &r.rule,
                    matches!(r.state, crate::rules::RuleState::Tripped { .. }),
                );
            }
        }
        self.persist();
    }

    fn record(&self, rule: &str, trigger: &str, outcome: String) {
        let mut st = self.state();
        if st.recent.len() == RECENT {
            st.recent.pop_front();
        }
        st.recent.push_back(DecisionRecord {
            at: Utc::now(),
            rule: rule.into(),
            trigger: trigger.into(),
            outcome,
        });
    }

    fn apply(&self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Start {
                    rule,
                    flow,
                    node,
                    params,
                    approval_required,
                    approval_expires_at,
                    trigger,
                } => {
                    let request = RunRequest {
                        flow,
                        node,
                        params: params_map(&params),
                        trigger: format!("rule:{rule}"),
                        dry_run: false,
                        requested_by: None,
                    };
                    if approval_required {
                        self.request_approval(&rule, &trigger, request, approval_expires_at);
                    } else {
                        self.start(Queued {
                            since: Utc::now(),
                            rule,
                            trigger,
                            request,
                        });
                    }
                }
                Decision::Suppressed {
                    rule,
                    reason,
                    trigger,
                } => {
                    tracing::warn!(rule = %rule, trigger = %trigger, "automatic run suppressed: {reason}");
                    self.record(&rule, &trigger, format!("suppressed: {reason}"));
                }
                Decision::ScriptError {
                    rule,
                    error,
                    trigger,
                } => {
                    tracing::error!(rule = %rule, trigger = %trigger, "rules script failed: {error}");
                    self.record(&rule, &trigger, format!("error: {error}"));
                }
            }
        }
    }

    fn request_approval(
        &self,
        rule: &str,
        trigger: &str,
        request: RunRequest,
        expires: Option<DateTime<Utc>>,
    ) {
        let expires_at = expires.unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(30));
        let approval = PendingApproval {
            rule: rule.into(),
            expires_at,
            approved_by: None,
        };
        let (flow, node) = (request.flow.clone(), request.node.clone());
        match self.runner.create_pending(request, approval) {
            Ok(id) => {
                tracing::warn!(rule = %rule, run = %id, "run waits for approval: `splice-dr approve {id}` (expires {expires_at})");
                self.record(
                    rule,
                    trigger,
                    format!("pending approval {id} (expires {expires_at})"),
                );
                self.state().rule_of_run.insert(id.clone(), rule.into());
                self.persist();
                if let Some(n) = &self.notifier {
                    n.notify(
                        NotifyKind::PendingApproval,
                        &RunSummary::new(id, flow, node),
                    );
                }
            }
            Err(e) => self.record(rule, trigger, format!("error: {e}")),
        }
    }

    fn start(&self, q: Queued) {
        if self.runner.node_busy(q.request.node.as_deref()) {
            tracing::warn!(rule = %q.rule, "node busy: run of {} queued until it is free", q.request.flow);
            self.record(
                &q.rule,
                &q.trigger,
                format!(
                    "queued: node busy, {} starts when it is free",
                    q.request.flow
                ),
            );
            self.state().queue.push_back(q);
            return;
        }
        // The rule is written down with the run's id before the flow can act: a crash
        // from then on counts as the rule's failure at the next start.
        let noted = std::cell::RefCell::new(None::<String>);
        let started = self.runner.start_noting(q.request.clone(), |id| {
            self.state().rule_of_run.insert(id.into(), q.rule.clone());
            self.persist();
            *noted.borrow_mut() = Some(id.into());
        });
        match started {
            Ok((id, _)) => {
                tracing::info!(rule = %q.rule, run = %id, "automatic run of {} started", q.request.flow);
                self.record(&q.rule, &q.trigger, format!("started {id}"));
            }
            Err(e) => {
                // Never launched: nothing to charge to the rule.
                if let Some(id) = noted.into_inner() {
                    self.state().rule_of_run.remove(&id);
                    self.persist();
                }
                if let RunError::Busy(_) = e {
                    self.record(&q.rule, &q.trigger, "queued: node busy".into());
                    self.state().queue.push_back(q);
                } else {
                    tracing::error!(rule = %q.rule, "automatic run of {} could not start: {e}", q.request.flow);
                    self.record(&q.rule, &q.trigger, format!("error: {e}"));
                }
            }
        }
    }

    fn retry_queue(&self) {
        let ready: Vec<Queued> = {
            let mut st = self.state();
            let paused = st.engine.is_paused();
            let (go, wait): (Vec<_>, Vec<_>) = st
                .queue
                .drain(..)
                .partition(|q| !paused && !self.runner.node_busy(q.request.node.as_deref()));
            st.queue = wait.into();
            go
        };
        for q in ready {
            self.start(q);
        }
    }

    fn expire_approvals(&self, now: DateTime<Utc>) {
        let journal = self.runner.journal();
        let mut waiting = 0;
        // From the journal's index: only a run that expires now is read from its file.
        for s in journal.summaries().unwrap_or_default() {
            let Some(a) = s.approval.clone().filter(|_| s.awaits_approval()) else {
                continue;
            };
            if a.expires_at <= now {
                let Ok(mut r) = journal.get(&s.id) else {
                    continue;
                };
                if !r.state.is_active() {
                    continue;
                }
                r.state = RunState::Cancelled;
                r.error = Some(format!(
                    "approval expired at {} (rule {})",
                    a.expires_at, a.rule
                ));
                r.finished_at = Some(now);
                if journal.save(&r).is_ok() {
                    self.record(&a.rule, "approval", format!("expired {}", r.id));
                    let finished = self.state().rule_of_run.remove(&r.id);
                    let _ = finished;
                }
            } else {
                waiting += 1;
            }
        }
        crate::metrics::pending_approvals(waiting);
    }

    /// The newest backup's completion time per node, read from the repository at most
    /// every [`BACKUP_RESCAN`] (and after every run), not on each tick: the tick runs twice
    /// a second and listing reads every manifest.
    fn newest_backups(&self) -> HashMap<String, DateTime<Utc>> {
        if let Some((at, newest)) = &self.state().newest_backups {
            if at.elapsed() < BACKUP_RESCAN {
                return newest.clone();
            }
        }
        let (backups, _) = blocking(|| self.runner.repo().list().unwrap_or_default());
        let mut newest: HashMap<String, DateTime<Utc>> = HashMap::new();
        for m in backups {
            let t = newest.entry(m.node).or_insert(m.completed_at);
            *t = (*t).max(m.completed_at);
        }
        self.state().newest_backups = Some((std::time::Instant::now(), newest.clone()));
        newest
    }

    fn check_staleness(&self, now: DateTime<Utc>) {
        let newest = self.newest_backups();
        let default_node = self.runner.nodes().keys().next().cloned();
        let mut st = self.state();
        let schedules = st.schedules.clone();
        let effective = if schedules.is_empty() {
            crate::config::default_schedules()
        } else {
            schedules
        };
        for s in effective.iter().filter(|s| s.max_age.is_some()) {
            let node = s.node.clone().or_else(|| default_node.clone());
            let last = node.as_ref().and_then(|n| newest.get(n)).copied();
            if let Some(node) = &node {
                if let Some(max) = s.max_age {
                    crate::metrics::backup_stale(node, crate::schedule::stale(last, max, now));
                }
            }
            if let Some(ev) = st.scheduler.check_staleness(&s.name, last, now) {
                drop(st);
                self.bus.publish(ev);
                st = self.state();
            }
        }
    }

    fn on_run_event(&self, ev: &RunEvent) {
        match ev {
            RunEvent::Started { run, flow, node } => {
                self.state()
                    .flow_of_run
                    .insert(run.clone(), (flow.clone(), node.clone()));
                if let Some(n) = &self.notifier {
                    n.notify(
                        NotifyKind::Started,
                        &RunSummary::new(run.clone(), flow.clone(), node.clone()),
                    );
                }
            }
            RunEvent::Finished { run, state, error } => {
                let (rule, flow_node) = {
                    let mut st = self.state();
                    // A backup, a restore or retention may have changed the repository.
                    st.newest_backups = None;
                    (st.rule_of_run.remove(run), st.flow_of_run.remove(run))
                };
                let ok = *state == crate::journal::RunState::Succeeded;
                if let Some(rule) = &rule {
                    self.state().engine.run_finished(rule, ok, Utc::now());
                    self.persist();
                }
                let record = self.runner.journal().get(run).ok();
                let (flow, node) = flow_node.unwrap_or_else(|| {
                    record
                        .as_ref()
                        .map(|r| (r.flow.clone(), r.node.clone()))
                        .unwrap_or_default()
                });
                if let Some(d) = record.as_ref().and_then(|r| r.duration()) {
                    crate::metrics::run_finished(
                        &flow,
                        state.as_str(),
                        d.to_std().unwrap_or_default(),
                    );
                }
                if let (Some(n), Some(kind)) =
                    (&self.notifier, NotifyKind::from_final_state(*state))
                {
                    let mut summary = RunSummary::new(run.clone(), flow.clone(), node.clone());
                    if let Some(e) = error {
                        summary = summary.with_error(e.clone());
                    }
                    n.notify(kind, &summary);
                }
                // A dry run proves nothing about the backup: no event, no gauge.
                let dry_run = record.as_ref().is_some_and(|r| r.dry_run);
                if flow == "drill" && !dry_run {
                    self.after_drill(run, *state, error.as_deref(), node.as_deref());
                }
                if ok && flow == "backup" {
                    self.after_backup(record.as_ref().and_then(|r| r.result.clone()), node);
                }
            }
            _ => {}
        }
    }

    /// Sets the drill gauges from the drills recorded in the repository, so a restarted
    /// daemon reports a failed drill at once instead of only after the next one.
    fn restore_drill_gauges(&self) {
        let (backups, _) = self.runner.repo().list().unwrap_or_default();
        for node in self.runner.nodes().keys() {
            let last = backups
                .iter()
                .filter(|m| &m.node == node)
                .filter_map(|m| m.last_drill.as_ref())
                .max_by_key(|d| d.at);
            if let Some(d) = last {
                crate::metrics::drill_finished(
                    node,
                    d.result == crate::repo::DrillResult::Passed,
                    d.at,
                );
            }
        }
    }

    /// A finished drill becomes a `drill.passed` / `drill.failed` event (rules may act on
    /// it) and the node's drill gauges.
    fn after_drill(
        &self,
        run: &str,
        state: crate::journal::RunState,
        error: Option<&str>,
        node: Option<&str>,
    ) {
        let (backups, _) = self.runner.repo().list().unwrap_or_default();
        if let Some(o) = crate::drills::outcome(run, state, error, node, &backups) {
            crate::metrics::drill_finished(&o.node, o.passed, o.at);
            self.bus.publish(o.event);
        }
    }

    fn after_backup(&self, result: Option<Value>, node: Option<String>) {
        let Some(id) = result.as_ref().and_then(|r| r["id"].as_str()) else {
            return;
        };
        if let Ok(m) = self.runner.repo().manifest(id) {
            crate::metrics::backup_succeeded(&m.node, m.completed_at, m.total_bytes());
        }
        let Some(node) = node else { return };
        // Retention in every repository (local by [retention], off-site by their own).
        let policy = self.state().retention.clone();
        let repo = self.runner.repo();
        // Off-site repositories answer over the network: do not hold an async worker.
        let plans = blocking(|| {
            let mut plans = crate::prune::plan(repo, policy.as_ref(), Some(&node), Utc::now());
            crate::prune::apply(repo, self.runner.state_dir(), &mut plans);
            plans
        });
        for p in &plans {
            for id in &p.deleted {
                tracing::info!(node = %node, "retention: deleted backup {id} from {}", p.repository);
                self.record(
                    "retention",
                    "backup",
                    format!("deleted {id} from {}", p.repository),
                );
            }
            for e in &p.errors {
                tracing::warn!(node = %node, "retention in {}: {e}", p.repository);
            }
        }
    }

    /// Stops every automatic trigger (rules and schedules); manual runs stay allowed.
    /// The pause outlives a restart of the daemon until `resume`.
    /// `by` (`uid N (pid M)`) is kept with the decision.
    pub fn pause(&self, by: &str) {
        {
            let mut st = self.state();
            st.engine.pause();
            st.operator_paused = Some(true);
        }
        self.record("*", &format!("operator {by}"), "paused".into());
        self.persist();
    }

    /// Re-arms automatic triggers.
    pub fn resume(&self, by: &str) {
        {
            let mut st = self.state();
            st.engine.resume();
            st.operator_paused = Some(false);
        }
        self.record("*", &format!("operator {by}"), "resumed".into());
        self.persist();
    }

    /// Clears a rule's tripped breaker.
    pub fn reset(&self, rule: &str, by: &str) -> Result<(), String> {
        self.state().engine.reset(rule).map_err(|e| e.to_string())?;
        self.record(rule, &format!("operator {by}"), "breaker reset".into());
        self.persist();
        Ok(())
    }

    /// Publishes an operator event (`splice-dr trigger`).
    pub fn trigger(&self, name: &str, node: Option<String>, message: &str, by: &str) {
        self.bus.publish(
            Event::new(name, node, message)
                .with_label("source", "operator")
                .with_label("requested_by", by),
        );
    }

    /// Approves a run waiting for approval and starts it.
    pub fn approve(&self, run: &str, by: &str) -> Result<String, String> {
        let (id, _) = self
            .runner
            .start_pending(run, by)
            .map_err(|e| e.to_string())?;
        self.record(
            "approval",
            &format!("operator {by}"),
            format!("approved {id} by {by}"),
        );
        Ok(id)
    }

    /// The automatic side's state for `status`.
    pub fn status(&self) -> Value {
        let now = Utc::now();
        let st = self.state();
        let pending: Vec<Value> = self
            .runner
            .journal()
            .summaries()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.awaits_approval())
            .map(|r| json!({"run": r.id, "flow": r.flow, "node": r.node, "rule": r.approval.as_ref().map(|a| a.rule.clone()), "expires_at": r.approval.as_ref().map(|a| a.expires_at)}))
            .collect();
        json!({
            "paused": st.engine.is_paused(),
            "memory_error": st.memory_error,
            "rules": st.engine.status(now),
            "schedules": st.scheduler.status(),
            "queue": st.queue.iter().collect::<Vec<_>>(),
            "pending_approvals": pending,
            "recent_decisions": st.recent.iter().rev().collect::<Vec<_>>(),
        })
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
