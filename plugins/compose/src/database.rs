//! The node's Postgres inside its container: SQL over the compose network for snapshots,
//! row counts and checks; `pg_dump` / `pg_restore` / `psql` run inside the container with
//! the dump streamed through the engine API (the runbook's `docker exec -i … < dump`).

use std::path::Path;

use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext};
use splice_dr_postgres::dump::{into_fresh_dir, parse_list, SnapshotCounts};
use splice_dr_postgres::names::quote_ident;
use splice_dr_postgres::restore::verify_counts;
use splice_dr_postgres::sql::{database_exists, db_err, is_duplicate_database, user_tables};
use splice_dr_postgres::ConnSettings;

use crate::engine::{env_value, id_of};
use crate::exec::{self, ExecResult, Streams};
use crate::ComposeBackend;
use splice_dr_postgres::dump::{find_dump_file, DumpFile, CUSTOM_DUMP_FILE};

impl ComposeBackend {
    /// SQL connection settings for the postgres container as it runs now (its address can
    /// change when compose recreates it).
    pub(crate) fn conn(&self, ctx: &OpContext) -> Result<ConnSettings, BackendError> {
        let service = self.cfg.services.postgres.clone();
        let c = self
            .engine
            .block(ctx, "inspecting postgres", self.engine.inspect(&service))?;
        let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
        if !running {
            return Err(BackendError::Config(format!(
                "the {service} container is not running: start it first"
            )));
        }
        let address = match &self.cfg.db_address {
            Some(a) => a.clone(),
            None => {
                let ip = c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|nets| {
                        nets.values()
                            .filter_map(|e| e.ip_address.clone())
                            .find(|ip| !ip.is_empty())
                    })
                    .ok_or_else(|| {
                        BackendError::Config(format!(
                            "the {service} container has no network address; set `db_address`"
                        ))
                    })?;
                format!("{ip}:5432")
            }
        };
        let (host, port) = address
            .rsplit_once(':')
            .unwrap_or((address.as_str(), "5432"));
        let password = match &self.cfg.password_file {
            Some(_) => None,
            None => env_value(&c, "POSTGRES_PASSWORD"),
        };
        let mut conninfo = format!(
            "host={host} port={port} user='{}' dbname=postgres connect_timeout=10",
            self.cfg.db_user.replace('\\', "\\\\").replace('\'', "\\'")
        );
        if let Some(p) = password {
            conninfo.push_str(&format!(
                " password='{}'",
                p.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
        ConnSettings::new(&conninfo, self.cfg.password_file.as_deref())
    }

    /// The postgres container's id and the password to give tools run inside it.
    fn pg_container(&self, ctx: &OpContext) -> Result<(String, Vec<String>), BackendError> {
        let service = self.cfg.services.postgres.clone();
        let c = self
            .engine
            .block(ctx, "inspecting postgres", self.engine.inspect(&service))?;
        let id = id_of(&c, &service)?;
        let password = match &self.cfg.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| BackendError::Config(format!("`password_file` {}: {e}", f.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            None => env_value(&c, "POSTGRES_PASSWORD").unwrap_or_default(),
        };
        Ok((id, vec![format!("PGPASSWORD={password}")]))
    }

    /// Runs a Postgres tool inside the postgres container as user `postgres` with the
    /// password in its environment. Returns its result and the command as an operator would
    /// type it, for error messages.
    pub(crate) fn run_in_postgres(
        &self,
        ctx: &OpContext,
        argv: &[String],
        streams: Streams<'_>,
    ) -> Result<(ExecResult, String), BackendError> {
        let (container, env) = self.pg_container(ctx)?;
        let shown = match streams.stdin {
            Some(p) => format!(
                "docker exec -i {container:.12} {} < {}",
                argv.join(" "),
                p.display()
            ),
            None => format!("docker exec {container:.12} {}", argv.join(" ")),
        };
        let out = exec::run(
            &self.engine,
            ctx,
            &container,
            Some("postgres"),
            argv,
            &env,
            streams,
        )?;
        Ok((out, shown))
    }

    /// See [`splice_dr_plugin_api::Backend::dump`]: row counts in an exported snapshot,
    /// then `pg_dump -Fc --snapshot` inside the container streamed into `dest`.
    pub(crate) fn dump_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let db = self.db_for_role(role)?;
        self.check_migration_matches(ctx)?;

        into_fresh_dir(dest, || self.dump_into(ctx, role, &db, dest))
    }

    fn dump_into(
        &self,
        ctx: &OpContext,
        role: &str,
        db: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let mut client = self.conn(ctx)?.connect(db)?;
        let pinned = SnapshotCounts::take(ctx, &mut client, db)?;
        let snapshot = pinned.snapshot.clone();
        let what = format!("dump {db}");
        let argv: Vec<String> = vec![
            "pg_dump".into(),
            "--format=custom".into(),
            format!("--compress={}", self.cfg.compress),
            format!("--snapshot={snapshot}"),
            format!("--username={}", self.cfg.db_user),
            format!("--dbname={db}"),
        ];
        ctx.info(format!(
            "dumping {db} ({} tables) inside the {} container with snapshot {snapshot}",
            pinned.tables.len(),
            self.cfg.services.postgres
        ));
        let file = dest.join(CUSTOM_DUMP_FILE);
        let (out, shown) = self.run_in_postgres(
            ctx,
            &argv,
            Streams {
                stdin: None,
                stdout: Some(&file),
                progress: Some(&what),
            },
        )?;
        let out = out.check(&shown)?;
        let info = pinned.finish_into(role, db, "custom")?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("pg_dump said: {}", out.stderr.trim()));
        }
        ctx.progress(&what, out.bytes_out, Some(out.bytes_out), "bytes");
        Ok(info)
    }

