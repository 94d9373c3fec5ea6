//! Continuous WAL (`[[node]] wal_streaming = true`): the daemon keeps one WAL receiver
//! per streaming node running, seals each segment it completes into the repository's WAL
//! archive, and watches the replication slot that makes the stream gap-free.
//!
//! Why a supervisor of its own and not a flow: streaming never ends, and a flow is a run
//! with a start and an end under the node's lock. The receiver is the backend's
//! (`Databases::stream_wal`); this module only restarts it with a capped exponential
//! backoff, moves completed segments from its staging directory (`<state_dir>/wal/<node>`,
//! 0700) into `<repo>/wal/<node>/`, and measures:
//!
//! - the restore point objective: now minus the last moment the slot's flushed position
//!   was the server's current position (the stored WAL held everything committed), so an
//!   idle server does not look stale;
//! - the slot's lag in bytes, with `wal.lag_high` / `wal.lag_ok` events at the node's
//!   `wal_lag_alert_mb`;
//! - the slot hazard: `max_slot_wal_keep_size = -1` is a standing warning, and a node
//!   whose config no longer streams gets its slot dropped (at start and on reload).
//!
//! The open segment (`.partial`) stays in staging: it is the newest WAL there is, and a
//! restore reads it from there.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use splice_dr_plugin_api::{Backend, BackendError, OpContext, OpEvent};
use splice_dr_protocol::WalView;
use splice_dr_repo::wal::{is_history_name, is_segment_name, Sealed};

use crate::events::{Event, EventBus};
use crate::flows::runner::NodeRuntime;
use crate::flows::Runner;

/// How often the supervisor looks at every node.
const TICK: Duration = Duration::from_millis(500);
/// First wait before restarting a receiver that exited; doubled per failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A receiver that ran this long was healthy: its next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a slot probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// How often a slot of a node that no longer streams is tried again.
const DROP_RETRY: Duration = Duration::from_secs(5);

pub use splice_dr_repo::wal::staging_dir;

/// Every streaming node's WAL state, as `status` shows it.
#[derive(Debug, Default)]
pub struct WalBoard {
    nodes: Mutex<BTreeMap<String, WalView>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WalBoard {
    /// `node`'s WAL state with its restore point objective as of `now`; `None` when the
    /// node does not stream.
    pub fn view(&self, node: &str, now: DateTime<Utc>) -> Option<WalView> {
        let mut v = lock(&self.nodes).get(node).cloned()?;
        v.rpo_seconds = v.caught_up_at.map(|at| rpo_at(at, now));
        Some(v)
    }

    fn update(&self, node: &str, slot: &str, f: impl FnOnce(&mut WalView)) {
        let mut nodes = lock(&self.nodes);
        let v = nodes.entry(node.to_string()).or_insert_with(|| WalView {
            slot: slot.to_string(),
            ..WalView::default()
        });
        f(v)
    }

    fn forget(&self, node: &str) {
        lock(&self.nodes).remove(node);
    }
}

fn rpo_at(caught_up_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    ((now - caught_up_at).num_milliseconds().max(0) as f64) / 1000.0
}

/// The wait before the `failures`-th restart in a row: 1 s, 2 s, 4 s… capped at a minute.
fn backoff(failures: u32) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(BACKOFF_CAP)
}

/// The running supervisor; [`WalSupervisor::stop`] ends every receiver and waits for them.
pub struct WalSupervisor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WalSupervisor {
    /// Starts supervising the nodes `runner` holds (reloads included).
    pub fn spawn(runner: Arc<Runner>, board: Arc<WalBoard>, bus: EventBus) -> WalSupervisor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wal-supervisor".into())
            .spawn(move || {
                let mut s = State {
                    board,
                    bus,
                    streamers: BTreeMap::new(),
                    slot_gone: BTreeSet::new(),
                    drop_tried: BTreeMap::new(),
                };
                while !flag.load(Ordering::Relaxed) {
                    s.round(&runner);
                    std::thread::sleep(TICK);
                }
                s.stop_all();
            });
        match thread {
            Ok(t) => WalSupervisor {
                stop,
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!("continuous WAL: cannot start its supervisor thread: {e}");
                WalSupervisor { stop, thread: None }
            }
        }
    }

    /// Stops every receiver and waits until they ended.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One streaming node's receiver and what the supervisor knows of it.
