//! Health probes: each node's Postgres (connect + a catalog query) and each component's
//! readiness (the backend's own check, e.g. the validator's `readyz`), polled on an
//! interval. Only changes become events — `health.<component>.down` / `.up` with the
//! probe's error text — so a node that stays down does not flood the rules.

use chrono::{DateTime, Utc};
use splice_dr_plugin_api::{Backend, BackendError, ComponentStatus, DatabaseInfo, OpContext};
pub use splice_dr_protocol::status::HealthChange;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{Event, EventBus};

/// `(node, component)` → `(up, detail, since)`.
type StateMap = BTreeMap<(String, String), (bool, String, DateTime<Utc>)>;

/// What a node's latest probe round answered in time, kept whole so the daemon's
/// `status` reuses it instead of asking the node (and its readyz URL) a second time.
#[derive(Debug, Clone, Default)]
pub struct NodeAnswers {
    /// When the round started.
    pub at: Option<DateTime<Utc>>,
    /// The node's databases, when the backend answered.
    pub databases: Option<Vec<DatabaseInfo>>,
    /// The node's components, when the backend answered.
    pub components: Option<Vec<ComponentStatus>>,
}

/// The current state of every probed component and the recent changes, for `status`
/// and for flows that must know whether the node was healthy at some time.
#[derive(Debug, Default)]
pub struct HealthBoard {
    state: Mutex<StateMap>,
    history: Mutex<VecDeque<HealthChange>>,
    answers: Mutex<BTreeMap<String, NodeAnswers>>,
    /// Where first observations that are `up` are logged (see [`HealthBoard::logging_to`]).
    log_dir: Option<std::path::PathBuf>,
}

const HISTORY: usize = 1000;

impl HealthBoard {
    /// A board that also writes each component's first observation, when it is `up`, to
    /// the durable health log under `state_dir`. Such an observation is no change and no
    /// event, but without it the log of a daemon restarted while the node was healthy
    /// would still end in the outage before the restart, and "down since" would count
    /// from then (see `splice_dr_automation::runway::outage`).
    pub fn logging_to(state_dir: &std::path::Path) -> Self {
        HealthBoard {
            log_dir: Some(state_dir.to_path_buf()),
            ..HealthBoard::default()
        }
    }

