//! Physical backups of the bare server and their restore to the backup's own end.
//!
//! A base backup copies the whole server over the replication protocol (the URL's role
//! needs `REPLICATION`, and `pg_hba.conf` a `replication` line for it). A restore
//! replaces the server's data directory, so it needs what only the operator can name —
//! `data_dir`, `server_stop_command`, `server_start_command` — and their word that every
//! database of the server is replaced (`physical_replaces_cluster`). It keeps the current
//! data directory aside by renaming it next to itself (same file system: instant, nothing
//! copied) and puts it back on any failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use splice_dr_pg_toolkit::physical::{self, Owner};
use splice_dr_pg_toolkit::{child_env, process, sql};
use splice_dr_plugin_api::{
    BackendError, BaseBackupCheck, BaseBackupInfo, KeptStorage, OpContext, WalReplay,
};

use crate::PostgresBackend;

/// The storage target name of a kept data directory ([`KeptStorage::target`]).
pub const DATA_DIR_TARGET: &str = "data_dir";
/// What a kept data directory's name adds to the live one's.
const KEPT_SUFFIX: &str = ".sdr_kept_";
/// Interval between readiness probes of a starting server.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The server a physical restore acts on, as the operator named it.
struct Server<'a> {
    data_dir: &'a Path,
    stop: &'a str,
    start: &'a str,
}

/// What a physical restore lays down: the base backup, and the stored WAL it replays.
#[derive(Clone, Copy)]
struct RestoreSource<'a> {
    src: &'a Path,
    expected: &'a BaseBackupInfo,
    replay: Option<&'a WalReplay>,
}

