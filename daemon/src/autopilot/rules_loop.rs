//! Rules and approvals: events become rule decisions, and decisions become runs — started,
//! queued while their node is busy, or created waiting for an operator's approval (which
//! expires). Every outcome is a decision record in `status`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::state::Queued;
use super::Autopilot;
use crate::config::NotifyKind;
use crate::events::Event;
use crate::flows::{RunError, RunRequest};
use crate::journal::{Detection, PendingApproval, RunState};
use crate::notify::RunSummary;
use splice_dr_automation::rules::Decision;

fn params_map(v: &Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

impl Autopilot {
    /// One event from the bus: a component's health gauge, then the rules' decisions.
    pub(super) fn on_event(&self, ev: &Event) {
        if let Some(component) = ev.labels.get("component") {
            if let (Some(node), Some(state)) = (&ev.node, ev.name.rsplit('.').next()) {
                let component = self.ctx.board.bounded_component(node, component);
                crate::metrics::component_health(node, component, state == "up");
            }
        }
        let decisions = self.state().engine.on_event(ev, Utc::now());
        self.apply(decisions);
    }

    /// Turns rule decisions into runs, approvals or records.
    pub(super) fn apply(&self, decisions: Vec<Decision>) {
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
                    detected_at,
                    guards,
                } => {
                    let detection = detected_at.map(|at| Detection {
                        event: trigger.clone(),
                        at,
                        rule: rule.clone(),
                        guards,
                    });
                    let request = RunRequest {
                        flow,
                        node,
                        params: params_map(&params),
                        trigger: format!("rule:{rule}"),
                        dry_run: false,
                        requested_by: None,
                        detection,
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
        match self.ctx.runner.create_pending(request, approval) {
            Ok(id) => {
                tracing::warn!(rule = %rule, run = %id, "run waits for approval: `splice-dr approve {id}` (expires {expires_at})");
                self.record(
                    rule,
                    trigger,
                    format!("pending approval {id} (expires {expires_at})"),
                );
                self.state().rule_of_run.insert(id.clone(), rule.into());
                self.persist();
                self.notify(
                    NotifyKind::PendingApproval,
                    &RunSummary::new(id, flow, node),
                );
            }
            Err(e) => self.record(rule, trigger, format!("error: {e}")),
        }
    }

    fn start(&self, q: Queued) {
        if self.ctx.runner.node_busy(q.request.node.as_deref()) {
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
        let started = self.ctx.runner.start_noting(q.request.clone(), |id| {
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

    /// Starts the queued runs whose node is free (none while automation is paused).
    pub(super) fn retry_queue(&self) {
        let ready: Vec<Queued> = {
            let mut st = self.state();
            let paused = st.engine.is_paused();
            let (go, wait): (Vec<_>, Vec<_>) = st
                .queue
                .drain(..)
                .partition(|q| !paused && !self.ctx.runner.node_busy(q.request.node.as_deref()));
            st.queue = wait.into();
            go
        };
        for q in ready {
            self.start(q);
        }
    }

    /// Cancels the runs whose approval expired and counts those still waiting.
    pub(super) fn expire_approvals(&self, now: DateTime<Utc>) {
        let journal = &self.ctx.journal;
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
                    self.state().rule_of_run.remove(&r.id);
                }
            } else {
                waiting += 1;
            }
        }
        crate::metrics::pending_approvals(waiting);
    }
}
