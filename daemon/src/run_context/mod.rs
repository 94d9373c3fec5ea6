//! The live state of one run, shared by the script host, the backend callbacks and the
//! runner: its journal record, open steps, cancellation and event bus.
//!
//! It is the explicit context the runner hands down the chain (runner → script → host
//! API → backend callbacks), so it lives below all of them: the script layer reads it and
//! never imports the runner.

pub mod guard;
pub mod progress;
#[cfg(debug_assertions)]
mod test_pause;

pub use guard::{Guard, StepKind};
pub use splice_dr_protocol::RunEvent;

use chrono::Utc;
use sha2::{Digest, Sha256};
use splice_dr_plugin_api::{KeptStorage, OpContext, OpEvent};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::broadcast;

use crate::journal::{Journal, KeptNote, RunRecord, RunState};

/// Shared, thread-safe handle on a running flow.
#[derive(Debug)]
pub struct RunContext {
    id: String,
    journal: Journal,
    record: Mutex<RunRecord>,
    open_steps: Mutex<Vec<usize>>,
    events: broadcast::Sender<RunEvent>,
    guard: Guard,
    dry_run: bool,
    last_save: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Short digest identifying a step by name and inputs.
pub fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

impl RunContext {
    /// Wraps a run record that has already been saved as `running`.
    pub fn new(
        record: RunRecord,
        journal: Journal,
        events: broadcast::Sender<RunEvent>,
        guard: Guard,
    ) -> Arc<Self> {
        Arc::new(RunContext {
            id: record.id.clone(),
            dry_run: record.dry_run,
            journal,
            record: Mutex::new(record),
            open_steps: Mutex::new(Vec::new()),
            events,
            guard,
            last_save: Mutex::new(Instant::now()),
        })
    }

    /// Run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this is a dry run (nothing may change).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Cancellation and deadline.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    fn emit(&self, ev: RunEvent) {
        let _ = self.events.send(ev);
    }

    fn save(&self, rec: &RunRecord) -> Result<(), String> {
        *lock(&self.last_save) = Instant::now();
        self.journal
            .save(rec)
            .map_err(|e| format!("cannot write the run journal, stopping for safety: {e}"))
    }

    /// Opens a journaled step; the journal is on disk before the step does anything.
    pub fn begin_step(&self, name: &str, inputs: &str) -> Result<usize, String> {
        let mut rec = lock(&self.record);
        let idx = rec.begin_step(name, &digest(&format!("{name}\n{inputs}")));
        let depth = rec.steps[idx].depth;
        if self.dry_run {
            rec.plan
                .push(format!("{}step: {name}", "  ".repeat(depth as usize)));
        }
        self.save(&rec)?;
        drop(rec);
        lock(&self.open_steps).push(idx);
        self.emit(RunEvent::StepStarted {
            run: self.id.clone(),
            index: idx,
            name: name.into(),
            depth,
        });
        #[cfg(debug_assertions)]
        test_pause::at_step_start(idx + 1, name);
        Ok(idx)
    }

    /// Closes a step with its outcome.
    pub fn end_step(&self, idx: usize, outcome: Result<String, String>) -> Result<(), String> {
        lock(&self.open_steps).retain(|&i| i != idx);
        let mut rec = lock(&self.record);
        let error = outcome.as_ref().err().cloned();
        rec.end_step(idx, outcome);
        let (name, millis) = rec
            .steps
            .get(idx)
            .map(|s| {
                let ms = (Utc::now() - s.started_at).num_milliseconds().max(0) as u64;
                (s.name.clone(), ms)
            })
            .unwrap_or_default();
        self.save(&rec)?;
        drop(rec);
        self.emit(RunEvent::StepFinished {
            run: self.id.clone(),
            index: idx,
            name,
            error,
            millis,
        });
        Ok(())
    }

    /// Whether a step is open (host calls that change the world must run inside one).
    pub fn in_step(&self) -> bool {
        !lock(&self.open_steps).is_empty()
    }

    /// Adds a line to a dry run's plan.
    pub fn plan(&self, line: &str) {
        let mut rec = lock(&self.record);
        let depth = lock(&self.open_steps).len();
        rec.plan.push(format!("{}{line}", "  ".repeat(depth)));
    }

    /// Journals who asked for something on this run (`cancel by uid 0 (pid 9)`) and shows
    /// it to watchers; through the owner's record, so no later save of the run loses it.
    pub fn note_request(&self, what: &str) {
        let mut rec = lock(&self.record);
        rec.requests.push(what.to_string());
        let _ = self.save(&rec);
        drop(rec);
        tracing::info!(run = %self.id, "{what}");
        self.emit(RunEvent::Log {
            run: self.id.clone(),
            level: "info".into(),
            message: what.into(),
        });
    }

    /// Records a log line in the current step (or the run) and shows it to watchers.
    pub fn log(&self, level: &str, message: &str) {
        match level {
            "error" => tracing::error!(run = %self.id, "{message}"),
            "warn" => tracing::warn!(run = %self.id, "{message}"),
            _ => tracing::info!(run = %self.id, "{message}"),
        }
        let current = lock(&self.open_steps).last().copied();
        if let Some(idx) = current {
            let mut rec = lock(&self.record);
            if let Some(step) = rec.steps.get_mut(idx) {
                step.log.push(format!("{level}: {message}"));
            }
            let _ = self.save(&rec);
        }
        self.emit(RunEvent::Log {
            run: self.id.clone(),
            level: level.into(),
            message: message.into(),
        });
    }

