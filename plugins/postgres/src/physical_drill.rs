//! Drills of physical backups on the bare server: the copy started as a server of its own,
//! checked, stopped — never touching the node's server or its data directory.
//!
//! The copy is laid down into `scratch/data` (the caller's new private directory) and
//! started with `pg_ctl` from `bin_dir`. A copy of the node's data directory carries the
//! node's configuration, which could make the scratch server act on the outside world: an
//! `archive_command` writing into the node's WAL archive, a `primary_conninfo` or a
//! subscription connecting to another server, preloaded libraries, TCP listeners on the
//! node's addresses, `ALTER SYSTEM` settings in `postgresql.auto.conf` overriding all of
//! it. So the copy's `postgresql.conf`, `postgresql.auto.conf`, `pg_hba.conf` and
//! `pg_ident.conf` are replaced by ours (nothing is lost: the copy is thrown away) and its
//! recovery signal files removed: the server listens only on a Unix socket in a private
//! directory, trusts only that socket, and archives, replicates and subscribes to nothing.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use splice_dr_pg_toolkit::check::{check_database, read_every_table};
use splice_dr_pg_toolkit::physical::{self, Owner};
use splice_dr_pg_toolkit::{child_env, process, sql, ConnSettings};
use splice_dr_plugin_api::{BackendError, BaseBackupInfo, OpContext, ScratchChecks, StagedCheck};

use crate::PostgresBackend;

/// Interval between probes of the starting scratch server.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long `pg_ctl stop -m fast` may take before the server is killed.
const STOP_TIMEOUT_SECS: u64 = 60;
/// How long a killed server's processes may take to go.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// The longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Log lines of the scratch server quoted in an error.
const LOG_LINES: usize = 15;
/// Settings files of the copy replaced by ours.
const REPLACED: &[&str] = &[
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];
/// Files of the copy that would put the scratch server into archive recovery or standby.
const SIGNALS: &[&str] = &["standby.signal", "recovery.signal"];

/// The scratch server's paths, all under the caller's scratch directory.
struct Layout {
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Layout {
    /// The paths under `scratch`, refused when `pg_ctl`'s shell command line or a Unix
    /// socket could not carry them.
    fn new(scratch: &Path) -> Result<Layout, BackendError> {
        let text = scratch.to_str().unwrap_or_default();
        let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+@~".contains(c);
        if !scratch.is_absolute() || text.is_empty() || !text.chars().all(safe) {
            return Err(BackendError::Config(format!(
                "the drill's scratch directory {} must be an absolute path of letters, digits \
                 and / . _ - + @ ~ (pg_ctl passes it through a shell): choose a state_dir \
                 whose path has none other",
                scratch.display()
            )));
        }
        let layout = Layout {
            data: scratch.join("data"),
            socket: scratch.join("s"),
            log: scratch.join("server.log"),
        };
        // `.s.PGSQL.<port>` after the directory and a slash.
        if layout.socket.as_os_str().len() + 15 > MAX_SOCKET_PATH {
            return Err(BackendError::Config(format!(
                "the drill's socket directory {} is too long for a Unix socket ({} bytes at \
                 most with its file name): choose a shorter state_dir",
                layout.socket.display(),
                MAX_SOCKET_PATH
            )));
        }
        Ok(layout)
    }
}

/// A scratch server on a laid-down copy: started by [`ScratchServer::start`], always
/// ended by [`ScratchServer::stop`].
struct ScratchServer {
    pg_ctl: PathBuf,
    layout: Layout,
    port: u16,
}

impl PostgresBackend {
    /// See [`splice_dr_plugin_api::Databases::drill_base_backup`].
    pub(crate) fn drill_base_backup_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
        expected: &BaseBackupInfo,
        scratch: &Path,
        checks: &[ScratchChecks],
        timeout: Duration,
    ) -> Result<Vec<StagedCheck>, BackendError> {
        refuse_root()?;
        if !physical::is_base_backup(src) {
            return Err(BackendError::Verification(format!(
                "{} is not a base backup (no backup_label or PG_VERSION)",
                src.display()
            )));
        }
        let layout = Layout::new(scratch)?;
        let pg_ctl = process::find_tool(self.cfg.bin_dir.as_deref(), "pg_ctl")?;
        let owner = Owner::of(scratch)?;
        let mut done = 0u64;
        let bytes = physical::lay_down(src, &layout.data, &expected.dirs, owner, &mut |n| {
            done += n;
            ctx.progress("lay down the base backup", done, None, "bytes");
        })?;
        ctx.info(format!(
            "base backup laid down into {} ({bytes} bytes)",
            layout.data.display()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&layout.socket)
            .map_err(|e| BackendError::io(format!("creating {}", layout.socket.display()), e))?;
        let server = ScratchServer {
            pg_ctl,
            layout,
            port: free_port()?,
        };
        server.neutralise()?;
        let users: Vec<String> = [self.conn.user().map(str::to_string), os_user()]
            .into_iter()
            .flatten()
            .chain(["postgres".to_string()])
            .collect();
        let checked = server
            .start(ctx, &users, timeout)
            .and_then(|conn| self.check_copy(ctx, &conn, expected, checks));
        let stopped = server.stop(ctx);
        match (checked, stopped) {
            (Ok(found), Ok(())) => Ok(found),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(again)) => Err(BackendError::Verification(format!(
                "{e}; stopping the scratch server failed too: {again}"
            ))),
        }
    }

