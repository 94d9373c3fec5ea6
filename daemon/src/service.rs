//! The core both front ends share: the daemon serves it over the socket, and the CLI calls
//! it in-process when no daemon answers. One code path means the same journal, the same
//! node locks and the same flows whichever way an operator comes in.

use serde::Serialize;
use splice_dr_protocol as view;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc};

use crate::access::{self, Caller, Role};
use crate::config::{Config, ConfigError};
use crate::events::health::{bounded_error, NodeAnswers};
use crate::flows::{RunError, RunRequest, Runner};
use crate::journal::{Journal, RunSummary};
use crate::lock::NodeLock;
use crate::prepare::{Core, Prepared};
use crate::run_context::RunEvent;
use crate::status_state::StatusBoard;
use splice_dr_plugin_api::{BackendError, Leftovers};
use splice_dr_protocol::wire::{ErrorCode, Reply, Request, CRATE_VERSION, PROTOCOL_VERSION};
use splice_dr_repo::{Located, Manifest, Repository};

pub use crate::flows::runner::NodeRuntime;

/// How long each node's part of `status` may take: a node whose engine or API server
/// hangs shows "no answer within 10s" instead of hanging the operator's command.
const STATUS_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long past [`STATUS_LIMIT`] a node's status probe may take to come back before the
/// round goes on without it.
const STATUS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the daemon's status rounds reuse a node's leftovers answer (a run ending or a
/// reload asks again at once).
const LEFTOVERS_REFRESH: chrono::Duration = chrono::Duration::seconds(60);
/// How long `status` waits for the round a run's end asked for (normally milliseconds:
/// a hung node's part is not waited for past this).
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long start-up recovery may spend on one node before the daemon serves anyway.
const RECOVERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Why the service could not be opened on a built config.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The state directory or repository is unusable.
    #[error("{0}")]
    Storage(String),
}

/// The journal, repository and runner a built config opens, before any service exists:
/// the daemon builds the autopilot's [`crate::autopilot::Context`] on this runner and
/// then the service over both.
pub struct Opened {
    /// The config in force.
    pub config: Config,
    /// The runner over the config's flows and nodes.
    pub runner: Arc<Runner>,
}

impl Opened {
    /// Opens the state directory's journal and the repository, and builds the runner.
    pub fn open(core: Core) -> Result<Self, ServiceError> {
        let config = core.config;
        let storage = |e: &dyn std::fmt::Display| ServiceError::Storage(e.to_string());
        let journal = Journal::open(&config.daemon.state_dir).map_err(|e| storage(&e))?;
        journal.set_retention(Some(core.journal_retention));
        let repo = Repository::open(&config.repository.path).map_err(|e| storage(&e))?;
        repo.set_offsite(core.offsite);
        repo.set_keyring(core.keyring);
        let runner = Runner::new(
            core.catalog,
            core.nodes,
            journal,
            repo,
            config.daemon.state_dir.clone(),
            config.daemon.run_timeout,
        );
        Ok(Opened { config, runner })
    }
}

/// The shared core.
pub struct Service {
    /// The daemon's automatic side (rules, schedules, probes); none in-process.
    autopilot: Option<Arc<crate::autopilot::Autopilot>>,
    /// The daemon's latest status probe of every node (`status` from state).
    board: Arc<StatusBoard>,
    /// Every streaming node's continuous WAL, as the daemon's WAL supervisor keeps it.
    wal: Arc<crate::wal::WalBoard>,
    /// Set once the daemon's status probe loop runs: `status` then serves the board.
    probing: std::sync::atomic::AtomicBool,
    config: RwLock<Arc<Config>>,
    config_error: RwLock<Option<String>>,
    runner: Arc<Runner>,
    mode: &'static str,
    started: Instant,
}

/// Clears a node's in-flight mark when its probe thread returns, panics included.
struct InFlight<'a>(&'a StatusBoard, &'a str);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

fn failed(message: impl ToString) -> Reply {
    Reply::error(ErrorCode::Failed, message.to_string())
}

fn run_error(e: RunError) -> Reply {
    let code = match &e {
        e if e.is_usage() => ErrorCode::Usage,
        RunError::Busy(_) => ErrorCode::Busy,
        _ => ErrorCode::Failed,
    };
    Reply::error(code, e.to_string())
}

