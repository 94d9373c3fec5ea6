//! The Postgres tools run next to a node's server through a [`Transport`] (a `docker exec`
//! into the postgres container, an exec into the postgres pod): `pg_dump` out in an
//! exported snapshot, `pg_restore --list` to check a dump, `pg_restore` / `psql` in, and
//! the row-count verification after a restore. Written once here so the container and pod
//! backends keep only how they reach the server.

use std::path::Path;

use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext};

use crate::dump::{parse_list, DumpFile, SnapshotCounts, CUSTOM_DUMP_FILE};
use crate::verify::verify_counts;
use crate::ConnSettings;

/// Where a command's stdin comes from and its stdout goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streams<'a> {
    /// A file fed to stdin, then EOF.
    pub stdin: Option<&'a Path>,
    /// A file stdout is written to; otherwise stdout is kept (bounded) in the result.
    pub stdout: Option<&'a Path>,
    /// Progress label; progress is reported in bytes streamed (stdin, else stdout).
    pub progress: Option<&'a str>,
}

/// What a finished command left, whichever transport ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code (-1 when the transport could not read it).
    pub code: i64,
    /// Stdout when not written to a file (bounded).
    pub stdout: String,
    /// The end of stderr.
    pub stderr: String,
    /// Bytes written to stdin.
    pub bytes_in: u64,
    /// Bytes read from stdout.
    pub bytes_out: u64,
}

/// What the backend contract's `exec` answers: the same command's end, without the byte
/// counts only the toolkit uses. A code outside `i32` (no real exit code is) reads as -1.
impl From<ExecResult> for splice_dr_plugin_api::ExecOutput {
    fn from(out: ExecResult) -> Self {
        splice_dr_plugin_api::ExecOutput {
            code: i32::try_from(out.code).unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

impl ExecResult {
    /// `Ok` on exit code 0, else a `Command` error naming `shown` (the command as an
    /// operator would type it) with the end of stderr, so a failed step says what to rerun.
    pub fn check(self, shown: &str) -> Result<ExecResult, BackendError> {
        if self.code == 0 {
            Ok(self)
        } else {
            Err(BackendError::Command {
                command: shown.into(),
                status: format!("exit code {}", self.code),
                stderr: self.stderr.trim().to_string(),
            })
        }
    }
}

/// How the Postgres client tools reach a node's server. Implementations own everything
/// backend-specific: which container or pod, which user, the password in the environment,
/// cancellation of the remote command.
pub trait Transport {
    /// Runs the Postgres tool `argv` next to the node's server, streaming as `streams`
    /// says. Returns its result and the command as an operator would type it, for errors.
    fn run(
        &self,
        ctx: &OpContext,
        argv: &[String],
        streams: Streams<'_>,
    ) -> Result<(ExecResult, String), BackendError>;

    /// Where the tools run, for the journal, e.g. `inside the postgres-splice container`.
    fn place(&self) -> String;
}

/// The dump, check and restore steps over one transport, with the settings they take.
pub struct Toolkit<'a, T: Transport + ?Sized> {
    transport: &'a T,
    db_user: &'a str,
    compress: u32,
}

impl<'a, T: Transport + ?Sized> Toolkit<'a, T> {
    /// The tools over `transport`, connecting as `db_user`, dumping at gzip level `compress`.
    pub fn new(transport: &'a T, db_user: &'a str, compress: u32) -> Self {
        Toolkit {
            transport,
            db_user,
            compress,
        }
    }

    /// Row counts of `db` in an exported snapshot (over `conn`), then `pg_dump -Fc
    /// --snapshot` through the transport into `dest/database.pgdump`: the manifest's counts
    /// describe exactly the data dumped.
    pub fn dump_into(
        &self,
        ctx: &OpContext,
        conn: &ConnSettings,
        role: &str,
        db: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let mut client = conn.connect(db)?;
        let pinned = SnapshotCounts::take(ctx, &mut client, db)?;
        let snapshot = pinned.snapshot.clone();
        let what = format!("dump {db}");
        let argv = dump_argv(self.db_user, self.compress, &snapshot, db);
        ctx.info(format!(
            "dumping {db} ({} tables) {} with snapshot {snapshot}",
            pinned.tables.len(),
            self.transport.place()
        ));
        let file = dest.join(CUSTOM_DUMP_FILE);
        let streams = Streams {
            stdin: None,
            stdout: Some(&file),
            progress: Some(&what),
        };
        let (out, shown) = self.transport.run(ctx, &argv, streams)?;
        let out = out.check(&shown)?;
        let info = pinned.finish_into(role, db, "custom")?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("pg_dump said: {}", out.stderr.trim()));
        }
        ctx.progress(&what, out.bytes_out, Some(out.bytes_out), "bytes");
        Ok(info)
    }