struct Streamer {
    slot: String,
    backend: Arc<dyn Backend>,
    cancel: Arc<AtomicBool>,
    receiver: Option<JoinHandle<Result<(), BackendError>>>,
    started_at: Instant,
    failures: u32,
    next_start: Instant,
    started_once: bool,
    segment_bytes: Option<u64>,
    last_probe: Option<Instant>,
    lag_alerted: bool,
    unbounded_warned: bool,
    last_error: Option<String>,
    /// Sealed WAL files not yet committed in every off-site repository, oldest first.
    offsite_pending: BTreeSet<String>,
    /// Whether the archive was read once for files sealed before this daemon ran.
    offsite_seeded: bool,
}

struct State {
    board: Arc<WalBoard>,
    bus: EventBus,
    streamers: BTreeMap<String, Streamer>,
    /// Nodes that do not stream and whose slot is known gone (dropped or never there).
    slot_gone: BTreeSet<String>,
    /// When dropping a node's slot was last tried, and the error it gave.
    drop_tried: BTreeMap<String, (Instant, Option<String>)>,
}

impl State {
    fn round(&mut self, runner: &Runner) {
        let nodes = runner.nodes();
        let streaming: BTreeMap<&String, &NodeRuntime> = nodes
            .iter()
            .filter(|(_, n)| n.config.wal_streaming)
            .collect();
        // Receivers of nodes that no longer stream, or whose backend was rebuilt.
        let ended: Vec<String> = self
            .streamers
            .iter()
            .filter(|(name, s)| {
                streaming
                    .get(name)
                    .is_none_or(|n| !Arc::ptr_eq(&n.backend, &s.backend))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            if let Some(s) = self.streamers.remove(&name) {
                stop_receiver(s);
            }
            self.board.forget(&name);
        }
        for (name, node) in &streaming {
            self.slot_gone.remove(*name);
            self.drop_tried.remove(*name);
            self.stream(name, node, runner);
        }
        for (name, node) in nodes.iter() {
            if !node.config.wal_streaming {
                self.drop_slot(name, node);
            }
        }
    }

    /// Keeps `name`'s receiver running, seals what it completed and probes its slot.
    fn stream(&mut self, name: &str, node: &NodeRuntime, runner: &Runner) {
        let staging = staging_dir(&node.facts.state_dir, name);
        let s = self
            .streamers
            .entry(name.to_string())
            .or_insert_with(|| Streamer {
                slot: splice_dr_pg_toolkit::wal::slot_name(name),
                backend: node.backend.clone(),
                cancel: Arc::new(AtomicBool::new(false)),
                receiver: None,
                started_at: Instant::now(),
                failures: 0,
                next_start: Instant::now(),
                started_once: false,
                segment_bytes: None,
                last_probe: None,
                lag_alerted: false,
                unbounded_warned: false,
                last_error: None,
                offsite_pending: BTreeSet::new(),
                offsite_seeded: false,
            });
        let (board, bus) = (&self.board, &self.bus);
        if s.receiver.as_ref().is_some_and(|r| r.is_finished()) {
            receiver_ended(name, s, board, bus);
        }
        if s.receiver.is_none() && Instant::now() >= s.next_start {
            start_receiver(name, s, &staging, board, bus);
        }
        let receiving = s.receiver.is_some();
        board.update(name, &s.slot, |v| v.receiving = receiving);
        if s.last_probe
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            s.last_probe = Some(Instant::now());
            probe(name, node.config.wal_lag_alert_mb, s, board, bus);
        }
        if let Some(seg) = s.segment_bytes {
            seal(name, &staging, seg, runner, s, board, bus);
        }
        copy_offsite(name, runner, s, board, bus);
        let v = board.view(name, Utc::now());
        crate::metrics::wal(
            name,
            v.as_ref().and_then(|v| v.rpo_seconds),
            v.as_ref().and_then(|v| v.lag_bytes),
            receiving,
        );
    }

