//! Events: what the daemon notices (health changes, alerts, schedules, operator
//! triggers), named so rules can match patterns. The sources and the bus that carries
//! events live in the daemon; an event only describes the world.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One thing that happened, named hierarchically so rules can match patterns:
/// `health.validator.down`, `health.postgres.up`, `alert.ValidatorDown`,
/// `schedule.backup`, `backup.stale`, `operator.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Dotted name, e.g. `health.validator.down`.
    pub name: String,
    /// The node it concerns, when it concerns one.
    pub node: Option<String>,
    /// Extra labels (alert labels, probe details).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Human text, e.g. the probe's error.
    #[serde(default)]
    pub message: String,
    /// When it was observed.
    pub at: DateTime<Utc>,
}

impl Event {
    /// A new event observed now.
    pub fn new(name: impl Into<String>, node: Option<String>, message: impl Into<String>) -> Self {
        Event {
            name: name.into(),
            node,
            labels: BTreeMap::new(),
            message: message.into(),
            at: Utc::now(),
        }
    }

    /// Adds a label.
    pub fn with_label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
}

/// Whether `name` matches `pattern`: dotted segments, `*` matches exactly one segment,
/// a trailing `**` matches any remainder (`health.*.down`, `alert.**`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut p = pattern.split('.');
    let mut n = name.split('.');
    loop {
        match (p.next(), n.next()) {
            (Some("**"), _) => return true,
            (Some(ps), Some(ns)) if ps == "*" || ps == ns => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_by_segment() {
        assert!(matches("health.*.down", "health.validator.down"));
        assert!(!matches("health.*.down", "health.validator.up"));
        assert!(!matches("health.*", "health.validator.down"));
        assert!(matches("alert.**", "alert.ValidatorDown"));
        assert!(matches("**", "anything.at.all"));
        assert!(matches("backup.stale", "backup.stale"));
        assert!(!matches("backup.stale", "backup"));
    }
}
