//! Leader election between daemon replicas over a coordination.k8s.io Lease.
//!
//! Every replica loops: read the Lease; take it when it is free or expired (not renewed
//! for `leaseDurationSeconds`), renew it when it holds it, otherwise follow. Writes carry
//! the `resourceVersion` read, so two replicas racing for an expired lease cannot both win
//! (the API server refuses the second with 409). Only the holder starts runs
//! ([`Leadership::refusal`]); a run in progress checks [`Leadership::is_leader`] at every
//! forward step (through the run's guard), so a replica that loses the lease stops
//! starting new steps while its undo steps still run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::LeaderElectionConfig;

/// Whether this replica may run flows, shared by the election loop, the runner and
/// every run's guard.
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// `None`: no election configured, always leader.
    election: Option<(String, String)>,
    leader: AtomicBool,
    holder: Mutex<Option<String>>,
}

impl Leadership {
    /// No election: this daemon always runs flows.
    pub fn always() -> Self {
        Leadership {
            inner: Arc::new(State {
                election: None,
                leader: AtomicBool::new(true),
                holder: Mutex::new(None),
            }),
        }
    }

    /// An election on `lease` as `identity`; a follower until the first win.
    pub fn elected(lease: &str, identity: &str) -> Self {
        Leadership {
            inner: Arc::new(State {
                election: Some((lease.into(), identity.into())),
                leader: AtomicBool::new(false),
                holder: Mutex::new(None),
            }),
        }
    }

    /// Whether this replica holds the lease (always true without an election).
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(Ordering::SeqCst)
    }

    /// Why this replica must not start a run now, in words for the operator.
    pub fn refusal(&self) -> Option<String> {
        if self.is_leader() {
            return None;
        }
        let (lease, me) = self.inner.election.clone().unwrap_or_default();
        let holder = self
            .holder()
            .map(|h| format!("replica `{h}` holds it and runs flows"))
            .unwrap_or_else(|| "no replica holds it yet".into());
        Some(format!(
            "this replica (`{me}`) is not the leader: Lease `{lease}` decides which splice-dr \
             replica runs flows, and {holder}; send the request to the leader (its status \
             shows `leader: true`)"
        ))
    }

    /// The message a run gets when its replica lost the lease mid-run.
    pub fn lost_message() -> &'static str {
        "this replica lost the leader lease (another splice-dr replica runs flows now)"
    }

    fn holder(&self) -> Option<String> {
        self.inner
            .holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, leader: bool, holder: Option<String>) {
        let was = self.inner.leader.swap(leader, Ordering::SeqCst);
        let mut h = self.inner.holder.lock().unwrap_or_else(|p| p.into_inner());
        let (lease, me) = self.inner.election.clone().unwrap_or_default();
        if leader && !was {
            tracing::info!(lease = %lease, identity = %me, "became the leader: this replica runs flows");
        } else if !leader && was {
            tracing::warn!(lease = %lease, identity = %me, holder = ?holder, "lost the leader lease: no new steps start here");
        } else if !leader && *h != holder {
            tracing::info!(lease = %lease, holder = ?holder, "following the leader");
        }
        *h = holder;
    }

    /// `status` output: `{enabled, leader, identity, lease, holder}`.
    pub fn status(&self) -> Value {
        match &self.inner.election {
            None => json!({"enabled": false, "leader": true}),
            Some((lease, me)) => json!({
                "enabled": true, "leader": self.is_leader(), "identity": me,
                "lease": lease, "holder": self.holder(),
            }),
        }
    }
}

/// Connects to the API server and runs the election until `stop`; then releases the lease
/// if this replica holds it, so another replica takes over at once.
pub async fn run(
    cfg: LeaderElectionConfig,
    leadership: Leadership,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = splice_dr_k8s::cluster::connect(cfg.kubeconfig.as_deref(), cfg.context.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("[daemon.leader_election]: {e}"))?;
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let me = cfg.identity();
    let mut last_renew: Option<Instant> = None;
    loop {
        match round(&api, &cfg, &me).await {
            Ok((true, _)) => {
                last_renew = Some(Instant::now());
                leadership.set(true, Some(me.clone()));
            }
            Ok((false, holder)) => {
                last_renew = None;
                leadership.set(false, holder);
            }
            Err(e) => {
                tracing::warn!("leader election: {e}");
                // Without a renewal the lease is the holder's only until it expires.
                let still = last_renew.is_some_and(|t| t.elapsed() < cfg.lease_duration);
                if !still {
                    leadership.set(false, leadership.holder());
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(cfg.renew_interval) => {}
        }
    }
    if leadership.is_leader() {
        leadership.set(false, None);
        if let Err(e) = release(&api, &cfg, &me).await {
            tracing::warn!("could not release the leader lease: {e}");
        }
    }
    Ok(())
}

/// One look at the lease: takes, renews or follows. Returns whether this replica holds it
/// now and who does.
async fn round(
    api: &Api<Lease>,
    cfg: &LeaderElectionConfig,
    me: &str,
) -> Result<(bool, Option<String>), kube::Error> {
    let now = Timestamp::now();
    let Some(lease) = api.get_opt(&cfg.lease).await? else {
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.lease.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(cfg, me, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok((true, Some(me.into()))),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, None)),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(me);
    if !mine && !expired(&spec, now) {
        return Ok((false, holder));
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = match (&spec.acquire_time, mine) {
        (Some(t), true) => t.0,
        _ => now,
    };
    let mut next = lease.clone();
    next.spec = Some(held_spec(cfg, me, acquired, now, transitions));
    match api.replace(&cfg.lease, &PostParams::default(), &next).await {
        Ok(_) => Ok((true, Some(me.into()))),
        // Someone else wrote it first: they hold it now.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, holder)),
        Err(e) => Err(e),
    }
}

fn held_spec(
    cfg: &LeaderElectionConfig,
    me: &str,
    acquired: Timestamp,
    renewed: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Whether a lease is free to take: no holder, or not renewed within its duration.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    if spec
        .holder_identity
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed.0 + SignedDuration::from_secs(secs) < now
}

/// Gives the lease up (no holder) so another replica need not wait for it to expire.
async fn release(
    api: &Api<Lease>,
    cfg: &LeaderElectionConfig,
    me: &str,
) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.lease).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(me) {
        return Ok(());
    }
    spec.holder_identity = None;
    api.replace(&cfg.lease, &PostParams::default(), &lease)
        .await?;
    tracing::info!(lease = %cfg.lease, "released the leader lease");
    Ok(())
}

/// How long a follower may wait at most before taking over from a dead holder.
pub fn takeover_bound(cfg: &LeaderElectionConfig) -> Duration {
    cfg.lease_duration + cfg.renew_interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let now = Timestamp::now();
        let spec = |holder: Option<&str>, ago: i64| LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec(Some("a"), 5), now));
        assert!(expired(&spec(Some("a"), 11), now));
        assert!(expired(&spec(None, 0), now));
    }

    #[test]
    fn followers_refuse_with_the_holder_named() {
        let l = Leadership::elected("splice-dr", "pod-b");
        l.set(false, Some("pod-a".into()));
        let msg = l.refusal().expect("refused");
        assert!(msg.contains("pod-b") && msg.contains("pod-a"), "{msg}");
        l.set(true, Some("pod-b".into()));
        assert!(l.refusal().is_none());
        assert!(Leadership::always().refusal().is_none());
    }
}