    /// `pg_restore --list` reading the custom dump `dump` on stdin: the dump's table of
    /// contents is readable and lists entries (a truncated or foreign file is not).
    pub fn list_contents(&self, ctx: &OpContext, dump: &Path) -> Result<DumpCheck, BackendError> {
        let argv: Vec<String> = vec!["pg_restore".into(), "--list".into()];
        let streams = Streams {
            stdin: Some(dump),
            ..Streams::default()
        };
        let (out, _) = self.transport.run(ctx, &argv, streams)?;
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

    /// Streams `dump` into the existing database `db`: `pg_restore --exit-on-error` for
    /// custom dumps, `psql -v ON_ERROR_STOP=1` for plain ones, so the first error stops it.
    pub fn stream_in(
        &self,
        ctx: &OpContext,
        dump: &DumpFile,
        db: &str,
    ) -> Result<ExecResult, BackendError> {
        let argv = restore_argv(self.db_user, dump.format, db);
        let what = format!("restore {db}");
        ctx.info(format!(
            "streaming {} into {db} {} ({})",
            dump.path.display(),
            self.transport.place(),
            argv[0]
        ));
        let streams = Streams {
            stdin: Some(&dump.path),
            stdout: None,
            progress: Some(&what),
        };
        let (out, shown) = self.transport.run(ctx, &argv, streams)?;
        let out = out.check(&shown)?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("{} said: {}", argv[0], out.stderr.trim()));
        }
        Ok(out)
    }
}

/// Checks the restored `db` (over `conn`) holds every table of `expected` with exactly
/// the dump's row counts.
pub fn verify_restored(
    ctx: &OpContext,
    conn: &ConnSettings,
    db: &str,
    expected: &DumpInfo,
) -> Result<(), BackendError> {
    let mut client = conn.connect(db)?;
    verify_counts(ctx, &mut client, db, expected)
}

/// `pg_dump` of `db` in `snapshot`, custom format, to stdout.
fn dump_argv(user: &str, compress: u32, snapshot: &str, db: &str) -> Vec<String> {
    vec![
        "pg_dump".into(),
        "--format=custom".into(),
        format!("--compress={compress}"),
        format!("--snapshot={snapshot}"),
        format!("--username={user}"),
        format!("--dbname={db}"),
    ]
}