    /// Drops the slot of a node that does not stream (the daemon's own slot only, named
    /// from the node), until it is known gone.
    fn drop_slot(&mut self, name: &str, node: &NodeRuntime) {
        if self.slot_gone.contains(name) {
            return;
        }
        if !node.backend.capabilities().databases.wal_streaming {
            self.slot_gone.insert(name.to_string());
            return;
        }
        let last = self.drop_tried.get(name).cloned();
        if last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < DROP_RETRY)
        {
            return;
        }
        let slot = splice_dr_pg_toolkit::wal::slot_name(name);
        let ctx = logging_ctx(name, Some(Instant::now() + PROBE_LIMIT), None);
        match node.backend.drop_wal_slot(&ctx, &slot) {
            Ok(existed) => {
                if existed {
                    self.bus.publish(Event::new(
                        "wal.slot_dropped",
                        Some(name.into()),
                        format!(
                            "node {name} no longer streams WAL (wal_streaming is off): its \
                             replication slot {slot} was dropped, so the server stops keeping WAL for it"
                        ),
                    ));
                }
                self.slot_gone.insert(name.to_string());
                self.drop_tried.remove(name);
            }
            Err(BackendError::Unsupported { .. }) => {
                self.slot_gone.insert(name.to_string());
            }
            Err(e) => {
                let msg = e.to_string();
                if last.and_then(|(_, m)| m).as_deref() != Some(msg.as_str()) {
                    tracing::warn!(node = %name, "continuous WAL is off but its replication slot {slot} could not be dropped yet (tried again every {}s): {msg}", DROP_RETRY.as_secs());
                }
                self.drop_tried
                    .insert(name.to_string(), (Instant::now(), Some(msg)));
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, s) in std::mem::take(&mut self.streamers) {
            stop_receiver(s);
        }
    }
}

/// An [`OpContext`] logging the backend's lines under `node`, cancelled at `deadline` or
/// when `cancel` is set.
fn logging_ctx(
    node: &str,
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
) -> OpContext {
    let node = node.to_string();
    OpContext::new(
        move || {
            deadline.is_some_and(|d| Instant::now() >= d)
                || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
        },
        move |ev| {
            if let OpEvent::Log { level, message } = ev {
                match level.as_str() {
                    "warn" | "error" => tracing::warn!(node = %node, "continuous WAL: {message}"),
                    _ => tracing::info!(node = %node, "continuous WAL: {message}"),
                }
            }
        },
    )
}

fn start_receiver(name: &str, s: &mut Streamer, staging: &Path, board: &WalBoard, bus: &EventBus) {
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(staging)
    {
        let msg = format!(
            "cannot create the staging directory {}: {e}",
            staging.display()
        );
        failed(name, s, board, bus, msg);
        return;
    }
    s.cancel = Arc::new(AtomicBool::new(false));
    let ctx = logging_ctx(name, None, Some(s.cancel.clone()));
    let (backend, slot, dir) = (s.backend.clone(), s.slot.clone(), staging.to_path_buf());
    let spawned = std::thread::Builder::new()
        .name(format!("wal-{name}"))
        .spawn(move || backend.stream_wal(&ctx, &slot, &dir));
    match spawned {
        Ok(h) => {
            s.receiver = Some(h);
            s.started_at = Instant::now();
            if s.started_once {
                board.update(name, &s.slot, |v| v.restarts += 1);
            }
            s.started_once = true;
        }
        Err(e) => failed(
            name,
            s,
            board,
            bus,
            format!("cannot start the receiver thread: {e}"),
        ),
    }
}

/// The receiver returned: why goes to the log, the events and `status`, and the next start
/// waits for the backoff.
fn receiver_ended(name: &str, s: &mut Streamer, board: &WalBoard, bus: &EventBus) {
    let Some(h) = s.receiver.take() else { return };
    let why = match h.join() {
        Ok(Ok(())) => "the receiver ended".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the receiver thread panicked".to_string(),
    };
    if s.started_at.elapsed() >= HEALTHY_RUN {
        s.failures = 0;
    }
    failed(name, s, board, bus, why);
}

