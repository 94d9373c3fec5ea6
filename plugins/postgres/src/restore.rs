//! Stage → swap → keep/roll back, the restore protocol that never loses the data it
//! replaces.
//!
//! A dump is restored into `<live>__sdr_staging_<suffix>` and checked there; `swap_in`
//! renames every live database to `<live>__sdr_kept_<suffix>` and every staged one to its
//! live name in one transaction (`ALTER DATABASE ... RENAME` is transactional, verified on
//! Postgres 15); `roll_back` reverses that; only `drop_kept` destroys the old data.

use std::path::Path;
use std::thread;
use std::time::Duration;

use postgres::Client;
use splice_dr_plugin_api::{
    BackendError, DumpInfo, KeptDb, Leftovers, OpContext, StagedCheck, StagedDb, StagedQuery,
};

use crate::PostgresBackend;
use splice_dr_pg_toolkit::check::check_database;
use splice_dr_pg_toolkit::names::{
    derived_name, ensure_kept_of, is_derived, new_suffix, quote_ident, FAILED_MARKER, KEPT_MARKER,
    STAGING_MARKER,
};
use splice_dr_pg_toolkit::process::{self, find_tool};
use splice_dr_pg_toolkit::sql::{
    all_databases, database_exists, db_err, drop_database, is_in_use, pg_message,
    terminate_sessions,
};
use splice_dr_pg_toolkit::staging::{drop_scratch, is_scratch_of, restore_into_scratch};
use splice_dr_pg_toolkit::verify::{name_failing_table, verify_counts};

/// How many times a rename is tried while other sessions keep reconnecting.
const RENAME_ATTEMPTS: u32 = 10;
/// Pause between those attempts.
const RENAME_RETRY: Duration = Duration::from_millis(500);