    /// The drill checks in each role's database of the scratch server, after every
    /// database the backup lists proved to accept connections.
    fn check_copy(
        &self,
        ctx: &OpContext,
        conn: &ScratchConn,
        expected: &BaseBackupInfo,
        checks: &[ScratchChecks],
    ) -> Result<Vec<StagedCheck>, BackendError> {
        for db in &expected.databases {
            conn.connect(db)?
                .simple_query("SELECT 1")
                .map_err(sql::db_err(format!("querying database {db} of the copy")))?;
        }
        let mut out = Vec::new();
        for c in checks {
            let db = self.db_for_role(&c.role)?;
            if !expected.databases.iter().any(|d| d == db) {
                return Err(BackendError::Verification(format!(
                    "the backup holds no {} database {db} (it holds {})",
                    c.role,
                    expected.databases.join(", ")
                )));
            }
            let mut client = conn.connect(db)?;
            let mut found = check_database(ctx, &mut client, db, &c.queries)?;
            read_every_table(ctx, &mut client, db, &mut found)?;
            out.push(found);
        }
        Ok(out)
    }
}

/// Sessions on the scratch server: over its socket, as its bootstrap superuser (trusted on
/// that private socket only).
struct ScratchConn {
    socket: PathBuf,
    port: u16,
    user: String,
}

impl ScratchConn {
    fn connect(&self, db: &str) -> Result<postgres::Client, BackendError> {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let info = format!(
            "host={} port={} user={} dbname={} sslmode=disable",
            quote(&self.socket.to_string_lossy()),
            self.port,
            quote(&self.user),
            quote(db)
        );
        ConnSettings::new(&info, None)?.connect(db)
    }
}

impl ScratchServer {
    /// Replaces the copy's settings with the scratch server's own (see the module doc).
    fn neutralise(&self) -> Result<(), BackendError> {
        let data = &self.layout.data;
        let write = |name: &str, text: &str| {
            let p = data.join(name);
            std::fs::write(&p, text)
                .map_err(|e| BackendError::io(format!("writing {}", p.display()), e))
        };
        for name in REPLACED {
            write(name, "")?;
        }
        write(
            "postgresql.conf",
            &scratch_conf(&self.layout.socket, self.port),
        )?;
        write(
            "pg_hba.conf",
            "# splice-dr drill: only the private socket, only the daemon's user can reach it\n\
             local all all trust\n",
        )?;
        for name in SIGNALS {
            let p = data.join(name);
            if p.exists() {
                std::fs::remove_file(&p)
                    .map_err(|e| BackendError::io(format!("removing {}", p.display()), e))?;
            }
        }
        Ok(())
    }

    /// Starts the server and waits until it is out of recovery; answers how to reach it.
    fn start(
        &self,
        ctx: &OpContext,
        users: &[String],
        timeout: Duration,
    ) -> Result<ScratchConn, BackendError> {
        let secs = timeout.as_secs().max(1);
        let mut cmd = self.pg_ctl_command();
        cmd.arg("start")
            .arg("-l")
            .arg(&self.layout.log)
            .args(["-w", "-t", &secs.to_string()]);
        let shown = process::shown(&cmd);
        ctx.info(format!("starting the scratch server: {shown}"));
        let started = Instant::now();
        process::run(ctx, cmd, &shown, "start the scratch server", &mut || {})
            .map_err(|e| self.with_log(e))?;
        let mut conn = ScratchConn {
            socket: self.layout.socket.clone(),
            port: self.port,
            user: String::new(),
        };
        let left = timeout.saturating_sub(started.elapsed());
        conn.user = self.wait_recovered(ctx, &conn, users, left)?;
        ctx.info(format!(
            "scratch server on {} (port {}) is out of recovery after {:.1}s",
            self.layout.socket.display(),
            self.port,
            started.elapsed().as_secs_f64()
        ));
        Ok(conn)
    }

