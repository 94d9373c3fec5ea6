//! Host functions of restore drills: deeper checks of a scratch database
//! (`pg.check_staged`) and the backup a restore prefers (`backups.preferred`). See
//! `scripts/README.md` and `scripts/drill.rhai`.

use rhai::{Dynamic, Engine, Map};
use splice_dr_plugin_api::{BackendError, StagedCheck, StagedDb, StagedQuery};

use super::host::{fail, from_dyn, to_dyn, BackupsApi, PgApi, RResult};
use crate::config::DrillCheckConfig;
use crate::run_context::StepKind;
use splice_dr_repo::preferred_backup;

/// Registers the drill functions on `pg` and `backups`.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn("check_staged", check_staged)
        .register_fn("preferred", preferred);
}

/// `pg.check_staged(staged)`: amcheck over the scratch database's indexes and the node's
/// `[[node.drill_check]]` queries for its role. Throws naming every corrupt index and
/// failed check; returns what was checked.
fn check_staged(p: &mut PgApi, staged: Map) -> RResult<Dynamic> {
    let staged: StagedDb = from_dyn("check_staged", &Dynamic::from_map(staged))?;
    let env = p.0.clone();
    let checks: Vec<&DrillCheckConfig> = env
        .node
        .drill_checks
        .iter()
        .filter(|c| c.database == staged.role)
        .collect();
    let queries: Vec<StagedQuery> = checks
        .iter()
        .map(|c| StagedQuery {
            name: c.name.clone(),
            sql: c.sql.clone(),
        })
        .collect();
    let backend = env.backend.clone();
    let label = format!(
        "check {}: indexes with amcheck, {} site checks",
        staged.staging,
        queries.len()
    );
    let result = env.in_step(&label, StepKind::Forward, |ctx| {
        let found = match backend.check_staged(ctx, &staged, &queries) {
            // A backend without deeper checks still drills (row counts); site checks
            // configured for it must not pass silently.
            Err(BackendError::Unsupported { backend: kind, .. }) if queries.is_empty() => {
                let note = format!("the {kind} backend cannot check indexes");
                ctx.warn(format!("{}: {note}", staged.staging));
                StagedCheck {
                    database: staged.staging.clone(),
                    amcheck_note: Some(note),
                    ..StagedCheck::default()
                }
            }
            other => other?,
        };
        let failures = failures(&found, &checks);
        if failures.is_empty() {
            Ok(found)
        } else {
            Err(BackendError::Verification(format!(
                "the restored {} database fails its drill checks: {}",
                staged.role,
                failures.join("; ")
            )))
        }
    })?;
    to_dyn(&serde_json::json!({
        "database": result.database, "role": staged.role,
        "amcheck_available": result.amcheck_available, "amcheck_note": result.amcheck_note,
        "indexes_checked": result.indexes_checked,
        "checks": result.queries.iter().map(|q| serde_json::json!({"name": q.name, "value": q.value})).collect::<Vec<_>>(),
    }))
}

/// Every corrupt index and every site check whose value is wrong, one sentence each.
fn failures(found: &StagedCheck, checks: &[&DrillCheckConfig]) -> Vec<String> {
    let mut out = found.problems.clone();
    for q in &found.queries {
        let Some(check) = checks.iter().find(|c| c.name == q.name) else {
            continue;
        };
        let shown = q.value.as_deref().unwrap_or("NULL");
        match (&q.error, &check.expect) {
            (Some(e), _) => out.push(format!("site check \"{}\" could not run: {e}", q.name)),
            (None, _) if check.accepts(q.value.as_deref()) => {}
            (None, Some(want)) => out.push(format!(
                "site check \"{}\" returned {shown}, expected {want}",
                q.name
            )),
            (None, None) => out.push(format!(
                "site check \"{}\" returned {shown}, expected a non-zero, true value",
                q.name
            )),
        }
    }
    out
}

/// `backups.preferred()`: the backup a restore takes when none is named (see
/// `splice_dr_repo::preferred_backup` for the rule), with the reason to log and the newer ones skipped.
fn preferred(b: &mut BackupsApi) -> RResult<Dynamic> {
    let env = &b.0;
    // Every repository: after losing the machine the local one may be empty.
    let all: Vec<splice_dr_repo::Manifest> = if env.repo.offsite().is_empty() {
        env.repo.list().map_err(|e| fail(e.to_string()))?.0
    } else {
        let (located, problems) = env.repo.list_everywhere();
        for p in problems {
            env.run.log("warn", &format!("listing backups: {p}"));
        }
        located.into_iter().map(|l| l.manifest).collect()
    };
    // Untrusted backups (unsigned, foreign, future-dated) are never chosen: a forged
    // "newer, drilled" manifest must not win.
    let (trusted, untrusted): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|m| env.repo.untrusted_because(m).is_none());
    for m in untrusted.iter().filter(|m| m.node == env.node.name) {
        let why = env.repo.untrusted_because(m).unwrap_or_default();
        env.run.log(
            "warn",
            &format!("backup {} not considered: untrusted: {why}", m.id),
        );
    }
    let all = trusted;
    let node = &env.node;
    let (migration_id, participant) = super::host_recovery::running_ids(env)?;
    let into = splice_dr_repo::RunningNode {
        name: &node.name,
        migration_id,
        participant: participant.as_deref(),
        max_age: node.max_age,
        participant_db: node.participant_db.as_deref(),
    };
    let chosen = preferred_backup(&all, &into, chrono::Utc::now()).ok_or_else(|| {
        fail(format!(
            "node {} has no trusted backups ({} untrusted): take one with `splice-dr backup`, \
             or restore an untrusted one with --backup ID --force --reason",
            node.name,
            untrusted.iter().filter(|m| m.node == node.name).count()
        ))
    })?;
    to_dyn(&chosen)
}
