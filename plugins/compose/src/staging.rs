//! Restore drills on a compose node: dumps restored into scratch databases next to the
//! live ones inside the node's own postgres container, checked, and dropped.
//!
//! The scratch databases use the bare-Postgres backend's staging names
//! (`<live>__sdr_staging_<suffix>`), so `leftovers` lists one a crashed drill left behind
//! and `drop_staged` cleans it. Restores of compose nodes stay volume-level (see
//! `restore.rhai`); nothing here renames or touches a live database.

use std::path::Path;

use splice_dr_plugin_api::{BackendError, DumpInfo, OpContext, StagedCheck, StagedDb, StagedQuery};
use splice_dr_postgres::check::check_database;
use splice_dr_postgres::names::{
    derived_name, is_derived, new_suffix, FAILED_MARKER, STAGING_MARKER,
};
use splice_dr_postgres::restore::{name_failing_table, verify_counts};
use splice_dr_postgres::sql::{all_databases, create_database_like, drop_database};

use crate::ComposeBackend;
use splice_dr_postgres::dump::find_dump_file;

impl ComposeBackend {
    /// See [`splice_dr_plugin_api::Backend::restore_staged`]: a new database created over
    /// the admin connection, the dump streamed into it inside the container, row counts
    /// verified. A failure drops the scratch database again.
    pub(crate) fn restore_staged_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<StagedDb, BackendError> {
        let live = self.db_for_role(role)?;
        if expected.role != role {
            return Err(BackendError::Verification(format!(
                "the dump is of the {} database, not the {role} database",
                expected.role
            )));
        }
        let dump = find_dump_file(src)?;
        let conn = self.conn(ctx)?;
        let staging = derived_name(&live, STAGING_MARKER, &new_suffix());
        let mut admin = conn.connect_admin()?;
        create_database_like(&mut admin, &staging, &live)?;
        ctx.info(format!("created scratch database {staging} next to {live}"));
        let filled = self
            .stream_into(ctx, &dump, &staging)
            .map_err(name_failing_table)
            .and_then(|()| {
                let mut client = conn.connect(&staging)?;
                verify_counts(ctx, &mut client, &staging, expected)
            });
        match filled {
            Ok(()) => Ok(StagedDb {
                role: role.into(),
                live,
                staging,
            }),
            Err(e) => {
                ctx.warn(format!("restore into {staging} failed; dropping it: {e}"));
                if let Err(drop_err) = conn
                    .connect_admin()
                    .and_then(|mut a| drop_database(&mut a, &staging))
                {
                    ctx.warn(format!(
                        "could not drop {staging}: {drop_err}; `leftovers` lists it and \
                         the next cleanup drops it"
                    ));
                }
                Err(e)
            }
        }
    }

    /// Refuses anything but a scratch database of this node's live ones.
    fn check_scratch(&self, s: &StagedDb) -> Result<(), BackendError> {
        let live = self.db_for_role(&s.role)?;
        let scratch = is_derived(&s.staging, &live, STAGING_MARKER)
            || is_derived(&s.staging, &live, FAILED_MARKER);
        if live != s.live || !scratch {
            return Err(BackendError::Config(format!(
                "refusing to touch {}: not a scratch database of this node's {} database {live}",
                s.staging, s.role
            )));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Backend::drop_staged`].
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
        let mut admin = self.conn(ctx)?.connect_admin()?;
        for s in staged {
            drop_database(&mut admin, &s.staging)?;
            ctx.info(format!("dropped scratch database {}", s.staging));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Backend::check_staged`].
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
            .filter(|n| {
                lives
                    .iter()
                    .any(|l| is_derived(n, l, STAGING_MARKER) || is_derived(n, l, FAILED_MARKER))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
