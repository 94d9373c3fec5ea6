//! Starts runs: resolves the flow and node, takes the node lock, journals, executes the
//! script on a blocking thread, and makes cancellation reach it from any process.

use serde_json::Value;
use splice_dr_plugin_api::Backend;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::recording_backend;
use crate::config::NodeConfig;
use crate::journal::{Journal, JournalError, PendingApproval, RunRecord, RunState};
use crate::leader::Leadership;
use crate::lock::{LockError, NodeLock};
use crate::participants::Registry;
use crate::run_context::{Guard, RunContext, RunEvent};
use crate::script::{execute, FlowCatalog, FlowEnv, Limits, NodeFacts};
use splice_dr_repo::Repository;

/// A request to run a flow.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Flow name.
    pub flow: String,
    /// Node; may be omitted when exactly one node is configured.
    pub node: Option<String>,
    /// Parameters, visible to the script as `params`.
    pub params: serde_json::Map<String, Value>,
    /// What started it (`cli`, `socket`, ...).
    pub trigger: String,
    /// Record the plan instead of changing anything.
    pub dry_run: bool,
    /// Who asked (`uid 0 (pid 42)`), journaled in the run's `requests`; `None` for the
    /// daemon's own runs (rules, schedules).
    pub requested_by: Option<String>,
    /// What set it off, when a rule started it; journaled for the incident report.
    pub detection: Option<crate::journal::Detection>,
}

/// Why a run could not be started (or cancelled).
#[derive(Debug, Error)]
pub enum RunError {
    /// No flow of that name is loaded.
    #[error("no flow named `{flow}`; flows in force: {known}")]
    UnknownFlow {
        /// Requested name.
        flow: String,
        /// Loaded names.
        known: String,
    },
    /// No node of that name is configured.
    #[error("no node named `{node}` in the config; configured nodes: {known}")]
    UnknownNode {
        /// Requested node.
        node: String,
        /// Configured names.
        known: String,
    },
    /// Several nodes are configured and none was named.
    #[error("several nodes are configured ({0}): name one with --node")]
    NodeRequired(String),
    /// The node is locked by another run.
    #[error(transparent)]
    Busy(#[from] LockError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The run exists but is not running.
    #[error("run {0} is not running (it is {1})")]
    NotActive(String, String),
    /// Leader election is configured and another replica holds the lease.
    #[error("refused: {0}")]
    NotLeader(String),
}

impl RunError {
    /// Whether the error is the operator's input (exit code 2) rather than a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::UnknownFlow { .. } | RunError::UnknownNode { .. } | RunError::NodeRequired(_)
        )
    }
}

/// A configured node, ready for flows.
#[derive(Clone)]
pub struct NodeRuntime {
    /// Facts scripts see.
    pub facts: NodeFacts,
    /// Its backend.
    pub backend: Arc<dyn Backend>,
    /// Client of its validator admin API, when `[node.validator]` is configured.
    pub validator: Option<Arc<crate::validator::ValidatorClient>>,
    /// Its config, to build the backend again when the migration id it runs moves.
    pub config: Arc<NodeConfig>,
    /// The migration id the backend was built for and `facts.participant_db` names: the
    /// one the node runs (see [`running_migration_id`]), not necessarily the config's.
    pub migration_id: u64,
}

/// The migration id `node` runs: its registry's after a network DR, else the config's.
/// A registry that cannot be read counts as none here (`status` shows why).
pub fn running_migration_id(state_dir: &Path, node: &NodeConfig) -> u64 {
    Registry::load(state_dir, &node.name)
        .map(|r| r.running_migration_id(node.migration_id))
        .unwrap_or(node.migration_id)
}

impl NodeRuntime {
    /// This node for the migration id it runs now, when that moved since its backend was
    /// built (a network DR of this process or of another one): the backend built again for
    /// it and the participant database named for it; `None` when nothing moved or the new
    /// backend cannot be built (logged; the old one stays).
    fn following_registry(&self) -> Option<NodeRuntime> {
        let state_dir = self.facts.state_dir.as_path();
        let running = running_migration_id(state_dir, &self.config);
        if running == self.migration_id {
            return None;
        }
        let from = |migration_id| crate::backends::BuiltFrom {
            node: &self.config,
            migration_id,
            state_dir,
        };
        let old = Some((from(self.migration_id), &self.backend));
        match crate::backends::build_or_reuse(from(running), old) {
            Ok(backend) => Some(NodeRuntime {
                facts: NodeFacts {
                    participant_db: self.config.participant_db_at(running),
                    ..self.facts.clone()
                },
                backend,
                validator: self.validator.clone(),
                config: self.config.clone(),
                migration_id: running,
            }),
            Err(e) => {
                tracing::warn!(node = %self.facts.name, "the node runs migration {running}, but its backend cannot be built for it: {e}");
                None
            }
        }
    }
}

