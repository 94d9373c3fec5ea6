//! A scratch PostgreSQL 15 server of a test's own (initdb into a temporary directory as
//! the `postgres` user, its own port, a `REPLICATION` role over scram), and a site whose
//! one node is that server: what the physical-backup tests share.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const ROLE: &str = "sdr_dr";
pub const PASSWORD: &str = "sdr-dr-pw";

/// A scratch PostgreSQL server of its own: data directory, socket and log in a temporary
/// directory, owned by `postgres`; stopped (immediate) and removed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("sdr-physical-")
            .tempdir_in("/var/tmp")
            .unwrap();
        sh(&format!(
            "chmod 755 {0} && chown postgres: {0}",
            dir.path().display()
        ));
        let port = free_port();
        let c = Cluster { dir, port };
        as_postgres(&format!(
            "{BIN}/initdb -D {} --auth-local=trust --auth-host=scram-sha-256 -U postgres \
             --wal-segsize=1 >/dev/null",
            c.data().display()
        ));
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 4\nfsync = off\n",
            c.dir.path().display()
        );
        append(&c.data().join("postgresql.conf"), &conf);
        std::fs::write(
            c.data().join("pg_hba.conf"),
            format!(
                "local all all trust\nhost all {ROLE} 127.0.0.1/32 scram-sha-256\n\
                 host replication {ROLE} 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        sh(&c.start_command());
        // The role the node's URL names: it owns the node's databases, may stream a base
        // backup (REPLICATION) and create staging databases (CREATEDB, logical restores);
        // no superuser.
        for sql in [
            format!("CREATE ROLE {ROLE} LOGIN CREATEDB REPLICATION PASSWORD '{PASSWORD}'"),
            format!("CREATE DATABASE validator OWNER {ROLE}"),
            format!("CREATE DATABASE \"participant-0\" OWNER {ROLE}"),
        ] {
            c.psql("postgres", &sql);
        }
        for (db, rows) in [("validator", 300), ("participant-0", 2000)] {
            c.client(db)
                .batch_execute(&format!(
                    "CREATE TABLE t (id bigserial PRIMARY KEY, v text NOT NULL, j jsonb);
                     CREATE INDEX t_v ON t (v);
                     INSERT INTO t (v, j) SELECT md5(g::text), jsonb_build_object('g', g)
                       FROM generate_series(1, {rows}) g;"
                ))
                .unwrap();
        }
        c
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn start_command(&self) -> String {
        format!(
            "runuser -u postgres -- {BIN}/pg_ctl -D {} -l {} -w -t 60 start",
            self.data().display(),
            self.log().display()
        )
    }

    pub fn stop_command(&self) -> String {
        format!(
            "runuser -u postgres -- {BIN}/pg_ctl -D {} -m fast -w -t 60 stop",
            self.data().display()
        )
    }

    /// SQL as the server's superuser over its socket.
    pub fn psql(&self, db: &str, sql: &str) {
        as_postgres(&format!(
            "{BIN}/psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -d '{db}' -c \"{}\"",
            self.dir.path().display(),
            self.port,
            sql.replace('"', "\\\"")
        ));
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(ROLE)
            .password(PASSWORD)
            .dbname(db);
        cfg.connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect {db} on port {}: {e}", self.port))
    }

    /// md5 of every row of both databases' table, in order.
    pub fn digests(&self) -> Vec<String> {
        ["validator", "participant-0"]
            .iter()
            .map(|db| {
                self.client(db)
                    .query_one(
                        "SELECT count(*)::text || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM t",
                        &[],
                    )
                    .unwrap()
                    .get(0)
            })
            .collect()
    }

    /// Rows written, changed and deleted after a backup.
    pub fn change_rows(&self) {
        for db in ["validator", "participant-0"] {
            self.client(db)
                .batch_execute(
                    "DELETE FROM t WHERE id % 3 = 0; UPDATE t SET v = 'changed' WHERE id < 20;
                     INSERT INTO t (v) SELECT 'after-' || g FROM generate_series(1, 50) g;",
                )
                .unwrap();
        }
    }

    /// Whether the server answers on its port.
    pub fn running(&self) -> bool {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(ROLE)
            .password(PASSWORD)
            .dbname("postgres")
            .connect_timeout(std::time::Duration::from_secs(5));
        cfg.connect(postgres::NoTls).is_ok()
    }

    /// Data directories a restore kept next to the live one and did not remove.
    pub fn kept_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("data.sdr_kept_"))
            .collect()
    }

    /// A site whose one node is this server, physical backups by default. `start` is the
    /// node's `server_start_command`, `stop` its `server_stop_command`.
    pub fn site(&self, start: &str, stop: &str) -> Site {
        self.site_with(start, stop, "", "")
    }

    /// [`Cluster::site`] with `node_keys` added to the `[[node]]` table and `extra` (more
    /// tables) at the end.
    pub fn site_with(&self, start: &str, stop: &str, node_keys: &str, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg-password"), format!("{PASSWORD}\n")).unwrap();
        let physical = format!(
            "data_dir = \"{data}\"\nserver_stop_command = \"{stop}\"\n\
             server_start_command = \"{start}\"\nphysical_replaces_cluster = true\n",
            data = self.data().display(),
            stop = stop.replace('"', "\\\""),
            start = start.replace('"', "\\\""),
        );
        let config = dir.path().join("splice-dr.toml");
        std::fs::write(
            &config,
            self.config_text(
                &format!("backup_kind = \"physical\"\n{node_keys}"),
                &physical,
                extra,
            ),
        )
        .unwrap();
        Site { dir, config }
    }

    /// The config of a site whose one node is this server: `node_keys` go into the
    /// `[[node]]` table, `pg_keys` into `[node.postgres]` after the connection's, `extra`
    /// at the end (`[[node.drill_check]]`, `[metrics]`...).
    pub fn config_text(&self, node_keys: &str, pg_keys: &str, extra: &str) -> String {
        format!(
            r#"[daemon]
socket = "splice-dr.sock"
state_dir = "state"

[repository]
path = "repo"
max_age = "30d"

[[node]]
name = "validator-1"
backend = "postgres"
migration_id = 0
{node_keys}
[node.postgres]
url = "postgresql://{ROLE}@127.0.0.1:{port}/postgres"
password_file = "pg-password"
validator_db = "validator"
participant_db = "participant-0"
bin_dir = "{BIN}"
{pg_keys}
{extra}
"#,
            port = self.port,
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

pub fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "`{script}`: {}", text(&out));
}

