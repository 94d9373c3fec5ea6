//! Retention across repositories: which backups each repository lets go, and deleting them.
//!
//! The local repository follows `[retention]`, each off-site repository its own
//! `retention` table (an off-site copy usually keeps more, for longer). In every
//! repository the newest backup that did not fail a drill is kept whatever the policy, and
//! a deletion takes the node's lock, so a backup a running restore (or drill) is reading is
//! never removed: that node's backups are skipped until the run ends.
//!
//! `splice-dr prune --dry-run` prints the plan; the daemon applies it after each backup.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, RetentionConfig};
use crate::lock::NodeLock;
use splice_dr_repo::{Manifest, Repository};

pub use splice_dr_protocol::answers::{Candidate, RepoPlan};

/// The retention policy of every repository, as a config sets it: `[retention]` for the
/// local one, each `[[repository.offsite]]` table's own `retention` by repository name.
/// Taken from the config (the repository does not carry policies: which backups to keep
/// is the automation's decision, not the storage's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    local: Option<RetentionConfig>,
    offsite: BTreeMap<String, RetentionConfig>,
}

impl Policies {
    /// The policies `config` sets.
    pub fn of(config: &Config) -> Self {
        let offsite = config.repository.offsite.iter();
        Policies {
            local: config.retention.clone(),
            offsite: offsite
                .filter_map(|o| Some((o.name.clone(), o.retention.clone()?)))
                .collect(),
        }
    }

    /// The policy of the off-site repository `name`, if it has one.
    fn offsite(&self, name: &str) -> Option<&RetentionConfig> {
        self.offsite.get(name)
    }
}

/// Expired backups of `backups` under `policy`, node by node (each node keeps its own
/// newest good backup), oldest first.
fn expired(backups: &[Manifest], policy: &RetentionConfig, now: DateTime<Utc>) -> Vec<Candidate> {
    let mut nodes: Vec<&str> = backups.iter().map(|m| m.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut out = Vec::new();
    for node in nodes {
        let list: Vec<(usize, DateTime<Utc>, bool)> = backups
            .iter()
            .enumerate()
            .filter(|(_, m)| m.node == node)
            .map(|(i, m)| {
                let good = m
                    .last_drill
                    .as_ref()
                    .is_none_or(|d| d.result != splice_dr_repo::DrillResult::Failed);
                (i, m.created_at, good)
            })
            .collect();
        for i in splice_dr_automation::schedule::select_expired(&list, policy, now) {
            out.push(Candidate {
                id: backups[i].id.clone(),
                node: backups[i].node.clone(),
                created_at: backups[i].created_at,
            });
        }
    }
    out.sort_by_key(|c| c.created_at);
    out
}

fn plan_one(
    repository: &str,
    listed: Result<Vec<Manifest>, String>,
    policy: Option<&RetentionConfig>,
    node: Option<&str>,
    now: DateTime<Utc>,
) -> RepoPlan {
    let mut plan = RepoPlan {
        repository: repository.into(),
        policy: policy.map(Into::into),
        delete: Vec::new(),
        keep: 0,
        errors: Vec::new(),
        deleted: Vec::new(),
    };
    match listed {
        Ok(mut backups) => {
            backups.retain(|m| node.is_none_or(|n| m.node == n));
            if let Some(p) = policy {
                plan.delete = expired(&backups, p, now);
            }
            plan.keep = backups.len() - plan.delete.len();
        }
        Err(e) => plan.errors.push(e),
    }
    plan
}

/// What retention would delete in every repository (only `node`'s backups when given).
pub fn plan(
    repo: &Repository,
    policies: &Policies,
    node: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<RepoPlan> {
    let local = repo.list().map(|(good, _)| good).map_err(|e| e.to_string());
    let mut plans = vec![plan_one("local", local, policies.local.as_ref(), node, now)];
    for r in repo.offsite().repos() {
        let listed = r.list().map(|l| l.backups).map_err(|e| e.to_string());
        let policy = policies.offsite(r.name());
        plans.push(plan_one(r.name(), listed, policy, node, now));
    }
    plans
}

/// Deletes what `plans` selected, each under its node's lock; a node busy with a run
/// keeps its backups this time (said in `errors`).
pub fn apply(repo: &Repository, state_dir: &Path, plans: &mut [RepoPlan]) {
    let offsite = repo.offsite();
    for plan in plans.iter_mut() {
        for c in &plan.delete {
            let what = format!("retention of {} in {}", c.id, plan.repository);
            let lock = match NodeLock::try_acquire(state_dir, &c.node, &what) {
                Ok(l) => l,
                Err(e) => {
                    plan.errors.push(format!("kept {}: {e}", c.id));
                    continue;
                }
            };
            let result = if plan.repository == "local" {
                repo.delete(&c.id).map_err(|e| e.to_string())
            } else {
                match offsite.get(&plan.repository) {
                    Some(r) => r.delete(&c.id).map_err(|e| e.to_string()),
                    None => Err("repository no longer configured".into()),
                }
            };
            drop(lock);
            match result {
                Ok(()) => plan.deleted.push(c.id.clone()),
                Err(e) => plan.errors.push(format!("kept {}: {e}", c.id)),
            }
        }
    }
}