    /// Waits until the server answers out of recovery; answers its bootstrap superuser's
    /// name. The socket trusts any role of the copy: `users` are tried in order (the
    /// node's URL's role, which took the backup, first).
    fn wait_recovered(
        &self,
        ctx: &OpContext,
        conn: &ScratchConn,
        users: &[String],
        timeout: Duration,
    ) -> Result<String, BackendError> {
        let start = Instant::now();
        loop {
            ctx.check_cancelled("waiting for the scratch server")?;
            let last = match probe(conn, users) {
                Ok(user) => return Ok(user),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(self.with_log(BackendError::Timeout {
                    what: format!("the scratch server to end recovery (last: {last})"),
                    seconds: timeout.as_secs(),
                }));
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }

    /// `pg_ctl stop -m fast`, and the server killed when it does not stop; a server that
    /// never started is nothing to stop.
    fn stop(&self, ctx: &OpContext) -> Result<(), BackendError> {
        let Some(pid) = server_pid(&self.layout.data) else {
            return Ok(());
        };
        let mut cmd = self.pg_ctl_command();
        cmd.args([
            "stop",
            "-m",
            "fast",
            "-w",
            "-t",
            &STOP_TIMEOUT_SECS.to_string(),
        ]);
        let shown = process::shown(&cmd);
        // Stopping runs even when the run was cancelled: a detached context.
        let detached = OpContext::detached(Default::default());
        match process::run(
            &detached,
            cmd,
            &shown,
            "stop the scratch server",
            &mut || {},
        ) {
            Ok(_) if server_pid(&self.layout.data).is_none() => {
                ctx.info("scratch server stopped");
                return Ok(());
            }
            Ok(_) => ctx.warn(format!("{shown} returned but pid {pid} still runs")),
            Err(e) => ctx.warn(format!("{e}")),
        }
        ctx.warn(format!("killing the scratch server (pid {pid})"));
        process::signal(pid, "-KILL");
        let start = Instant::now();
        while server_pid(&self.layout.data).is_some() {
            if start.elapsed() >= KILL_GRACE {
                return Err(BackendError::Verification(format!(
                    "the scratch server (pid {pid}) on {} survives SIGKILL",
                    self.layout.data.display()
                )));
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        Ok(())
    }

    /// `pg_ctl -D data` with no `PG*` variables of the daemon's (they could point it
    /// elsewhere).
    fn pg_ctl_command(&self) -> Command {
        let mut cmd = child_env::command(&self.pg_ctl, &[]);
        cmd.arg("-D").arg(&self.layout.data);
        cmd
    }

    /// `e` with the end of the scratch server's log, which says why it did not start.
    fn with_log(&self, e: BackendError) -> BackendError {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.layout.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
        if tail.trim().is_empty() {
            return e;
        }
        BackendError::Verification(format!("{e}; the scratch server's log ends with:\n{tail}"))
    }
}

/// One probe: a session (as the first of `users` the copy knows), out of recovery; the
/// bootstrap superuser's name.
fn probe(conn: &ScratchConn, users: &[String]) -> Result<String, BackendError> {
    let mut last = None;
    for user in users.iter().cloned() {
        let c = ScratchConn {
            user,
            socket: conn.socket.clone(),
            port: conn.port,
        };
        match c.connect("postgres").or_else(|_| c.connect("template1")) {
            Ok(mut client) => {
                let row = client
                    .query_one(
                        "SELECT pg_is_in_recovery(), \
                         (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10)",
                        &[],
                    )
                    .map_err(sql::db_err("asking whether recovery ended"))?;
                let (in_recovery, superuser): (bool, String) = (row.get(0), row.get(1));
                if in_recovery {
                    return Err(BackendError::Verification("still in recovery".into()));
                }
                return Ok(superuser);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| BackendError::NotFound("no user to connect as".into())))
}

/// The daemon's own user name (trusted on the private socket like any other).
fn os_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
}

/// The scratch server's `postgresql.conf`: a private socket, no TCP, nothing that reaches
/// out (archiving, replication, subscriptions, preloaded libraries), little memory, and
/// no durability (the copy is thrown away).
fn scratch_conf(socket: &Path, port: u16) -> String {
    let socket = socket.display().to_string().replace('\'', "''");
    format!(
        "# Written by splice-dr for a drill of a physical backup: a server of its own on a\n\
         # copy of the node's data, reachable only through a private socket, reaching nothing.\n\
         listen_addresses = ''\n\
         port = {port}\n\
         unix_socket_directories = '{socket}'\n\
         unix_socket_permissions = 0700\n\
         ssl = off\n\
         archive_mode = off\n\
         archive_command = ''\n\
         restore_command = ''\n\
         archive_cleanup_command = ''\n\
         recovery_end_command = ''\n\
         primary_conninfo = ''\n\
         primary_slot_name = ''\n\
         synchronous_standby_names = ''\n\
         max_wal_senders = 0\n\
         max_logical_replication_workers = 0\n\
         max_sync_workers_per_subscription = 0\n\
         shared_preload_libraries = ''\n\
         session_preload_libraries = ''\n\
         local_preload_libraries = ''\n\
         max_connections = 20\n\
         shared_buffers = 32MB\n\
         autovacuum = off\n\
         jit = off\n\
         fsync = off\n\
         synchronous_commit = off\n\
         logging_collector = off\n\
         log_destination = 'stderr'\n\
         cluster_name = 'splice-dr-drill'\n"
    )
}

/// Why this daemon cannot drill physical backups (it runs as root; no `pg_ctl`), or `None`.
pub(crate) fn unavailable(bin_dir: Option<&Path>) -> Option<String> {
    match refuse_root().and_then(|()| process::find_tool(bin_dir, "pg_ctl")) {
        Ok(_) => None,
        Err(BackendError::Config(why)) => Some(why),
        Err(e) => Some(e.to_string()),
    }
}

/// Refuses to drill as root, which PostgreSQL refuses to run as, with what to do instead.
fn refuse_root() -> Result<(), BackendError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok());
    if euid == Some(0) {
        return Err(BackendError::Config(
            "a drill of a physical backup starts a PostgreSQL server on a copy of the data, \
             and PostgreSQL refuses to run as root: run splice-dr as an unprivileged user \
             (the database server's own user, e.g. postgres, is the usual choice) to drill \
             physical backups; `splice-dr verify ID` checks one (checksums, pg_verifybackup) \
             as any user"
                .into(),
        ));
    }
    Ok(())
}

/// A port number no TCP listener uses now (the kernel's choice). The server listens on no
/// TCP port; the number names its socket file and keys its shared memory.
fn free_port() -> Result<u16, BackendError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BackendError::io("choosing a port for the scratch server", e))
}

