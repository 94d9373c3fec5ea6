//! `[daemon.leader_election]`: several daemon replicas (a Kubernetes Deployment with two
//! replicas) share one coordination.k8s.io Lease, and only its holder runs flows.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of leader election; absent = this daemon always runs flows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Name of the Lease object.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// Namespace of the Lease (the validator's, where the daemon runs).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// This replica's name in the Lease [default: `$POD_NAME`, else the host name].
    #[serde(default)]
    pub identity: Option<String>,
    /// Kubeconfig file [default: the pod's service account].
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context inside `kubeconfig` [default: its current context].
    #[serde(default)]
    pub context: Option<String>,
    /// How long a lease not renewed stays with its holder (Lease
    /// `leaseDurationSeconds`): the time a replica that died blocks the other one.
    #[serde(with = "super::duration", default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// How often the holder renews and the others look (must be well under
    /// `lease_duration`).
    #[serde(with = "super::duration", default = "default_renew_interval")]
    pub renew_interval: Duration,
}

fn default_lease() -> String {
    "splice-dr".into()
}
fn default_namespace() -> String {
    "validator".into()
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_renew_interval() -> Duration {
    Duration::from_secs(5)
}

impl LeaderElectionConfig {
    /// Checks the durations make sense together; the message names the keys.
    pub fn check(&self) -> Result<(), String> {
        if self.lease.is_empty() || self.namespace.is_empty() {
            return Err("`lease` and `namespace` must not be empty".into());
        }
        if self.lease_duration.as_secs() < 1 {
            return Err("`lease_duration` must be at least 1s".into());
        }
        if self.renew_interval * 2 > self.lease_duration {
            return Err(format!(
                "`renew_interval` ({:?}) must be at most half of `lease_duration` ({:?}), or \
                 the holder loses the lease between two renewals",
                self.renew_interval, self.lease_duration
            ));
        }
        Ok(())
    }

    /// The identity in force: `identity`, `$POD_NAME`, `$HOSTNAME` or the host name.
    pub fn identity(&self) -> String {
        if let Some(i) = self.identity.clone().filter(|i| !i.is_empty()) {
            return i;
        }
        for var in ["POD_NAME", "HOSTNAME"] {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                return v;
            }
        }
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("splice-dr-{}", std::process::id()))
    }
}
