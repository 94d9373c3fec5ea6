//! Readiness as the real bundle gives it (issue #14, "Ready means answering"): the
//! participant's gRPC health served by `splice-sim participant` and asked by the compose
//! backend's client, and the validator reached the way the real compose bundle exposes it,
//! through an nginx that routes by host name, as `wallet.localhost` without /etc/hosts.
//!
//! Real parts: Postgres (the participant's database is created, then dropped), real
//! sockets, HTTP/2 with prior knowledge, the splice-sim binary and its SIGTERM handling.
//! Needs Postgres 15 with the test role: `sh tests/pg-setup.sh` as root.

mod common;
#[path = "common/compose.rs"]
mod compose;
#[path = "common/sim.rs"]
mod sim;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use sim::*;
use splice_dr::validator::ValidatorClient;
use splice_dr_compose::grpc_health::{self, HealthError, ServingStatus};
use splice_dr_compose::probe;
use splice_sim::{FaultsPatch, Participant, ParticipantConfig};

const LIMIT: Duration = Duration::from_secs(5);

/// A fresh database on the test server, as the bundle's postgres entrypoint creates
/// `participant-<id>` (the hyphen included).
fn create_db(name: &str) {
    common::connect("postgres")
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap();
}

fn drop_db(name: &str) {
    common::connect("postgres")
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .unwrap();
}

/// Drops the test database at the end, even on panic.
struct DbGuard(String);

impl Drop for DbGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || drop_db(&name)).join();
    }
}

/// The participant settings for `db` on the test server, as the compose file passes them.
fn participant_config(db: &str) -> ParticipantConfig {
    let p = common::url_parts::parse(&common::pg_url());
    ParticipantConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db_server: p.host,
        db_port: p.port.parse().unwrap(),
        db_user: p.user,
        db_password: p.password.unwrap_or_default(),
        db_name: db.into(),
    }
}

#[tokio::test]
async fn participant_health_is_serving_while_its_database_answers() {
    let db = format!("{}-0", common::unique("rdy_participant"));
    let _guard = DbGuard(db.clone());
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || create_db(&db2))
        .await
        .unwrap();
    let participant = Participant::start(participant_config(&db)).await.unwrap();
    let addr = participant.addr().to_string();

    let c = grpc_health::check("participant", &addr, "", LIMIT).await;
    assert_eq!(c.result, Ok(ServingStatus::Serving), "{c}");
    assert!(c.serving());
    assert_eq!(
        c.to_string(),
        format!("participant at {addr}: gRPC health SERVING")
    );
    // What the compose backend's readiness makes of it.
    let p = probe::grpc(&addr, LIMIT).await;
    assert!(p.ok, "{p:?}");

    // Liveness does not depend on the database; an unknown service is NOT_FOUND, as the
    // real health service answers.
    let live = grpc_health::check("participant", &addr, "liveness", LIMIT).await;
    assert_eq!(live.result, Ok(ServingStatus::Serving), "{live}");
    let unknown = grpc_health::check("participant", &addr, "no.such.Service", LIMIT).await;
    match &unknown.result {
        Err(HealthError::Status { code: 5, message }) => {
            assert!(message.contains("no.such.Service"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        unknown
            .to_string()
            .contains("gRPC health answered 5 NOT_FOUND"),
        "{unknown}"
    );

    // The database goes: NOT_SERVING, said in operator language.
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || drop_db(&db2))
        .await
        .unwrap();
    let c = grpc_health::check("participant", &addr, "", LIMIT).await;
    assert_eq!(c.result, Ok(ServingStatus::NotServing), "{c}");
    assert_eq!(
        c.to_string(),
        format!("participant at {addr}: gRPC health NOT_SERVING")
    );
    let p = probe::grpc(&addr, LIMIT).await;
    assert!(
        !p.ok && p.detail.ends_with("gRPC health NOT_SERVING"),
        "{p:?}"
    );
    let live = grpc_health::check("participant", &addr, "liveness", LIMIT).await;
    assert_eq!(live.result, Ok(ServingStatus::Serving), "{live}");

    // Back again: SERVING (every check asks the database anew).
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || create_db(&db2))
        .await
        .unwrap();
    let c = grpc_health::check("participant", &addr, "", LIMIT).await;
    assert_eq!(c.result, Ok(ServingStatus::Serving), "{c}");

    // Stopped: the port is dead, and the message names it.
    participant.shutdown().await;
    let c = grpc_health::check("participant", &addr, "", LIMIT).await;
    assert!(matches!(c.result, Err(HealthError::Connect(_))), "{c}");
    let text = c.to_string();
    assert!(
        text.starts_with(&format!("participant at {addr}: gRPC health not reachable")),
        "{text}"
    );
}