/// The final reply carrying a typed answer (the views of `splice-dr-protocol`).
fn ok(answer: impl Serialize) -> Reply {
    match serde_json::to_value(answer) {
        Ok(result) => Reply::Ok { result },
        Err(e) => failed(format!("cannot encode the answer: {e}")),
    }
}

/// The final reply of a handler: its typed answer, or the error reply it chose.
fn reply<T: Serialize>(answer: Result<T, Reply>) -> Reply {
    answer.map_or_else(|r| r, ok)
}

/// A one-line view of a run for lists.
pub fn run_summary(r: &RunSummary) -> view::RunSummary {
    view::RunSummary {
        id: r.id.clone(),
        flow: r.flow.clone(),
        node: r.node.clone(),
        state: r.state,
        trigger: r.trigger.clone(),
        dry_run: r.dry_run,
        created_at: r.created_at,
        duration_ms: r.duration().map(|d| d.num_milliseconds()),
        current_step: r.current_step.clone(),
        error: r.error.clone(),
    }
}

/// The node's most recent drill of any of its backups, with the backup's id.
fn last_drill(backups: &[Manifest], node: &str) -> Option<view::LastDrill> {
    backups
        .iter()
        .filter(|m| m.node == node)
        .filter_map(|m| m.last_drill.as_ref().map(|d| (m, d)))
        .max_by_key(|(_, d)| d.at)
        .map(|(m, d)| view::LastDrill {
            backup: m.id.clone(),
            at: d.at,
            result: d.result,
            detail: d.detail.clone(),
        })
}

/// A node's newest backup as `status` shows it.
fn last_backup(m: &Manifest) -> view::LastBackup {
    view::LastBackup {
        id: m.id.clone(),
        created_at: m.created_at,
        age_secs: (chrono::Utc::now() - m.created_at).num_seconds(),
        drill: m.last_drill.clone(),
    }
}

/// One backup as `backups` lists it; `untrusted_because` says why this site does not
/// trust it.
fn backup_summary(l: &Located, untrusted_because: Option<String>) -> view::BackupSummary {
    let m = &l.manifest;
    view::BackupSummary {
        id: m.id.clone(),
        node: m.node.clone(),
        migration_id: m.migration_id,
        created_at: m.created_at,
        completed_at: m.completed_at,
        age_secs: (chrono::Utc::now() - m.created_at).num_seconds(),
        bytes: m.total_bytes(),
        server_version: m.server_version.clone(),
        kind: m.kind,
        last_drill: m.last_drill.clone(),
        dumps: m.dumps.iter().map(dump_summary).collect(),
        locations: l.locations.clone(),
        trusted: untrusted_because.is_none(),
        untrusted_because,
    }
}

fn dump_summary(d: &splice_dr_repo::DumpEntry) -> view::DumpSummary {
    view::DumpSummary {
        role: d.info.role.clone(),
        database: d.info.database.clone(),
        started_at: d.info.started_at,
        finished_at: d.info.finished_at,
        tables: d.info.tables.len(),
        rows: d.info.tables.iter().map(|t| t.rows).sum::<u64>(),
    }
}

/// A node's status as the board or a probe holds it, typed; lossless, as every field
/// the view does not name is kept as sent.
impl Service {
    /// Builds the service from what [`crate::prepare::prepare`] built for its config, with
    /// no automatic side (the CLI in-process); `mode` is shown in `status`.
    pub fn new(core: Core, mode: &'static str) -> Result<Arc<Self>, ServiceError> {
        Ok(Service::over(Opened::open(core)?, mode, None))
    }

    /// Builds the service over an opened runner and, in the daemon, the autopilot built
    /// on the same runner: both are given here, so nothing is attached later.
    pub fn over(
        opened: Opened,
        mode: &'static str,
        autopilot: Option<Arc<crate::autopilot::Autopilot>>,
    ) -> Arc<Self> {
        Arc::new(Service {
            autopilot,
            board: Arc::default(),
            wal: Arc::default(),
            probing: Default::default(),
            config: RwLock::new(Arc::new(opened.config)),
            config_error: RwLock::new(None),
            runner: opened.runner,
            mode,
            started: Instant::now(),
        })
    }

