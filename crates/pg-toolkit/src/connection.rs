//! How to reach the node's Postgres, both for SQL (the `postgres` crate) and for the
//! libpq tools (`pg_dump`, `pg_restore`).
//!
//! The URL is parsed once; the tools receive a `--dbname=` conninfo string without the
//! password and the password through `PGPASSWORD`, so it never appears on a command line
//! (visible in `ps`), in a log line or in an error. The TLS settings (`sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`, with libpq's meanings: see [`crate::tls`]) apply to
//! splice-dr's own sessions and reach the tools as `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGSSLCERT` and `PGSSLKEY`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::Client;
use splice_dr_plugin_api::BackendError;

use crate::tls::{RustlsConnect, TlsParams};

/// Database the admin connection uses when the URL names none.
const DEFAULT_ADMIN_DB: &str = "postgres";
/// Connect timeout used when the URL does not set one: an unreachable server should fail a
/// step, not hang it.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parsed connection settings, with the password held apart from everything printable.
#[derive(Clone)]
pub struct ConnSettings {
    base: postgres::Config,
    password: Option<String>,
    tls: TlsParams,
    /// Built from `tls` once; `None` for `sslmode=disable`.
    connector: Option<RustlsConnect>,
}

impl std::fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSettings")
            .field("conninfo", &self.conninfo(&self.admin_db()))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Quotes a libpq conninfo value: single quotes, with `\` and `'` backslash-escaped.
pub(crate) fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl ConnSettings {
    /// Parses `url` (a `postgresql://` URL or a key=value conninfo), reads the TLS files it
    /// names, and reads the password from `password_file` when given, which overrides any
    /// password in the URL.
    pub fn new(url: &str, password_file: Option<&Path>) -> Result<Self, BackendError> {
        let (tls, mut base) = parse_url(url).map_err(BackendError::Config)?;
        let connector = tls
            .connector()
            .map_err(|e| BackendError::Config(format!("`url`: {e}")))?;
        if base.get_connect_timeout().is_none() {
            base.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let mut password = base
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        if let Some(file) = password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                BackendError::Config(format!(
                    "`password_file` {} cannot be read: {e}",
                    file.display()
                ))
            })?;
            let line = text.lines().next().unwrap_or_default().trim().to_string();
            if line.is_empty() {
                return Err(BackendError::Config(format!(
                    "`password_file` {} is empty",
                    file.display()
                )));
            }
            password = Some(line);
        }
        Ok(ConnSettings {
            base,
            password,
            tls,
            connector,
        })
    }

    /// The database the URL names, where administrative statements (CREATE/ALTER/DROP
    /// DATABASE) run; `postgres` when it names none.
    pub fn admin_db(&self) -> String {
        self.base
            .get_dbname()
            .unwrap_or(DEFAULT_ADMIN_DB)
            .to_string()
    }

    /// The role the URL names, if it names one: a role a copy of the server's data knows
    /// (a drill of a physical backup signs in to the copy with it).
    pub fn user(&self) -> Option<&str> {
        self.base.get_user()
    }

    /// Opens an SQL session on `dbname` (TCP with or without TLS as `sslmode` says, or a
    /// Unix socket).
    /// The whole handshake is bounded by the connect timeout, per host, as libpq's
    /// `connect_timeout` is for the tools (see [`crate::handshake`]).
    pub fn connect(&self, dbname: &str) -> Result<Client, BackendError> {
        let mut cfg = self.base.clone();
        cfg.dbname(dbname);
        if let Some(p) = &self.password {
            cfg.password(p.as_bytes());
        }
        cfg.application_name("splice-dr");
        let per_host = self
            .base
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let hosts = self.base.get_hosts().len().max(1) as u32;
        crate::handshake::connect(
            cfg,
            self.connector.clone(),
            &self.server(),
            per_host * hosts,
            &format!("connecting to database {dbname}"),
        )
    }

    /// `host:port` (comma-separated for several hosts), for messages.
    pub fn server(&self) -> String {
        let ports = self.base.get_ports();
        self.base
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Opens an SQL session on the admin database.
    pub fn connect_admin(&self) -> Result<Client, BackendError> {
        self.connect(&self.admin_db())
    }

    /// libpq conninfo for `dbname`, without the password (safe to log and to put in argv).
    pub fn conninfo(&self, dbname: &str) -> String {
        let mut parts = Vec::new();
        let hosts: Vec<String> = self
            .base
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect();
        parts.push(format!("host={}", conninfo_value(&hosts.join(","))));
        let ports = self.base.get_ports();
        if !ports.is_empty() {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            parts.push(format!("port={}", conninfo_value(&ports.join(","))));
        }
        if let Some(user) = self.base.get_user() {
            parts.push(format!("user={}", conninfo_value(user)));
        }
        parts.push(format!("dbname={}", conninfo_value(dbname)));
        if let Some(t) = self.base.get_connect_timeout() {
            parts.push(format!("connect_timeout={}", t.as_secs().max(1)));
        }
        parts.push("application_name=splice-dr".into());
        parts.join(" ")
    }

    /// Environment for a libpq tool: the password, if any, as `PGPASSWORD`, and the TLS
    /// settings (`PGSSLMODE`, and `PGSSLROOTCERT`/`PGSSLCERT`/`PGSSLKEY` when set).
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .password
            .iter()
            .map(|p| ("PGPASSWORD".to_string(), p.clone()))
            .collect();
        env.extend(self.tls.child_env());
        env
    }

    /// The `sslmode` in force.
    pub fn ssl_mode(&self) -> crate::tls::SslMode {
        self.tls.mode
    }
}