#[tokio::test]
async fn a_participant_whose_postgres_is_down_is_not_serving() {
    // The Postgres server itself is gone (a port nobody listens on): the health service
    // still answers, NOT_SERVING.
    let mut cfg = participant_config("participant-0");
    cfg.db_server = "127.0.0.1".into();
    cfg.db_port = closed_port();
    let participant = Participant::start(cfg).await.unwrap();
    let addr = participant.addr().to_string();
    let c = grpc_health::check("participant", &addr, "", LIMIT).await;
    assert_eq!(c.result, Ok(ServingStatus::NotServing), "{c}");
    participant.shutdown().await;
}

#[tokio::test]
async fn ports_that_are_not_a_grpc_health_service_are_named() {
    // Nobody listening.
    let dead = format!("127.0.0.1:{}", closed_port());
    let c = grpc_health::check("participant", &dead, "", LIMIT).await;
    assert!(matches!(c.result, Err(HealthError::Connect(_))), "{c}");
    assert!(c.to_string().contains(&dead), "{c}");

    // A listener that never answers: the deadline ends the call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let c = grpc_health::check("participant", &silent_addr, "", Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        c.result,
        Err(HealthError::Timeout(Duration::from_millis(500)))
    );
    assert!(c.to_string().contains("did not answer within 0.5s"), "{c}");

    // An HTTP server that is not the health service (the validator API): not a gRPC answer.
    let dbs = SimDbs::new("rdy_notgrpc");
    let node = dbs.start().await;
    let c = grpc_health::check("participant", &node.addr().to_string(), "", LIMIT).await;
    assert!(
        matches!(
            &c.result,
            Err(HealthError::Protocol(_)) | Err(HealthError::Status { .. })
        ),
        "{c}"
    );
    node.shutdown().await;
}

#[test]
fn the_participant_binary_reads_the_compose_environment_and_stops_on_sigterm() {
    let db = format!("{}-0", common::unique("rdy_bin"));
    let _guard = DbGuard(db.clone());
    create_db(&db);
    let p = common::url_parts::parse(&common::pg_url());
    let mut child = Command::new(compose::sim_binary())
        .args(["participant", "--listen", "127.0.0.1:0"])
        .env("CANTON_PARTICIPANT_POSTGRES_SERVER", &p.host)
        .env("CANTON_PARTICIPANT_POSTGRES_PORT", &p.port)
        .env("CANTON_PARTICIPANT_POSTGRES_USER", &p.user)
        .env(
            "CANTON_PARTICIPANT_POSTGRES_PASSWORD",
            p.password.as_deref().unwrap_or_default(),
        )
        .env("CANTON_PARTICIPANT_POSTGRES_DB", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run splice-sim participant");
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("gRPC health listening on"), "{line}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(grpc_health::check("participant", &addr, "", LIMIT));
    assert_eq!(c.result, Ok(ServingStatus::Serving), "{c}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "splice-sim participant did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(exit.success(), "{exit:?}\n{err}");
    assert!(
        !err.contains(p.password.as_deref().unwrap_or("\0")),
        "{err}"
    );
}

/// A stand-in for the bundle's nginx: one server for `wallet.localhost` that proxies to
/// the validator, a 404 for any other host name (as nginx's default server), and a record
/// of the Host headers it saw.
async fn nginx(upstream: String) -> (Served, Arc<Mutex<Vec<String>>>) {
    splice_sim::ensure_crypto_provider();
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let seen = hosts.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (seen, http, upstream) = (seen.clone(), http.clone(), upstream.clone());
        async move {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().push(host.clone());
            // server_name matches the name, not the port.
            let name = host.rsplit_once(':').map_or(host.as_str(), |(n, _)| n);
            if name != "wallet.localhost" {
                return (StatusCode::NOT_FOUND, "no server for this host").into_response();
            }
            let path = req.uri().path_and_query().map(|p| p.to_string());
            let mut fwd = http.request(
                req.method().clone(),
                format!("{upstream}{}", path.unwrap_or_default()),
            );
            if let Some(a) = req.headers().get("authorization") {
                fwd = fwd.header("authorization", a.clone());
            }
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            let r = fwd.body(body).send().await.unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            (status, r.bytes().await.unwrap()).into_response()
        }
    });
    (Served::start(app).await, hosts)
}