/// Executes flows; shared by the daemon and by the CLI when no daemon answers, so both
/// use the same journal, locks and scripts.
pub struct Runner {
    catalog: RwLock<Arc<FlowCatalog>>,
    nodes: RwLock<Arc<BTreeMap<String, NodeRuntime>>>,
    journal: Journal,
    repo: Repository,
    state_dir: PathBuf,
    run_timeout: RwLock<Duration>,
    limits: Limits,
    events: broadcast::Sender<RunEvent>,
    active: Mutex<HashMap<String, (Guard, Arc<RunContext>)>>,
    leadership: RwLock<Leadership>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Runner {
    /// A runner over the given flows and nodes.
    pub fn new(
        catalog: FlowCatalog,
        nodes: BTreeMap<String, NodeRuntime>,
        journal: Journal,
        repo: Repository,
        state_dir: PathBuf,
        run_timeout: Duration,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Runner {
            catalog: RwLock::new(Arc::new(catalog)),
            nodes: RwLock::new(Arc::new(nodes)),
            journal,
            repo,
            state_dir,
            run_timeout: RwLock::new(run_timeout),
            limits: Limits::default(),
            events,
            active: Mutex::new(HashMap::new()),
            leadership: RwLock::new(Leadership::always()),
        })
    }

    /// Makes runs depend on a leader election: only the lease holder starts runs, and a
    /// run whose replica loses the lease starts no further forward step.
    pub fn set_leadership(&self, leadership: Leadership) {
        *self.leadership.write().unwrap_or_else(|p| p.into_inner()) = leadership;
    }

    /// The leadership runs depend on ([`Leadership::always`] without an election).
    pub fn leadership(&self) -> Leadership {
        read(&self.leadership)
    }

    fn check_leader(&self) -> Result<(), RunError> {
        match self.leadership().refusal() {
            Some(why) => Err(RunError::NotLeader(why)),
            None => Ok(()),
        }
    }