/// Parses a connection string as libpq would: the TLS keys apart (the driver knows only
/// some of them), the rest by the driver. Errs with a sentence naming `url`. Does not read
/// any file.
pub fn parse_url(url: &str) -> Result<(TlsParams, postgres::Config), String> {
    let (tls, rest) = TlsParams::split(url).map_err(|e| format!("`url`: {e}"))?;
    let mut base = postgres::Config::from_str(&rest)
        .map_err(|e| format!("`url` is not a valid Postgres URL: {e}"))?;
    if base.get_hosts().is_empty() {
        return Err("`url` names no host: give a TCP host or a Unix socket directory".into());
    }
    // The driver negotiates (disable, prefer, require); the certificate checks are the
    // connector's. Over Unix sockets libpq never uses TLS, whatever sslmode says.
    let unix_only = base.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    base.ssl_mode(match tls.mode {
        _ if unix_only => SslMode::Disable,
        crate::tls::SslMode::Disable => SslMode::Disable,
        crate::tls::SslMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    Ok((tls, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_url_to_conninfo_without_password() {
        let c = ConnSettings::new("postgresql://admin:s3cret@db.example:6543/postgres", None)
            .expect("parse");
        let info = c.conninfo("participant-0");
        assert_eq!(
            info,
            "host='db.example' port='6543' user='admin' dbname='participant-0' \
             connect_timeout=10 application_name=splice-dr"
        );
        assert!(!info.contains("s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            c.child_env(),
            vec![
                ("PGPASSWORD".to_string(), "s3cret".to_string()),
                ("PGSSLMODE".to_string(), "prefer".to_string())
            ]
        );
        assert_eq!(c.admin_db(), "postgres");
    }

    #[test]
    fn unix_socket_and_quoting() {
        let c = ConnSettings::new("postgresql://cn%20admin@%2Fvar%2Frun%2Fpostgresql", None)
            .expect("parse");
        let info = c.conninfo("it's");
        assert!(info.starts_with("host='/var/run/postgresql' "), "{info}");
        assert!(info.contains("user='cn admin'"), "{info}");
        assert!(info.contains(r"dbname='it\'s'"), "{info}");
        assert_eq!(
            c.child_env(),
            vec![("PGSSLMODE".to_string(), "prefer".to_string())]
        );
    }

    #[test]
    fn password_file_overrides_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "  from-file \nignored\n").expect("write");
        let c = ConnSettings::new("postgresql://u:from-url@h/db", Some(&f)).expect("parse");
        assert_eq!(
            c.child_env()[0],
            ("PGPASSWORD".to_string(), "from-file".to_string())
        );
        let missing = ConnSettings::new("postgresql://u@h/db", Some(&dir.path().join("nope")));
        assert!(matches!(missing, Err(BackendError::Config(m)) if m.contains("password_file")));
    }

    #[test]
    fn bad_url_is_a_config_error() {
        let e = ConnSettings::new("postgresql://h:notaport/db", None).expect_err("bad");
        assert!(matches!(e, BackendError::Config(_)), "{e:?}");
    }
}
