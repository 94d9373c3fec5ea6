//! A node's recovery runway on the wire: how long its newest restorable backup stays
//! restorable, and how long the node may stay down, before Splice's sequencers prune past
//! it (`repository.max_age`, 30 days by default). Past the first a restore is refused; past
//! the second the network disables the node (`MemberDisabled`) and only a re-onboard
//! brings it back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Both halves of a node's runway, as computed at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunwayView {
    /// When it was computed (seconds below are counted from here).
    pub at: DateTime<Utc>,
    /// The horizon: `repository.max_age`, in seconds.
    pub horizon_secs: u64,
    /// `repository.low_runway` in force, in seconds: a runway shorter than this is `low`.
    pub low_below_secs: u64,
    /// Time left to restore the newest restorable backup.
    pub restore: RestoreRunway,
    /// How long the node has been down and the time left before it passes the horizon;
    /// absent when nothing is known of its health (no daemon probes it and its health log
    /// is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<DownRunway>,
}

/// The restore half: the newest backup a restore would accept (same node, the running
/// migration id and participant, trusted, complete, not failed by a drill) and when it
/// passes the horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRunway {
    /// That backup's id; absent when the node has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// When it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<DateTime<Utc>>,
    /// When it passes the horizon (`taken_at + max_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Seconds until `expires_at`: negative once it passed (that long ago), 0 when there
    /// is no such backup.
    pub left_secs: i64,
    /// Whether `left_secs` is below the threshold (always with no backup).
    pub low: bool,
}

/// The down half: time since the node was last healthy (every probed component up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownRunway {
    /// When the current outage began; absent while the node is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Whether the health log shows the node healthy before this outage. False: it was
    /// down from the log's first record, so it may have been down longer than shown.
    pub seen_healthy: bool,
    /// Seconds since `since` (0 while healthy).
    pub down_secs: u64,
    /// When the outage passes the horizon (`since + max_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Seconds left before the horizon (the whole horizon while healthy; negative once
    /// passed).
    pub left_secs: i64,
    /// Whether `left_secs` is below the threshold.
    pub low: bool,
}
