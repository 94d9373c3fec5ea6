//! Host functions of physical backups: `pg.base_backup(backup)` (a copy of the whole
//! database server into the backup being written) and `pg.restore_base_backup(id,
//! timeout)` (the server's data replaced by it, the previous data kept aside), and
//! `pg.restore_base_backup_to(id, target, timeout)` (the same, then the stored continuous
//! WAL replayed to `latest` or a time). See
//! `scripts/README.md`, `scripts/backup.rhai` and `scripts/restore.rhai`.

use chrono::{DateTime, Utc};
use rhai::{Dynamic, Engine};
use splice_dr_plugin_api::{RecoveryTarget, WalReplay};
use std::time::Duration;

use super::host::{allow_if_forced, fail, to_dyn, FlowEnv, PgApi, RResult, WriterApi};
use crate::run_context::StepKind;

/// Registers the physical-backup functions on `pg`.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn("base_backup", base_backup)
        .register_fn("restore_base_backup", restore_base_backup)
        .register_fn("restore_base_backup_to", restore_base_backup_to);
}

/// `pg.base_backup(backup)`: `pg_basebackup` of the node's server into the backup being
/// written, recorded in its manifest (which makes it a physical backup). Returns what the
/// backend recorded (WAL range, databases).
fn base_backup(p: &mut PgApi, w: WriterApi) -> RResult<Dynamic> {
    let env = p.0.clone();
    let label = "base backup of the database server";
    if env.run.dry_run() {
        env.run.plan(&format!(
            "would take a {label} (pg_basebackup, WAL included) into the backup"
        ));
        return Ok(Dynamic::UNIT);
    }
    let dest = w.with(|w| w.base_backup_dir())?;
    let backend = env.backend.clone();
    let info = env.in_step(label, StepKind::Forward, |ctx| {
        backend.base_backup(ctx, &dest)
    })?;
    let out = to_dyn(&info)?;
    w.with(|w| w.record_base_backup(info))?;
    Ok(out)
}

/// `pg.restore_base_backup(id, timeout_secs)`: the server's data replaced by backup `id`'s
/// base backup, replayed to its end. Returns the kept previous data (`node.drop_kept_storage`
/// once the node is proven, `node.restore_kept_storage` if not); journaled as replacing the
/// live data, so a daemon killed before either puts it back at start-up.
fn restore_base_backup(p: &mut PgApi, id: &str, timeout_secs: i64) -> RResult<Dynamic> {
    let env = p.0.clone();
    let (m, base) = env.local_physical(id)?;
    let src = env.repo.backup_dir(&m.id).join(&base.dir);
    let timeout = Duration::from_secs(timeout_secs.max(0) as u64);
    let backend = env.backend.clone();
    let label = format!(
        "replace the server's data with the base backup of {} (to its end, {})",
        m.id, base.info.end_lsn
    );
    let kept = env.in_step(&label, StepKind::Forward, |ctx| {
        backend.restore_base_backup(ctx, &src, &base.info, timeout)
    })?;
    env.run.note_kept(&kept, true).map_err(fail)?;
    env.run
        .note_live_replaced(&kept.target, true)
        .map_err(fail)?;
    to_dyn(&kept)
}

/// `pg.restore_base_backup_to(id, target, timeout_secs)`: as `pg.restore_base_backup`, then
/// the node's stored WAL (continuous WAL: the repository's archive and the receiver's open
/// segment) replayed to `target`, `"latest"` or an RFC 3339 time. The WAL is found and
/// each segment checked against its checksum before the backend is called, which refuses
/// a target the WAL cannot reach before the server stops. A time older than the
/// repository's `max_age` is refused unless forced (the Splice rule for backups holds for
/// restore points too).
fn restore_base_backup_to(
    p: &mut PgApi,
    id: &str,
    target: &str,
    timeout_secs: i64,
) -> RResult<Dynamic> {
    let env = p.0.clone();
    let target = parse_target(target)?;
    check_target_age(&env, target, Utc::now())?;
    let (m, base) = env.local_physical(id)?;
    let archive = env
        .repo
        .wal_archive(&env.node.name)
        .map_err(|e| fail(e.to_string()))?;
    let staging = splice_dr_repo::wal::staging_dir(&env.node.state_dir, &env.node.name);
    let chain = archive
        .replay_chain(base.info.timeline, &base.info.end_lsn, &staging)
        .map_err(|e| fail(format!("the stored WAL of node {}: {e}", env.node.name)))?;
    env.run.log(
        "info",
        &format!(
            "{} stored WAL segments follow backup {}'s end ({}){}",
            chain.files.len(),
            m.id,
            base.info.end_lsn,
            chain
                .gap_at
                .as_ref()
                .map_or(String::new(), |g| format!("; segment {g} is missing"))
        ),
    );
    let replay = WalReplay {
        segments: chain.files,
        histories: chain.histories,
        gap_at: chain.gap_at,
        target,
    };
    let src = env.repo.backup_dir(&m.id).join(&base.dir);
    let timeout = Duration::from_secs(timeout_secs.max(0) as u64);
    let backend = env.backend.clone();
    let label = format!(
        "replace the server's data with the base backup of {} and replay the stored WAL to {}",
        m.id,
        target_text(target)
    );
    let kept = env.in_step(&label, StepKind::Forward, |ctx| {
        backend.replay_base_backup(ctx, &src, &base.info, &replay, timeout)
    })?;
    env.run.note_kept(&kept, true).map_err(fail)?;
    env.run
        .note_live_replaced(&kept.target, true)
        .map_err(fail)?;
    to_dyn(&kept)
}

/// `"latest"` or an RFC 3339 time (`2026-12-04T10:00:00Z`).
fn parse_target(target: &str) -> RResult<RecoveryTarget> {
    if target == "latest" {
        return Ok(RecoveryTarget::Latest);
    }
    DateTime::parse_from_rfc3339(target)
        .map(|t| RecoveryTarget::Time(t.with_timezone(&Utc)))
        .map_err(|e| {
            fail(format!(
                "restore target `{target}`: {e}; give `latest`, `backup-end` or a time such as \
                 2026-12-04T10:00:00Z"
            ))
        })
}

/// A time target older than `max_age` is refused unless forced, as an older backup is.
fn check_target_age(env: &FlowEnv, target: RecoveryTarget, now: DateTime<Utc>) -> RResult<()> {
    let RecoveryTarget::Time(t) = target else {
        return Ok(());
    };
    let max_age = chrono::Duration::from_std(env.node.max_age).unwrap_or(chrono::Duration::MAX);
    if now - t <= max_age {
        return Ok(());
    }
    let objection = format!(
        "the target {} is older than the repository's max_age ({}s): the network may have \
         pruned what the node would need to catch up from it",
        t.to_rfc3339(),
        env.node.max_age.as_secs()
    );
    allow_if_forced(env, &[objection], "restore")
}

fn target_text(target: RecoveryTarget) -> String {
    match target {
        RecoveryTarget::Latest => "the end of the stored WAL (latest)".into(),
        RecoveryTarget::Time(t) => t.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_latest_or_a_time_with_its_zone() {
        assert_eq!(parse_target("latest").unwrap(), RecoveryTarget::Latest);
        let t = parse_target("2026-12-04T11:00:00+01:00").unwrap();
        assert_eq!(
            t,
            RecoveryTarget::Time("2026-12-04T10:00:00Z".parse().unwrap())
        );
        for bad in ["", "yesterday", "2026-12-04 10:00", "2026-12-04T10:00:00"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