#[tokio::test]
async fn a_localhost_url_reaches_the_validator_through_nginx_with_its_host_header() {
    let dbs = SimDbs::new("rdy_localhost");
    let node = dbs.start().await;
    let (proxy, hosts) = nginx(node.url()).await;
    let port = proxy.addr.port();

    // The runbook's form, /api/validator included.
    let runbook = format!("http://wallet.localhost:{port}/api/validator");
    let client = ValidatorClient::from_config(&validator_config(&runbook, no_auth())).unwrap();
    assert_eq!(client.url(), format!("http://wallet.localhost:{port}"));
    assert!(client.ready().await.unwrap());
    let user = client.validator_user().await.unwrap();
    assert_eq!(user.party_id, node.info().party_id);
    // An admin call: the bearer token travels through the proxy too.
    client.identities().await.unwrap();
    // The base form works the same.
    let base = format!("http://wallet.localhost:{port}");
    let client = ValidatorClient::from_config(&validator_config(&base, no_auth())).unwrap();
    assert!(client.ready().await.unwrap());
    let seen = hosts.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|h| *h == format!("wallet.localhost:{port}")),
        "{seen:?}"
    );

    // The same proxy by address: nginx has no server for that name, so routing by host
    // name is what made the calls above work.
    let by_ip = format!("http://127.0.0.1:{port}");
    let client = ValidatorClient::from_config(&validator_config(&by_ip, no_auth())).unwrap();
    assert!(client.ready().await.is_err());

    // The compose backend's readiness check goes the same way.
    let target = probe::http_target(&format!(
        "http://wallet.localhost:{port}/api/validator/readyz"
    ))
    .unwrap();
    let p = probe::readyz(&target, LIMIT).await;
    assert_eq!((p.ok, p.detail.as_str()), (true, "readyz 200"));
    node.faults().apply(FaultsPatch {
        unhealthy: Some(true),
        ..FaultsPatch::default()
    });
    let p = probe::readyz(&target, LIMIT).await;
    assert_eq!((p.ok, p.detail.as_str()), (false, "readyz 503"));
    assert!(!client_ready(&runbook).await);
    let seen = hosts.lock().unwrap().clone();
    assert!(
        seen.iter()
            .filter(|h| h.starts_with("wallet"))
            .all(|h| *h == format!("wallet.localhost:{port}")),
        "{seen:?}"
    );

    // Nothing listening: not ready, and the message says where it asked.
    let gone = probe::http_target(&format!(
        "http://wallet.localhost:{}/api/validator/readyz",
        closed_port()
    ))
    .unwrap();
    let p = probe::readyz(&gone, LIMIT).await;
    assert!(
        !p.ok && p.detail.contains("not answering") && p.detail.contains("127.0.0.1:"),
        "{p:?}"
    );
    node.shutdown().await;
}

async fn client_ready(url: &str) -> bool {
    let c = ValidatorClient::from_config(&validator_config(url, no_auth())).unwrap();
    c.ready().await.unwrap_or(false)
}

/// `docker …`, asserting success; stdout trimmed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's containers and image at the end, even on panic.
struct DockerGuard {
    project: String,
    image: String,
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// Starts a container of `service` in compose project `project` (the compose labels are
/// all the backend looks at): the splice-sim binary of this build, no healthcheck.
fn run_service(project: &str, service: &str, image: &str, docker_args: &[&str], sim_args: &[&str]) {
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--label".into(),
        format!("com.docker.compose.project={project}"),
        "--label".into(),
        format!("com.docker.compose.service={service}"),
        "--entrypoint".into(),
        "/usr/local/bin/splice-sim".into(),
    ];
    args.extend(docker_args.iter().map(|a| a.to_string()));
    args.push(image.into());
    args.extend(sim_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
}

fn component(
    backend: &splice_dr_compose::ComposeBackend,
    name: &str,
) -> splice_dr_plugin_api::ComponentStatus {
    use splice_dr_plugin_api::Workloads as _;
    let ctx = splice_dr_plugin_api::OpContext::with_deadline(Duration::from_secs(20));
    backend
        .components(&ctx)
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
}

/// Real containers without a healthcheck, as the real bundle runs validator and
/// participant: running is not ready; the participant is asked at its container address by
/// default, the validator at a configured `.localhost` URL.
#[test]
fn running_containers_without_healthchecks_are_ready_only_when_the_applications_say_so() {
    use splice_dr_plugin_api::Workloads as _;
    if !compose::docker_available() {
        eprintln!("\n!!!!! SKIPPED: no Docker engine reachable (`docker version` failed) !!!!!\n");
        return;
    }
    let base = "splice-dr-test/pg:15";
    if Command::new("docker")
        .args(["image", "inspect", base])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        compose::ensure_images();
    }
    let project = common::unique("sdr-ready").replace('_', "-");
    let image = format!("splice-dr-test/readiness-sim:{project}");
    let _guard = DockerGuard {
        project: project.clone(),
        image: image.clone(),
    };
    // This build's splice-sim on the test Postgres image (as tests/images/build.sh does,
    // under a tag of this test's own, so no other test's image changes).
    let builder = docker(&["create", base, "true"]);
    let bin = compose::sim_binary();
    docker(&[
        "cp",
        bin.to_str().unwrap(),
        &format!("{builder}:/usr/local/bin/splice-sim"),
    ]);
    docker(&["commit", &builder, &image]);
    docker(&["rm", "-f", &builder]);

