//! Shared fixtures for the end-to-end tests: real Postgres databases with the kinds of
//! data a validator holds, exact table fingerprints, configs, and the real binary.
#![allow(dead_code)]

pub mod kill;
pub mod pg_cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use splice_dr_protocol::{ErrorCode, Reply, RunDetail};

/// A CLI `--json` answer read as its protocol view (`splice_dr_protocol`), so a renamed
/// field fails the test instead of reading as null.
pub fn view<T: serde::de::DeserializeOwned>(o: &Output) -> T {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not the expected --json answer ({e}): {}", text(o)))
}

/// Like [`view`], for a command that must have succeeded (the output is shown when not).
pub fn ok_view<T: serde::de::DeserializeOwned>(o: &Output) -> T {
    assert!(o.status.success(), "{}", text(o));
    view(o)
}

/// One reply line of the daemon's socket read as the protocol's [`Reply`].
pub fn reply_of(line: &str) -> Reply {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a reply line ({e}): {line}"))
}

/// Sends one request line (newline included) on a fresh connection to the daemon's
/// socket and reads the first reply line.
pub fn socket_reply(sock: &Path, line: &[u8]) -> Reply {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(line).unwrap();
    let mut reply = String::new();
    std::io::BufReader::new(s).read_line(&mut reply).unwrap();
    reply_of(&reply)
}

/// The `result` of an `ok` reply read as its protocol view (see [`view`]); fails the test
/// on an error reply.
pub fn answer<T: serde::de::DeserializeOwned>(reply: &Reply) -> T {
    match reply {
        Reply::Ok { result } => T::deserialize(result)
            .unwrap_or_else(|e| panic!("not the expected result ({e}): {result}")),
        other => panic!("expected an ok reply: {other:?}"),
    }
}

/// The code and message of an `error` reply; fails the test on any other reply.
pub fn refusal(reply: &Reply) -> (ErrorCode, &str) {
    match reply {
        Reply::Error { code, message } => (*code, message.as_str()),
        other => panic!("expected an error reply: {other:?}"),
    }
}

/// What the flow of a `--json` run returned: the `result` of the [`RunDetail`] it prints
/// (null when none). It stays JSON: flows return what they like (docs/PROTOCOL.md).
pub fn flow_result(o: &Output) -> serde_json::Value {
    view::<RunDetail>(o).result.unwrap_or_default()
}

/// Whether the reply is a final `ok`.
pub fn is_ok(reply: &Reply) -> bool {
    matches!(reply, Reply::Ok { .. })
}

/// Superuser URL for tests (see tests/pg-setup.sh).
pub fn pg_url() -> String {
    std::env::var("SPLICE_DR_TEST_PG_URL").unwrap_or_else(|_| {
        "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres".into()
    })
}

/// A connection to `db` on the test server.
pub fn connect(db: &str) -> postgres::Client {
    let mut cfg: postgres::Config = pg_url().parse().expect("SPLICE_DR_TEST_PG_URL");
    cfg.dbname(db);
    cfg.connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect {db}: {e} — run tests/pg-setup.sh"))
}

/// A unique name prefix for this test's databases.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// The validator and participant databases of one test node; dropped on drop.
pub struct NodeDbs {
    pub validator: String,
    pub participant: String,
}