/// Decides, inside the rename transaction, which renames to run and what to return.
type Plan<'a, T> =
    dyn Fn(&mut postgres::Transaction<'_>) -> Result<(Vec<Rename>, T), BackendError> + 'a;

/// One rename of a swap or rollback transaction.
struct Rename {
    from: String,
    to: String,
}

impl PostgresBackend {
    /// Refuses to rename or drop the database the admin connection itself uses.
    fn check_not_admin(&self, names: &[&str]) -> Result<(), BackendError> {
        let admin = self.conn.admin_db();
        if names.iter().any(|n| *n == admin) {
            return Err(BackendError::Config(format!(
                "the database named in `url` ({admin}) is one the restore replaces; \
                 point `url` at another database such as `postgres`"
            )));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Databases::restore_staged`].
    pub(crate) fn restore_staged_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<StagedDb, BackendError> {
        let live = self.db_for_role(role)?.to_string();
        let pg_restore = find_tool(self.cfg.bin_dir.as_deref(), "pg_restore")?;
        self.check_not_admin(&[&live])?;
        restore_into_scratch(ctx, &self.conn, role, &live, expected, |admin, staging| {
            self.fill_and_verify(ctx, admin, &pg_restore, staging, src, expected)
        })
    }

    /// Runs pg_restore into `staging` and checks every expected table's row count.
    fn fill_and_verify(
        &self,
        ctx: &OpContext,
        admin: &mut Client,
        pg_restore: &Path,
        staging: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<(), BackendError> {
        let what = format!("restore {staging}");
        let mut cmd = crate::child_env::command(pg_restore, crate::child_env::POSTGRES);
        cmd.arg(format!("--jobs={}", self.cfg.jobs))
            .arg("--exit-on-error")
            .arg(format!("--dbname={}", self.conn.conninfo(staging)))
            .arg(src)
            .envs(self.conn.child_env())
            .env("PGOPTIONS", self.restore_pgoptions());
        let shown = process::shown(&cmd);
        ctx.info(format!("restoring {} into {staging}", src.display()));
        ctx.progress(&what, 0, None, "bytes");
        let out = process::run(ctx, cmd, &shown, &what, &mut || {
            if let Ok(row) = admin.query_one("SELECT pg_catalog.pg_database_size($1)", &[&staging])
            {
                let size: i64 = row.get(0);
                ctx.progress(
                    &what,
                    u64::try_from(size).unwrap_or_default(),
                    None,
                    "bytes",
                );
            }
        })
        .map_err(name_failing_table)?;
        if !out.stderr.is_empty() {
            ctx.warn(format!("pg_restore said: {}", out.stderr));
        }
        ctx.check_cancelled(&what)?;

        let mut client = self.conn.connect(staging)?;
        verify_counts(ctx, &mut client, staging, expected)?;
        Ok(())
    }

    /// Session settings for pg_restore's connections: faster index builds and commits.
    /// Safe because the staging database is thrown away if the restore does not finish.
    fn restore_pgoptions(&self) -> String {
        format!(
            "-c maintenance_work_mem={} -c synchronous_commit=off -c statement_timeout=0 \
             -c lock_timeout=0 -c idle_in_transaction_session_timeout=0",
            self.cfg.restore_maintenance_work_mem
        )
    }

    /// Runs `renames` in one transaction, terminating other sessions on the databases
    /// first and retrying while they reconnect. `plan` is evaluated inside the
    /// transaction so existence checks see the state the renames act on.
    fn rename_atomically<T>(
        &self,
        ctx: &OpContext,
        what: &str,
        involved: &[&str],
        plan: &Plan<'_, T>,
    ) -> Result<T, BackendError> {
        self.check_not_admin(involved)?;
        let mut admin = self.conn.connect_admin()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            ctx.check_cancelled(what)?;
            let n = terminate_sessions(&mut admin, involved)?;
            if n > 0 {
                ctx.info(format!(
                    "{what}: terminated {n} sessions on {}",
                    involved.join(", ")
                ));
            }
            let mut tx = admin
                .transaction()
                .map_err(db_err(format!("{what}: starting the transaction")))?;
            let (renames, result) = plan(&mut tx)?;
            let mut busy = None;
            for r in &renames {
                let sql = format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&r.from),
                    quote_ident(&r.to)
                );
                if let Err(e) = tx.batch_execute(&sql) {
                    if is_in_use(&e) {
                        busy = Some(format!("{}: {}", r.from, pg_message(&e)));
                        break;
                    }
                    return Err(BackendError::db(
                        format!("{what}: renaming {} to {}", r.from, r.to),
                        pg_message(&e),
                    ));
                }
            }
            match busy {
                None => {
                    tx.commit()
                        .map_err(db_err(format!("{what}: committing the renames")))?;
                    for r in &renames {
                        ctx.info(format!("{what}: {} is now {}", r.from, r.to));
                    }
                    return Ok(result);
                }
                Some(msg) => {
                    drop(tx);
                    if attempt >= RENAME_ATTEMPTS {
                        return Err(BackendError::db(
                            format!("{what}: still in use after {attempt} attempts (stop the components first)"),
                            msg,
                        ));
                    }
                    ctx.info(format!("{what}: {msg}; retrying"));
                    thread::sleep(RENAME_RETRY);
                }
            }
        }
    }

    /// Checks that a staged/kept entry belongs to this node (role → the configured live name).
    fn check_live(&self, role: &str, live: &str) -> Result<(), BackendError> {
        let configured = self.db_for_role(role)?;
        if configured != live {
            return Err(BackendError::Config(format!(
                "the {role} database is configured as {configured}, not {live}"
            )));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Databases::swap_in`].
    pub(crate) fn swap_in_impl(
        &self,
        ctx: &OpContext,
        staged: &[StagedDb],
    ) -> Result<Vec<KeptDb>, BackendError> {
        for s in staged {
            self.check_live(&s.role, &s.live)?;
            if !is_derived(&s.staging, &s.live, STAGING_MARKER) {
                return Err(BackendError::Config(format!(
                    "{} is not a staging database of {}",
                    s.staging, s.live
                )));
            }
        }
        let suffix = new_suffix();
        let involved: Vec<&str> = staged
            .iter()
            .flat_map(|s| [s.live.as_str(), s.staging.as_str()])
            .collect();
        let plan = |tx: &mut postgres::Transaction<'_>| {
            let mut renames = Vec::new();
            let mut kept = Vec::new();
            for s in staged {
                if !database_exists(tx, &s.staging)? {
                    return Err(BackendError::NotFound(format!(
                        "staging database {} (was it dropped?)",
                        s.staging
                    )));
                }
                let kept_name = derived_name(&s.live, KEPT_MARKER, &suffix);
                let existed = database_exists(tx, &s.live)?;
                if existed {
                    renames.push(Rename {
                        from: s.live.clone(),
                        to: kept_name.clone(),
                    });
                }
                renames.push(Rename {
                    from: s.staging.clone(),
                    to: s.live.clone(),
                });
                kept.push(KeptDb {
                    role: s.role.clone(),
                    live: s.live.clone(),
                    kept: kept_name,
                    existed,
                });
            }
            Ok((renames, kept))
        };
        self.rename_atomically(ctx, "swap_in", &involved, &plan)
    }

    /// See [`splice_dr_plugin_api::Databases::roll_back`].
    pub(crate) fn roll_back_impl(
        &self,
        ctx: &OpContext,
        kept: &[KeptDb],
    ) -> Result<(), BackendError> {
        for k in kept {
            self.check_live(&k.role, &k.live)?;
            ensure_kept_of(&k.kept, &k.live, "roll back to")?;
        }
        let suffix = new_suffix();
        let involved: Vec<&str> = kept
            .iter()
            .flat_map(|k| [k.live.as_str(), k.kept.as_str()])
            .collect();
        let plan = |tx: &mut postgres::Transaction<'_>| {
            let mut renames = Vec::new();
            let mut failed = Vec::new();
            for k in kept {
                if k.existed && !database_exists(tx, &k.kept)? {
                    return Err(BackendError::NotFound(format!(
                        "kept database {} is gone, {} cannot be rolled back (if an earlier \
                         roll_back completed, {} already holds the kept data)",
                        k.kept, k.live, k.live
                    )));
                }
                if database_exists(tx, &k.live)? {
                    let f = derived_name(&k.live, FAILED_MARKER, &suffix);
                    renames.push(Rename {
                        from: k.live.clone(),
                        to: f.clone(),
                    });
                    failed.push(f);
                }
                if k.existed {
                    renames.push(Rename {
                        from: k.kept.clone(),
                        to: k.live.clone(),
                    });
                }
            }
            Ok((renames, failed))
        };
        let failed = self.rename_atomically(ctx, "roll_back", &involved, &plan)?;
        // DROP DATABASE cannot run inside a transaction: drop the rejected ones after commit.
        // A failure here leaves `__sdr_failed_` databases that `leftovers` reports.
        let mut admin = self.conn.connect_admin()?;
        for f in failed {
            drop_database(&mut admin, &f)?;
            ctx.info(format!("roll_back: dropped restored database {f}"));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Databases::drop_kept`].
    pub(crate) fn drop_kept_impl(
        &self,
        ctx: &OpContext,
        kept: &[KeptDb],
    ) -> Result<(), BackendError> {
        for k in kept {
            self.check_live(&k.role, &k.live)?;
            ensure_kept_of(&k.kept, &k.live, "drop")?;
        }
        let mut admin = self.conn.connect_admin()?;
        for k in kept.iter().filter(|k| k.existed) {
            drop_database(&mut admin, &k.kept)?;
            ctx.info(format!("dropped kept database {}", k.kept));
        }
        Ok(())
    }

    /// See [`splice_dr_plugin_api::Databases::drop_staged`]. Also accepts the
    /// `__sdr_failed_` names that [`Self::leftovers_impl`] reports as staged.
    pub(crate) fn drop_staged_impl(
        &self,
        ctx: &OpContext,
        staged: &[StagedDb],
    ) -> Result<(), BackendError> {
        for s in staged {
            self.check_live(&s.role, &s.live)?;
        }
        drop_scratch(ctx, &self.conn, staged)
    }

    /// See [`splice_dr_plugin_api::Databases::check_staged`]: only staging databases of
    /// this node's live ones are checked, never a live database.
    pub(crate) fn check_staged_impl(
        &self,
        ctx: &OpContext,
        staged: &StagedDb,
        queries: &[StagedQuery],
    ) -> Result<StagedCheck, BackendError> {
        self.check_live(&staged.role, &staged.live)?;
        if !is_derived(&staged.staging, &staged.live, STAGING_MARKER) {
            return Err(BackendError::Config(format!(
                "refusing to check {}: not a staging database of {}",
                staged.staging, staged.live
            )));
        }
        let mut client = self.conn.connect(&staged.staging)?;
        check_database(ctx, &mut client, &staged.staging, queries)
    }

    /// See [`splice_dr_plugin_api::Databases::leftovers`]. Rolled-back `__sdr_failed_`
    /// databases count as staged: like half-restored ones they hold nothing to keep.
    pub(crate) fn leftovers_impl(&self, _ctx: &OpContext) -> Result<Leftovers, BackendError> {
        let mut admin = self.conn.connect_admin()?;
        let mut names = all_databases(&mut admin)?;
        names.sort();
        let lives = [&self.cfg.validator_db, &self.cfg.participant_db];
        let mut out = Leftovers {
            kept: self.kept_data_dirs(),
            ..Leftovers::default()
        };
        for n in names {
            if lives.iter().any(|l| is_scratch_of(&n, l)) {
                out.staged.push(n);
            } else if lives.iter().any(|l| is_derived(&n, l, KEPT_MARKER)) {
                out.kept.push(n);
            }
        }
        Ok(out)
    }
}
