//! Host functions of physical backups: `pg.base_backup(backup)` (a copy of the whole
//! database server into the backup being written) and `pg.restore_base_backup(id,
//! timeout)` (the server's data replaced by it, the previous data kept aside). See
//! `scripts/README.md`, `scripts/backup.rhai` and `scripts/restore.rhai`.

use rhai::{Dynamic, Engine};
use std::time::Duration;

use super::host::{fail, to_dyn, PgApi, RResult, WriterApi};
use crate::run_context::StepKind;

/// Registers the physical-backup functions on `pg`.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn("base_backup", base_backup)
        .register_fn("restore_base_backup", restore_base_backup);
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
    let m = env.local_manifest(id)?;
    let base = m
        .base_backup
        .clone()
        .ok_or_else(|| fail(format!("backup {} is not a physical backup", m.id)))?;
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
