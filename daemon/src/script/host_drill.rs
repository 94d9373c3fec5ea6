//! Host functions of restore drills: deeper checks of a scratch database
//! (`pg.check_staged`), the drill of a physical backup in a scratch server
//! (`pg.drill_base_backup`) and the backup a restore prefers (`backups.preferred`). See
//! `scripts/README.md` and `scripts/drill.rhai`.

use rhai::{Dynamic, Engine, Map};
use splice_dr_plugin_api::{BackendError, ScratchChecks, StagedCheck, StagedDb, StagedQuery};
use std::time::Duration;

use super::host::{fail, from_dyn, to_dyn, BackupsApi, PgApi, RResult};
use crate::config::DrillCheckConfig;
use crate::run_context::StepKind;
use splice_dr_repo::preferred_backup;

/// Registers the drill functions on `pg` and `backups`.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn("check_staged", check_staged)
        .register_fn("drill_base_backup", drill_base_backup)
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

/// `pg.drill_base_backup(id, timeout_secs)`: backup `id`'s base backup laid down into a
/// new private scratch directory under `state_dir/drills`, started as a server of its own
/// (the backend's, waited on up to `timeout_secs`), every table of the node's databases
/// read, their indexes checked with amcheck and the node's `[[node.drill_check]]` queries
/// run, the server stopped and the directory removed on every path. Throws naming every
/// problem; returns what was checked per database.
fn drill_base_backup(p: &mut PgApi, id: &str, timeout_secs: i64) -> RResult<Dynamic> {
    let env = p.0.clone();
    let (m, base) = env.local_physical(id)?;
    let configured: Vec<Vec<&DrillCheckConfig>> = splice_dr_plugin_api::DB_ROLES
        .iter()
        .map(|role| {
            env.node
                .drill_checks
                .iter()
                .filter(|c| c.database == *role)
                .collect()
        })
        .collect();
    let checks: Vec<ScratchChecks> = splice_dr_plugin_api::DB_ROLES
        .iter()
        .zip(&configured)
        .map(|(role, cs)| ScratchChecks {
            role: role.to_string(),
            queries: cs
                .iter()
                .map(|c| StagedQuery {
                    name: c.name.clone(),
                    sql: c.sql.clone(),
                })
                .collect(),
        })
        .collect();
    if env.run.dry_run() {
        env.run.plan(&format!(
            "would start backup {}'s base backup as a scratch server under {} and check it",
            m.id,
            env.node.state_dir.join(crate::drill_scratch::DIR).display()
        ));
        return Ok(Dynamic::UNIT);
    }
    let src = env.repo.backup_dir(&m.id).join(&base.dir);
    let timeout = Duration::from_secs(timeout_secs.max(0) as u64);
    let state_dir = env.node.state_dir.clone();
    let scratch = crate::drill_scratch::create(&state_dir)
        .map_err(|e| fail(format!("creating the drill's scratch directory: {e}")))?;
    let backend = env.backend.clone();
    let label = format!(
        "start the base backup of {} as a scratch server and check it",
        m.id
    );
    let found = env.in_step(&label, StepKind::Forward, |ctx| {
        let found = backend.drill_base_backup(ctx, &src, &base.info, &scratch, &checks, timeout);
        match crate::drill_scratch::remove(&state_dir, &scratch) {
            Ok(ended) if !ended.is_empty() => ctx.warn(format!(
                "the backend left {} running in the scratch directory: ended",
                ended.join(", ")
            )),
            Ok(_) => {}
            Err(e) => ctx.warn(format!("{e} (the next daemon start removes it)")),
        }
        let found = found?;
        let mut problems = Vec::new();
        for ((role, cs), f) in splice_dr_plugin_api::DB_ROLES
            .iter()
            .zip(&configured)
            .zip(&found)
        {
            problems.extend(failures(f, cs).into_iter().map(|p| format!("{role}: {p}")));
        }
        if found.len() != checks.len() {
            problems.push(format!(
                "the backend checked {} databases of {}",
                found.len(),
                checks.len()
            ));
        }
        if problems.is_empty() {
            Ok(found)
        } else {
            Err(BackendError::Verification(format!(
                "the copy started, but fails its drill checks: {}",
                problems.join("; ")
            )))
        }
    })?;
    let databases: Vec<serde_json::Value> = splice_dr_plugin_api::DB_ROLES
        .iter()
        .zip(&found)
        .map(|(role, r)| {
            serde_json::json!({
                "database": r.database, "role": role,
                "amcheck_available": r.amcheck_available, "amcheck_note": r.amcheck_note,
                "indexes_checked": r.indexes_checked, "tables_read": r.tables_read,
                "rows_read": r.rows_read,
                "checks": r.queries.iter().map(|q| serde_json::json!({"name": q.name, "value": q.value})).collect::<Vec<_>>(),
            })
        })
        .collect();
    to_dyn(&serde_json::json!({ "databases": databases }))
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