/// The pid in `data/postmaster.pid` when that process runs in `data` (its working
/// directory): a pid file naming a dead or another process reads as stopped.
fn server_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let data = std::fs::canonicalize(data).ok()?;
    (cwd == data).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_path_a_shell_or_a_socket_cannot_carry_is_refused() {
        assert!(Layout::new(Path::new("/var/lib/splice-dr/drills/drill-1-ab")).is_ok());
        for bad in [
            "relative/x",
            "/state dir/x",
            "/state/\"x",
            "/state/$(x)",
            "/state/x,y",
        ] {
            let e = Layout::new(Path::new(bad)).err().expect(bad);
            assert!(matches!(e, BackendError::Config(_)), "{bad}: {e}");
        }
        let long = format!("/{}", "a".repeat(100));
        let e = Layout::new(Path::new(&long)).err().expect("too long");
        assert!(e.to_string().contains("too long"), "{e}");
    }

    /// Whatever the copy's settings said, the scratch server's own listen on no address,
    /// archive nothing and connect to no primary or publisher.
    #[test]
    fn the_scratch_config_reaches_nothing() {
        let conf = scratch_conf(Path::new("/s/o'k"), 5999);
        for line in [
            "listen_addresses = ''",
            "unix_socket_directories = '/s/o''k'",
            "archive_mode = off",
            "primary_conninfo = ''",
            "max_logical_replication_workers = 0",
            "shared_preload_libraries = ''",
            "port = 5999",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} in\n{conf}");
        }
    }

    #[test]
    fn a_pid_file_of_a_process_elsewhere_is_no_server() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(server_pid(tmp.path()), None);
        // This test process runs, but not in that directory.
        std::fs::write(
            tmp.path().join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(server_pid(tmp.path()), None);
    }
}
