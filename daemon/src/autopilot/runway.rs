//! Recovery runways: every `health_interval`, each node's runway (see [`crate::runway`])
//! becomes gauges and, when a half crosses `repository.low_runway`, a `runway.*.low` or
//! `runway.*.ok` event on the bus for rules and notifications.

use chrono::{DateTime, Utc};
use std::time::Instant;

use super::{blocking, Autopilot};

impl Autopilot {
    /// Checks every node's runway, at most once per `health_interval` (its down half moves
    /// only with the probes, its restore half only with the repository).
    pub(super) fn check_runway(&self, now: DateTime<Utc>) {
        let low_below = {
            let mut st = self.state();
            if st
                .runway_checked
                .is_some_and(|t| t.elapsed() < self.ctx.health_interval)
            {
                return;
            }
            st.runway_checked = Some(Instant::now());
            st.low_runway
        };
        let backups = self.listing();
        let current = self.ctx.board.snapshot();
        let nodes = self.ctx.runner.nodes();
        // Reads the participant registries and health logs: not on an async worker.
        let views: Vec<_> = blocking(|| {
            nodes
                .iter()
                .map(|(name, rt)| {
                    let view = crate::runway::assess(
                        &rt.facts,
                        low_below,
                        &self.ctx.repo,
                        &backups,
                        Some(current.as_slice()),
                        now,
                    );
                    (name.clone(), view)
                })
                .collect()
        });
        let events: Vec<_> = {
            let mut st = self.state();
            let names: Vec<String> = nodes.keys().cloned().collect();
            st.runway_watch.retain(&names);
            views
                .iter()
                .flat_map(|(node, view)| st.runway_watch.check(node, view))
                .collect()
        };
        for (node, view) in &views {
            crate::metrics::runway(node, view);
        }
        for ev in events {
            self.ctx.bus.publish(ev);
        }
    }
}