    fn autopilot(&self) -> Result<&Arc<crate::autopilot::Autopilot>, Reply> {
        self.autopilot.as_ref().ok_or_else(|| {
            Reply::error(
                ErrorCode::Failed,
                "this needs the running daemon (rules and approvals live there): start it with `splice-dr daemon`",
            )
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The continuous-WAL board `status` shows, for the daemon's WAL supervisor to fill.
    pub fn wal_board(&self) -> Arc<crate::wal::WalBoard> {
        self.wal.clone()
    }

    /// The runner (for tests and the daemon's shutdown).
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Live events of every run in this process.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.runner.subscribe()
    }

    /// Start-up recovery: marks runs whose owner died as interrupted, and for every node
    /// whose lock is free drops half-restored staging databases and unsealed backups.
    /// Kept databases (the previous live data of a restore that died after its swap) are
    /// never dropped automatically; `status` shows them. Returns what it did, for logs.
    /// Backend calls block, so this runs on a blocking thread.
    pub async fn recover(self: &Arc<Self>) -> Vec<String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.recover_blocking())
            .await
            .unwrap_or_else(|e| vec![format!("start-up recovery panicked: {e}")])
    }

    fn recover_blocking(&self) -> Vec<String> {
        let mut notes = Vec::new();
        // What each node's interrupted runs left undone: undone below.
        let mut undone = BTreeMap::new();
        match self.runner.journal().mark_orphans() {
            Ok(runs) => {
                undone = crate::interrupted::collect(&runs);
                for r in runs {
                    notes.push(format!(
                        "run {} ({}) marked interrupted: {}",
                        r.id,
                        r.flow,
                        r.error.unwrap_or_default()
                    ));
                }
            }
            Err(e) => notes.push(format!("cannot scan the journal: {e}")),
        }
        let state_dir = self.config().daemon.state_dir.clone();
        let nodes = self.runner.nodes();
        // Nodes in parallel: a hung one costs its own deadline, not everyone's.
        let per_node: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|(name, node)| {
                    let (state_dir, undone) = (&state_dir, undone.get(name).cloned());
                    s.spawn(move || {
                        self.recover_node(state_dir, name, node, &undone.unwrap_or_default())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec!["start-up recovery of a node panicked".into()])
                })
                .collect()
        });
        notes.extend(per_node.into_iter().flatten());
        notes
    }

    /// Start-up recovery of one node, under its lock (skipped when a run holds it).
    fn recover_node(
        &self,
        state_dir: &std::path::Path,
        name: &str,
        node: &NodeRuntime,
        undone: &crate::interrupted::Unfinished,
    ) -> Vec<String> {
        let Ok(_lock) = NodeLock::try_acquire(state_dir, name, "start-up recovery") else {
            return Vec::new();
        };
        // Storage put back and components running again before scratch data is dropped.
        let mut notes = crate::interrupted::recover(name, node, undone);
        notes.extend(self.recover_storage(name, node));
        if let Ok(removed) = self.runner.repo().discard_incomplete(name) {
            for r in removed {
                notes.push(format!("node {name}: removed unsealed backup {r}"));
            }
        }
        notes
    }

    /// Drops the half-restored databases of one node; kept data is listed, never dropped.
    /// Bounded: a hung node must not keep the daemon from serving the others.
    fn recover_storage(&self, name: &str, node: &NodeRuntime) -> Vec<String> {
        let mut notes = Vec::new();
        let ctx = splice_dr_plugin_api::OpContext::with_deadline(RECOVERY_LIMIT);
        let left = match node.backend.leftovers(&ctx) {
            Ok(left) => left,
            Err(e) => {
                notes.push(format!(
                    "node {name}: cannot look for half-restored databases: {}",
                    bounded_error(&e, RECOVERY_LIMIT)
                ));
                return notes;
            }
        };
        if !left.staged.is_empty() {
            let live = node.backend.databases(&ctx).unwrap_or_default();
            let staged: Vec<_> = left
                .staged
                .iter()
                .filter_map(|s| {
                    let db = live
                        .iter()
                        .find(|d| s.starts_with(&format!("{}__sdr_", d.name)))?;
                    Some(splice_dr_plugin_api::StagedDb {
                        role: db.role.clone(),
                        live: db.name.clone(),
                        staging: s.clone(),
                    })
                })
                .collect();
            match node.backend.drop_staged(&ctx, &staged) {
                Ok(()) => notes.push(format!(
                    "node {name}: dropped half-restored {}",
                    left.staged.join(", ")
                )),
                Err(e) => notes.push(format!(
                    "node {name}: cannot drop half-restored databases: {e}"
                )),
            }
        }
        for k in left.kept {
            notes.push(format!("node {name}: database {k} holds data replaced by an interrupted restore; drop it once the node is verified"));
        }
        notes
    }

    /// Applies a reloaded config, or records why it was rejected: everything the config
    /// implies is built first ([`crate::prepare::prepare`]) and committed only when all of
    /// it built, so a rejected config changes neither the service nor the autopilot.
    pub fn reload(&self, loaded: Result<Config, ConfigError>) {
        let prepared = loaded.map_err(|e| e.to_string()).and_then(|cfg| {
            let (old_cfg, old_nodes) = (self.config(), self.runner.nodes());
            crate::prepare::prepare(cfg, crate::prepare::Purpose::Reload((&old_cfg, &old_nodes)))
                .map_err(|e| e.to_string())
        });
        match prepared {
            Ok(prepared) => {
                self.commit(prepared);
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                tracing::error!(
                    "configuration change rejected, the previous configuration stays in force: {e}"
                );
                *self.config_error.write().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    }

    /// Puts a prepared config in force in the service and its autopilot, one
    /// right after the other; nothing here can fail. Flows and nodes go first, so the new
    /// rules never start a flow the old catalog lacks.
    pub fn commit(&self, prepared: Prepared) {
        let Prepared { core, automation } = prepared;
        let repo = self.runner.repo();
        repo.set_offsite(core.offsite);
        repo.set_keyring(core.keyring);
        self.runner
            .reconfigure(core.catalog, core.nodes, core.config.daemon.run_timeout);
        self.runner
            .journal()
            .set_retention(Some(core.journal_retention));
        self.board.refresh();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(core.config);
        *self.config_error.write().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(autopilot) = self.autopilot.as_ref() {
            autopilot.apply_plan(automation);
        }
    }

    /// Answers one request of this process (the CLI in-process: an operator acting with
    /// its own rights); live events of a followed run go to `events`.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request,
        events: &mpsc::UnboundedSender<Reply>,
    ) -> Reply {
        self.handle_from(&Caller::this_process(), req, events).await
    }

    /// Answers one request of `caller`: viewers only read; every change is logged and
    /// journaled with the caller's uid and pid.
    pub async fn handle_from(
        self: &Arc<Self>,
        caller: &Caller,
        mut req: Request,
        events: &mpsc::UnboundedSender<Reply>,
    ) -> Reply {
        if !access::is_read_only(&req) {
            let cmd = access::command_of(&req);
            if caller.role == Role::Viewer {
                tracing::warn!(uid = caller.uid, pid = ?caller.pid, "refused `{cmd}` from a viewer");
                return Reply::error(
                    ErrorCode::Denied,
                    format!("uid {} is a viewer ([daemon] viewer_uids): it may read (ping, status, runs, show, backups, follow, prune --dry-run) but not `{cmd}`; ask an operator, or list the uid in [daemon] operator_uids", caller.uid),
                );
            }
            if let Request::Run { params, .. } = &mut req {
                if let Err(e) = access::check_name_params(params) {
                    return Reply::error(ErrorCode::Usage, e);
                }
            }
            if let (true, Request::Run { params, .. }) = (caller.remote, &mut req) {
                let dirs = self.config().daemon.input_dirs.clone();
                if let Err(e) = access::check_file_params(params, &dirs) {
                    tracing::warn!(uid = caller.uid, pid = ?caller.pid, "refused `{cmd}`: {e}");
                    return Reply::error(ErrorCode::Denied, e);
                }
            }
            tracing::info!(uid = caller.uid, pid = ?caller.pid, "`{cmd}` requested by {}", caller.describe());
        }
        self.answer(caller, req, events).await
    }

    async fn answer(
        self: &Arc<Self>,
        caller: &Caller,
        req: Request,
        events: &mpsc::UnboundedSender<Reply>,
    ) -> Reply {
        match req {
            Request::Ping => ok(view::PingReply {
                pong: true,
                mode: self.mode.into(),
                daemon_version: CRATE_VERSION.into(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::Status => ok(self.status().await),
            Request::Runs { limit } => match self.runner.journal().summaries() {
                Ok(runs) => ok(runs
                    .iter()
                    .take(limit.unwrap_or(50))
                    .map(run_summary)
                    .collect::<Vec<_>>()),
                Err(e) => failed(e),
            },
            Request::Show { run } => match self.runner.journal().get(&run) {
                Ok(r) => ok(r),
                Err(crate::journal::JournalError::NotFound(id)) => Reply::error(
                    ErrorCode::Usage,
                    format!("no run `{id}` in the journal (list them with `splice-dr runs`)"),
                ),
                Err(e) => failed(e),
            },
            Request::Backups { node } => {
                if let Err(r) = self.configured_node(node.as_deref()) {
                    return r;
                }
                // Off-site repositories are listed over the network: off the async threads.
                let this = self.clone();
                tokio::task::spawn_blocking(move || ok(this.backups(node.as_deref())))
                    .await
                    .unwrap_or_else(failed)
            }
            Request::Follow { run } => self.follow(run, events).await,
            Request::Prune { node, dry_run } => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || reply(this.prune(node.as_deref(), dry_run)))
                    .await
                    .unwrap_or_else(failed)
            }
            Request::RepoCheck => {
                let repo = self.runner.repo().clone();
                let reports =
                    tokio::task::spawn_blocking(move || crate::repo_check::check_all(&repo))
                        .await
                        .unwrap_or_default();
                for r in &reports {
                    crate::metrics::repository_checked(&r.repository, r.ok, r.free_bytes);
                }
                ok(view::RepoCheckReport {
                    ok: reports.iter().all(|r| r.ok),
                    repositories: reports,
                })
            }
            Request::Trigger {
                event,
                node,
                message,
            } => match self.autopilot() {
                Ok(a) => {
                    if event.is_empty() || event.split('.').any(str::is_empty) {
                        return Reply::error(ErrorCode::Usage, format!("`{event}` is not an event name (dotted words, e.g. operator.restore)"));
                    }
                    if let Err(r) = self.configured_node(node.as_deref()) {
                        return r;
                    }
                    a.trigger(&event, node, &message, &caller.describe());
                    ok(view::Published { published: event })
                }
                Err(r) => r,
            },
            Request::Pause => match self.autopilot() {
                Ok(a) => {
                    a.pause(&caller.describe());
                    ok(view::PauseState { paused: true })
                }
                Err(r) => r,
            },
            Request::Resume => match self.autopilot() {
                Ok(a) => {
                    a.resume(&caller.describe());
                    ok(view::PauseState { paused: false })
                }
                Err(r) => r,
            },
            Request::Reset { rule } => match self.autopilot() {
                Ok(a) => match a.reset(&rule, &caller.describe()) {
                    Ok(()) => ok(view::RuleReset { reset: rule }),
                    Err(e) => Reply::error(ErrorCode::Usage, e),
                },
                Err(r) => r,
            },
            Request::Approve { run } => match self.autopilot() {
                Ok(a) => match a.approve(&run, &caller.describe()) {
                    Ok(id) => ok(view::Approved { started: id }),
                    Err(e) => Reply::error(ErrorCode::Failed, e),
                },
                Err(r) => r,
            },
            Request::Cancel { run } => match self.runner.cancel_by(&run, &caller.describe()) {
                Ok(()) => ok(view::CancelRequested {
                    cancel_requested: run,
                }),
                Err(RunError::Journal(crate::journal::JournalError::NotFound(id))) => {
                    Reply::error(ErrorCode::Usage, format!("no run `{id}` in the journal"))
                }
                Err(e) => run_error(e),
            },
            Request::Run {
                flow,
                node,
                params,
                dry_run,
                follow,
                confirmed,
            } => {
                self.run(
                    RunRequest {
                        flow,
                        node,
                        params,
                        trigger: self.mode.into(),
                        dry_run,
                        requested_by: Some(caller.describe()),
                        detection: None,
                    },
                    follow,
                    confirmed,
                    events,
                )
                .await
            }
        }
    }

    async fn run(
        self: &Arc<Self>,
        req: RunRequest,
        follow: bool,
        confirmed: bool,
        events: &mpsc::UnboundedSender<Reply>,
    ) -> Reply {
        if let Some(flow) = self.runner.catalog().get(&req.flow) {
            if flow.destructive && !req.dry_run && !confirmed {
                return Reply::error(
                    ErrorCode::Confirm,
                    format!("flow `{}` replaces live data: confirm it (CLI: --yes), or try --dry-run first", req.flow),
                );
            }
        }
        let mut rx = self.runner.subscribe();
        let (id, mut handle) = match self.runner.start(req) {
            Ok(started) => started,
            Err(e) => return run_error(e),
        };
        if !follow {
            return ok(view::RunStarted { run: id });
        }
        let record = loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) if ev.run_id() == id => { let _ = events.send(Reply::Event { event: ev }); }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                done = &mut handle => break done,
            }
        };
        while let Ok(ev) = rx.try_recv() {
            if ev.run_id() == id {
                let _ = events.send(Reply::Event { event: ev });
            }
        }
        match record {
            Ok(r) => ok(r),
            Err(e) => failed(format!("run {id} panicked: {e}")),
        }
    }

    async fn follow(&self, run: Option<String>, events: &mpsc::UnboundedSender<Reply>) -> Reply {
        let mut rx = self.runner.subscribe();
        let journal = self.runner.journal();
        let id = match run {
            Some(id) => id,
            None => match journal
                .summaries()
                .ok()
                .and_then(|runs| runs.into_iter().find(|r| r.state.is_active()))
            {
                Some(r) => r.id,
                None => {
                    return Reply::error(
                        ErrorCode::Usage,
                        "no run is active; name one: `splice-dr runs --follow RUN_ID`",
                    )
                }
            },
        };
        loop {
            match journal.get(&id) {
                Ok(r) if !r.state.is_active() => return ok(r),
                Ok(_) => {}
                Err(crate::journal::JournalError::NotFound(id)) => {
                    return Reply::error(ErrorCode::Usage, format!("no run `{id}` in the journal"));
                }
                Err(e) => return failed(e),
            }
            // Events of runs owned by this process arrive on the bus; for runs owned by
            // another process the journal is polled.
            match tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await {
                Ok(Ok(ev)) if ev.run_id() == id => {
                    let _ = events.send(Reply::Event { event: ev });
                }
                _ => {}
            }
        }
    }

    /// A node named on the socket must be a configured one: names from peers select
    /// config entries, they never become paths or new series themselves.
    fn configured_node(&self, node: Option<&str>) -> Result<(), Reply> {
        let cfg = self.config();
        match node.filter(|n| cfg.node(n).is_none()) {
            None => Ok(()),
            Some(n) => {
                let known: Vec<&str> = cfg.nodes.iter().map(|n| n.name.as_str()).collect();
                Err(Reply::error(
                    ErrorCode::Usage,
                    format!(
                        "no node {n:?} in the config (configured: {}); name one of those",
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    fn prune(&self, node: Option<&str>, dry_run: bool) -> Result<view::PruneReport, Reply> {
        let cfg = self.config();
        self.configured_node(node)?;
        let repo = self.runner.repo();
        let mut plans = crate::prune::plan(
            repo,
            &crate::prune::Policies::of(&cfg),
            node,
            chrono::Utc::now(),
        );
        if !dry_run {
            crate::prune::apply(repo, &cfg.daemon.state_dir, &mut plans);
        }
        Ok(view::PruneReport {
            dry_run,
            ok: plans.iter().all(|p| p.errors.is_empty()),
            repositories: plans,
        })
    }

    fn backups(&self, node: Option<&str>) -> view::BackupList {
        let (all, problems) = self.runner.repo().list_everywhere();
        let backups = all
            .iter()
            .filter(|l| node.is_none_or(|n| l.manifest.node == n))
            .map(|l| backup_summary(l, self.runner.repo().untrusted_because(&l.manifest)))
            .collect();
        view::BackupList {
            backups,
            problems,
            unreadable: Vec::new(),
        }
    }

    /// One status probe round (the daemon's): every node at once, each under
    /// [`STATUS_LIMIT`]; results land on the board as each node answers. A node whose
    /// previous probe has not returned is skipped, so a hung backend holds one thread.
    ///
    /// Leftovers (a query of their own) change only through runs and recovery: a `full`
    /// round (start-up, a run ended, a reload) asks for them, others reuse answers younger
    /// than [`LEFTOVERS_REFRESH`] — idle, the rounds cost the nodes almost nothing beyond
    /// the health probe.
    pub async fn status_round(self: &Arc<Self>, full: bool) {
        self.probing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let nodes = self.runner.nodes();
        self.board.retain(&nodes.keys().cloned().collect());
        let repo = self.runner.repo().clone();
        let backups = tokio::task::spawn_blocking(move || repo.list().unwrap_or_default().0)
            .await
            .unwrap_or_default();
        let backups = Arc::new(backups);
        let mut probes = Vec::new();
        for (name, node) in nodes.iter() {
            if !self.board.begin(name) {
                continue;
            }
            let reuse = self.fresh_answers(name);
            let leftovers = self
                .board
                .leftovers(name)
                .filter(|(_, at)| !full && chrono::Utc::now() - *at < LEFTOVERS_REFRESH);
            let (this, name, node, backups) =
                (self.clone(), name.clone(), node.clone(), backups.clone());
            probes.push(tokio::task::spawn_blocking(move || {
                let _done = InFlight(&this.board, &name);
                let now = chrono::Utc::now();
                let checked_at = reuse.at.map_or(now, |at| at.min(now));
                let mut v = this.one_node_status(&name, &node, &backups, reuse, leftovers.clone());
                v.leftovers_checked_at = Some(leftovers.map_or(now, |(_, at)| at));
                this.board.record(&name, checked_at, v);
            }));
        }
        for p in probes {
            let _ = tokio::time::timeout(STATUS_LIMIT + STATUS_GRACE, p).await;
        }
    }

    /// The health probe's latest answers for `node`, when recent enough to serve as
    /// this round's (within two probe intervals plus the probe timeout).
    fn fresh_answers(&self, node: &str) -> NodeAnswers {
        let Some(a) = self.autopilot.as_ref() else {
            return NodeAnswers::default();
        };
        let answers = a.health().answers(node);
        let d = &self.config().daemon;
        let recent = chrono::Duration::from_std(d.health_interval * 2 + d.health_timeout)
            .unwrap_or(chrono::Duration::MAX);
        match answers.at {
            Some(at) if chrono::Utc::now() - at <= recent => answers,
            _ => NodeAnswers::default(),
        }
    }

    /// The daemon's status probe loop: a round every `health_interval`, and a full one as
    /// soon as a run ends or the config changes, until `shutdown`. The daemon's first full
    /// round ran after start-up recovery and before the socket answered; another one at
    /// once would only move `checked_at` under the first answers' feet.
    pub async fn status_loop(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut runs = self.runner.subscribe();
        loop {
            let pause = tokio::time::sleep(self.config().daemon.health_interval);
            tokio::pin!(pause);
            let full = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut pause => break false,
                    _ = self.board.refresh_requested() => break true,
                    ev = runs.recv() => match ev {
                        Ok(crate::run_context::RunEvent::Finished { .. }) => {
                            self.board.want();
                            break true;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    },
                }
            };
            // Every full round wanted until now is answered by this one.
            let answers = self.board.want_so_far();
            self.status_round(full).await;
            if full {
                self.board.done(answers);
            }
        }
    }

    /// Every node's part of `status`: from the board once the daemon probes (with each
    /// probe's age), probed here otherwise (the CLI in-process).
    async fn nodes_status(self: &Arc<Self>) -> Vec<view::NodeStatus> {
        if self.probing.load(std::sync::atomic::Ordering::Relaxed) {
            let now = chrono::Utc::now();
            return self
                .runner
                .nodes()
                .iter()
                .map(|(name, node)| view::NodeStatus {
                    wal: self.wal.view(name, now),
                    ..self.board.node(name, node_facts(name, node), now)
                })
                .collect();
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.node_status())
            .await
            .unwrap_or_default()
    }

    async fn status(self: &Arc<Self>) -> view::StatusView {
        if self.probing.load(std::sync::atomic::Ordering::Relaxed) {
            self.board.settled(SETTLE_LIMIT).await;
        }
        let nodes = self.nodes_status().await;
        let cfg = self.config();
        let journal = self.runner.journal();
        let runs = journal.summaries().unwrap_or_default();
        let flows = self
            .runner
            .catalog()
            .iter()
            .map(|f| view::FlowView {
                name: f.name.clone(),
                source: f.source.to_string(),
                destructive: f.destructive,
                overrides_builtin: f.overrides_builtin,
                description: f.description.clone(),
            })
            .collect();
        let config_error = self
            .config_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        view::StatusView {
            mode: self.mode.into(),
            daemon_version: CRATE_VERSION.into(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: view::ConfigState {
                file: cfg.source.display().to_string(),
                error: config_error,
            },
            nodes,
            active_runs: runs
                .iter()
                .filter(|r| r.state.is_active())
                .map(run_summary)
                .collect(),
            flows,
            automation: self.autopilot.as_ref().map(|a| a.status()),
            leader: self.runner.leadership().status(),
            journal: view::JournalStats {
                runs: runs.len(),
                file_reads: journal.file_reads(),
            },
            health: self.autopilot.as_ref().map(|a| view::HealthView {
                current: a.health().snapshot(),
                history: a.health().history(),
            }),
        }
    }

    fn node_status(&self) -> Vec<view::NodeStatus> {
        let (backups, _) = self.runner.repo().list().unwrap_or_default();
        let nodes = self.runner.nodes();
        // Nodes in parallel: a hung one costs its own limit, not everyone's.
        std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|(name, node)| {
                    let backups = &backups;
                    s.spawn(move || {
                        self.one_node_status(name, node, backups, NodeAnswers::default(), None)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| view::NodeStatus {
                        error: Some("status of a node panicked".into()),
                        ..view::NodeStatus::default()
                    })
                })
                .collect()
        })
    }

    /// One node's part of `status`: facts, last backup and drill, and what its backend
    /// answers within [`STATUS_LIMIT`] — components and databases taken from `reuse` (the
    /// health probe's latest answers) when it has them.
    fn one_node_status(
        &self,
        name: &str,
        node: &NodeRuntime,
        backups: &[Manifest],
        reuse: NodeAnswers,
        leftovers: Option<(Leftovers, chrono::DateTime<chrono::Utc>)>,
    ) -> view::NodeStatus {
        let last = backups.iter().find(|m| m.node == name);
        let mut v = view::NodeStatus {
            last_backup: last.map(last_backup),
            last_drill: last_drill(backups, name),
            runway: Some(self.runway(node, backups)),
            ..node_facts(name, node)
        };
        // Since a re-onboard, every start must pass this id (Splice's rule).
        match crate::participants::Registry::load(&node.facts.state_dir, name) {
            Ok(reg) => {
                v.participant_id = reg.current;
                // After a network DR and before the config is updated.
                if let Some(m) = reg.migration_id.filter(|m| *m > node.facts.migration_id) {
                    v.running_migration_id = Some(m);
                    v.migration_unproven = reg.migration_unproven;
                }
                v.reonboarding = reg.reonboarding;
            }
            Err(e) => v.participant_id_error = Some(e.to_string()),
        }
        // `status` answers even when a node's engine or API server hangs. What the
        // health probe just answered is reused, not asked a second time.
        let ctx = splice_dr_plugin_api::OpContext::with_deadline(STATUS_LIMIT);
        let error = |e: BackendError| Some(bounded_error(&e, STATUS_LIMIT));
        match reuse
            .components
            .map_or_else(|| node.backend.components(&ctx), Ok)
        {
            Ok(c) => v.components = Some(c),
            Err(e) => v.components_error = error(e),
        }
        match reuse
            .databases
            .map_or_else(|| node.backend.databases(&ctx), Ok)
        {
            Ok(d) => v.databases = Some(d),
            Err(e) => v.databases_error = error(e),
        }
        match leftovers.map_or_else(|| node.backend.leftovers(&ctx), |(l, _)| Ok(l)) {
            Ok(found) => v.leftovers = Some(leftovers_view(node, found)),
            Err(e) => v.leftovers_error = error(e),
        }
        v
    }
}

impl Service {
    /// `node`'s recovery runway now: with the daemon's probes' current state, else from
    /// the health log alone.
    fn runway(&self, node: &NodeRuntime, backups: &[Manifest]) -> view::RunwayView {
        let current = self.autopilot.as_ref().map(|a| a.health().snapshot());
        crate::runway::assess(
            &node.facts,
            self.config().repository.runway_threshold(),
            self.runner.repo(),
            backups,
            current.as_deref(),
            chrono::Utc::now(),
        )
    }
}

/// A node's facts from the config: what `status` shows even before its first probe.
fn node_facts(name: &str, node: &NodeRuntime) -> view::NodeStatus {
    view::NodeStatus {
        name: Some(name.into()),
        backend: Some(node.backend.kind()),
        migration_id: Some(node.facts.migration_id),
        ..view::NodeStatus::default()
    }
}

/// The leftovers with, for each kept item, the command that removes it (the backend
/// knows how its kept copies are removed by hand).
fn leftovers_view(node: &NodeRuntime, found: Leftovers) -> view::LeftoversView {
    let remove_commands = found
        .kept
        .iter()
        .filter_map(|k| Some((k.clone(), node.backend.kept_removal_command(k)?)))
        .collect();
    view::LeftoversView {
        found,
        remove_commands,
    }
}
