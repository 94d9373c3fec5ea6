//! `status` from state: the daemon keeps each node's latest status probe (components,
//! databases, leftovers, last backup) in memory with the time it was taken, and `status`
//! serves that. Probing per request made 50 concurrent `status` calls queue behind
//! Postgres, the readyz URL and the Docker engine (p99 1.9 s); a probe round per
//! `health_interval` costs the nodes the same whatever the number of callers.

use chrono::{DateTime, Utc};
use splice_dr_plugin_api::Leftovers;
use splice_dr_protocol::NodeStatus;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// One node's latest probe.
#[derive(Debug, Clone)]
struct Snapshot {
    checked_at: DateTime<Utc>,
    value: NodeStatus,
}

/// The latest status probe of every node, and the bookkeeping of the rounds.
#[derive(Debug)]
pub struct StatusBoard {
    snapshots: Mutex<BTreeMap<String, Snapshot>>,
    /// Nodes whose probe thread has not returned yet: no second one is started for them,
    /// so a backend that ignores its deadline costs one thread, not one per round.
    in_flight: Mutex<BTreeSet<String>>,
    /// Wakes the probe loop before its interval ends (a run ended, the config changed).
    wake: Notify,
    /// Full rounds asked for so far (a run ended, a reload).
    wanted: AtomicU64,
    /// The last full round done (the value of `wanted` it answered).
    done: watch::Sender<u64>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            snapshots: Mutex::default(),
            in_flight: Mutex::default(),
            wake: Notify::new(),
            wanted: AtomicU64::new(0),
            done: watch::Sender::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusBoard {
    /// Records `node`'s probe result, taken at `checked_at`.
    pub fn record(&self, node: &str, checked_at: DateTime<Utc>, value: NodeStatus) {
        lock(&self.snapshots).insert(node.into(), Snapshot { checked_at, value });
    }

    /// `node`'s last leftovers answer and when it was taken (not an error: those are
    /// asked again).
    pub fn leftovers(&self, node: &str) -> Option<(Leftovers, DateTime<Utc>)> {
        let snapshots = lock(&self.snapshots);
        let v = &snapshots.get(node)?.value;
        Some((v.leftovers.as_ref()?.found.clone(), v.leftovers_checked_at?))
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

    /// Asks the probe loop for a full round now.
    pub fn refresh(&self) {
        self.want();
        self.wake.notify_one();
    }

    /// Records that a full round is wanted (the loop calls it on a run's end, before its
    /// round); returns the number the round reports to [`StatusBoard::done`].
    pub fn want(&self) -> u64 {
        self.wanted.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The full rounds wanted so far.
    pub fn want_so_far(&self) -> u64 {
        self.wanted.load(Ordering::SeqCst)
    }

    /// Records that the full round asked as `wanted` is done.
    pub fn done(&self, wanted: u64) {
        self.done.send_if_modified(|d| {
            let newer = wanted > *d;
            *d = (*d).max(wanted);
            newer
        });
    }

    /// Waits, at most `limit`, for the full rounds wanted so far: `status` right after a
    /// run ended shows what the run left (its backup, its leftovers), not the state before.
    pub async fn settled(&self, limit: Duration) {
        let wanted = self.wanted.load(Ordering::SeqCst);
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|d| *d >= wanted)).await;
    }

    /// Resolves when [`StatusBoard::refresh`] was called (a call made before waiting counts).
    pub async fn refresh_requested(&self) {
        self.wake.notified().await;
    }

    /// `node`'s status as last probed, with `checked_at` and `age_seconds` (and the last
    /// backup's age as of `now`); before the first probe of the node, its static `facts`
    /// (name, backend, migration id) and `probe: "not probed yet"`.
    pub fn node(&self, node: &str, facts: NodeStatus, now: DateTime<Utc>) -> NodeStatus {
        let Some(s) = lock(&self.snapshots).get(node).cloned() else {
            return NodeStatus {
                probe: Some(
                    "not probed yet: the daemon's first status round for this node has not finished"
                        .into(),
                ),
                ..facts
            };
        };
        let mut v = s.value;
        v.checked_at = Some(s.checked_at);
        v.age_seconds = Some((now - s.checked_at).num_milliseconds() as f64 / 1000.0);
        if let Some(b) = v.last_backup.as_mut() {
            b.age_secs = (now - b.created_at).num_seconds();
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
        let facts = || NodeStatus {
            name: Some("n1".into()),
            backend: Some("postgres".into()),
            ..NodeStatus::default()
        };
        let v = b.node("n1", facts(), now);
        assert_eq!(v.name.as_deref(), Some("n1"));
        assert!(v.probe.as_deref().unwrap().contains("not probed yet"));
        b.record(
            "n1",
            now - chrono::Duration::seconds(3),
            NodeStatus {
                databases: Some(vec![]),
                ..facts()
            },
        );
        let v = b.node("n1", facts(), now);
        assert_eq!(v.age_seconds, Some(3.0));
        assert!(v.probe.is_none());
        assert!(b.leftovers("n1").is_none(), "never answered");
        b.record(
            "n1",
            now,
            NodeStatus {
                leftovers: Some(splice_dr_protocol::LeftoversView::default()),
                leftovers_checked_at: Some(now),
                ..NodeStatus::default()
            },
        );
        assert_eq!(b.leftovers("n1").unwrap().1, now);
        b.retain(&BTreeSet::new());
        assert!(b.node("n1", facts(), now).probe.is_some());
    }

    #[tokio::test]
    async fn status_waits_for_a_wanted_round_but_only_so_long() {
        let b = std::sync::Arc::new(StatusBoard::default());
        b.settled(Duration::from_secs(60)).await; // nothing wanted: at once
        let n = b.want();
        let started = std::time::Instant::now();
        b.settled(Duration::from_millis(100)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "bounded wait"
        );
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.settled(Duration::from_secs(60)).await });
        b.done(n);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("done wakes the waiter")
            .unwrap();
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