/// The tool that reads a dump of `format` on stdin into `db`.
fn restore_argv(user: &str, format: &str, db: &str) -> Vec<String> {
    let user = format!("--username={user}");
    if format == "custom" {
        vec![
            "pg_restore".into(),
            "--exit-on-error".into(),
            user,
            format!("--dbname={db}"),
        ]
    } else {
        vec![
            "psql".into(),
            "--quiet".into(),
            "--no-psqlrc".into(),
            "--set=ON_ERROR_STOP=1".into(),
            "--output=/dev/null".into(),
            user,
            format!("--dbname={db}"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::path::PathBuf;

    /// One call: argv, the file fed on stdin, the progress label.
    type Call = (Vec<String>, Option<PathBuf>, Option<String>);

    /// Records what it was asked to run and answers with a canned result.
    struct Fake {
        answer: ExecResult,
        seen: RefCell<Vec<Call>>,
    }

    impl Fake {
        fn answering(code: i64, stdout: &str, stderr: &str) -> Self {
            Fake {
                answer: ExecResult {
                    code,
                    stdout: stdout.into(),
                    stderr: stderr.into(),
                    ..ExecResult::default()
                },
                seen: RefCell::new(Vec::new()),
            }
        }
    }

    impl Transport for Fake {
        fn run(
            &self,
            _ctx: &OpContext,
            argv: &[String],
            streams: Streams<'_>,
        ) -> Result<(ExecResult, String), BackendError> {
            self.seen.borrow_mut().push((
                argv.to_vec(),
                streams.stdin.map(Path::to_path_buf),
                streams.progress.map(str::to_string),
            ));
            Ok((self.answer.clone(), format!("fake {}", argv.join(" "))))
        }

        fn place(&self) -> String {
            "in the fake".into()
        }
    }

    fn ctx() -> OpContext {
        OpContext::detached(Default::default())
    }

    /// The one `check`: success passes the result through; a failure names the command as
    /// shown, the exit code and the end of stderr.
    #[test]
    fn check_names_the_command_and_its_exit_code() {
        let ok = ExecResult::default().check("x").expect("exit 0 passes");
        assert_eq!(ok.code, 0);
        let failed = ExecResult {
            code: 3,
            stderr: "pg_restore: error: boom\n".into(),
            ..ExecResult::default()
        };
        match failed.check("docker exec -i abc pg_restore < d") {
            Err(BackendError::Command {
                command,
                status,
                stderr,
            }) => {
                assert_eq!(command, "docker exec -i abc pg_restore < d");
                assert_eq!(status, "exit code 3");
                assert_eq!(stderr, "pg_restore: error: boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Custom dumps go to pg_restore, plain ones to psql, both fed the file on stdin with
    /// the `restore <db>` progress label; a failure is the transport's command error.
    #[test]
    fn restores_pick_the_tool_by_format_and_fail_with_the_command() {
        let fake = Fake::answering(0, "", "");
        let tk = Toolkit::new(&fake, "cnadmin", 1);
        for (format, tool) in [("custom", "pg_restore"), ("plain", "psql")] {
            let dump = DumpFile {
                path: PathBuf::from(format!("/b/{format}")),
                format,
            };
            tk.stream_in(&ctx(), &dump, "validator").expect("restores");
            let seen = fake.seen.borrow();
            let (argv, stdin, progress) = seen.last().expect("ran");
            assert_eq!(argv[0], tool);
            assert!(argv.contains(&"--username=cnadmin".to_string()), "{argv:?}");
            assert_eq!(argv.last().map(String::as_str), Some("--dbname=validator"));
            assert_eq!(stdin.as_deref(), Some(dump.path.as_path()));
            assert_eq!(progress.as_deref(), Some("restore validator"));
        }
        let failing = Fake::answering(1, "", "ERROR: relation exists");
        let dump = DumpFile {
            path: PathBuf::from("/b/d.pgdump"),
            format: "custom",
        };
        let e = Toolkit::new(&failing, "u", 1)
            .stream_in(&ctx(), &dump, "db")
            .expect_err("fails");
        assert!(
            matches!(&e, BackendError::Command { command, status, .. }
                if command.starts_with("fake pg_restore") && status == "exit code 1"),
            "{e:?}"
        );
    }

    /// An unreadable table of contents and an empty one are verification failures naming
    /// the file; a readable one is counted.
    #[test]
    fn listing_a_dump_refuses_unreadable_and_empty_contents() {
        let path = Path::new("/b/database.pgdump");
        let bad = Fake::answering(1, "", "pg_restore: error: input file is too short\n");
        let e = Toolkit::new(&bad, "u", 1)
            .list_contents(&ctx(), path)
            .expect_err("unreadable");
        assert!(
            matches!(&e, BackendError::Verification(m)
                if m == "pg_restore cannot read the table of contents of /b/database.pgdump: \
                         pg_restore: error: input file is too short"),
            "{e:?}"
        );
        let empty = Fake::answering(0, ";\n; Archive created\n", "");
        let e = Toolkit::new(&empty, "u", 1)
            .list_contents(&ctx(), path)
            .expect_err("empty");
        assert!(e.to_string().contains("lists no entries"), "{e}");
        let good = Fake::answering(
            0,
            "3340; 0 16392 TABLE DATA public t owner\n216; 1259 16390 TABLE public t owner\n",
            "",
        );
        let check = Toolkit::new(&good, "u", 1)
            .list_contents(&ctx(), path)
            .expect("lists");
        assert_eq!((check.entries, check.table_data), (2, 1));
        let seen = good.seen.borrow();
        assert_eq!(seen[0].0, ["pg_restore", "--list"]);
        assert_eq!(seen[0].1.as_deref(), Some(path));
    }

    #[test]
    fn pg_dump_runs_in_the_snapshot_with_the_configured_compression() {
        assert_eq!(
            dump_argv("cnadmin", 1, "00000003-1", "participant-0"),
            [
                "pg_dump",
                "--format=custom",
                "--compress=1",
                "--snapshot=00000003-1",
                "--username=cnadmin",
                "--dbname=participant-0"
            ]
        );
    }
}
