//! The node's Postgres in its pod: SQL over the `postgres` Service for snapshots, row
//! counts and renames; `pg_dump` / `pg_restore` run inside `postgres-0` with the dump
//! streamed over the exec websocket (the runbook's `kubectl exec -i postgres-0 -- … <
//! dump`). Restores go into a staging database next to the live one, so the live data is
//! untouched until the restored copy is verified and swapped in.

use std::path::{Path, PathBuf};

use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext, StagedDb};
use splice_dr_postgres::dump::{
    find_dump_file, into_fresh_dir, parse_list, SnapshotCounts, CUSTOM_DUMP_FILE,
};
use splice_dr_postgres::restore::verify_counts;
use splice_dr_postgres::staging::restore_into_scratch;

use crate::exec::{self, ExecResult, Input, Streams};
use crate::K8sBackend;

/// Shell wrapper for tools fed on stdin: the tool runs with the given arguments, then the
/// rest of stdin is drained and the tool's exit code returned. A tool that stops reading
/// early (`pg_restore --list` reads only the table of contents; a failing restore) would
/// otherwise leave the client blocked sending stdin, unable to read the exit status.
pub const DRAIN_STDIN: &str = r#""$0" "$@"; rc=$?; cat >/dev/null; exit $rc"#;

/// The one custom-format dump in `src`: a pod gets it on pg_restore's stdin. Plain SQL
/// dumps (the compose runbook's) are refused here with what to do.
fn custom_dump_file(src: &Path) -> Result<PathBuf, BackendError> {
    let dump = find_dump_file(src)?;
    if dump.format != "custom" {
        return Err(BackendError::Verification(format!(
            "{}: the k8s backend restores custom-format dumps (pg_dump -Fc, *.pgdump); \
             take a new backup with splice-dr on this node",
            dump.path.display()
        )));
    }
    Ok(dump.path)
}

impl K8sBackend {
    /// Runs a Postgres tool in the postgres pod. Returns its result and the command as an
    /// operator would type it, for error messages.
    pub(crate) fn run_in_postgres(
        &self,
        ctx: &OpContext,
        argv: &[String],
        stdin: Option<&Path>,
        stdout: Option<&Path>,
        progress: Option<&str>,
    ) -> Result<(ExecResult, String), BackendError> {
        let cfg = &self.cfg;
        let redirect = stdin
            .map(|p| format!(" < {}", p.display()))
            .unwrap_or_default();
        let shown = format!(
            "kubectl exec -i -n {} {} -c {} -- {}{redirect}",
            cfg.namespace,
            cfg.postgres_pod,
            cfg.postgres_container,
            argv.join(" ")
        );
        let pods = self.cluster.api();
        let (input, argv) = match stdin {
            Some(p) => {
                let mut wrapped = vec!["sh".to_string(), "-c".into(), DRAIN_STDIN.into()];
                wrapped.extend(argv.iter().cloned());
                (Input::File(p.to_path_buf()), wrapped)
            }
            None => (Input::None, argv.to_vec()),
        };
        let out = self.cluster.block(
            ctx,
            &format!("running {} in {}", argv[0], cfg.postgres_pod),
            exec::run(
                &pods,
                ctx,
                &cfg.postgres_pod,
                Some(&cfg.postgres_container),
                &argv,
                Streams {
                    input,
                    stdout,
                    progress,
                },
            ),
        )?;
        Ok((out, shown))
    }

    /// See [`splice_dr_plugin_api::Backend::dump`]: row counts in an exported snapshot,
    /// then `pg_dump -Fc --snapshot` in the pod streamed into `dest/database.pgdump`.
    pub(crate) fn dump_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let db = self.db_for_role(role)?;

        into_fresh_dir(dest, || self.dump_into(ctx, role, &db, dest))
    }

    fn dump_into(
        &self,
        ctx: &OpContext,
        role: &str,
        db: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let mut client = self.conn.connect(db)?;
        let pinned = SnapshotCounts::take(ctx, &mut client, db)?;
        let snapshot = pinned.snapshot.clone();
        let argv: Vec<String> = vec![
            "pg_dump".into(),
            "--format=custom".into(),
            format!("--compress={}", self.cfg.compress),
            format!("--snapshot={snapshot}"),
            format!("--username={}", self.cfg.db_user),
            format!("--dbname={db}"),
        ];
        ctx.info(format!(
            "dumping {db} ({} tables) in pod {} with snapshot {snapshot}",
            pinned.tables.len(),
            self.cfg.postgres_pod
        ));
        let what = format!("dump {db}");
        let file = dest.join(CUSTOM_DUMP_FILE);
        let (out, shown) = self.run_in_postgres(ctx, &argv, None, Some(&file), Some(&what))?;
        let out = out.check(&shown)?;
        let info = pinned.finish_into(role, db, "custom")?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("pg_dump said: {}", out.stderr.trim()));
        }
        ctx.progress(&what, out.bytes_out, Some(out.bytes_out), "bytes");
        Ok(info)
    }

    /// See [`splice_dr_plugin_api::Backend::check_dump`]: `pg_restore --list` in the pod
    /// reading the dump on stdin.
    pub(crate) fn check_dump_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<DumpCheck, BackendError> {
        let dump = custom_dump_file(src)?;
        let argv: Vec<String> = vec!["pg_restore".into(), "--list".into()];
        let (out, _) = self.run_in_postgres(ctx, &argv, Some(&dump), None, None)?;
        if out.code != 0 {
            return Err(BackendError::Verification(format!(
                "pg_restore cannot read the table of contents of {}: {}",
                dump.display(),
                out.stderr.trim()
            )));
        }
        let check = parse_list(&out.stdout);
        if check.entries == 0 {
            return Err(BackendError::Verification(format!(
                "{}: the table of contents lists no entries",
                dump.display()
            )));
        }
        Ok(check)
    }

    /// See [`splice_dr_plugin_api::Backend::restore_staged`]: a new database next to the
    /// live one, filled by `pg_restore` in the pod from the dump streamed on stdin, then
    /// verified table by table. Dropped again when anything fails.
    pub(crate) fn restore_staged_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<StagedDb, BackendError> {
        let live = self.db_for_role(role)?;
        let dump = custom_dump_file(src)?;
        restore_into_scratch(ctx, &self.conn, role, &live, expected, |_, staging| {
            self.fill_and_verify(ctx, staging, &dump, expected)
        })
    }

    fn fill_and_verify(
        &self,
        ctx: &OpContext,
        staging: &str,
        dump: &Path,
        expected: &DumpInfo,
    ) -> Result<(), BackendError> {
        let argv: Vec<String> = vec![
            "pg_restore".into(),
            "--exit-on-error".into(),
            format!("--username={}", self.cfg.db_user),
            format!("--dbname={staging}"),
        ];
        let what = format!("restore {staging}");
        ctx.info(format!(
            "streaming {} into {staging} in pod {}",
            dump.display(),
            self.cfg.postgres_pod
        ));
        let (out, shown) = self.run_in_postgres(ctx, &argv, Some(dump), None, Some(&what))?;
        let out = out.check(&shown)?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("pg_restore said: {}", out.stderr.trim()));
        }
        ctx.progress(&what, out.bytes_in, Some(out.bytes_in), "bytes");
        ctx.check_cancelled(&what)?;
        let mut client = self.conn.connect(staging)?;
        verify_counts(ctx, &mut client, staging, expected)
    }
}