    /// Refuses to work on a node whose postgres container was created for another
    /// migration than the config's: after a network DR the participant database is
    /// `participant-<new id>`, and dumping the old one would back up stale data.
    fn check_migration_matches(&self, ctx: &OpContext) -> Result<(), BackendError> {
        let service = self.cfg.services.postgres.clone();
        let c = self
            .engine
            .block(ctx, "inspecting postgres", self.engine.inspect(&service))?;
        let expected = self.db_for_role("participant")?;
        match env_value(&c, "CREATE_DATABASE_participant") {
            Some(running) if running != expected => Err(BackendError::Config(format!(
                "the {service} container was created for database {running}, but the config \
                 names {expected}: the node runs another migration than `migration_id` says \
                 (after a network DR, set migration_id to the new id in the config)"
            ))),
            _ => Ok(()),
        }
    }

    /// See [`splice_dr_plugin_api::Backend::check_dump`]: `pg_restore --list` inside the
    /// container for custom dumps; plain dumps must carry pg_dump's end marker (a
    /// truncated file does not).
    pub(crate) fn check_dump_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<DumpCheck, BackendError> {
        let dump = find_dump_file(src)?;
        if dump.format == "plain" {
            return check_plain(&dump.path);
        }
        let argv: Vec<String> = vec!["pg_restore".into(), "--list".into()];
        let (out, _) = self.run_in_postgres(
            ctx,
            &argv,
            Streams {
                stdin: Some(&dump.path),
                stdout: None,
                progress: None,
            },
        )?;
        if out.code != 0 {
            return Err(BackendError::Verification(format!(
                "pg_restore cannot read the table of contents of {}: {}",
                dump.path.display(),
                out.stderr.trim()
            )));
        }
        let check = parse_list(&out.stdout);
        if check.entries == 0 {
            return Err(BackendError::Verification(format!(
                "{}: the table of contents lists no entries",
                dump.path.display()
            )));
        }
        Ok(check)
    }

