//! A real docker-compose validator node per test: the real Splice bundle's compose files,
//! unchanged, assembled with the stand-ins of tests/compose/bundle into a directory of the
//! test's own (tests/compose/assemble.sh), started with its start.sh under a unique project
//! name; a simulated SV on the host (outside the volumes tests wipe), and helpers to read and
//! change the data inside the postgres container. The validator is reached as the runbook
//! reaches it, through the bundle's nginx on port 80 as `wallet.localhost`; port 80 is one
//! per host, so one node runs at a time (a lock across test processes, and the nextest
//! group `compose`). Everything is removed on drop, volumes included.
#![allow(dead_code)]

use splice_dr_protocol::{RunDetail, RunSummary};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use splice_sim::sv::{RunningSv, Sv};
use splice_sim::SvConfig;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The stand-ins' directory (start.sh, stop.sh, nginx config, the test images' override).
pub fn standins_dir() -> PathBuf {
    root().join("tests/compose/bundle")
}

/// A bundle directory for one node: the real Splice compose files and the stand-ins, with
/// `sim_args` as the validator's extra splice-sim flags (a `command:` in the override).
pub fn assemble_bundle(sim_args: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sdr-bundle-")
        .tempdir()
        .unwrap();
    let out = Command::new("bash")
        .arg(root().join("tests/compose/assemble.sh"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "assembling the bundle failed:\n{}",
        super::common::text(&out)
    );
    if !sim_args.is_empty() {
        let path = dir.path().join("compose.override.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let image = "    image: splice-dr-test/validator-app:sim\n";
        assert!(
            text.contains(image),
            "the override names the validator image"
        );
        let args: Vec<String> = sim_args
            .split_whitespace()
            .map(|a| format!("{a:?}"))
            .collect();
        let text = text.replace(
            image,
            &format!("{image}    command: [{}]\n", args.join(", ")),
        );
        std::fs::write(&path, text).unwrap();
    }
    dir
}

/// The host's address on Docker's default bridge (docker0): containers of any compose
/// network reach the host there (the real bundle has no `host.docker.internal` entry). The
/// network's gateway, or the subnet's first address where the engine reports no gateway.
pub fn docker_host_address() -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut words = text.split_whitespace();
    let (first, second) = (words.next(), words.next());
    let ip = match (first, second) {
        (Some(gw), Some(_)) => gw.to_string(),
        (Some(subnet), None) => {
            let net: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
            std::net::Ipv4Addr::from(u32::from(net) + 1).to_string()
        }
        _ => panic!("docker's bridge network has no gateway or subnet: `{text}`"),
    };
    ip
}

/// The validator admin API as the runbook names it on compose: nginx on port 80.
pub const WALLET_URL: &str = "http://wallet.localhost";

/// Holds port 80 (the bundle's nginx) for one test process at a time; the nodes of one
/// test (an old and a new host) share it.
struct Port80Lock(std::fs::File);

/// The process's hold on port 80, while any of its nodes lives.
static PORT80: std::sync::Mutex<std::sync::Weak<Port80Lock>> =
    std::sync::Mutex::new(std::sync::Weak::new());

impl Port80Lock {
    fn shared() -> std::sync::Arc<Port80Lock> {
        let mut held = PORT80.lock().unwrap();
        if let Some(lock) = held.upgrade() {
            return lock;
        }
        let lock = std::sync::Arc::new(Port80Lock::take());
        *held = std::sync::Arc::downgrade(&lock);
        lock
    }

    fn take() -> Port80Lock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/var/tmp/splice-dr-port80.lock")
            .unwrap();
        // flock(2): the kernel releases it when the test process dies.
        f.lock().unwrap();
        Port80Lock(f)
    }
}

/// Whether a Docker engine answers. Tests skip (loudly) only when it does not.
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips the calling test with a loud message when no engine answers.
#[macro_export]
macro_rules! require_docker {
    () => {
        if !compose::docker_available() {
            eprintln!(
                "\n!!!!! SKIPPED {}: no Docker engine reachable (`docker version` failed). \
                 These tests need one; CI on the project's machine always has it. !!!!!\n",
                module_path!()
            );
            return;
        }
    };
}

static IMAGES: Once = Once::new();

