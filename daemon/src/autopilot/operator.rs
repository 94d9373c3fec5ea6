//! What an operator asks of the automatic side over the socket: pause, resume, reset a
//! breaker, publish an event, approve a waiting run. Each is a decision record in
//! `status`, and pause/resume/reset outlive a restart through the guard memory.

use super::Autopilot;
use crate::events::Event;

impl Autopilot {
    /// Stops every automatic trigger (rules and schedules); manual runs stay allowed.
    /// The pause outlives a restart of the daemon until `resume`.
    /// `by` (`uid N (pid M)`) is kept with the decision.
    pub fn pause(&self, by: &str) {
        self.set_paused(true, by);
    }

    /// Re-arms automatic triggers.
    pub fn resume(&self, by: &str) {
        self.set_paused(false, by);
    }

    /// The operator's pause or resume: the engine, the remembered last word, a record.
    fn set_paused(&self, paused: bool, by: &str) {
        {
            let mut st = self.state();
            if paused {
                st.engine.pause();
            } else {
                st.engine.resume();
            }
            st.operator_paused = Some(paused);
        }
        let outcome = if paused { "paused" } else { "resumed" };
        self.record("*", &format!("operator {by}"), outcome.into());
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
        self.ctx.bus.publish(
            Event::new(name, node, message)
                .with_label("source", "operator")
                .with_label("requested_by", by),
        );
    }

    /// Approves a run waiting for approval and starts it.
    pub fn approve(&self, run: &str, by: &str) -> Result<String, String> {
        let (id, _) = self
            .ctx
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
}
