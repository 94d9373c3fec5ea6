//! The autopilot's side of [`GuardMemory`]: read it back when the daemon starts (or this
//! replica becomes the leader), settle the automatic runs that were in flight from the
//! journal, and write it whenever it changes.
//!
//! Only the leader writes: a follower's engine sees the same events but starts nothing,
//! and must not overwrite what the leader remembers on a shared state directory.

use chrono::Utc;
use std::collections::BTreeMap;
use std::path::Path;

use super::guard_memory::GuardMemory;
use super::state::State;
use super::{blocking, Autopilot};
use crate::journal::RunState;

/// What a start-up read found, for the log and `status`.
struct Settled {
    run: String,
    rule: String,
    state: RunState,
}

impl Autopilot {
    /// The daemon's start: notes whether this replica leads now (a later win reads the
    /// memory again) and reads the memory. Called once start-up recovery has marked the
    /// runs a dead daemon left `interrupted`, so they count as failures here.
    pub fn recall_at_start(&self) {
        self.state().was_leader = self.ctx.leadership.is_leader();
        self.recall();
    }

    /// Reads the memory file and makes it the engine's state. A run a rule started that
    /// the journal shows finished while no daemon was watching is counted now (a run the
    /// daemon died in is `interrupted`: a failure for the breaker). An unreadable file is
    /// moved aside and automation starts paused, so nothing runs on guard state that is
    /// not known.
    fn recall(&self) {
        let dir = self.ctx.state_dir.clone();
        let memory = match GuardMemory::load(&dir) {
            Ok(m) => m,
            Err(e) => return self.set_aside_unreadable(&dir, &e.to_string()),
        };
        let journal = &self.ctx.journal;
        let mut settled = Vec::new();
        let mut open = BTreeMap::new();
        for (run, rule) in &memory.in_flight {
            match journal.get(run).map(|r| r.state) {
                Ok(state) if state.is_active() => {
                    open.insert(run.clone(), rule.clone());
                }
                Ok(state) => settled.push(Settled {
                    run: run.clone(),
                    rule: rule.clone(),
                    state,
                }),
                // Gone from the journal: nothing left to count.
                Err(_) => {}
            }
        }
        {
            let mut st = self.state();
            st.engine.remember(&memory.rules);
            // The remembered pause or resume is the operator's last word (a resume does
            // not lift `[automation] paused` from the config).
            match memory.operator_paused {
                Some(true) => st.engine.pause(),
                Some(false) if !st.config_paused => st.engine.resume(),
                _ => {}
            }
            st.operator_paused = memory.operator_paused;
            for s in &settled {
                st.engine
                    .run_finished(&s.rule, s.state == RunState::Succeeded, Utc::now());
            }
            st.rule_of_run.extend(open);
        }
        for s in settled {
            let counted = if s.state == RunState::Succeeded {
                "a success"
            } else {
                "a failure"
            };
            tracing::warn!(rule = %s.rule, run = %s.run, "automatic run {} while no daemon watched it: counted as {counted}", s.state.as_str());
            self.record(
                &s.rule,
                "restart",
                format!(
                    "run {} {} while no daemon watched it: counted as {counted}",
                    s.run,
                    s.state.as_str()
                ),
            );
        }
        self.persist();
    }

    fn set_aside_unreadable(&self, dir: &Path, error: &str) {
        let path = GuardMemory::path(dir);
        let aside = path.with_extension(format!("json.unreadable-{}", Utc::now().timestamp()));
        let moved = match std::fs::rename(&path, &aside) {
            Ok(()) => format!("moved to {}", aside.display()),
            Err(e) => format!("could not be moved aside: {e}"),
        };
        tracing::error!("rules memory unreadable ({error}); it was {moved}; automation starts paused: check `splice-dr status`, then `splice-dr resume`");
        {
            let mut st = self.state();
            st.engine.pause();
            st.operator_paused = Some(true);
        }
        self.record(
            "*",
            "restart",
            format!(
                "paused: the rules memory was unreadable ({error}) and {moved}; breakers and \
                 rate limits start from zero — `splice-dr resume` once the node is checked"
            ),
        );
        self.persist();
    }

    /// Writes the memory if it changed since the last write (and this replica leads).
    /// A failed write is logged once and retried on the next change or tick; `status`
    /// shows it meanwhile.
    pub(super) fn persist(&self) {
        if !self.ctx.leadership.is_leader() {
            return;
        }
        let _one_writer = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        let memory = {
            let st = self.state();
            let now = current(&st);
            if st.memory_error.is_none() && st.saved.as_ref() == Some(&now) {
                return;
            }
            now
        };
        let dir = &self.ctx.state_dir;
        let result = blocking(|| memory.save(dir));
        let mut st = self.state();
        match result {
            Ok(()) => {
                if st.memory_error.take().is_some() {
                    tracing::info!("rules memory written again");
                }
                st.saved = Some(memory);
            }
            Err(e) => {
                let e = e.to_string();
                if st.memory_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("cannot write the rules memory: {e}; a restart now would forget tripped breakers and the rate window");
                }
                st.memory_error = Some(e);
            }
        }
    }

    /// A replica that just became the leader takes over what the last leader remembered.
    pub(super) fn on_leadership(&self) {
        let leads = self.ctx.leadership.is_leader();
        let became = {
            let mut st = self.state();
            let became = leads && !st.was_leader;
            st.was_leader = leads;
            became
        };
        if became {
            tracing::info!("leading now: reading the rules memory the last leader wrote");
            self.recall();
        }
    }
}

/// The memory as the state holds it now.
fn current(st: &State) -> GuardMemory {
    GuardMemory::new(
        st.operator_paused,
        st.engine.memory(),
        st.rule_of_run
            .iter()
            .map(|(run, rule)| (run.clone(), rule.clone()))
            .collect(),
    )
}