    // A participant whose database does not answer, on the default bridge network.
    run_service(
        &project,
        "participant",
        &image,
        &[
            "-e",
            "CANTON_PARTICIPANT_POSTGRES_SERVER=127.0.0.1",
            "-e",
            "CANTON_PARTICIPANT_POSTGRES_PORT=1",
            "-e",
            "CANTON_PARTICIPANT_POSTGRES_USER=cnadmin",
            "-e",
            "CANTON_PARTICIPANT_POSTGRES_PASSWORD=supersafe",
            "-e",
            "CANTON_PARTICIPANT_POSTGRES_DB=participant-0",
        ],
        &["participant"],
    );
    // A validator on the host network (its Postgres is the test server), asked through a
    // configured wallet.localhost URL.
    let dbs = common::unique("rdy_docker");
    let _dbs_guard = (DbGuard(format!("{dbs}_v")), DbGuard(format!("{dbs}_p")));
    let api_port = closed_port();
    let listen = format!("127.0.0.1:{api_port}");
    let pg = common::pg_url();
    run_service(
        &project,
        "validator",
        &image,
        &[
            "--network",
            "host",
            "-e",
            &format!("SPLICE_SIM_PG_URL={pg}"),
        ],
        &[
            "--listen",
            &listen,
            "--validator-db",
            &format!("{dbs}_v"),
            "--participant-db",
            &format!("{dbs}_p"),
        ],
    );

    let mut cfg = splice_dr_compose::ComposeConfig::with_project(&project);
    cfg.readiness.validator_url = Some(format!(
        "http://wallet.localhost:{api_port}/api/validator/readyz"
    ));
    let backend = splice_dr_compose::ComposeBackend::new(cfg, 0).unwrap();
    let ctx = splice_dr_plugin_api::OpContext::with_deadline(Duration::from_secs(120));

    // The validator answers readyz 200 once started: ready.
    backend
        .wait_ready(&ctx, "validator", Duration::from_secs(90))
        .unwrap();
    let v = component(&backend, "validator");
    assert!(v.ready, "{v:?}");
    assert_eq!(v.detail, "service validator: running, readyz 200");

    // Running, no healthcheck, gRPC health NOT_SERVING at its container address: not ready.
    let ip = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "label=com.docker.compose.service=participant",
    ]);
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &ip,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let p = loop {
        let p = component(&backend, "participant");
        if p.detail.contains("gRPC health NOT_SERVING") || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(p.state, "running");
    assert!(!p.ready, "{p:?}");
    assert_eq!(
        p.detail,
        format!("service participant: running, participant at {ip}:5061: gRPC health NOT_SERVING")
    );
    let e = backend
        .wait_ready(&ctx, "participant", Duration::from_secs(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("gRPC health NOT_SERVING"), "{e}");

    // The validator stops being ready while its container keeps running: readyz 503.
    ureq::post(&format!("http://{listen}/sim/faults"))
        .header("content-type", "application/json")
        .send(r#"{"unhealthy": true}"#)
        .unwrap();
    let v = component(&backend, "validator");
    assert!(!v.ready, "{v:?}");
    assert_eq!(v.state, "running");
    assert_eq!(v.detail, "service validator: running, readyz 503");
}
