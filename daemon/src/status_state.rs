//! `status` from state: the daemon keeps each node's latest status probe (components,
//! databases, leftovers, last backup) in memory with the time it was taken, and `status`
//! serves that. Probing per request made 50 concurrent `status` calls queue behind
//! Postgres, the readyz URL and the Docker engine (p99 1.9 s); a probe round per
//! `health_interval` costs the nodes the same whatever the number of callers.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// One node's latest probe.
#[derive(Debug, Clone)]
struct Snapshot {
    checked_at: DateTime<Utc>,
    value: Value,
}

/// The latest status probe of every node, and the bookkeeping of the rounds.
#[derive(Debug, Default)]
pub struct StatusBoard {
    snapshots: Mutex<BTreeMap<String, Snapshot>>,
    /// Nodes whose probe thread has not returned yet: no second one is started for them,
    /// so a backend that ignores its deadline costs one thread, not one per round.
    in_flight: Mutex<BTreeSet<String>>,
    /// Wakes the probe loop before its interval ends (a run ended, the config changed).
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusBoard {
    /// Records `node`'s probe result, taken at `checked_at`.
    pub fn record(&self, node: &str, checked_at: DateTime<Utc>, value: Value) {
        lock(&self.snapshots).insert(node.into(), Snapshot { checked_at, value });
    }

    /// `node`'s last leftovers answer and when it was taken (not an error: those are
    /// asked again).
    pub fn leftovers(&self, node: &str) -> Option<(Value, DateTime<Utc>)> {
        let snapshots = lock(&self.snapshots);
        let v = &snapshots.get(node)?.value;
        let at = v["leftovers_checked_at"].as_str()?;
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        Some((v.get("leftovers").filter(|l| !l.is_null())?.clone(), at))
    }

    /// Forgets nodes that are no longer configured.
    pub fn retain(&self, configured: &BTreeSet<String>) {
        lock(&self.snapshots).retain(|n, _| configured.contains(n));
    }

    /// Marks `node`'s probe as started; `false` when the previous one is still running.
    pub fn begin(&self, node: &str) -> bool {
        lock(&self.in_flight).insert(node.into())
    }

    /// Marks `node`'s probe as returned.
    pub fn end(&self, node: &str) {
        lock(&self.in_flight).remove(node);
    }

    /// Asks the probe loop for a round now.
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`StatusBoard::refresh`] was called (a call made before waiting counts).
    pub async fn refresh_requested(&self) {
        self.wake.notified().await;
    }

    /// `node`'s status as last probed, with `checked_at` and `age_seconds` (and the last
    /// backup's age as of `now`); before the first probe of the node, its static `facts`
    /// (name, backend, migration id) and `probe: "not probed yet"`.
    pub fn node(&self, node: &str, facts: Value, now: DateTime<Utc>) -> Value {
        let Some(s) = lock(&self.snapshots).get(node).cloned() else {
            let mut v = facts;
            v["checked_at"] = Value::Null;
            v["age_seconds"] = Value::Null;
            v["probe"] = json!(
                "not probed yet: the daemon's first status round for this node has not finished"
            );
            return v;
        };
        let mut v = s.value;
        v["checked_at"] = json!(s.checked_at);
        v["age_seconds"] = json!((now - s.checked_at).num_milliseconds() as f64 / 1000.0);
        let created = v["last_backup"]["created_at"]
            .as_str()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok());
        if let Some(c) = created {
            v["last_backup"]["age_secs"] = json!((now - c.with_timezone(&Utc)).num_seconds());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_served_with_its_age_or_as_not_probed_yet() {
        let b = StatusBoard::default();
        let now = Utc::now();
        let facts = || json!({"name": "n1", "backend": "postgres"});
        let v = b.node("n1", facts(), now);
        assert_eq!(v["name"], "n1");
        assert!(v["probe"].as_str().unwrap().contains("not probed yet"));
        b.record(
            "n1",
            now - chrono::Duration::seconds(3),
            json!({"name": "n1", "databases": []}),
        );
        let v = b.node("n1", facts(), now);
        assert_eq!(v["age_seconds"], 3.0);
        assert!(v.get("probe").is_none());
        assert!(b.leftovers("n1").is_none(), "never answered");
        b.record(
            "n1",
            now,
            json!({"leftovers": {"staged": []}, "leftovers_checked_at": now}),
        );
        assert_eq!(b.leftovers("n1").unwrap().1, now);
        b.retain(&BTreeSet::new());
        assert!(b.node("n1", facts(), now)["probe"].is_string());
    }

    #[test]
    fn a_node_has_one_probe_in_flight_at_most() {
        let b = StatusBoard::default();
        assert!(b.begin("n1"));
        assert!(!b.begin("n1"));
        b.end("n1");
        assert!(b.begin("n1"));
    }
}