    /// Records an observation; returns the change when the state differs from the last one
    /// (a first observation counts as a change only when it is `down`).
    pub fn observe(
        &self,
        node: &str,
        component: &str,
        up: bool,
        detail: &str,
    ) -> Option<HealthChange> {
        let key = (node.to_string(), component.to_string());
        let now = Utc::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let previous = state.get(&key).map(|s| s.0);
        if previous == Some(up) {
            if let Some(s) = state.get_mut(&key) {
                s.1 = detail.to_string();
            }
            return None;
        }
        state.insert(key, (up, detail.to_string(), now));
        if previous.is_none() && up {
            drop(state);
            self.log_first_up(node, component, detail, now);
            return None;
        }
        let change = HealthChange {
            at: now,
            node: node.into(),
            component: component.into(),
            up,
            detail: detail.into(),
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(change.clone());
        Some(change)
    }

    fn log_first_up(&self, node: &str, component: &str, detail: &str, at: DateTime<Utc>) {
        let Some(dir) = &self.log_dir else { return };
        let entry = super::health_log::HealthEntry {
            at,
            component: component.into(),
            up: true,
            detail: detail.into(),
        };
        if let Err(e) = super::health_log::append(dir, node, &entry) {
            tracing::warn!(node = %node, "cannot record a health observation: {e}");
        }
    }

    /// The `component` label a metric may carry: a component the probes observed on
    /// `node`, else `other`. Alert and operator events carry labels anyone can choose; a
    /// bounded label set keeps them from creating one metric series each.
    pub fn bounded_component<'a>(&self, node: &str, component: &'a str) -> &'a str {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.contains_key(&(node.to_string(), component.to_string())) {
            component
        } else {
            "other"
        }
    }

    /// Current state of every probed component.
    pub fn snapshot(&self) -> Vec<HealthChange> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((n, c), (up, d, since))| HealthChange {
                at: *since,
                node: n.clone(),
                component: c.clone(),
                up: *up,
                detail: d.clone(),
            })
            .collect()
    }

    /// Keeps what `node`'s latest probe round answered.
    pub fn answered(&self, node: &str, answers: NodeAnswers) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.into(), answers);
    }

    /// What `node`'s latest probe round answered (nothing before the first round).
    pub fn answers(&self, node: &str) -> NodeAnswers {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Recent changes, oldest first.
    pub fn history(&self) -> Vec<HealthChange> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// How long past its limit a probe may take to come back before it is reported hung.
const PROBE_GRACE: Duration = Duration::from_secs(2);

/// An error of a call bounded by [`OpContext::with_deadline`], in words: a call the
/// deadline cut short says that the backend did not answer in time.
pub fn bounded_error(e: &BackendError, limit: Duration) -> String {
    match e {
        BackendError::Cancelled { what } => {
            format!("no answer within {}s ({what})", limit.as_secs().max(1))
        }
        other => other.to_string(),
    }
}

/// One probe round of one node: `(component, up, detail)` for Postgres and every
/// component, and the answers themselves. Every backend call gives up when `limit` has
/// passed, so a hung engine or API server costs one late answer, not a thread per round.
pub fn probe_node(
    backend: &dyn Backend,
    limit: Duration,
) -> (Vec<(String, bool, String)>, NodeAnswers) {
    let ctx = OpContext::with_deadline(limit);
    let mut out = Vec::new();
    let mut answers = NodeAnswers {
        at: Some(Utc::now()),
        ..NodeAnswers::default()
    };
    match backend.databases(&ctx) {
        Ok(dbs) => {
            answers.databases = Some(dbs.clone());
            let missing: Vec<String> = dbs
                .iter()
                .filter(|d| !d.exists)
                .map(|d| d.name.clone())
                .collect();
            if missing.is_empty() {
                out.push(("postgres".into(), true, "databases present".into()));
            } else {
                out.push((
                    "postgres".into(),
                    false,
                    format!("database(s) missing: {}", missing.join(", ")),
                ));
            }
        }
        Err(e) => out.push(("postgres".into(), false, bounded_error(&e, limit))),
    }
    if let Ok(components) = backend.components(&ctx) {
        answers.components = Some(components.clone());
        for c in components
            .into_iter()
            .filter(|c| c.state != "unknown" || c.ready)
        {
            out.push((c.name, c.ready, c.detail));
        }
    }
    (out, answers)
}

/// Polls every node until `shutdown`, publishing state changes on `bus`.
pub async fn run_probes(
    nodes: impl Fn() -> Vec<(String, Arc<dyn Backend>)> + Send + 'static,
    board: Arc<HealthBoard>,
    bus: EventBus,
    interval: Duration,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    loop {
        // Every node at once: hung nodes cost a round one timeout, not one each.
        let probes: Vec<_> = nodes()
            .into_iter()
            .map(|(name, backend)| {
                let probe =
                    tokio::task::spawn_blocking(move || probe_node(backend.as_ref(), timeout));
                (name, probe)
            })
            .collect();
        for (name, probe) in probes {
            // The probe bounds its own calls; this only catches a backend that ignores
            // cancellation (its thread is then left behind).
            let (results, answers) = match tokio::time::timeout(timeout + PROBE_GRACE, probe).await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => (
                    vec![("postgres".into(), false, format!("probe panicked: {e}"))],
                    NodeAnswers::default(),
                ),
                Err(_) => (
                    vec![(
                        "postgres".into(),
                        false,
                        format!("probe timed out after {}s", timeout.as_secs()),
                    )],
                    NodeAnswers::default(),
                ),
            };
            board.answered(&name, answers);
            for (component, up, detail) in results {
                if let Some(change) = board.observe(&name, &component, up, &detail) {
                    let state = if change.up { "up" } else { "down" };
                    bus.publish(
                        Event::new(
                            format!("health.{component}.{state}"),
                            Some(name.clone()),
                            detail,
                        )
                        .with_label("component", component),
                    );
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_components_are_only_probed_ones() {
        let board = HealthBoard::default();
        board.observe("n1", "validator", true, "ok");
        assert_eq!(board.bounded_component("n1", "validator"), "validator");
        assert_eq!(
            board.bounded_component("n1", "made-up-by-an-alert"),
            "other"
        );
        assert_eq!(board.bounded_component("n2", "validator"), "other");
    }

    #[test]
    fn only_changes_are_reported_and_a_healthy_start_is_quiet() {
        let b = HealthBoard::default();
        assert!(b.observe("n", "postgres", true, "ok").is_none());
        assert!(b.observe("n", "postgres", true, "ok").is_none());
        let down = b.observe("n", "postgres", false, "refused").unwrap();
        assert!(!down.up);
        assert!(b.observe("n", "postgres", false, "still refused").is_none());
        assert!(b.observe("n", "postgres", true, "ok").unwrap().up);
        assert!(
            b.observe("n", "validator", false, "503").is_some(),
            "a first observation that is down is reported"
        );
        assert_eq!(b.history().len(), 3);
    }

    #[test]
    fn a_first_up_observation_is_logged_though_it_is_no_event() {
        let dir = tempfile::tempdir().unwrap();
        let b = HealthBoard::logging_to(dir.path());
        assert!(b.observe("n", "postgres", true, "ok").is_none());
        assert!(b.observe("n", "postgres", true, "ok").is_none());
        let log = super::super::health_log::read(dir.path(), "n");
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(log[0].up && log[0].component == "postgres");
        // A first observation that is down is an event, logged by the bus's recorder.
        assert!(b.observe("n", "validator", false, "503").is_some());
        assert_eq!(super::super::health_log::read(dir.path(), "n").len(), 1);
    }
}
