//! Restore drills on the wire: a backup's last drill and its verdict, as manifests,
//! `backups` and `status` carry them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A drill's verdict. Typed, so a misspelt comparison is a compile error rather than a
/// backup silently never "passed"; written as `passed` / `failed` (manifests, `--json`,
/// scripts). Any other word in a manifest makes it unreadable, as any malformed field does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillResult {
    /// Restored into scratch databases with every check passing.
    Passed,
    /// Did not restore, or a check failed (the record's `detail` says which).
    Failed,
}

impl DrillResult {
    /// `Passed` when `passed`.
    pub fn from_passed(passed: bool) -> Self {
        if passed {
            DrillResult::Passed
        } else {
            DrillResult::Failed
        }
    }

    /// Lower-case name as shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillResult::Passed => "passed",
            DrillResult::Failed => "failed",
        }
    }
}

/// Outcome of restoring a backup into scratch databases (`splice-dr drill`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// When the drill ended.
    pub at: DateTime<Utc>,
    /// Whether the backup restored and passed its checks.
    pub result: DrillResult,
    /// How long it took.
    pub duration_ms: u64,
    /// What was checked, or what failed (the table, the tool's error).
    pub detail: String,
    /// The run that did it.
    pub run: String,
}