impl PostgresBackend {
    /// The operator's settings for physical restores, or the configuration error saying
    /// which are missing.
    fn server(&self) -> Result<Server<'_>, BackendError> {
        if let Some(why) = self.cfg.physical_missing() {
            return Err(BackendError::Config(why));
        }
        match (
            &self.cfg.data_dir,
            &self.cfg.server_stop_command,
            &self.cfg.server_start_command,
        ) {
            (Some(data_dir), Some(stop), Some(start)) => Ok(Server {
                data_dir,
                stop,
                start,
            }),
            _ => Err(BackendError::Config(
                "physical restore settings missing".into(),
            )),
        }
    }

    /// See [`splice_dr_plugin_api::Databases::base_backup`].
    pub(crate) fn base_backup_impl(
        &self,
        ctx: &OpContext,
        dest: &Path,
    ) -> Result<BaseBackupInfo, BackendError> {
        // A backup this node could not restore is not taken.
        self.server()?;
        let mut admin = self.conn.connect_admin()?;
        refuse_tablespaces(&mut admin)?;
        let server_version: String = admin
            .query_one("SHOW server_version", &[])
            .map_err(sql::db_err("reading server_version"))?
            .get(0);
        let started_at = chrono::Utc::now();
        let cmd = physical::basebackup_command(self.cfg.bin_dir.as_deref(), &self.conn, dest)?;
        let shown = process::shown(&cmd);
        ctx.info(format!("base backup of {}: {shown}", self.conn.server()));
        let mut tick = || {
            let done = dir_bytes(dest);
            ctx.progress("base backup", done, None, "bytes");
        };
        let out = process::run(ctx, cmd, &shown, "pg_basebackup", &mut tick)?;
        if !out.stderr.trim().is_empty() {
            ctx.info(format!("pg_basebackup: {}", out.stderr.trim()));
        }
        let facts = physical::read_manifest(dest)?;
        // Listed after the copy: what the copy holds is what a restore recreates.
        let databases = admin
            .query(
                "SELECT datname FROM pg_catalog.pg_database \
                 WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                &[],
            )
            .map_err(sql::db_err("listing databases"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(BaseBackupInfo {
            format: physical::PLAIN.into(),
            started_at,
            finished_at: chrono::Utc::now(),
            server_version,
            timeline: facts.timeline,
            start_lsn: facts.start_lsn,
            end_lsn: facts.end_lsn,
            databases,
            dirs: physical::list_dirs(dest)?,
        })
    }

    /// See [`splice_dr_plugin_api::Databases::check_base_backup`].
    pub(crate) fn check_base_backup_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<BaseBackupCheck, BackendError> {
        let facts = physical::read_manifest(src)?;
        let cmd = physical::verifybackup_command(self.cfg.bin_dir.as_deref(), src)?;
        let shown = process::shown(&cmd);
        match process::run(ctx, cmd, &shown, "pg_verifybackup", &mut || {}) {
            Ok(_) => Ok(BaseBackupCheck {
                files: facts.files,
                wal_checked: true,
            }),
            Err(BackendError::Command { stderr, .. }) => Err(BackendError::Verification(format!(
                "pg_verifybackup {}: {stderr}",
                src.display()
            ))),
            Err(e) => Err(e),
        }
    }

    /// See [`splice_dr_plugin_api::Databases::restore_base_backup`].
    pub(crate) fn restore_base_backup_impl(
        &self,
        ctx: &OpContext,
        src: &Path,
        expected: &BaseBackupInfo,
        replay: Option<&WalReplay>,
        timeout: Duration,
    ) -> Result<KeptStorage, BackendError> {
        let server = self.server()?;
        let data_dir = server.data_dir;
        // Everything that can be known before the server stops is checked first.
        if !physical::is_base_backup(src) {
            return Err(BackendError::Verification(format!(
                "{} is not a base backup (no backup_label or PG_VERSION)",
                src.display()
            )));
        }
        if !data_dir.is_dir() {
            return Err(BackendError::NotFound(format!(
                "data_dir {} does not exist: a physical restore keeps the current data \
                 directory aside; create an empty one owned by the server's user first",
                data_dir.display()
            )));
        }
        let (theirs, ours) = (
            physical::major_version(src)?,
            physical::major_version(data_dir)?,
        );
        if theirs != ours {
            return Err(BackendError::Verification(format!(
                "the backup is of a PostgreSQL {theirs} server, data_dir {} is PostgreSQL \
                 {ours}'s: restore it on a server of the same major version",
                data_dir.display()
            )));
        }
        if let Some(replay) = replay {
            crate::replay::check_reachable(ctx, self.cfg.bin_dir.as_deref(), expected, replay)?;
        }
        let owner = Owner::of(data_dir)?;
        let kept = kept_name(data_dir);

        self.stop_server(ctx, &server)?;
        std::fs::rename(data_dir, &kept)
            .map_err(|e| BackendError::io(format!("moving {} aside", data_dir.display()), e))?;
        ctx.info(format!(
            "data directory {} kept as {}",
            data_dir.display(),
            kept.display()
        ));
        let mut kept_storage = KeptStorage {
            target: DATA_DIR_TARGET.into(),
            live: data_dir.display().to_string(),
            kept: kept.display().to_string(),
            bytes: 0,
        };
        // Journaled by the host now: a daemon killed from here on puts it back at start-up.
        ctx.kept_aside(&kept_storage);
        let copy = RestoreSource {
            src,
            expected,
            replay,
        };
        match self.lay_down_and_start(ctx, &server, copy, owner, timeout) {
            Ok(bytes) => {
                kept_storage.bytes = bytes;
                Ok(kept_storage)
            }
            Err(e) => {
                ctx.warn(format!(
                    "physical restore failed, putting {} back: {e}",
                    data_dir.display()
                ));
                match self.put_back(ctx, &server, &kept, timeout) {
                    Ok(()) => {
                        ctx.put_back(&kept_storage);
                        Err(e)
                    }
                    Err(again) => Err(BackendError::Verification(format!(
                        "{e}; putting the previous data directory back failed too: {again} \
                         (it is kept as {})",
                        kept.display()
                    ))),
                }
            }
        }
    }

    /// Lays the copy down as the data directory, starts the server and waits until it is
    /// out of recovery with every database of the backup accepting connections.
    fn lay_down_and_start(
        &self,
        ctx: &OpContext,
        server: &Server<'_>,
        copy: RestoreSource<'_>,
        owner: Owner,
        timeout: Duration,
    ) -> Result<u64, BackendError> {
        let RestoreSource {
            src,
            expected,
            replay,
        } = copy;
        let mut done = 0u64;
        let bytes = physical::lay_down(src, server.data_dir, &expected.dirs, owner, &mut |n| {
            done += n;
            ctx.progress("lay down the base backup", done, None, "bytes");
        })?;
        ctx.info(format!(
            "base backup laid down into {} ({bytes} bytes)",
            server.data_dir.display()
        ));
        if let Some(replay) = replay {
            let wal = crate::replay::install(server.data_dir, replay, owner)?;
            ctx.info(format!(
                "{wal} bytes of stored WAL laid down into {}/pg_wal, recovery to {}",
                server.data_dir.display(),
                crate::replay::target_text(replay)
            ));
        }
        self.run_server_command(ctx, "server_start_command", server.start)?;
        self.wait_recovered(ctx, &expected.databases, timeout)?;
        if replay.is_some() {
            crate::replay::remove_settings(server.data_dir)?;
        }
        Ok(bytes)
    }

    /// Stops the server if it runs, removes whatever is in the data directory's place and
    /// renames the kept one back, then starts the server on it and waits until it accepts
    /// connections.
    fn put_back(
        &self,
        ctx: &OpContext,
        server: &Server<'_>,
        kept: &Path,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let data_dir = server.data_dir;
        if !kept.is_dir() {
            return Err(BackendError::NotFound(format!(
                "the kept data directory {} is gone",
                kept.display()
            )));
        }
        if server_pid(data_dir).is_some() {
            self.stop_server(ctx, server)?;
        }
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir).map_err(|e| {
                BackendError::io(format!("removing the restored {}", data_dir.display()), e)
            })?;
        }
        std::fs::rename(kept, data_dir).map_err(|e| {
            BackendError::io(
                format!("renaming {} back to {}", kept.display(), data_dir.display()),
                e,
            )
        })?;
        ctx.info(format!(
            "previous data directory {} is back",
            data_dir.display()
        ));
        self.run_server_command(ctx, "server_start_command", server.start)?;
        self.wait_recovered(ctx, &[], timeout)
    }

    /// Runs `server_stop_command` and checks the server is gone: a data directory is never
    /// moved under a running server.
    fn stop_server(&self, ctx: &OpContext, server: &Server<'_>) -> Result<(), BackendError> {
        self.run_server_command(ctx, "server_stop_command", server.stop)?;
        if let Some(pid) = server_pid(server.data_dir) {
            return Err(BackendError::Verification(format!(
                "server_stop_command returned but the server (pid {pid}, {}/postmaster.pid) \
                 still runs: nothing was moved; make the command wait until it stopped",
                server.data_dir.display()
            )));
        }
        Ok(())
    }

    fn run_server_command(
        &self,
        ctx: &OpContext,
        key: &str,
        command: &str,
    ) -> Result<(), BackendError> {
        ctx.info(format!("{key}: {command}"));
        let mut cmd = child_env::command("sh", child_env::POSTGRES);
        cmd.arg("-c").arg(command);
        // The server outlives this daemon by design: it must not carry the mark by which
        // a later daemon ends the programs a dead one left running.
        cmd.env_remove(child_env::OWNER_VAR);
        let out = process::run(ctx, cmd, command, key, &mut || {})?;
        if !out.stderr.trim().is_empty() {
            ctx.info(format!("{key} said: {}", out.stderr.trim()));
        }
        Ok(())
    }

    /// Waits until the server accepts connections out of recovery, then until each of
    /// `databases` does.
    fn wait_recovered(
        &self,
        ctx: &OpContext,
        databases: &[String],
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let start = Instant::now();
        loop {
            ctx.check_cancelled("waiting for the server")?;
            let last = match self.recovered(databases) {
                Ok(()) => {
                    ctx.info(format!(
                        "server {} is out of recovery and accepts connections",
                        self.conn.server()
                    ));
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(BackendError::Timeout {
                    what: format!(
                        "the server {} to end recovery and accept connections (last: {last})",
                        self.conn.server()
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }

    /// One probe: out of recovery, and every database answers.
    fn recovered(&self, databases: &[String]) -> Result<(), BackendError> {
        let mut admin = self.conn.connect_admin()?;
        let in_recovery: bool = admin
            .query_one("SELECT pg_is_in_recovery()", &[])
            .map_err(sql::db_err("asking whether recovery ended"))?
            .get(0);
        if in_recovery {
            return Err(BackendError::Verification("still in recovery".into()));
        }
        for db in databases {
            self.conn
                .connect(db)?
                .simple_query("SELECT 1")
                .map_err(sql::db_err(format!("querying database {db}")))?;
        }
        Ok(())
    }

    /// The kept data directory of `kept`, refused unless it is one this backend made of
    /// its own data directory (a journal or a caller cannot name any directory).
    fn own_kept(&self, kept: &KeptStorage) -> Result<PathBuf, BackendError> {
        let server = self.server()?;
        let live = server.data_dir.display().to_string();
        let ok = kept.target == DATA_DIR_TARGET
            && kept.live == live
            && kept
                .kept
                .strip_prefix(&format!("{live}{KEPT_SUFFIX}"))
                .is_some_and(|tag| !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(PathBuf::from(&kept.kept))
        } else {
            Err(BackendError::NotFound(format!(
                "{} is not a data directory kept by a physical restore of {live}",
                kept.kept
            )))
        }
    }

    /// The data directories physical restores kept aside that are still there (a daemon
    /// killed after the node was proven, before it removed the copy), for `leftovers`.
    pub(crate) fn kept_data_dirs(&self) -> Vec<String> {
        let Some(data_dir) = self.cfg.data_dir.as_deref() else {
            return Vec::new();
        };
        let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}{KEPT_SUFFIX}", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(parent) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter(|e| {
                e.file_name().to_str().is_some_and(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .map(|e| e.path().display().to_string())
            .collect();
        out.sort();
        out
    }

    /// The command removing the kept data directory `kept` by hand, when it is one.
    pub(crate) fn kept_dir_removal_command(&self, kept: &str) -> Option<String> {
        let ours = KeptStorage {
            target: DATA_DIR_TARGET.into(),
            live: self.cfg.data_dir.as_deref()?.display().to_string(),
            kept: kept.into(),
            bytes: 0,
        };
        self.own_kept(&ours).ok()?;
        splice_dr_pg_toolkit::names::shell_quotable(kept).then(|| format!("rm -rf -- '{kept}'"))
    }

    /// See [`splice_dr_plugin_api::Storage::restore_kept_storage`]: the kept data
    /// directory back in place and the server started on it.
    pub(crate) fn restore_kept_data_impl(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        let path = self.own_kept(kept)?;
        let server = self.server()?;
        self.put_back(ctx, &server, &path, RESTART_TIMEOUT)
    }

    /// See [`splice_dr_plugin_api::Storage::drop_kept_storage`].
    pub(crate) fn drop_kept_data_impl(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        let path = self.own_kept(kept)?;
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| BackendError::io(format!("removing {}", path.display()), e))?;
        }
        ctx.info(format!(
            "removed the kept data directory {}",
            path.display()
        ));
        Ok(())
    }
}

/// How long putting the kept data back waits for the server, when the caller gave no
/// timeout (start-up recovery, a flow's rollback).
const RESTART_TIMEOUT: Duration = Duration::from_secs(600);

/// `DATA_DIR.sdr_kept_<unix seconds>`, next to the data directory (same file system, so
/// keeping it is a rename).
fn kept_name(data_dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut name = data_dir.as_os_str().to_owned();
    name.push(format!("{KEPT_SUFFIX}{secs}"));
    PathBuf::from(name)
}

/// The pid in `data_dir/postmaster.pid` when that process is alive: the server runs.
/// A file left by a crashed server names a dead pid and reads as stopped.
fn server_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// A server with its own tablespaces keeps data outside its data directory, which a
/// plain base backup would write back to the same absolute paths: refused up front.
fn refuse_tablespaces(admin: &mut postgres::Client) -> Result<(), BackendError> {
    let rows = admin
        .query(
            "SELECT spcname FROM pg_catalog.pg_tablespace \
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1",
            &[],
        )
        .map_err(sql::db_err("listing tablespaces"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Err(BackendError::Config(format!(
        "the server has tablespaces outside its data directory ({}): physical backups of it \
         are not supported; use logical backups (backup_kind = \"logical\")",
        names.join(", ")
    )))
}

/// Bytes written under `dir` so far, for progress (0 while it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PostgresConfig;

    fn backend(data_dir: &str) -> PostgresBackend {
        let cfg: PostgresConfig = serde_json::from_value(serde_json::json!({
            "url": "postgresql://u@127.0.0.1/postgres",
            "data_dir": data_dir,
            "server_stop_command": "true",
            "server_start_command": "true",
            "physical_replaces_cluster": true,
        }))
        .expect("config");
        PostgresBackend::new(cfg).expect("backend")
    }

    fn kept(live: &str, kept: &str) -> KeptStorage {
        KeptStorage {
            target: DATA_DIR_TARGET.into(),
            live: live.into(),
            kept: kept.into(),
            bytes: 0,
        }
    }

    /// A kept data directory is removed or put back only when it is one this backend made
    /// of its own data directory: a journal or a caller naming any other path (a forged
    /// run record, `/`) gets an error and nothing is touched.
    #[test]
    fn only_its_own_kept_data_directory_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("main");
        let live = data.display().to_string();
        let own = format!("{live}.sdr_kept_1765080000");
        std::fs::create_dir_all(&own).unwrap();
        let b = backend(&live);
        let ctx = OpContext::detached(Default::default());
        for bad in [
            kept(&live, "/"),
            kept(&live, &format!("{live}.sdr_kept_")),
            kept(&live, &format!("{live}.sdr_kept_1/../../x")),
            kept(
                "/var/lib/postgresql/15/main",
                "/var/lib/postgresql/15/main.sdr_kept_1",
            ),
            KeptStorage {
                target: "postgres".into(),
                ..kept(&live, &own)
            },
        ] {
            let e = b.drop_kept_data_impl(&ctx, &bad).expect_err("refused");
            assert!(e.to_string().contains("not a data directory kept"), "{e}");
        }
        assert!(Path::new(&own).is_dir());
        b.drop_kept_data_impl(&ctx, &kept(&live, &own))
            .expect("its own");
        assert!(!Path::new(&own).exists());
    }

    /// A `postmaster.pid` left by a crashed server names a dead process: the server reads
    /// as stopped; one naming a live process (this test) reads as running.
    #[test]
    fn a_server_runs_while_its_pid_file_names_a_live_process() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(server_pid(tmp.path()), None);
        let pid_file = tmp.path().join("postmaster.pid");
        std::fs::write(&pid_file, format!("{}\n/data\n", std::process::id())).unwrap();
        assert_eq!(server_pid(tmp.path()), Some(std::process::id()));
        std::fs::write(&pid_file, "999999999\n").unwrap();
        assert_eq!(server_pid(tmp.path()), None);
    }

    #[test]
    fn without_the_servers_keys_nothing_physical_runs() {
        let cfg: PostgresConfig =
            serde_json::from_value(serde_json::json!({"url": "postgresql://u@h/postgres"}))
                .expect("config");
        let b = PostgresBackend::new(cfg).expect("backend");
        let caps = splice_dr_plugin_api::BackendInfo::capabilities(&b);
        assert!(!caps.databases.physical);
        let why = caps.databases.physical_unavailable.expect("a reason");
        assert!(why.contains("data_dir") && why.contains("logical"), "{why}");
        let ctx = OpContext::detached(Default::default());
        let e = b
            .base_backup_impl(&ctx, Path::new("/nonexistent"))
            .expect_err("refused");
        assert!(matches!(e, BackendError::Config(_)), "{e}");
    }
}