    fn progress(&self, what: String, done: u64, total: Option<u64>, unit: String) {
        let current = lock(&self.open_steps).last().copied();
        if let Some(idx) = current {
            let mut rec = lock(&self.record);
            if let Some(step) = rec.steps.get_mut(idx) {
                let elapsed = (Utc::now() - step.started_at).to_std().unwrap_or_default();
                step.progress = Some(progress::describe_with_rate(
                    &what, done, total, &unit, elapsed,
                ));
            }
            // Progress is frequent: persist it at most every two seconds.
            if lock(&self.last_save).elapsed().as_secs() >= 2 {
                let _ = self.save(&rec);
            }
            #[cfg(debug_assertions)]
            {
                let name = rec
                    .steps
                    .get(idx)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                drop(rec);
                test_pause::in_step(idx + 1, &name, done);
            }
        }
        self.emit(RunEvent::Progress {
            run: self.id.clone(),
            what,
            done,
            total,
            unit,
        });
    }

    /// Journals that this run stops `component` (before it does: a kill during the stop
    /// must still be seen) or has started it again, for start-up recovery.
    pub fn note_component(&self, component: &str, stopped: bool) -> Result<(), String> {
        self.edit_record(|rec| {
            rec.stopped_components.retain(|c| c != component);
            if stopped {
                rec.stopped_components.push(component.into());
            }
        })
    }

    /// Journals what this run did to storage it copied aside, for start-up recovery:
    /// `Some(copy)` once a copy exists, `None` before the copy is deleted (the run no
    /// longer needs it).
    pub fn note_kept(&self, copy: &KeptStorage, exists: bool) -> Result<(), String> {
        self.edit_kept(|notes| {
            notes.retain(|n| n.kept.kept != copy.kept);
            if exists {
                notes.push(KeptNote {
                    kept: copy.clone(),
                    live_replaced: false,
                });
            }
        })
    }

    /// Journals that the live storage `target` is about to be wiped (`true`: from then on
    /// its copy holds the only previous data) or holds its copy again (`false`).
    pub fn note_live_replaced(&self, target: &str, replaced: bool) -> Result<(), String> {
        self.edit_kept(|notes| {
            for n in notes.iter_mut().filter(|n| n.kept.target == target) {
                n.live_replaced = replaced;
            }
        })
    }

    /// Journals that the node was restarted with new settings (`set_values`): every
    /// component runs, on purpose on the storage it has now.
    pub fn note_restarted(&self) -> Result<(), String> {
        self.edit_record(|rec| {
            rec.stopped_components.clear();
            for n in &mut rec.kept_storage {
                n.live_replaced = false;
            }
        })
    }

    fn edit_kept(&self, edit: impl FnOnce(&mut Vec<KeptNote>)) -> Result<(), String> {
        self.edit_record(|rec| edit(&mut rec.kept_storage))
    }

    fn edit_record(&self, edit: impl FnOnce(&mut RunRecord)) -> Result<(), String> {
        if self.dry_run {
            return Ok(());
        }
        let mut rec = lock(&self.record);
        edit(&mut rec);
        self.save(&rec)
    }

    /// Notes that safety checks were overridden, and why.
    pub fn record_forced(&self, reason: &str) -> Result<(), String> {
        let mut rec = lock(&self.record);
        rec.forced_reason = Some(reason.into());
        self.save(&rec)
    }

    /// The context handed to backend calls: cancellation from the guard, events into
    /// the journal and onto the bus. Forward work stops at the first stop request; undo
    /// work only when the run's undo budget is spent, so rollbacks finish.
    pub fn op_context(self: &Arc<Self>, kind: StepKind) -> OpContext {
        let forward = kind.is_forward();
        let cancel = self.clone();
        let events = self.clone();
        OpContext::new(
            move || {
                if forward {
                    cancel.guard.soft_stop().is_some()
                } else {
                    cancel.guard.hard_stop().is_some()
                }
            },
            move |ev| match ev {
                OpEvent::Log { level, message } => events.log(&level, &message),
                OpEvent::Progress {
                    what,
                    done,
                    total,
                    unit,
                } => events.progress(what, done, total, unit),
                OpEvent::KeptAside { kept } => {
                    let noted = events
                        .note_kept(&kept, true)
                        .and_then(|()| events.note_live_replaced(&kept.target, true));
                    if let Err(e) = noted {
                        events.log(
                            "error",
                            &format!("journaling {} kept aside: {e}", kept.kept),
                        );
                    }
                }
                OpEvent::PutBack { kept } => {
                    if let Err(e) = events.note_kept(&kept, false) {
                        events.log("error", &format!("journaling {} put back: {e}", kept.live));
                    }
                }
            },
        )
    }

    /// Ends the run: closes dangling steps, sets the final state and saves it.
    /// [`RunContext::announce_finished`] notifies once the node is free.
    pub fn finish(
        &self,
        state: RunState,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> RunRecord {
        let mut rec = lock(&self.record);
        for idx in lock(&self.open_steps).drain(..) {
            rec.end_step(idx, Err(error.clone().unwrap_or_else(|| "aborted".into())));
        }
        rec.state = state;
        rec.result = result;
        rec.error = error.clone();
        rec.finished_at = Some(Utc::now());
        if let Err(e) = self.journal.save(&rec) {
            tracing::error!(run = %self.id, "{e}");
        }
        rec.clone()
    }

    /// Tells watchers the run has ended. Called by the runner only after the node lock is
    /// released, so whoever reacts (retention, a queued run) finds the node free.
    pub fn announce_finished(&self, record: &RunRecord) {
        self.emit(RunEvent::Finished {
            run: self.id.clone(),
            state: record.state,
            error: record.error.clone(),
        });
    }
}
