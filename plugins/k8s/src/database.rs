//! The node's Postgres in its pod: SQL over the `postgres` Service for snapshots, row
//! counts and renames; `pg_dump` / `pg_restore` run inside `postgres-0` with the dump
//! streamed over the exec websocket (the runbook's `kubectl exec -i postgres-0 -- … <
//! dump`). Restores go into a staging database next to the live one, so the live data is
//! untouched until the restored copy is verified and swapped in.

use std::path::Path;

use splice_dr_pg_toolkit::dump::{find_dump_file, into_fresh_dir, DumpFile};
use splice_dr_pg_toolkit::staging::restore_into_scratch;
use splice_dr_pg_toolkit::toolkit::{self, verify_restored, ExecResult, Toolkit, Transport};
use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext, StagedDb};

use crate::exec::{self, Input};
use crate::K8sBackend;

/// Shell wrapper for tools fed on stdin: the tool runs with the given arguments, then the
/// rest of stdin is drained and the tool's exit code returned. A tool that stops reading
/// early (`pg_restore --list` reads only the table of contents; a failing restore) would
/// otherwise leave the client blocked sending stdin, unable to read the exit status.
pub const DRAIN_STDIN: &str = r#""$0" "$@"; rc=$?; cat >/dev/null; exit $rc"#;

/// The one custom-format dump in `src`: a pod gets it on pg_restore's stdin. Plain SQL
/// dumps (the compose runbook's) are refused here with what to do.
fn custom_dump_file(src: &Path) -> Result<DumpFile, BackendError> {
    let dump = find_dump_file(src)?;
    if dump.format != "custom" {
        return Err(BackendError::Verification(format!(
            "{}: the k8s backend restores custom-format dumps (pg_dump -Fc, *.pgdump); \
             take a new backup with splice-dr on this node",
            dump.path.display()
        )));
    }
    Ok(dump)
}

/// The postgres pod's tools over the exec websocket; shown as the `kubectl exec` an
/// operator would type. A tool fed on stdin runs under [`DRAIN_STDIN`].
impl Transport for K8sBackend {
    fn run(
        &self,
        ctx: &OpContext,
        argv: &[String],
        streams: toolkit::Streams<'_>,
    ) -> Result<(ExecResult, String), BackendError> {
        let cfg = &self.cfg;
        let redirect = streams
            .stdin
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
        let (input, argv) = match streams.stdin {
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
                exec::Streams {
                    input,
                    stdout: streams.stdout,
                    progress: streams.progress,
                },
            ),
        )?;
        Ok((out, shown))
    }

    fn place(&self) -> String {
        format!("in pod {}", self.cfg.postgres_pod)
    }
}

impl K8sBackend {
    /// The Postgres tools over the exec websocket into the postgres pod.
    fn tools(&self) -> Toolkit<'_, Self> {
        Toolkit::new(self, &self.cfg.db_user, self.cfg.compress)
    }

    /// See [`splice_dr_plugin_api::Databases::dump`]: row counts in an exported snapshot,
    /// then `pg_dump -Fc --snapshot` in the pod streamed into `dest/database.pgdump`.
    pub(crate) fn dump_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let db = self.db_for_role(role)?;

        into_fresh_dir(dest, || {
            self.tools().dump_into(ctx, &self.conn, role, &db, dest)
        })
    }

    /// See [`splice_dr_plugin_api::Databases::check_dump`]: `pg_restore --list` in the pod
    /// reading the dump on stdin.
    pub(crate) fn check_dump_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<DumpCheck, BackendError> {
        let dump = custom_dump_file(src)?;
        self.tools().list_contents(ctx, &dump.path)
    }

    /// See [`splice_dr_plugin_api::Databases::restore_staged`]: a new database next to the
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
        dump: &DumpFile,
        expected: &DumpInfo,
    ) -> Result<(), BackendError> {
        let what = format!("restore {staging}");
        let out = self.tools().stream_in(ctx, dump, staging)?;
        ctx.progress(&what, out.bytes_in, Some(out.bytes_in), "bytes");
        ctx.check_cancelled(&what)?;
        verify_restored(ctx, &self.conn, staging, expected)
    }
}
