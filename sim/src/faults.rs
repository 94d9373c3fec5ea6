//! Fault knobs: the ways tests and demos break the node on purpose. They live in memory
//! (not in Postgres) so that restoring a database never silently clears a fault.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// The active faults. Every field defaults to "no fault".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// `readyz` answers 503 whatever the databases say.
    #[serde(default)]
    pub unhealthy: bool,
    /// `livez` (and `readyz`) answer 503: the process looks dead to probes.
    #[serde(default)]
    pub dead: bool,
    /// The participant lags: its caught-up time is `now - lag_secs` (the 429 rule).
    #[serde(default)]
    pub lag_secs: u64,
    /// Absolute pruning horizon; `None` means `now - pruning retention` (the 400 rule).
    #[serde(default)]
    pub pruning_horizon: Option<DateTime<Utc>>,
    /// The identities endpoint answers 404 (a known real failure that silently breaks backups).
    #[serde(default)]
    pub identities_404: bool,
    /// Every validator API call (health included) is delayed by this many milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

/// A partial update of [`Faults`], as posted to `POST /sim/faults`: absent fields keep their
/// value; `"pruning_horizon": null` clears the horizon.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// See [`Faults::unhealthy`].
    pub unhealthy: Option<bool>,
    /// See [`Faults::dead`].
    pub dead: Option<bool>,
    /// See [`Faults::lag_secs`].
    pub lag_secs: Option<u64>,
    /// See [`Faults::pruning_horizon`]; `Some(None)` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub pruning_horizon: Option<Option<DateTime<Utc>>>,
    /// See [`Faults::identities_404`].
    pub identities_404: Option<bool>,
    /// See [`Faults::delay_ms`].
    pub delay_ms: Option<u64>,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl Faults {
    /// Applies a partial update.
    pub fn apply(&mut self, patch: FaultsPatch) {
        if let Some(v) = patch.unhealthy {
            self.unhealthy = v;
        }
        if let Some(v) = patch.dead {
            self.dead = v;
        }
        if let Some(v) = patch.lag_secs {
            self.lag_secs = v;
        }
        if let Some(v) = patch.pruning_horizon {
            self.pruning_horizon = v;
        }
        if let Some(v) = patch.identities_404 {
            self.identities_404 = v;
        }
        if let Some(v) = patch.delay_ms {
            self.delay_ms = v;
        }
    }

    /// The delay to apply to each validator API call.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

/// Shared, cheaply cloned handle on the running node's faults (for in-process tests).
#[derive(Clone, Debug, Default)]
pub struct FaultHandle(Arc<RwLock<Faults>>);

impl FaultHandle {
    /// A handle starting with `faults`.
    pub fn new(faults: Faults) -> Self {
        FaultHandle(Arc::new(RwLock::new(faults)))
    }

    /// The current faults.
    pub fn get(&self) -> Faults {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces all faults.
    pub fn set(&self, faults: Faults) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Applies a partial update and returns the result.
    pub fn apply(&self, patch: FaultsPatch) -> Faults {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        guard.apply(patch);
        guard.clone()
    }
}