fn failed(name: &str, s: &mut Streamer, board: &WalBoard, bus: &EventBus, why: String) {
    s.failures = s.failures.saturating_add(1);
    let wait = backoff(s.failures);
    s.next_start = Instant::now() + wait;
    let message = format!(
        "WAL receiver of node {name} stopped: {why}; restarting in {}s",
        wait.as_secs()
    );
    tracing::warn!(node = %name, "{message}");
    bus.publish(Event::new(
        "wal.receiver_failed",
        Some(name.into()),
        message,
    ));
    error(name, s, board, why);
}

fn error(name: &str, s: &mut Streamer, board: &WalBoard, why: String) {
    s.last_error = Some(why.clone());
    board.update(name, &s.slot, |v| {
        v.last_error = Some(why);
        v.last_error_at = Some(Utc::now());
    });
}

fn stop_receiver(s: Streamer) {
    s.cancel.store(true, Ordering::Relaxed);
    if let Some(h) = s.receiver {
        let _ = h.join();
    }
}

/// Reads the slot's standing: lag, the restore point mark, the slot hazard.
fn probe(name: &str, alert_mb: u64, s: &mut Streamer, board: &WalBoard, bus: &EventBus) {
    let asked_at = Utc::now();
    let ctx = logging_ctx(name, Some(Instant::now() + PROBE_LIMIT), None);
    let slot = match s.backend.wal_slot(&ctx, &s.slot) {
        Ok(slot) => slot,
        Err(e) => {
            board.update(name, &s.slot, |v| v.lag_bytes = None);
            let msg = format!("reading the replication slot: {e}");
            if s.last_error.as_deref() != Some(msg.as_str()) {
                tracing::warn!(node = %name, "continuous WAL: {msg}");
                error(name, s, board, msg);
            }
            return;
        }
    };
    s.segment_bytes = Some(slot.segment_bytes).filter(|b| *b > 0);
    let caught_up = slot.exists && slot.lag_bytes == Some(0);
    board.update(name, &s.slot, |v| {
        v.lag_bytes = slot.lag_bytes;
        if caught_up {
            v.caught_up_at = Some(asked_at);
        }
    });
    if slot.max_slot_wal_keep_size_mb < 0 && !s.unbounded_warned {
        s.unbounded_warned = true;
        let warning = format!(
            "the server's max_slot_wal_keep_size is -1 (unlimited): if streaming stops for good \
             while the slot {} stays, the server keeps every WAL segment until its disk is full; \
             set max_slot_wal_keep_size (e.g. '50GB') to bound it",
            s.slot
        );
        tracing::warn!(node = %name, "{warning}");
        bus.publish(Event::new(
            "wal.slot_unbounded",
            Some(name.into()),
            warning.clone(),
        ));
        board.update(name, &s.slot, |v| v.warnings.push(warning));
    }
    let limit = alert_mb.saturating_mul(1 << 20);
    let lag = slot.lag_bytes.unwrap_or(0);
    if lag > limit && !s.lag_alerted {
        s.lag_alerted = true;
        bus.publish(
            Event::new(
                "wal.lag_high",
                Some(name.into()),
                format!(
                    "the replication slot {} of node {name} lags {lag} bytes behind the server \
                     (over wal_lag_alert_mb = {alert_mb}): the stored WAL falls behind and the \
                     server keeps the difference",
                    s.slot
                ),
            )
            .with_label("lag_bytes", lag.to_string()),
        );
    } else if lag <= limit && s.lag_alerted {
        s.lag_alerted = false;
        bus.publish(Event::new(
            "wal.lag_ok",
            Some(name.into()),
            format!(
                "the replication slot {} of node {name} caught up again",
                s.slot
            ),
        ));
    }
}

