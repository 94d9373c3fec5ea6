//! The node's Postgres inside its container: SQL over the compose network for snapshots,
//! row counts and checks; `pg_dump` / `pg_restore` / `psql` run inside the container with
//! the dump streamed through the engine API (the runbook's `docker exec -i … < dump`).

use std::path::Path;

use splice_dr_pg_toolkit::dump::{find_dump_file, into_fresh_dir};
use splice_dr_pg_toolkit::names::quote_ident;
use splice_dr_pg_toolkit::sql::{database_exists, db_err, is_duplicate_database, user_tables};
use splice_dr_pg_toolkit::toolkit::{verify_restored, ExecResult, Streams, Toolkit, Transport};
use splice_dr_pg_toolkit::ConnSettings;
use splice_dr_plugin_api::{BackendError, DumpCheck, DumpInfo, OpContext};

use crate::engine::{container_ip, env_value, id_of};
use crate::exec;
use crate::ComposeBackend;

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
                let ip = container_ip(&c).ok_or_else(|| {
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

    /// The Postgres tools over `docker exec` into the postgres container.
    pub(crate) fn tools(&self) -> Toolkit<'_, Self> {
        Toolkit::new(self, &self.cfg.db_user, self.cfg.compress)
    }

    /// See [`splice_dr_plugin_api::Databases::dump`]: row counts in an exported snapshot,
    /// then `pg_dump -Fc --snapshot` inside the container streamed into `dest`.
    pub(crate) fn dump_impl(
        &self,
        ctx: &OpContext,
        role: &str,
        dest: &Path,
    ) -> Result<DumpInfo, BackendError> {
        let db = self.db_for_role(role)?;
        self.check_migration_matches(ctx)?;

        into_fresh_dir(dest, || {
            let conn = self.conn(ctx)?;
            self.tools().dump_into(ctx, &conn, role, &db, dest)
        })
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

    /// See [`splice_dr_plugin_api::Databases::check_dump`]: `pg_restore --list` inside the
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
        self.tools().list_contents(ctx, &dump.path)
    }

    /// See [`splice_dr_plugin_api::Databases::restore_into_empty`].
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
        self.tools().stream_in(ctx, &dump, &db)?;
        verify_restored(ctx, &conn, &db, expected)
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

/// The postgres container's tools, run as user `postgres` with the password in their
/// environment; shown as the `docker exec` an operator would type.
impl Transport for ComposeBackend {
    fn run(
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

    fn place(&self) -> String {
        format!("inside the {} container", self.cfg.services.postgres)
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