    /// Replaces flows, nodes and the timeout after a config reload; running flows keep
    /// what they started with.
    pub fn reconfigure(
        &self,
        catalog: FlowCatalog,
        nodes: BTreeMap<String, NodeRuntime>,
        run_timeout: Duration,
    ) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        *self.nodes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(nodes);
        *self.run_timeout.write().unwrap_or_else(|p| p.into_inner()) = run_timeout;
    }

    /// The flows in force.
    pub fn catalog(&self) -> Arc<FlowCatalog> {
        read(&self.catalog)
    }

    /// The configured nodes.
    pub fn nodes(&self) -> Arc<BTreeMap<String, NodeRuntime>> {
        read(&self.nodes)
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The daemon's state directory (locks, journal, registries).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Live events of every run in this process.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.events.subscribe()
    }

    /// Ids of runs executing in this process.
    pub fn active_runs(&self) -> Vec<String> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// `name`'s runtime for the migration id it runs now, installed for later runs and
    /// status probes when it moved (see [`NodeRuntime::following_registry`]); `current` is
    /// what the caller holds. A reload that replaced the node meanwhile wins.
    fn follow_registry(&self, name: &str, current: NodeRuntime) -> NodeRuntime {
        let Some(moved) = current.following_registry() else {
            return current;
        };
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if nodes
            .get(name)
            .is_some_and(|n| Arc::ptr_eq(&n.config, &current.config))
        {
            let mut next = (**nodes).clone();
            next.insert(name.to_string(), moved.clone());
            *nodes = Arc::new(next);
        }
        moved
    }

    /// Resolves the node a request acts on.
    pub fn resolve_node(&self, node: Option<&str>) -> Result<(String, NodeRuntime), RunError> {
        let nodes = self.nodes();
        let known = || nodes.keys().cloned().collect::<Vec<_>>().join(", ");
        match node {
            Some(n) => nodes
                .get(n)
                .map(|rt| (n.to_string(), rt.clone()))
                .ok_or_else(|| RunError::UnknownNode {
                    node: n.into(),
                    known: known(),
                }),
            None if nodes.len() == 1 => Ok(nodes
                .iter()
                .next()
                .map(|(n, rt)| (n.clone(), rt.clone()))
                .ok_or_else(|| RunError::NodeRequired(known()))?),
            None => Err(RunError::NodeRequired(known())),
        }
    }

    fn new_record(
        &self,
        req: &RunRequest,
    ) -> Result<(crate::script::Flow, String, NodeRuntime, RunRecord), RunError> {
        let catalog = self.catalog();
        let flow = catalog
            .get(&req.flow)
            .cloned()
            .ok_or_else(|| RunError::UnknownFlow {
                flow: req.flow.clone(),
                known: catalog.names().join(", "),
            })?;
        let (node_name, node) = self.resolve_node(req.node.as_deref())?;
        let id = self.journal.new_run_id(&req.flow);
        let mut record = RunRecord::new(id, &req.flow, Some(node_name.clone()));
        record.trigger = req.trigger.clone();
        record.params = req.params.clone();
        record.dry_run = req.dry_run;
        record.detection = req.detection.clone();
        if let Some(by) = &req.requested_by {
            record.requests.push(format!("{} by {by}", req.flow));
        }
        Ok((flow, node_name, node, record))
    }

    /// Journals a run that waits for an operator's approval (`splice-dr approve`) and
    /// returns its id; nothing runs until [`Runner::start_pending`].
    pub fn create_pending(
        &self,
        req: RunRequest,
        approval: PendingApproval,
    ) -> Result<String, RunError> {
        let (_, _, _, mut record) = self.new_record(&req)?;
        record.approval = Some(approval);
        self.journal.save(&record)?;
        Ok(record.id)
    }

    /// Starts a run that was waiting for approval, under the same id.
    pub fn start_pending(
        self: &Arc<Self>,
        id: &str,
        approved_by: &str,
    ) -> Result<(String, JoinHandle<RunRecord>), RunError> {
        self.check_leader()?;
        let mut record = self.journal.get(id)?;
        let waiting = record.state == RunState::Pending
            && record
                .approval
                .as_ref()
                .is_some_and(|a| a.approved_by.is_none());
        if !waiting {
            return Err(RunError::NotActive(
                id.into(),
                format!("{}, not waiting for approval", record.state.as_str()),
            ));
        }
        if let Some(a) = record.approval.as_mut() {
            a.approved_by = Some(approved_by.into());
        }
        let req = RunRequest {
            flow: record.flow.clone(),
            node: record.node.clone(),
            params: record.params.clone(),
            trigger: record.trigger.clone(),
            dry_run: record.dry_run,
            requested_by: None,
            detection: record.detection.clone(),
        };
        record.requests.push(format!("approve by {approved_by}"));
        let (flow, node_name, node, _) = self.new_record(&req)?;
        self.launch(flow, node_name, node, record, req)
    }

    /// Starts a run and returns its id and a handle resolving to its final record.
    /// A node that is busy is refused visibly: the refusal is journaled as a failed run.
    pub fn start(
        self: &Arc<Self>,
        req: RunRequest,
    ) -> Result<(String, JoinHandle<RunRecord>), RunError> {
        self.start_noting(req, |_| {})
    }

    /// [`Self::start`], handing the new run's id to `starting` before the flow can act:
    /// the autopilot writes down which rule started the run first, so a crash at any later
    /// point is charged to that rule.
    pub fn start_noting(
        self: &Arc<Self>,
        req: RunRequest,
        starting: impl FnOnce(&str),
    ) -> Result<(String, JoinHandle<RunRecord>), RunError> {
        self.check_leader()?;
        let (flow, node_name, node, record) = self.new_record(&req)?;
        starting(&record.id);
        self.launch(flow, node_name, node, record, req)
    }

    fn launch(
        self: &Arc<Self>,
        flow: crate::script::Flow,
        node_name: String,
        node: NodeRuntime,
        mut record: RunRecord,
        req: RunRequest,
    ) -> Result<(String, JoinHandle<RunRecord>), RunError> {
        let id = record.id.clone();
        let lock = match NodeLock::try_acquire(&self.state_dir, &node_name, &format!("run {id}")) {
            Ok(l) => l,
            Err(e) => {
                record.state = RunState::Failed;
                record.error = Some(format!("refused: {e}"));
                record.finished_at = Some(chrono::Utc::now());
                self.journal.save(&record)?;
                return Err(e.into());
            }
        };
        // Under the node's lock the registry holds still: the run sees the migration id
        // the node runs (a network DR moved it, perhaps in another process).
        let node = self.follow_registry(&node_name, node);
        if !req.dry_run {
            if let Ok(removed) = self.repo.discard_incomplete(&node_name) {
                for r in removed {
                    tracing::warn!(node = %node_name, "removed unsealed backup {r} left by an interrupted run");
                }
            }
        }
        record.state = RunState::Running;
        record.started_at = Some(chrono::Utc::now());
        self.journal.save(&record)?;

        let guard =
            Guard::new(Instant::now() + read(&self.run_timeout)).with_leadership(self.leadership());
        let asked = record.requests.clone();
        let ctx = RunContext::new(
            record,
            self.journal.clone(),
            self.events.clone(),
            guard.clone(),
        );
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (guard.clone(), ctx.clone()));
        let _ = self.events.send(RunEvent::Started {
            run: id.clone(),
            flow: req.flow.clone(),
            node: Some(node_name.clone()),
        });
        // Who asked for the run (and approved it) is part of its event stream too.
        for what in asked {
            let _ = self.events.send(RunEvent::Log {
                run: id.clone(),
                level: "info".into(),
                message: what,
            });
        }

        let watcher = tokio::spawn(watch_cancel_file(
            self.journal.cancel_request_path(&id),
            guard.clone(),
        ));
        let backend: Arc<dyn Backend> = if req.dry_run {
            recording_backend(node.backend.clone(), ctx.clone())
        } else {
            node.backend.clone()
        };
        let env = Arc::new(FlowEnv {
            run: ctx.clone(),
            backend,
            repo: self.repo.clone(),
            node: node.facts.clone(),
            params: req.params,
            validator: node.validator.clone(),
            sealed: Default::default(),
        });
        let runner = self.clone();
        let limits = self.limits;
        let run_id = id.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let outcome = execute(&flow, env, &limits);
            let record = match outcome {
                Ok(v) => ctx.finish(RunState::Succeeded, Some(v), None),
                Err(e) if ctx.guard().lost_leadership() => {
                    let why = format!("{}: {e}", Leadership::lost_message());
                    ctx.finish(RunState::Failed, None, Some(why))
                }
                Err(e) if ctx.guard().soft_stop().is_some() => {
                    ctx.finish(RunState::Cancelled, None, Some(stop_error(ctx.guard(), e)))
                }
                Err(e) => ctx.finish(RunState::Failed, None, Some(e)),
            };
            // A run that moved the node to another migration (dr_snapshot, reonboard): later
            // runs and status probes use the backend built for it.
            if let Some(rt) = runner.nodes().get(&node_name).cloned() {
                runner.follow_registry(&node_name, rt);
            }
            drop(lock);
            watcher.abort();
            let _ = std::fs::remove_file(runner.journal.cancel_request_path(&run_id));
            runner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
            ctx.announce_finished(&record);
            // Journal retention ([journal]) when a run ends; never an unfinished run.
            runner
                .journal
                .apply_retention(&format!("after run {run_id}"));
            record
        });
        Ok((id, handle))
    }

    /// Whether another run (in any process) holds the node's lock right now.
    pub fn node_busy(&self, node: Option<&str>) -> bool {
        match self.resolve_node(node) {
            Ok((name, _)) => NodeLock::try_acquire(&self.state_dir, &name, "probe").is_err(),
            Err(_) => false,
        }
    }

    /// Deletes a backup of `node` under the node's lock (retention); refuses while any
    /// run holds the lock, so a restore never loses the backup it is reading.
    pub fn prune_backup(&self, node: &str, id: &str) -> Result<(), String> {
        let _lock = NodeLock::try_acquire(&self.state_dir, node, &format!("retention of {id}"))
            .map_err(|e| e.to_string())?;
        self.repo.delete(id).map_err(|e| e.to_string())
    }

    /// Asks a run to stop, whichever process owns it. A run still waiting for approval
    /// is simply ended as cancelled.
    pub fn cancel(&self, id: &str) -> Result<(), RunError> {
        self.cancel_by(id, "the daemon (shutdown)")
    }

    /// Asks a run to stop on behalf of `by` (`uid 0 (pid 9)`), journaled in its `requests`.
    pub fn cancel_by(&self, id: &str, by: &str) -> Result<(), RunError> {
        let mut run = self.journal.get(id)?;
        if !run.state.is_active() {
            return Err(RunError::NotActive(id.into(), run.state.as_str().into()));
        }
        if run.state == RunState::Pending
            && run
                .approval
                .as_ref()
                .is_some_and(|a| a.approved_by.is_none())
        {
            run.state = RunState::Cancelled;
            run.error = Some("cancelled while waiting for approval".into());
            run.finished_at = Some(chrono::Utc::now());
            run.requests.push(format!("cancel by {by}"));
            self.journal.save(&run)?;
            return Ok(());
        }
        if let Some(g) = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            g.0.request_cancel();
            g.1.note_request(&format!("cancel by {by}"));
        }
        let path = self.journal.cancel_request_path(id);
        std::fs::write(&path, format!("cancel by {by}\n"))
            .map_err(|source| JournalError::Io { path, source })?;
        Ok(())
    }
}

/// A stopped run's error, saying why it stopped (deadline, cancel) when the script's own
/// message does not: the operator must see that `run_timeout` ended a restore.
fn stop_error(guard: &Guard, e: String) -> String {
    match guard.soft_stop() {
        Some(why) if !e.contains(why) => format!("{why}; {e}"),
        _ => e,
    }
}

async fn watch_cancel_file(path: PathBuf, guard: Guard) {
    loop {
        if path.exists() {
            guard.request_cancel();
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