/// Moves every completed segment and history file of `staging` into the node's archive.
fn seal(
    name: &str,
    staging: &Path,
    segment_bytes: u64,
    runner: &Runner,
    s: &mut Streamer,
    board: &WalBoard,
    bus: &EventBus,
) {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    let mut done: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_segment_name(n) || is_history_name(n))
        .collect();
    if done.is_empty() {
        return;
    }
    done.sort();
    let archive = match runner.repo().wal_archive(name) {
        Ok(a) => a,
        Err(e) => return error(name, s, board, e.to_string()),
    };
    for file in done {
        let path = staging.join(&file);
        match archive.seal(&path, segment_bytes) {
            Ok(how) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    error(
                        name,
                        s,
                        board,
                        format!("removing the sealed {}: {e}", path.display()),
                    );
                    return;
                }
                if how == Sealed::New {
                    tracing::debug!(node = %name, "sealed WAL {file}");
                }
                board.update(name, &s.slot, |v| {
                    v.sealed_segments += 1;
                    v.last_sealed = Some(file.clone());
                });
                s.offsite_pending.insert(file);
            }
            Err(e) => {
                let msg = format!("sealing WAL {file} into the repository: {e}");
                if s.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(node = %name, "continuous WAL: {msg}");
                    bus.publish(Event::new(
                        "wal.archive_failed",
                        Some(name.into()),
                        msg.clone(),
                    ));
                    error(name, s, board, msg);
                }
                return;
            }
        }
    }
}

/// Sealed WAL files copied to each off-site repository per round at most: a slow store
/// delays the next look at the receiver by a few segments, not by the whole backlog.
const OFFSITE_PER_ROUND: usize = 4;

/// Copies sealed WAL files to every off-site repository (`[[repository.offsite]]`), oldest
/// first; a file leaves the queue once every repository has committed it. On the first
/// round the whole archive is queued (files sealed while no daemon copied them), and a
/// repository that already holds a file answers without a copy. A failure keeps the queue
/// and is retried next round; it is logged and announced once per distinct error.
fn copy_offsite(name: &str, runner: &Runner, s: &mut Streamer, board: &WalBoard, bus: &EventBus) {
    let repo = runner.repo();
    let offsite = repo.offsite();
    if offsite.is_empty() {
        return;
    }
    let archive = match repo.wal_archive(name) {
        Ok(a) => a,
        Err(e) => return error(name, s, board, e.to_string()),
    };
    if !s.offsite_seeded {
        match archive.list() {
            Ok(all) => s.offsite_pending.extend(all),
            Err(e) => return error(name, s, board, e.to_string()),
        }
        s.offsite_seeded = true;
    }
    let batch: Vec<String> = s
        .offsite_pending
        .iter()
        .take(OFFSITE_PER_ROUND)
        .cloned()
        .collect();
    for file in batch {
        for r in offsite.repos() {
            if let Err(e) = r.copy_wal(name, &archive, &file) {
                let msg = format!("copying WAL {file} to repository {}: {e}", r.name());
                if s.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(node = %name, "continuous WAL: {msg} (retried)");
                    bus.publish(Event::new(
                        "wal.offsite_failed",
                        Some(name.into()),
                        msg.clone(),
                    ));
                    error(name, s, board, msg);
                }
                board.update(name, &s.slot, |v| {
                    v.offsite_pending = s.offsite_pending.len() as u64
                });
                return;
            }
        }
        s.offsite_pending.remove(&file);
    }
    let pending = s.offsite_pending.len() as u64;
    board.update(name, &s.slot, |v| v.offsite_pending = pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_exponentially_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    /// The restore point objective is the age of the last catch-up as of the moment
    /// `status` asks, not as of the last probe.
    #[test]
    fn the_rpo_is_counted_from_the_last_catch_up() {
        let b = WalBoard::default();
        assert!(b.view("n", Utc::now()).is_none());
        let at = Utc::now();
        b.update("n", "splice_dr_n", |v| v.caught_up_at = Some(at));
        let v = b.view("n", at + chrono::Duration::seconds(7)).unwrap();
        assert_eq!(v.rpo_seconds, Some(7.0));
        assert_eq!(v.slot, "splice_dr_n");
        b.forget("n");
        assert!(b.view("n", at).is_none());
    }
}
