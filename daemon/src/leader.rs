//! Leader election between daemon replicas over a coordination.k8s.io Lease.
//!
//! Every replica loops: read the Lease; take it when it is free or expired (not renewed
//! for `leaseDurationSeconds`), renew it when it holds it, otherwise follow. Writes carry
//! the `resourceVersion` read, so two replicas racing for an expired lease cannot both win
//! (the API server refuses the second with 409). Only the holder starts runs
//! ([`Leadership::refusal`]); a run in progress checks [`Leadership::is_leader_with_margin`]
//! at every forward step (through the run's guard), so a replica that loses the lease
//! stops starting new steps while its undo steps still run.
//!
//! One leader at a time even when the API server hangs: every round is bounded by
//! [`call_timeout`] (a third of the lease), and the holder believes it leads only until
//! [`renew_deadline`] (two thirds of the lease) after the monotonic instant its last
//! successful renewal started. Another replica can take the lease only a whole lease
//! after that renewal's `renewTime`, so the hung holder has demoted itself a third of a
//! lease before. Forward steps need a further [`step_margin`] of validity left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use splice_dr_protocol::automation::LeaderView;
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
    /// The monotonic end of the holder's belief: renewal start + renew deadline.
    valid_until: Mutex<Option<Instant>>,
    /// Validity a forward step needs left ([`step_margin`]).
    margin: Mutex<Duration>,
}

impl Leadership {
    /// No election: this daemon always runs flows.
    pub fn always() -> Self {
        Leadership {
            inner: Arc::new(State {
                election: None,
                leader: AtomicBool::new(true),
                holder: Mutex::new(None),
                valid_until: Mutex::new(None),
                margin: Mutex::new(Duration::ZERO),
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
                valid_until: Mutex::new(None),
                margin: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Whether this replica holds the lease (always true without an election): it won
    /// or renewed it, and its renew deadline has not passed since.
    pub fn is_leader(&self) -> bool {
        self.valid_for().is_some()
    }

    /// [`Self::is_leader`] with at least the step margin of validity left: what a
    /// forward (destructive) step needs to start or go on.
    pub fn is_leader_with_margin(&self) -> bool {
        let margin = *lock(&self.inner.margin);
        self.valid_for().is_some_and(|left| left > margin)
    }

    /// How long this replica still leads (`Duration::MAX` without a known deadline).
    fn valid_for(&self) -> Option<Duration> {
        if !self.inner.leader.load(Ordering::SeqCst) {
            return None;
        }
        match *lock(&self.inner.valid_until) {
            None => Some(Duration::MAX),
            Some(t) => t
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero()),
        }
    }

    /// Records a successful renewal: this replica leads until `until`.
    fn renewed(&self, until: Instant) {
        *lock(&self.inner.valid_until) = Some(until);
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
        lock(&self.inner.holder).clone()
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

    /// What `status` shows of the election.
    pub fn status(&self) -> LeaderView {
        match &self.inner.election {
            None => LeaderView {
                enabled: false,
                leader: true,
                identity: None,
                lease: None,
                holder: None,
            },
            Some((lease, me)) => LeaderView {
                enabled: true,
                leader: self.is_leader(),
                identity: Some(me.clone()),
                lease: Some(lease.clone()),
                holder: self.holder(),
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bound of one election round (its get, create or replace): a third of the lease, so a
/// hanging API server cannot keep the loop from noticing the renew deadline.
pub fn call_timeout(cfg: &LeaderElectionConfig) -> Duration {
    cfg.lease_duration / 3
}

/// How long after the start of its last successful renewal the holder believes it leads:
/// two thirds of the lease, a third before any other replica may take it.
pub fn renew_deadline(cfg: &LeaderElectionConfig) -> Duration {
    cfg.lease_duration * 2 / 3
}

/// Validity a forward step needs left to start or go on: a tenth of the lease.
pub fn step_margin(cfg: &LeaderElectionConfig) -> Duration {
    cfg.lease_duration / 10
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
    *lock(&leadership.inner.margin) = step_margin(&cfg);
    loop {
        let started = Instant::now();
        match tokio::time::timeout(call_timeout(&cfg), round(&api, &cfg, &me)).await {
            Ok(Ok((true, _))) => {
                leadership.renewed(started + renew_deadline(&cfg));
                leadership.set(true, Some(me.clone()));
            }
            Ok(Ok((false, holder))) => leadership.set(false, holder),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", call_timeout(&cfg)),
                };
                tracing::warn!("leader election: {why}");
                // Past the renew deadline the holder demotes itself, before the lease
                // can expire for the others.
                if !leadership.is_leader() {
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
        match tokio::time::timeout(call_timeout(&cfg), release(&api, &cfg, &me)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not release the leader lease: {e}"),
            Err(_) => tracing::warn!("could not release the leader lease: no answer"),
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
    fn the_holder_leads_only_until_its_renew_deadline() {
        let l = Leadership::elected("splice-dr", "pod-a");
        *lock(&l.inner.margin) = Duration::from_millis(100);
        l.renewed(Instant::now() + Duration::from_millis(250));
        l.set(true, Some("pod-a".into()));
        assert!(l.is_leader() && l.is_leader_with_margin());
        std::thread::sleep(Duration::from_millis(170));
        assert!(l.is_leader(), "still within the renew deadline");
        assert!(
            !l.is_leader_with_margin(),
            "no forward step starts with less than the margin left"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !l.is_leader(),
            "demoted at the renew deadline, with no renewal"
        );
        assert!(l.refusal().is_some());
    }

    #[test]
    fn the_deadlines_order_demotion_before_takeover() {
        let cfg: LeaderElectionConfig = toml::from_str("identity = \"x\"").unwrap();
        assert!(call_timeout(&cfg) < renew_deadline(&cfg));
        assert!(renew_deadline(&cfg) < cfg.lease_duration);
        assert!(step_margin(&cfg) < renew_deadline(&cfg) - cfg.renew_interval);
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