pub fn as_postgres(script: &str) {
    sh(&format!(
        "runuser -u postgres -- sh -c '{}'",
        script.replace('\'', "'\\''")
    ));
}

pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A port nothing listens on now (the kernel's choice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Takes a backup (the node's kind unless `kind`), which must succeed; returns its id.
pub fn backup(site: &Site, kind: Option<&str>) -> String {
    let mut args = vec!["--json", "backup"];
    if let Some(k) = kind {
        args.extend(["--kind", k]);
    }
    let out = site.cli(&args);
    assert!(out.status.success(), "{}", text(&out));
    flow_result(&out)["id"]
        .as_str()
        .expect("backup id")
        .to_string()
}

/// The biggest regular file under `dir` (a table's heap).
pub fn largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if best.as_ref().is_none_or(|(n, _)| m.len() > *n) {
                best = Some((m.len(), e.path()));
            }
        }
    }
    best.expect("a file").1
}

impl Cluster {
    /// The pid the node's server runs as (its `postmaster.pid`).
    pub fn postmaster_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }
}

/// The site's files handed to the `postgres` user, which runs its CLI and daemon from now
/// on ([`as_server_user`]): PostgreSQL refuses to run as root, and a drill of a physical
/// backup starts a server.
pub fn give_to_postgres(site: &Site) {
    sh(&format!("chown -R postgres: {}", site.dir.path().display()));
}

/// The splice-dr binary with `--config`, run as the `postgres` user. `setpriv` execs in
/// place (no parent left between), so the child's pid is the daemon's own.
pub fn as_server_user(site: &Site) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(bin())
    .arg("--config")
    .arg(&site.config)
    .env("USER", "postgres")
    .env("HOME", "/var/lib/postgresql")
    .stdin(Stdio::null());
    c
}

/// The CLI run as the `postgres` user.
pub fn cli_as_server_user(site: &Site, args: &[&str]) -> Output {
    as_server_user(site).args(args).output().unwrap()
}

/// The daemon run as the `postgres` user, once it answers on its socket.
pub fn daemon_as_server_user(site: &Site) -> DaemonProcess {
    site.start_daemon_with(as_server_user(site))
}

/// Where drills of physical backups put their scratch directories.
pub fn drills_dir(site: &Site) -> PathBuf {
    site.path("state").join("drills")
}

/// The scratch directories left under [`drills_dir`].
pub fn scratch_dirs(site: &Site) -> Vec<String> {
    std::fs::read_dir(drills_dir(site))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the processes working inside [`drills_dir`] (a scratch server and its children).
pub fn scratch_processes(site: &Site) -> Vec<u32> {
    let dir = drills_dir(site);
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect()
}