    /// See [`splice_dr_plugin_api::Backend::restore_into_empty`].
    pub(crate) fn restore_into_empty_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<(), BackendError> {
        let db = self.db_for_role(role)?;
        let dump = find_dump_file(src)?;
        let conn = self.conn(ctx)?;
        self.ensure_empty_database(ctx, &conn, &db)?;
        self.stream_into(ctx, &dump, &db)?;
        let mut client = conn.connect(&db)?;
        verify_counts(ctx, &mut client, &db, expected)
    }

    /// Streams a dump into the existing database `db` inside the postgres container:
    /// `pg_restore --exit-on-error` for custom dumps, `psql -v ON_ERROR_STOP=1` for plain ones.
    pub(crate) fn stream_into(
        &self,
        ctx: &OpContext,
        dump: &DumpFile,
        db: &str,
    ) -> Result<(), BackendError> {
        let user = format!("--username={}", self.cfg.db_user);
        let argv: Vec<String> = if dump.format == "custom" {
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
        };
        let what = format!("restore {db}");
        ctx.info(format!(
            "streaming {} into {db} ({})",
            dump.path.display(),
            argv[0]
        ));
        let (out, shown) = self.run_in_postgres(
            ctx,
            &argv,
            Streams {
                stdin: Some(&dump.path),
                stdout: None,
                progress: Some(&what),
            },
        )?;
        let out = out.check(&shown)?;
        if !out.stderr.trim().is_empty() {
            ctx.warn(format!("{} said: {}", argv[0], out.stderr.trim()));
        }
        Ok(())
    }

    /// Creates `db` when the entrypoint did not (a `MIGRATION_ID` that was unset when the
    /// container was created names it `participant-`), and refuses one that holds tables.
    fn ensure_empty_database(
        &self,
        ctx: &OpContext,
        conn: &ConnSettings,
        db: &str,
    ) -> Result<(), BackendError> {
        let mut admin = conn.connect_admin()?;
        if !database_exists(&mut admin, db)? {
            ctx.warn(format!(
                "database {db} did not exist after the volume was re-initialised (was \
                 MIGRATION_ID set when the container was created?); creating it"
            ));
            match admin.batch_execute(&format!("CREATE DATABASE {}", quote_ident(db))) {
                Ok(()) => {}
                // Created meanwhile by the container's init script: the emptiness check
                // below decides, as for a database that was there all along.
                Err(e) if is_duplicate_database(&e) => {
                    ctx.info(format!("database {db} appeared meanwhile; using it"))
                }
                Err(e) => return Err(db_err(format!("creating database {db}"))(e)),
            }
        }
        let mut client = conn.connect(db)?;
        let tables = user_tables(&mut client)?;
        if !tables.is_empty() {
            return Err(BackendError::Config(format!(
                "refusing to restore into {db}: it already holds {} tables (e.g. {}.{}); a \
                 restore into a live database would mix two states — wipe the volume first",
                tables.len(),
                tables[0].0,
                tables[0].1
            )));
        }
        Ok(())
    }
}

/// Checks a plain SQL dump is complete: pg_dump writes an end marker as its last line.
fn check_plain(path: &Path) -> Result<DumpCheck, BackendError> {
    use std::io::{BufRead, BufReader};
    let f = std::fs::File::open(path)
        .map_err(|e| BackendError::io(format!("opening {}", path.display()), e))?;
    let (mut entries, mut data, mut last) = (0u64, 0u64, String::new());
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| BackendError::io(format!("reading {}", path.display()), e))?;
        if line.starts_with("-- Name: ") {
            entries += 1;
        }
        if line.starts_with("COPY ") {
            data += 1;
        }
        if !line.trim().is_empty() {
            last = line;
        }
    }
    if last.trim() != "-- PostgreSQL database dump complete" {
        return Err(BackendError::Verification(format!(
            "{} is truncated: it does not end with pg_dump's `-- PostgreSQL database dump complete`",
            path.display()
        )));
    }
    Ok(DumpCheck {
        entries,
        table_data: data,
    })
}