/// Builds (or finds cached) the test images, once per test process, serialised across
/// processes with a lock file.
pub fn ensure_images() {
    IMAGES.call_once(|| {
        let out = Command::new("flock")
            .arg("/var/tmp/splice-dr-images.lock")
            .arg("bash")
            .arg(root().join("tests/images/build.sh"))
            .env("SPLICE_SIM_BIN", sim_binary())
            .output()
            .expect("run tests/images/build.sh");
        assert!(
            out.status.success(),
            "building the test images failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The splice-sim binary built next to the test binary.
pub fn sim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/compose_e2e-… → target/debug/splice-sim
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("splice-sim");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p splice-sim` (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// A free TCP port on all interfaces.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One compose-deployed node.
pub struct ComposeNode {
    pub project: String,
    pub party_hint: String,
    pub sv_url: String,
    /// The SV as the host reaches it (for tests that read or set SV-held balances).
    pub sv_host_url: String,
    /// Extra splice-sim flags of the validator (a `command:` in its override).
    pub sim_args: String,
    /// This node's bundle directory (real compose files + stand-ins).
    bundle: tempfile::TempDir,
    sv: Option<RunningSv>,
    sv_db: String,
    rt: tokio::runtime::Runtime,
    /// Last field: released after `Drop::drop` removed the project.
    _port80: std::sync::Arc<Port80Lock>,
}

impl ComposeNode {
    /// Starts a node for `test` (images built first) and waits until it is healthy.
    pub fn start(test: &str) -> ComposeNode {
        Self::start_with(test, "")
    }

    /// Like [`ComposeNode::start`], with extra splice-sim flags for the validator (faults).
    pub fn start_with(test: &str, sim_args: &str) -> ComposeNode {
        let node = Self::create(test, sim_args);
        let out = node.start_sh(&[]);
        assert!(
            out.status.success(),
            "start.sh failed:\n{}",
            super::common::text(&out)
        );
        node.wait_validator_ready(std::time::Duration::from_secs(120));
        node
    }

    /// A node whose bundle is unpacked and whose SV runs, but which was never started: a
    /// fresh host (tests start it, or recover onto it).
    pub fn create(test: &str, sim_args: &str) -> ComposeNode {
        ensure_images();
        let port80 = Port80Lock::shared();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000;
        let project = format!("sdrt-{test}-{}-{n}", std::process::id()).replace('_', "-");
        // The test's name too: two tests of one process can start in the same millisecond.
        let sv_db = format!("sv_{test}_{}_{}", std::process::id(), n);
        let sv_port = free_port();
        let sv = rt
            .block_on(Sv::start(SvConfig {
                listen: format!("0.0.0.0:{sv_port}").parse().unwrap(),
                pg_url: super::common::pg_url(),
                sv_db: sv_db.clone(),
            }))
            .expect("start the simulated SV");
        ComposeNode {
            project,
            party_hint: format!("{}-validator", test.replace('_', "-")),
            sv_url: format!("http://{}:{sv_port}", docker_host_address()),
            sv_host_url: format!("http://127.0.0.1:{sv_port}"),
            sim_args: sim_args.to_string(),
            bundle: assemble_bundle(sim_args),
            sv: Some(sv),
            sv_db,
            rt,
            _port80: port80,
        }
    }

    /// A second host on the same network as `other` (its SV): a bundle of its own, a
    /// project of its own, never started.
    pub fn new_host_of(other: &ComposeNode, test: &str) -> ComposeNode {
        let port80 = Port80Lock::shared();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        ComposeNode {
            project: format!("{}-{test}", other.project),
            party_hint: other.party_hint.clone(),
            sv_url: other.sv_url.clone(),
            sv_host_url: other.sv_host_url.clone(),
            sim_args: String::new(),
            bundle: assemble_bundle(""),
            sv: None,
            sv_db: String::new(),
            rt,
            _port80: port80,
        }
    }

    /// This node's bundle directory.
    pub fn bundle_dir(&self) -> PathBuf {
        self.bundle.path().to_path_buf()
    }

    /// Environment every bundle script gets.
    fn env(&self, cmd: &mut Command) {
        cmd.env("COMPOSE_PROJECT_NAME", &self.project);
    }

    /// Runs start.sh with the standard flags plus `extra`, waiting for health.
    pub fn start_sh(&self, extra: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(self.bundle.path().join("start.sh"))
            .args([
                "-s",
                &self.sv_url,
                "-o",
                "",
                "-p",
                &self.party_hint,
                "-m",
                "0",
                "-w",
            ])
            .args(extra)
            .stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().unwrap()
    }

    /// Runs stop.sh (containers removed, volumes kept).
    pub fn stop_sh(&self) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(self.bundle.path().join("stop.sh"))
            .stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().unwrap()
    }

    /// Id of the container of `service`.
    pub fn container(&self, service: &str) -> String {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.project))
            .arg("--filter")
            .arg(format!("label=com.docker.compose.service={service}"))
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!id.is_empty(), "no container for service {service}");
        id
    }

    /// Runs SQL in `db` inside the postgres container; returns psql's unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("docker")
            .args(["exec", "-u", "postgres", &self.container("postgres-splice")])
            .args([
                "psql",
                "-U",
                "cnadmin",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atqc",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {db} `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates `app.items` with `rows` rows in both databases.
    pub fn seed(&self, rows: u32) {
        for db in ["validator", "participant-0"] {
            self.psql(
                db,
                &format!(
                    "CREATE SCHEMA IF NOT EXISTS app; \
                     CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL); \
                     INSERT INTO app.items SELECT g, md5(g::text || '{db}') FROM generate_series(1, {rows}) g;"
                ),
            );
        }
    }

    /// Count and content hash of `app.items` in both databases.
    pub fn fingerprint(&self) -> Vec<String> {
        ["validator", "participant-0"]
            .iter()
            .map(|db| {
                self.psql(
                    db,
                    "SELECT count(*) || ':' || md5(coalesce(string_agg(id || '=' || v, ',' ORDER BY id), '')) FROM app.items",
                )
            })
            .collect()
    }

    /// Whether the validator API answers readyz with 200, asked as the runbook asks it:
    /// `http://wallet.localhost/api/validator/readyz` through the bundle's nginx.
    pub fn validator_ready(&self) -> bool {
        ureq::get("http://127.0.0.1:80/api/validator/readyz")
            .header("Host", "wallet.localhost")
            .call()
            .is_ok()
    }

    /// Waits until [`ComposeNode::validator_ready`], or panics with the containers' state.
    pub fn wait_validator_ready(&self, timeout: std::time::Duration) {
        let until = std::time::Instant::now() + timeout;
        while !self.validator_ready() {
            if std::time::Instant::now() > until {
                let ps = Command::new("docker")
                    .args(["ps", "-a", "--filter"])
                    .arg(format!("label=com.docker.compose.project={}", self.project))
                    .output()
                    .unwrap();
                let logs = Command::new("docker")
                    .args(["logs", "--tail", "30"])
                    .arg(self.container("validator"))
                    .output()
                    .unwrap();
                panic!(
                    "the validator does not answer readyz through nginx after {timeout:?}:\n{}\n{}",
                    String::from_utf8_lossy(&ps.stdout),
                    super::common::text(&logs)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// The migration id the validator container was started with (the real compose file
    /// passes it as `domain-migration-id = N` in ADDITIONAL_CONFIG_MIGRATION_ID).
    pub fn validator_migration_id(&self) -> Option<String> {
        let hocon = self.container_env("validator", "ADDITIONAL_CONFIG_MIGRATION_ID")?;
        hocon.lines().find_map(|l| {
            l.trim()
                .strip_prefix("domain-migration-id")
                .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
        })
    }

    /// Whether the validator container was started migrating (compose-migrate.yaml: a
    /// non-empty ADDITIONAL_CONFIG_VALIDATOR_MIGRATION_RESTORE).
    pub fn validator_migrating(&self) -> bool {
        self.container_env("validator", "ADDITIONAL_CONFIG_VALIDATOR_MIGRATION_RESTORE")
            .is_some_and(|v| !v.trim().is_empty())
    }

    /// Stops the simulated SV (the network becomes unreachable for the node).
    pub fn stop_sv(&mut self) {
        if let Some(sv) = self.sv.take() {
            self.rt.block_on(sv.shutdown());
        }
    }

    /// Starts the simulated SV again after [`ComposeNode::stop_sv`], on the same port and
    /// database (the network is back).
    pub fn restart_sv(&mut self) {
        assert!(self.sv.is_none(), "the SV runs");
        let port = self.sv_host_url.rsplit(':').next().unwrap();
        let sv = self
            .rt
            .block_on(Sv::start(SvConfig {
                listen: format!("0.0.0.0:{port}").parse().unwrap(),
                pg_url: super::common::pg_url(),
                sv_db: self.sv_db.clone(),
            }))
            .expect("restart the simulated SV");
        self.sv = Some(sv);
    }

    /// Value of `KEY` in the environment of `service`'s container.
    /// (As JSON: the real compose file's values span lines, e.g. its HOCON blocks.)
    pub fn container_env(&self, service: &str, key: &str) -> Option<String> {
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{json .Config.Env}}"])
            .arg(self.container(service))
            .output()
            .unwrap();
        let env: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        env.iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    /// Volumes splice-dr kept for this project.
    pub fn kept_volumes(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "volume",
                "ls",
                "-q",
                "--filter",
                "label=io.splice-dr.kept-from",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|v| v.starts_with(&self.project))
            .map(str::to_string)
            .collect()
    }

    /// A config for this node; `extra_node` goes after `[node.compose]`.
    pub fn site_config(&self, dir: &Path, extra_node: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nsocket = \"splice-dr.sock\"\nstate_dir = \"state\"\n\n\
             [repository]\npath = \"repo\"\nmax_age = \"30d\"\n\n\
             [[node]]\nname = \"validator-1\"\nbackend = \"compose\"\nmigration_id = 0\n\n\
             [node.compose]\nproject = \"{}\"\n{extra_node}\n\n\
             [node.compose.bundle]\ndir = \"{}\"\nsponsor_sv = \"{}\"\nparty_hint = \"{}\"\n",
            self.project,
            self.bundle.path().display(),
            self.sv_url,
            self.party_hint
        );
        let path = dir.join("splice-dr.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for ComposeNode {
    fn drop(&mut self) {
        let mut cmd = Command::new("docker");
        cmd.arg("compose")
            .args(["-f", "compose.yaml", "-f", "compose.override.yaml"])
            .args(["down", "-v", "--remove-orphans", "-t", "2"])
            .current_dir(self.bundle.path())
            .env("MIGRATION_ID", "0")
            .env("IMAGE_TAG", "sim")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let _ = cmd.status();
        for v in self.kept_volumes() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &v])
                .output();
        }
        if let Some(sv) = self.sv.take() {
            self.rt.block_on(sv.shutdown());
        }
        let db = self.sv_db.clone();
        if db.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let mut admin = super::common::connect("postgres");
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
        })
        .join();
    }
}

// CLI helpers shared by compose_e2e and recovery_e2e.

/// Runs the CLI against `config`.
pub fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(super::common::bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs the CLI for a flow that restarts `node` through its start.sh.
pub fn cli_restarting(_node: &ComposeNode, config: &Path, args: &[&str]) -> Output {
    Command::new(super::common::bin())
        .arg("--config")
        .arg(config)
        .args(args)
        // A start that cannot succeed should fail in tests, not after the bundle's 600 s.
        .env("START_WAIT_TIMEOUT", "20")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Takes a backup and returns its id.
pub fn backup(config: &Path) -> String {
    let out = cli(config, &["backup"]);
    assert!(
        out.status.success(),
        "backup: {}",
        super::common::text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The journal record of the newest run of `flow`, as `show` answers it.
pub fn last_run(config: &Path, flow: &str) -> RunDetail {
    let out = cli(config, &["--json", "runs"]);
    let runs: Vec<RunSummary> = super::common::view(&out);
    let id = runs
        .into_iter()
        .filter(|r| r.flow == flow)
        // Newest by creation time (ids of runs in the same second end in a random suffix).
        .map(|r| (r.created_at, r.id))
        .max()
        .expect("a run")
        .1;
    super::common::view(&cli(config, &["--json", "show", &id]))
}

/// The names of a run's steps, in order.
pub fn step_names(run: &RunDetail) -> Vec<String> {
    run.steps.iter().map(|s| s.name.clone()).collect()
}

/// A node config with the validator API and an age key for identities; returns the
/// config path, the key file and an admin-API client.
pub fn validator_site(
    node: &ComposeNode,
    dir: &Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    splice_dr::validator::ValidatorClient,
) {
    use age::secrecy::ExposeSecret;
    let validator = format!(
        "\n[node.validator]\nurl = \"{WALLET_URL}\"\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n"
    );
    let config = node.site_config(dir, &validator);
    let key = age::x25519::Identity::generate();
    let key_file = dir.join("identity.key");
    std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!(
            "max_age = \"30d\"\nidentities_recipients = [\"{}\"]\n",
            key.to_public()
        ),
    );
    std::fs::write(&config, text_cfg).unwrap();
    let client =
        splice_dr::validator::ValidatorClient::from_config(&splice_dr::config::ValidatorConfig {
            url: WALLET_URL.to_string(),
            public_url: None,
            timeout: std::time::Duration::from_secs(10),
            snapshot_timeout: std::time::Duration::from_secs(60),
            retries: 3,
            retry_backoff: std::time::Duration::from_millis(200),
            auth: splice_dr::config::ValidatorAuth::SelfSigned(splice_dr::config::SelfSignedAuth {
                secret_file: None,
                secret: Some("unsafe".into()),
                user: "administrator".into(),
                audience: "https://validator.example.com".into(),
            }),
        })
        .unwrap();
    (config, key_file, client)
}

/// `now - secs` as the flow's timestamp format.
pub fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