impl NodeDbs {
    /// Creates both databases with fixture data; `participant_rows` sizes the big table.
    pub fn create(prefix: &str, participant_rows: u32) -> Self {
        let base = unique(prefix);
        let dbs = NodeDbs {
            validator: format!("{base}_v"),
            participant: format!("{base}_p-0"),
        };
        let mut admin = connect("postgres");
        for db in [&dbs.validator, &dbs.participant] {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{db}\""))
                .unwrap();
        }
        connect(&dbs.validator)
            .batch_execute(
                "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, attrs jsonb, created timestamptz DEFAULT now());
                 CREATE INDEX users_kind ON users ((attrs->>'kind'));
                 CREATE SEQUENCE round_counter START 100;
                 SELECT setval('round_counter', 4242);
                 INSERT INTO users (name, attrs)
                   SELECT 'user-' || g, jsonb_build_object('kind', g % 7, 'tags', jsonb_build_array(g, 'x'))
                   FROM generate_series(1, 2000) g;
                 CREATE TABLE blobs (id bigserial PRIMARY KEY, data bytea);
                 INSERT INTO blobs (data) SELECT sha256(g::text::bytea) FROM generate_series(1, 500) g;",
            )
            .unwrap();
        connect(&dbs.participant)
            .batch_execute(&format!(
                "CREATE TABLE contracts (id bigserial PRIMARY KEY, template text NOT NULL, payload jsonb, raw bytea);
                 CREATE INDEX contracts_template ON contracts (template);
                 INSERT INTO contracts (template, payload, raw)
                   SELECT 'Splice.Amulet:' || (g % 13), jsonb_build_object('amount', g * 1.5, 'owner', md5(g::text)),
                          decode(md5(g::text), 'hex')
                   FROM generate_series(1, {participant_rows}) g;"
            ))
            .unwrap();
        dbs
    }

    /// Deletes and changes rows in both databases (what a bad upgrade might do).
    pub fn damage(&self) {
        connect(&self.validator)
            .batch_execute(
                "DELETE FROM users WHERE id % 3 = 0; UPDATE users SET attrs = '{}' WHERE id < 50;
                 SELECT nextval('round_counter'); DELETE FROM blobs;",
            )
            .unwrap();
        connect(&self.participant)
            .batch_execute("DELETE FROM contracts WHERE id % 2 = 0; INSERT INTO contracts (template) VALUES ('new');")
            .unwrap();
    }

    /// Exact content of both databases: md5 of every table's ordered rows plus sequences.
    pub fn fingerprint(&self) -> Vec<(String, String)> {
        let mut out = fingerprint_db(&self.validator);
        out.extend(fingerprint_db(&self.participant));
        out
    }
}

