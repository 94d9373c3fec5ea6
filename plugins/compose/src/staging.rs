//! Restore drills on a compose node: dumps restored into scratch databases next to the
//! live ones inside the node's own postgres container, checked, and dropped.
//!
//! The scratch databases use the bare-Postgres backend's staging names
//! (`<live>__sdr_staging_<suffix>`), so `leftovers` lists one a crashed drill left behind
//! and `drop_staged` cleans it. Restores of compose nodes stay volume-level (see
//! `restore.rhai`); nothing here renames or touches a live database.

use std::path::Path;

use splice_dr_pg_toolkit::check::check_database;
use splice_dr_pg_toolkit::dump::find_dump_file;
use splice_dr_pg_toolkit::sql::all_databases;
use splice_dr_pg_toolkit::staging::{drop_scratch, is_scratch_of, restore_into_scratch};
use splice_dr_pg_toolkit::toolkit::verify_restored;
use splice_dr_pg_toolkit::verify::name_failing_table;
use splice_dr_plugin_api::{BackendError, DumpInfo, OpContext, StagedCheck, StagedDb, StagedQuery};

use crate::ComposeBackend;

impl ComposeBackend {
    /// See [`splice_dr_plugin_api::Databases::restore_staged`]: the dump streamed into a
    /// new database inside the container, row counts verified; dropped again on failure.
    pub(crate) fn restore_staged_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<StagedDb, BackendError> {
        let live = self.db_for_role(role)?;
        let dump = find_dump_file(src)?;
        let conn = self.conn(ctx)?;
        restore_into_scratch(ctx, &conn, role, &live, expected, |_, staging| {
            self.tools()
                .stream_in(ctx, &dump, staging)
                .map_err(name_failing_table)?;
            verify_restored(ctx, &conn, staging, expected)
        })
    }

    /// Refuses anything but a scratch database of this node's live ones.
    fn check_scratch(&self, s: &StagedDb) -> Result<(), BackendError> {
        let live = self.db_for_role(&s.role)?;
        if live != s.live || !is_scratch_of(&s.staging, &live) {
            return Err(BackendError::Config(format!(
                "refusing to touch {}: not a scratch database of this node's {} database {live}",
                s.staging, s.role
            )));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Databases::drop_staged`].
    pub(crate) fn drop_staged_impl(
        &self,
        ctx: &OpContext,
        staged: &[StagedDb],
    ) -> Result<(), BackendError> {
        if staged.is_empty() {
            return Ok(());
        }
        for s in staged {
            self.check_scratch(s)?;
        }
        drop_scratch(ctx, &self.conn(ctx)?, staged)
    }

    /// See [`splice_dr_plugin_api::Databases::check_staged`].
    pub(crate) fn check_staged_impl(
        &self,
        ctx: &OpContext,
        staged: &StagedDb,
        queries: &[StagedQuery],
    ) -> Result<StagedCheck, BackendError> {
        self.check_scratch(staged)?;
        let mut client = self.conn(ctx)?.connect(&staged.staging)?;
        check_database(ctx, &mut client, &staged.staging, queries)
    }

    /// Scratch databases left by drills that did not finish (empty while postgres is down:
    /// a stopped node has nothing to list, and the next drill's cleanup catches them).
    pub(crate) fn staged_leftovers(&self, ctx: &OpContext) -> Result<Vec<String>, BackendError> {
        let conn = match self.conn(ctx) {
            Ok(c) => c,
            Err(_) => return Ok(Vec::new()),
        };
        let mut admin = conn.connect_admin()?;
        let lives = [
            self.db_for_role("validator")?,
            self.db_for_role("participant")?,
        ];
        let mut out: Vec<String> = all_databases(&mut admin)?
            .into_iter()
            .filter(|n| lives.iter().any(|l| is_scratch_of(n, l)))
            .collect();
        out.sort();
        Ok(out)
    }
}
