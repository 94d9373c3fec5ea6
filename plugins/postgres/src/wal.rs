//! Continuous WAL of the bare server: `pg_receivewal` on the node's physical replication
//! slot, the slot's standing against the server, and dropping it when streaming stops.
//!
//! Only slots named by `splice_dr_pg_toolkit::wal::slot_name` are created or dropped: the
//! daemon names the slot, and a name of any other form (another tool's slot) is refused.

use std::path::Path;

use splice_dr_pg_toolkit::{process, sql, wal};
use splice_dr_plugin_api::{BackendError, OpContext, WalSlot};

use crate::PostgresBackend;

impl PostgresBackend {
    /// See [`splice_dr_plugin_api::Databases::stream_wal`].
    pub(crate) fn stream_wal_impl(
        &self,
        ctx: &OpContext,
        slot: &str,
        dir: &Path,
    ) -> Result<(), BackendError> {
        own_slot(slot)?;
        let mut admin = self.conn.connect_admin()?;
        // Reserved at once: the server keeps WAL from here on even before the receiver
        // connects, and the receiver starts at the slot's position when `dir` is empty.
        let created = admin
            .query(
                "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots \
                                   WHERE slot_name = $1)",
                &[&slot],
            )
            .map_err(sql::db_err(format!("creating the replication slot {slot}")))?;
        if !created.is_empty() {
            ctx.info(format!(
                "created the physical replication slot {slot} on {}",
                self.conn.server()
            ));
            set_aside_open_segments(ctx, dir)?;
        }
        drop(admin);
        let cmd = wal::receivewal_command(self.cfg.bin_dir.as_deref(), &self.conn, slot, dir)?;
        let shown = process::shown(&cmd);
        ctx.info(format!("streaming WAL of {}: {shown}", self.conn.server()));
        let out = process::run(ctx, cmd, &shown, "pg_receivewal", &mut || {})?;
        // It exits only when the connection ends (--no-loop): say what it said last.
        Err(BackendError::Command {
            command: shown,
            status: "exited".into(),
            stderr: out.stderr.trim().to_string(),
        })
    }

    /// See [`splice_dr_plugin_api::Databases::wal_slot`].
    pub(crate) fn wal_slot_impl(&self, slot: &str) -> Result<WalSlot, BackendError> {
        own_slot(slot)?;
        let mut admin = self.conn.connect_admin()?;
        let row = admin
            .query_one(
                "SELECT pg_catalog.pg_current_wal_lsn()::text, \
                   ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), \
                              1, 8))::bit(32)::bigint, \
                   (SELECT setting::bigint FROM pg_catalog.pg_settings \
                      WHERE name = 'wal_segment_size'), \
                   (SELECT setting::bigint FROM pg_catalog.pg_settings \
                      WHERE name = 'max_slot_wal_keep_size'), \
                   s.active, s.restart_lsn::text, \
                   (pg_catalog.pg_current_wal_lsn() - s.restart_lsn)::bigint \
                 FROM (SELECT 1) one \
                 LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1",
                &[&slot],
            )
            .map_err(sql::db_err(format!("reading the replication slot {slot}")))?;
        let active: Option<bool> = row.get(4);
        let lag: Option<i64> = row.get(6);
        Ok(WalSlot {
            exists: active.is_some(),
            active: active.unwrap_or(false),
            flushed_lsn: row.get(5),
            current_lsn: row.get(0),
            lag_bytes: lag.map(|l| l.max(0) as u64),
            timeline: u32::try_from(row.get::<_, i64>(1)).unwrap_or_default(),
            segment_bytes: u64::try_from(row.get::<_, i64>(2)).unwrap_or_default(),
            max_slot_wal_keep_size_mb: row.get(3),
        })
    }

    /// See [`splice_dr_plugin_api::Databases::drop_wal_slot`].
    pub(crate) fn drop_wal_slot_impl(
        &self,
        ctx: &OpContext,
        slot: &str,
    ) -> Result<bool, BackendError> {
        own_slot(slot)?;
        let mut admin = self.conn.connect_admin()?;
        let dropped = admin
            .query(
                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .map_err(sql::db_err(format!("dropping the replication slot {slot}")))?;
        if !dropped.is_empty() {
            ctx.info(format!(
                "dropped the replication slot {slot} on {}: the server no longer keeps WAL for it",
                self.conn.server()
            ));
        }
        Ok(!dropped.is_empty())
    }
}

/// A new slot starts at the server's current position, but pg_receivewal resumes from the
/// newest segment in its directory: an open segment left from before (the server was
/// restored and lost the slot with its old data, or streaming was off) would make it ask
/// for WAL of another history. It is renamed `<segment>.partial.superseded`, kept for the
/// operator, never deleted.
fn set_aside_open_segments(ctx: &OpContext, dir: &Path) -> Result<(), BackendError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BackendError::io(format!("listing {}", dir.display()), e)),
    };
    for name in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".partial"))
    {
        let (from, to) = (dir.join(&name), dir.join(format!("{name}.superseded")));
        std::fs::rename(&from, &to)
            .map_err(|e| BackendError::io(format!("setting {} aside", from.display()), e))?;
        ctx.warn(format!(
            "the replication slot was new: the open segment {name} of an earlier stream is \
             kept as {} and streaming starts at the server's current position",
            to.display()
        ));
    }
    Ok(())
}

/// Refuses a slot name splice-dr would not have made.
fn own_slot(slot: &str) -> Result<(), BackendError> {
    if wal::is_own_slot(slot) {
        Ok(())
    } else {
        Err(BackendError::Config(format!(
            "`{slot}` is not a replication slot of splice-dr's (they are named {}<node>)",
            wal::SLOT_PREFIX
        )))
    }
}