impl Drop for NodeDbs {
    fn drop(&mut self) {
        let mut admin = connect("postgres");
        let like = self.validator.trim_end_matches("_v").to_string();
        let rows = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%'",
                &[&like],
            )
            .unwrap_or_default();
        for row in rows {
            let name: String = row.get(0);
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

/// md5 per table (rows ordered by their text form) and last_value per sequence.
pub fn fingerprint_db(db: &str) -> Vec<(String, String)> {
    let mut c = connect(db);
    let mut out = Vec::new();
    let tables = c
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap();
    for t in tables {
        let name: String = t.get(0);
        let row = c
            .query_one(&format!("SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), 'empty') FROM \"{name}\" t"), &[])
            .unwrap();
        out.push((format!("{db}.{name}"), row.get::<_, String>(0)));
    }
    let seqs = c
        .query("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1", &[])
        .unwrap();
    for s in seqs {
        let v: Option<i64> = s.get(1);
        out.push((
            format!("{db}.seq.{}", s.get::<_, String>(0)),
            format!("{v:?}"),
        ));
    }
    out
}

/// Names of databases on the server starting with `prefix`.
pub fn databases_like(prefix: &str) -> Vec<String> {
    connect("postgres")
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY 1",
            &[&prefix],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A test site: config, state, repository and socket under one temp directory.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// How the node's backend is provided.
pub enum BackendChoice {
    /// Built in (statically linked).
    Builtin,
    /// The postgres backend built as a cdylib, loaded through the C ABI.
    Plugin(PathBuf),
}

impl Site {
    /// Writes a config for one node on `dbs`; `extra_daemon` is appended to `[daemon]`.
    pub fn new(dbs: &NodeDbs, backend: BackendChoice, extra_daemon: &str) -> Site {
        Site::with(
            &dbs.validator,
            &dbs.participant,
            backend,
            extra_daemon,
            "",
            "",
        )
    }

    /// Like [`Site::new`] for any two databases; `extra_repo` goes into `[repository]`,
    /// `extra_node` after the node's backend table (e.g. a `[node.validator]` table).
    pub fn with(
        validator: &str,
        participant: &str,
        backend: BackendChoice,
        extra_daemon: &str,
        extra_repo: &str,
        extra_node: &str,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut u: url_parts::Parts = url_parts::parse(&pg_url());
        std::fs::write(
            root.join("pg-password"),
            format!("{}\n", u.password.take().unwrap_or_default()),
        )
        .unwrap();
        let pg_table = format!(
            "url = \"postgresql://{}@{}:{}/postgres\"\npassword_file = \"pg-password\"\nvalidator_db = \"{}\"\nparticipant_db = \"{}\"\n",
            u.user, u.host, u.port, validator, participant
        );
        let node = match backend {
            BackendChoice::Builtin => {
                format!("backend = \"postgres\"\nmigration_id = 0\n\n[node.postgres]\n{pg_table}")
            }
            BackendChoice::Plugin(so) => {
                let cfg = pg_table.replace(
                    "password_file = \"pg-password\"",
                    &format!("password_file = \"{}\"", root.join("pg-password").display()),
                );
                format!("backend = \"plugin\"\nmigration_id = 0\n\n[node.plugin]\npath = \"{}\"\n\n[node.plugin.config]\n{cfg}", so.display())
            }
        };
        let text = format!(
            "[daemon]\nsocket = \"splice-dr.sock\"\nstate_dir = \"state\"\n{extra_daemon}\n\n[repository]\npath = \"repo\"\nmax_age = \"30d\"\n{extra_repo}\n\n[[node]]\nname = \"validator-1\"\n{node}\n{extra_node}\n"
        );
        let config = root.join("splice-dr.toml");
        std::fs::write(&config, text).unwrap();
        Site { dir, config }
    }

    /// A site on `dbs` whose `scripts_dir` is `flows/`, holding `flows` (file name, text);
    /// `extra_daemon` is appended to `[daemon]`, `extra_node` after the node's backend table.
    pub fn with_flows(
        dbs: &NodeDbs,
        extra_daemon: &str,
        extra_node: &str,
        flows: &[(&str, &str)],
    ) -> Site {
        let site = Site::with(
            &dbs.validator,
            &dbs.participant,
            BackendChoice::Builtin,
            &format!("scripts_dir = \"flows\"\n{extra_daemon}"),
            "",
            extra_node,
        );
        std::fs::create_dir_all(site.path("flows")).unwrap();
        for (name, text) in flows {
            std::fs::write(site.path("flows").join(name), text).unwrap();
        }
        site
    }

    /// Path under the site directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The splice-dr binary with `--config` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config").arg(&self.config).stdin(Stdio::null());
        c
    }

    /// Runs the CLI and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `splice-dr --json ARGS`, which must succeed, and reads its answer as the
    /// protocol view `T` (`StatusView`, `Vec<RunSummary>`, `BackupList`...).
    pub fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        ok_view(&self.cli(&all))
    }

    /// Starts the daemon and waits until it answers on its socket. The process is killed
    /// when the returned handle drops, so a failing test leaves no daemon behind.
    pub fn start_daemon(&self) -> DaemonProcess {
        self.start_daemon_with(self.cmd())
    }

    /// Like [`Site::start_daemon`] with `cmd`: the binary with `--config`, perhaps run as
    /// another user.
    pub fn start_daemon_with(&self, mut cmd: Command) -> DaemonProcess {
        let log = std::fs::File::create(self.path("daemon.log")).unwrap();
        let child = cmd
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = self.path("splice-dr.sock");
        wait_for(Duration::from_secs(20), "the daemon to answer", || {
            daemon_answers(&sock)
        });
        DaemonProcess {
            child,
            stopped: false,
        }
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }
}

/// Whether a daemon answers `ping` on `sock`. The socket accepts connections from the
/// moment it is bound, before start-up recovery, retention and the listeners are done;
/// only the answer says the daemon is ready, so a test never races its start-up.
pub fn daemon_answers(sock: &Path) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"{\"cmd\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).is_ok() && line.contains("\"ok\"")
}

/// Polls `cond` until it holds or `limit` passes (then panics naming `what`).
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// stdout and stderr of a CLI run as text, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A daemon started by a test; killed on drop unless [`stop`] ended it.
pub struct DaemonProcess {
    child: Child,
    stopped: bool,
}

