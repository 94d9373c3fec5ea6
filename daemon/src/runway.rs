//! A node's recovery runway, read from the world: the backups of the local repository that
//! a restore would accept (trusted, same node, the running migration id and participant
//! from the participant registry, not failed by a drill), the durable health log and,
//! in the daemon, the probes' current state. The computation itself is
//! `splice_dr_automation::runway` (pure, clock injected); the autopilot turns it into
//! metrics and events, the service into `status`.

use chrono::{DateTime, Utc};
use splice_dr_automation::runway::{self, HealthRecord, RestorableBackup, RunwayPolicy};
use splice_dr_protocol::runway::RunwayView;
use splice_dr_protocol::status::HealthChange;
use splice_dr_repo::{Manifest, Repository, RunningNode};

use crate::participants::Registry;
use crate::script::NodeFacts;

/// The runway of the node `facts` describes at `now`. `backups` is the local repository's
/// listing (any nodes); `current` the probes' latest state of every component (any nodes;
/// `None` without the daemon, when the health log's last records stand for the present).
/// In the daemon, a node the probes have not answered for yet has no down half: its log
/// may end in an outage its first probe is about to end.
pub fn assess(
    facts: &NodeFacts,
    low_below: std::time::Duration,
    repo: &Repository,
    backups: &[Manifest],
    current: Option<&[HealthChange]>,
    now: DateTime<Utc>,
) -> RunwayView {
    let policy = RunwayPolicy {
        horizon: facts.max_age,
        low_below,
    };
    let newest = newest_restorable(facts, repo, backups);
    let outage = health_records(facts, current).and_then(|r| runway::outage(&r));
    runway::assess(policy, newest.as_ref(), outage, now)
}

/// The backup the restore half counts down. The registry's ids are those every restore
/// checks against; an unreadable registry (shown in `status` on its own) leaves the
/// config's migration id and no participant.
fn newest_restorable(
    facts: &NodeFacts,
    repo: &Repository,
    backups: &[Manifest],
) -> Option<RestorableBackup> {
    let reg = Registry::load(&facts.state_dir, &facts.name).unwrap_or_default();
    let into = RunningNode {
        name: &facts.name,
        migration_id: reg.running_migration_id(facts.migration_id),
        participant: reg.current.as_deref(),
        max_age: facts.max_age,
        participant_db: facts.participant_db.as_deref(),
    };
    // An untrusted backup is restored only with --force: it gives no runway.
    let trusted: Vec<Manifest> = backups
        .iter()
        .filter(|m| m.node == facts.name && repo.untrusted_because(m).is_none())
        .cloned()
        .collect();
    splice_dr_repo::newest_restorable(&trusted, &into).map(|m| RestorableBackup {
        id: m.id.clone(),
        taken_at: m.created_at,
    })
}

/// The node's health log followed by the probes' current state of its components (each
/// at the time it began), so a change the log's recorder has not written yet still counts.
fn health_records(
    facts: &NodeFacts,
    current: Option<&[HealthChange]>,
) -> Option<Vec<HealthRecord>> {
    let now: Vec<HealthRecord> = current
        .unwrap_or_default()
        .iter()
        .filter(|c| c.node == facts.name)
        .map(|c| HealthRecord {
            at: c.at,
            component: c.component.clone(),
            up: c.up,
        })
        .collect();
    if current.is_some() && now.is_empty() {
        return None;
    }
    let logged = crate::events::health_log::read(&facts.state_dir, &facts.name)
        .into_iter()
        .map(|e| HealthRecord {
            at: e.at,
            component: e.component,
            up: e.up,
        });
    Some(logged.chain(now).collect())
}
