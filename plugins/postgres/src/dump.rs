//! `dump` and `check_dump` of the bare-Postgres backend: `pg_dump -Fd` run locally inside
//! an exported snapshot whose row counts (taken by the toolkit's [`SnapshotCounts`]) go
//! into the manifest, and `pg_restore --list` over the dump directory.

use std::path::Path;

use splice_dr_pg_toolkit::child_env;
use splice_dr_pg_toolkit::dump::{data_ids, dir_size, parse_list, prepare_dest, SnapshotCounts};
use splice_dr_pg_toolkit::process::{self, find_tool};
use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext};

use crate::PostgresBackend;

impl PostgresBackend {
    /// See [`splice_dr_plugin_api::Databases::dump`].
    pub(crate) fn dump_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let db = self.db_for_role(role)?.to_string();
        let pg_dump = find_tool(self.cfg.bin_dir.as_deref(), "pg_dump")?;
        prepare_dest(dest)?;
        let mut client = self.conn.connect(&db)?;
        let pinned = SnapshotCounts::take(ctx, &mut client, &db)?;
        let snapshot = pinned.snapshot.clone();
        let what = format!("dump {db}");
        let rows: u64 = pinned.tables.iter().map(|t| t.rows).sum();
        ctx.info(format!(
            "dumping {db} ({} tables, {rows} rows) with snapshot {snapshot}, {} jobs",
            pinned.tables.len(),
            self.cfg.jobs
        ));

        let mut cmd = child_env::command(&pg_dump, child_env::POSTGRES);
        cmd.arg("--format=directory")
            .arg(format!("--jobs={}", self.cfg.jobs))
            .arg(format!("--compress={}", self.cfg.compress))
            .arg(format!("--snapshot={snapshot}"))
            .arg("--file")
            .arg(dest)
            .arg(format!("--dbname={}", self.conn.conninfo(&db)))
            .envs(self.conn.child_env());
        let shown = process::shown(&cmd);
        let result = process::run(ctx, cmd, &shown, &what, &mut || {
            ctx.progress(&what, dir_size(dest), None, "bytes");
        });
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                // The directory is ours (it did not exist or was empty): leave no half dump.
                let _ = std::fs::remove_dir_all(dest);
                return Err(e);
            }
        };
        let info = pinned.finish_into(role, &db, "directory")?;
        if !out.stderr.is_empty() {
            ctx.warn(format!("pg_dump said: {}", out.stderr));
        }
        let bytes = dir_size(dest);
        ctx.progress(&what, bytes, Some(bytes), "bytes");
        ctx.info(format!(
            "dumped {db}: {bytes} bytes in {:.1}s",
            (info.finished_at - info.started_at).num_milliseconds() as f64 / 1000.0
        ));
        Ok(info)
    }

    /// See [`splice_dr_plugin_api::Databases::check_dump`].
    pub(crate) fn check_dump_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<DumpCheck, BackendError> {
        let pg_restore = find_tool(self.cfg.bin_dir.as_deref(), "pg_restore")?;
        let shown_src = src.display().to_string();
        if !src.join("toc.dat").is_file() {
            return Err(BackendError::Verification(format!(
                "{shown_src} is not a directory-format dump (no toc.dat)"
            )));
        }
        let what = format!("check dump {shown_src}");
        let mut cmd = child_env::command(&pg_restore, child_env::POSTGRES);
        cmd.arg("--list").arg(src);
        let shown = process::shown(&cmd);
        let out = process::run(ctx, cmd, &shown, &what, &mut || {}).map_err(|e| match e {
            BackendError::Command { stderr, .. } => BackendError::Verification(format!(
                "pg_restore cannot read the table of contents of {shown_src}: {stderr}"
            )),
            other => other,
        })?;
        let check = parse_list(&out.stdout);
        if check.entries == 0 {
            return Err(BackendError::Verification(format!(
                "{shown_src}: the table of contents lists no entries"
            )));
        }
        for id in data_ids(&out.stdout) {
            let plain = src.join(format!("{id}.dat"));
            let gz = src.join(format!("{id}.dat.gz"));
            if !plain.is_file() && !gz.is_file() {
                return Err(BackendError::Verification(format!(
                    "{shown_src}: data file of TOC entry {id} is missing ({id}.dat or {id}.dat.gz)"
                )));
            }
        }
        if self.cfg.deep_check {
            ctx.info(format!(
                "reading every data file of {shown_src} (deep_check)"
            ));
            let mut cmd = child_env::command(&pg_restore, child_env::POSTGRES);
            cmd.arg("--file=/dev/null").arg(src);
            let shown = process::shown(&cmd);
            process::run(ctx, cmd, &shown, &what, &mut || {}).map_err(|e| match e {
                BackendError::Command { stderr, .. } => BackendError::Verification(format!(
                    "pg_restore cannot read the data of {shown_src}: {stderr}"
                )),
                other => other,
            })?;
        }
        ctx.info(format!(
            "{shown_src}: {} TOC entries, {} with table data",
            check.entries, check.table_data
        ));
        Ok(check)
    }
}
