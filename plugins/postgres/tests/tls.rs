//! splice-dr's own Postgres sessions and its tools over TLS, against a second, scratch
//! Postgres 15 cluster that accepts TLS only (`hostssl` trust, `hostnossl` reject) with a
//! server certificate a test CA signed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::tls::TestCa;
use common::Recorder;
use splice_dr_plugin_api::Databases;
use splice_dr_postgres::{ConnSettings, PostgresBackend};

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// Postgres refuses to run as root: as root the cluster runs as `nobody`.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A TLS-only cluster in a temp directory, stopped on drop.
struct TlsCluster {
    data: PathBuf,
    port: u16,
    as_nobody: bool,
}

impl TlsCluster {
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(Path::new(BIN).join(name));
        c.stdin(Stdio::null());
        if self.as_nobody {
            c.uid(NOBODY).gid(NOBODY);
        }
        c
    }

    /// initdb, the server certificate and key signed by `ca`, TLS-only pg_hba (`cnadmin`
    /// trusted, `certuser` by client certificate), start.
    fn start(dir: &Path, ca: &Path, server_cert: &Path, server_key: &Path) -> TlsCluster {
        let as_nobody = is_root();
        let data = dir.join("data");
        let sock = dir.join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir_all(d).expect("mkdir");
            if as_nobody {
                std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = TlsCluster {
            data: data.clone(),
            port,
            as_nobody,
        };
        let out = cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "cnadmin", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (from, to) in [
            (server_cert, "server.crt"),
            (server_key, "server.key"),
            (ca, "ca.crt"),
        ] {
            let dest = data.join(to);
            std::fs::copy(from, &dest).expect("copy server cert");
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if as_nobody {
                std::os::unix::fs::chown(&dest, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostnossl all all 127.0.0.1/32 reject\n\
             hostssl all cnadmin 127.0.0.1/32 trust\n\
             hostssl all certuser 127.0.0.1/32 cert\n",
        )
        .expect("pg_hba");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c ssl=on \
             -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file=ca.crt",
            sock.display()
        );
        let out = cluster
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.join("sock").join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("sock").join("postgres.log")).unwrap_or_default()
        );
        cluster
    }

    /// `user`'s URL on `host` with `params` (`sslmode=…&sslrootcert=…`).
    fn url_as(&self, user: &str, host: &str, params: &str) -> String {
        format!("postgresql://{user}@{host}:{}/postgres?{params}", self.port)
    }

    /// The superuser's URL on `host` with `params`.
    fn url(&self, host: &str, params: &str) -> String {
        self.url_as("cnadmin", host, params)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The error of connecting with `url`, as the backend reports it.
fn connect_error(url: &str) -> String {
    let conn = ConnSettings::new(url, None).expect("settings");
    match conn.connect_admin() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{url} connected"),
    }
}

#[test]
fn sessions_and_tools_over_tls_with_libpq_sslmodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    let ca = TestCa::new(&certs, "pg-ca");
    let other = TestCa::new(&certs, "other-ca");
    // The server's certificate names `localhost` only: through 127.0.0.1 the chain is
    // good and the name is not.
    let server = ca.issue("server", "localhost", &["DNS:localhost"]);
    let client = ca.issue("client", "certuser", &[]);
    let cluster = TlsCluster::start(dir.path(), &ca.cert, &server.cert, &server.key);
    let root = format!("sslrootcert={}", ca.cert.display());

    // verify-full with the CA: the daemon's own sessions work, and are encrypted.
    let url = cluster.url("localhost", &format!("sslmode=verify-full&{root}"));
    let conn = ConnSettings::new(&url, None).expect("settings");
    let mut admin = conn.connect_admin().expect("verify-full connects");
    let ssl: bool = admin
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the session is encrypted");
    for sql in [
        "CREATE ROLE certuser LOGIN SUPERUSER",
        "CREATE DATABASE validator",
        "CREATE DATABASE \"participant-0\"",
    ] {
        admin.batch_execute(sql).expect(sql);
    }
    drop(admin);
    let mut v = conn.connect("validator").expect("connect validator");
    v.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1234);",
    )
    .expect("fixture");
    drop(v);

    // A backup as `certuser`, whom the server admits by client certificate only: the
    // row counts (the daemon's session) and pg_dump (libpq, through PGSSLCERT/PGSSLKEY/
    // PGSSLROOTCERT/PGSSLMODE) both present the certificate and check the server's.
    let cert_url = cluster.url_as(
        "certuser",
        "localhost",
        &format!(
            "sslmode=verify-full&{root}&sslcert={}&sslkey={}",
            client.cert.display(),
            client.key.display()
        ),
    );
    let b = PostgresBackend::from_json(serde_json::json!({ "url": cert_url, "bin_dir": BIN }))
        .expect("backend");
    let rec = Recorder::new();
    let out = dir.path().join("dump");
    let info = b.dump(&rec.ctx, "validator", &out).expect("dump over TLS");
    let t = info
        .tables
        .iter()
        .find(|t| t.table == "t")
        .expect("table t counted");
    assert_eq!(t.rows, 1234);
    b.check_dump(&rec.ctx, &out).expect("the dump reads back");
    // Without the client certificate the same user is refused.
    let e = connect_error(&cluster.url_as(
        "certuser",
        "localhost",
        &format!("sslmode=verify-full&{root}"),
    ));
    assert!(e.contains("requires a valid client certificate"), "{e}");

    // verify-full through a name the certificate does not list fails naming it;
    // verify-ca checks the chain only and passes.
    let e = connect_error(&cluster.url("127.0.0.1", &format!("sslmode=verify-full&{root}")));
    assert!(e.contains("does not name host `127.0.0.1`"), "{e}");
    ConnSettings::new(
        &cluster.url("127.0.0.1", &format!("sslmode=verify-ca&{root}")),
        None,
    )
    .expect("settings")
    .connect_admin()
    .expect("verify-ca connects whatever the name");

    // require encrypts without checking: no root needed…
    ConnSettings::new(&cluster.url("127.0.0.1", "sslmode=require"), None)
        .expect("settings")
        .connect_admin()
        .expect("require connects without a root");
    // …but with sslrootcert set, require is verify-ca (libpq): another CA is refused.
    let wrong_root = format!("sslrootcert={}", other.cert.display());
    let e = connect_error(&cluster.url("127.0.0.1", &format!("sslmode=require&{wrong_root}")));
    assert!(e.contains("certificate not trusted"), "{e}");

    // verify-full with the wrong CA: the certificate problem is named, with the fix.
    let e = connect_error(&cluster.url("localhost", &format!("sslmode=verify-full&{wrong_root}")));
    assert!(
        e.contains("certificate not trusted") && e.contains("set sslrootcert"),
        "{e}"
    );

    // disable: the server refuses the plain session, saying so.
    let e = connect_error(&cluster.url("127.0.0.1", "sslmode=disable"));
    assert!(
        e.contains("no encryption") && e.contains("pg_hba.conf"),
        "{e}"
    );
}