impl DaemonProcess {
    /// Wraps a daemon a test spawned itself (killed on drop like the others).
    pub fn from_child(child: Child) -> Self {
        DaemonProcess {
            child,
            stopped: false,
        }
    }
}

impl std::ops::Deref for DaemonProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for DaemonProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGTERM and waits for exit.
pub fn stop(mut daemon: DaemonProcess) {
    daemon.stopped = true;
    let child = &mut daemon.child;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Just enough URL parsing to rewrite the test URL into config fields.
pub mod url_parts {
    /// The parts of a `postgresql://user:pass@host:port/db` URL.
    pub struct Parts {
        pub user: String,
        pub password: Option<String>,
        pub host: String,
        pub port: String,
    }

    /// Parses the test URL.
    pub fn parse(url: &str) -> Parts {
        let rest = url.split("://").nth(1).unwrap();
        let (auth, hostpart) = rest.split_once('@').unwrap();
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string())),
            None => (auth.to_string(), None),
        };
        let hostport = hostpart.split('/').next().unwrap();
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
        Parts {
            user,
            password,
            host: host.into(),
            port: port.into(),
        }
    }
}

/// The `splice-dr` binary these tests drive: `target/<profile>/splice-dr`, next to the test
/// binary's `deps/` directory. The tests live in their own crate, so cargo does not build
/// the binary for them: tests/run.sh builds the workspace first.
pub fn bin() -> PathBuf {
    // Looked up and checked once per test binary, not on every CLI call.
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_bin).clone()
}

fn find_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("splice-dr");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} is missing: build it with `cargo build -p splice-dr` (tests/run.sh does)",
            bin.display()
        )
    };
    // The library these tests link was rebuilt after the binary: the daemon changed and
    // the binary under test is the old one.
    if let Some(lib) = newest_daemon_lib(&profile_dir.join("deps")) {
        assert!(
            lib <= built,
            "{} is older than the splice-dr library the tests were built with: rebuild it \
             with `cargo build -p splice-dr` (tests/run.sh does)",
            bin.display()
        );
    }
    bin
}

/// When the newest build of the splice-dr library (`libsplice_dr-*.rlib`) was written.
fn newest_daemon_lib(deps: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(deps)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libsplice_dr-") && name.ends_with(".rlib")
        })
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()
}

/// The postgres backend's cdylib, built by cargo for this test run.
pub fn postgres_plugin_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let so = profile_dir.join("libsplice_dr_postgres.so");
    assert!(
        so.exists(),
        "{} not built: run `cargo build -p splice-dr-postgres` first",
        so.display()
    );
    so
}

/// Replaces a file of a sealed backup with `bytes` and rewrites its checksum and size in the
/// manifest, so that the repository's verification passes and only restoring can notice.
pub fn replace_and_reseal(backup_dir: &Path, rel: &str, bytes: &[u8]) {
    use sha2::Digest;
    std::fs::write(backup_dir.join(rel), bytes).unwrap();
    let mpath = backup_dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let sum = hex::encode(sha2::Sha256::digest(bytes));
    let entry = m["files"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["path"] == rel)
        .unwrap_or_else(|| panic!("{rel} is not in the manifest"));
    entry["sha256"] = serde_json::Value::String(sum);
    entry["size"] = serde_json::Value::from(bytes.len() as u64);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    resign(&mpath, &backup_dir.join("../../state/keys/signing.key"));
}

/// Signs a hand-edited manifest again with a site's signing key (test sites keep it at
/// `state/keys/signing.key`, beside `repo/`), as the daemon signs what it writes.
pub fn resign(manifest_path: &Path, key_path: &Path) {
    let mut m: splice_dr_repo::Manifest =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let key = splice_dr_repo::trust::read_key(key_path).unwrap();
    splice_dr_repo::trust::Keyring::from_keys(Some(key), vec![]).sign(&mut m);
    std::fs::write(manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// The largest table data file of a directory-format dump (not its table of contents).
pub fn largest_data_file(dump_dir: &Path) -> PathBuf {
    std::fs::read_dir(dump_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "gz" || x == "dat") && !p.ends_with("toc.dat")
        })
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a table data file")
}
