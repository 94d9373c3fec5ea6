//! End-to-end tests of the monitoring integrations over real HTTP on 127.0.0.1 ephemeral
//! ports: the Alertmanager receiver (auth, payloads → events), the run notifier (a local
//! webhook server, a dead webhook), and the Prometheus exporter (one test: the recorder is
//! global per process).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use splice_dr::config::{NotifyConfig, NotifyKind};
use splice_dr::events::alertmanager;
use splice_dr::events::{Event, EventBus};
use splice_dr::metrics;
use splice_dr::notify::{self, Notifier, RunSummary};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "am-test-token-7f3a";

/// A receiver on an ephemeral port; the guard stops it when dropped.
struct Receiver {
    addr: SocketAddr,
    events: broadcast::Receiver<Event>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_receiver() -> Receiver {
    let bus = EventBus::default();
    let events = bus.subscribe();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(alertmanager::serve_on(
        listener,
        TOKEN.to_string(),
        bus,
        shutdown.clone(),
    ));
    Receiver {
        addr,
        events,
        shutdown,
        task,
    }
}

fn client() -> reqwest::Client {
    // reqwest is built without a rustls provider: plain-HTTP clients need one too.
    splice_dr::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn payload() -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"ValidatorDown\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "splice-dr",
        "groupLabels": {"alertname": "ValidatorDown"},
        "commonLabels": {"alertname": "ValidatorDown", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ValidatorDown", "node": "validator-1",
                           "instance": "10.0.0.5:5003", "severity": "critical"},
                "annotations": {"summary": "validator-1 readyz failing for 5m",
                                "description": "long text"},
                "startsAt": "2026-11-20T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": "c0ffee"
            },
            {
                "status": "resolved",
                "labels": {"alertname": "ParticipantLag", "instance": "10.0.0.6:7575"},
                "annotations": {"description": "participant caught up"},
                "startsAt": "2026-11-20T09:00:00Z",
                "endsAt": "2026-11-20T09:30:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "beef"
            }
        ]
    })
}

async fn next_event(rx: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("bus open")
}

fn assert_no_event(rx: &mut broadcast::Receiver<Event>) {
    match rx.try_recv() {
        Err(broadcast::error::TryRecvError::Empty) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

#[tokio::test]
async fn alertmanager_payload_becomes_events_with_labels() {
    let mut r = start_receiver().await;
    let http = client();

    for path in ["/api/v1/alerts", "/"] {
        let resp = http
            .post(format!("http://{}{path}", r.addr))
            .bearer_auth(TOKEN)
            .json(&payload())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["published"], 2, "{path}: {body}");

        let firing = next_event(&mut r.events).await;
        assert_eq!(firing.name, "alert.ValidatorDown");
        assert_eq!(firing.node.as_deref(), Some("validator-1"));
        assert_eq!(firing.message, "validator-1 readyz failing for 5m");
        assert_eq!(firing.labels["severity"], "critical");
        assert_eq!(firing.labels["instance"], "10.0.0.5:5003");
        assert_eq!(firing.labels["alertname"], "ValidatorDown");

        let resolved = next_event(&mut r.events).await;
        assert_eq!(resolved.name, "alert.ParticipantLag.resolved");
        assert_eq!(resolved.node.as_deref(), Some("10.0.0.6:7575"));
        assert_eq!(resolved.message, "participant caught up");
        assert_no_event(&mut r.events);
    }

    let health = http
        .get(format!("http://{}/healthz", r.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    r.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut r.task)
        .await
        .expect("server stops on shutdown")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test]
async fn alertmanager_refuses_missing_or_wrong_token_and_malformed_json() {
    let mut r = start_receiver().await;
    let http = client();
    let url = format!("http://{}/api/v1/alerts", r.addr);

    let missing = http.post(&url).json(&payload()).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers().get("www-authenticate").unwrap(), "Bearer");
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");

    for bad in ["wrong", "am-test-token-7f3", "am-test-token-7f3aX", ""] {
        let resp = http
            .post(&url)
            .bearer_auth(bad)
            .json(&payload())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "token {bad:?}");
        let _: Value = resp.json().await.expect("401 body is JSON");
    }
    let basic = http
        .post(format!("http://{}/", r.addr))
        .header("authorization", format!("Basic {TOKEN}"))
        .json(&payload())
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // Wrong token with a malformed body: still 401 (auth first, nothing parsed).
    let resp = http
        .post(&url)
        .bearer_auth("wrong")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    for body in ["{not json", "{\"version\":\"4\"}", "[]", ""] {
        let resp = http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "body {body:?}");
        let err: Value = resp.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("malformed"),
            "{err}"
        );
    }

    // Give any (wrong) publish a moment to land before checking that none did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_no_event(&mut r.events);
}

/// A local webhook that forwards every JSON body it receives.
async fn start_webhook() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/services/{*rest}",
            post(
                |State(tx): State<mpsc::UnboundedSender<(String, Value)>>,
                 uri: axum::http::Uri,
                 Json(body): Json<Value>| async move {
                    let _ = tx.send((uri.path().to_string(), body));
                    "ok"
                },
            ),
        )
        .with_state(tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

fn notify_config(url: String, on: Vec<NotifyKind>) -> NotifyConfig {
    NotifyConfig {
        webhook_url: Some(url),
        webhook_url_file: None,
        on,
        timeout: Duration::from_secs(2),
        retries: 0,
    }
}

#[tokio::test]
async fn notifier_posts_slack_json_and_survives_a_dead_webhook() {
    let (addr, mut received) = start_webhook().await;
    let cfg = notify_config(
        format!("http://{addr}/services/T000/B000/secret"),
        vec![NotifyKind::Failed, NotifyKind::PendingApproval],
    );
    let notifier = Notifier::new(&cfg).expect("notifier");
    let summary = RunSummary::new("20261120-restore-7", "restore", Some("validator-1".into()))
        .with_error("verify: row counts differ in table acs_store");

    let task = notifier
        .notify(NotifyKind::Failed, &summary)
        .expect("failed is wanted");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let (path, body) = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, "/services/T000/B000/secret");
    assert_eq!(
        body["text"],
        "splice-dr: restore on validator-1 failed: verify: row counts differ in table acs_store (run 20261120-restore-7)"
    );
    assert_eq!(body, notify::message(NotifyKind::Failed, &summary));

    // Not in `on`: nothing is sent.
    assert!(notifier.notify(NotifyKind::Started, &summary).is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(received.try_recv().is_err());

    // A dead webhook (a port nobody listens on): the call returns at once, the task ends
    // by itself (logged at warn), and the explicit send reports why without the URL.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = Notifier::new(&notify_config(
        format!("http://127.0.0.1:{dead_port}/services/T/B/topsecret"),
        NotifyKind::ALL.to_vec(),
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let task = dead.notify(NotifyKind::Failed, &summary).expect("spawned");
    assert!(started.elapsed() < Duration::from_millis(500));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the failed POST ends within the timeout")
        .expect("the task does not panic");
    let err = dead
        .send(NotifyKind::Failed, &summary)
        .await
        .expect_err("nothing listens");
    assert!(!err.contains("topsecret"), "{err}");

    // A webhook answering an error status is reported, not fatal.
    let refusing = Notifier::new(&notify_config(
        format!("http://{addr}/not-a-hook"),
        NotifyKind::ALL.to_vec(),
    ))
    .unwrap();
    let err = refusing
        .send(NotifyKind::Started, &summary)
        .await
        .expect_err("404");
    assert!(err.contains("404"), "{err}");
}

fn sample<'a>(exposition: &'a str, series: &str) -> Option<&'a str> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
    })
}

#[tokio::test]
async fn metrics_are_exposed_with_labels_and_values() {
    let listen: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    metrics::install(listen).expect("install");
    metrics::install(listen).expect("installing twice on the same address is fine");
    assert_eq!(metrics::installed_at(), Some(listen));
    let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let e = metrics::install(other).expect_err("a second address");
    assert!(e.to_string().contains("restart"), "{e}");

    let at = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
    metrics::run_finished("backup", "succeeded", Duration::from_secs(42));
    metrics::run_finished("backup", "succeeded", Duration::from_secs(3));
    metrics::run_finished("restore", "failed", Duration::from_millis(1500));
    metrics::backup_succeeded("validator-1", at, 123_456_789);
    metrics::component_health("validator-1", "validator", true);
    metrics::component_health("validator-1", "participant", false);
    metrics::breaker_state("restore-on-down", true);
    metrics::pending_approvals(2);
    metrics::backup_stale("validator-1", false);
    metrics::backup_stale("validator-2", true);

    let http = client();
    let text = http
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let expect = [
        (
            r#"splice_dr_runs_total{flow="backup",result="succeeded"}"#,
            "2",
        ),
        (
            r#"splice_dr_runs_total{flow="restore",result="failed"}"#,
            "1",
        ),
        (
            r#"splice_dr_run_duration_seconds_count{flow="backup"}"#,
            "2",
        ),
        (r#"splice_dr_run_duration_seconds_sum{flow="backup"}"#, "45"),
        (
            r#"splice_dr_run_duration_seconds_bucket{flow="backup",le="5"}"#,
            "1",
        ),
        (
            r#"splice_dr_run_duration_seconds_bucket{flow="backup",le="60"}"#,
            "2",
        ),
        (
            r#"splice_dr_run_duration_seconds_bucket{flow="restore",le="+Inf"}"#,
            "1",
        ),
        (
            r#"splice_dr_last_successful_backup_timestamp_seconds{node="validator-1"}"#,
            "1795168800",
        ),
        (
            r#"splice_dr_backup_size_bytes{node="validator-1"}"#,
            "123456789",
        ),
        (
            r#"splice_dr_component_up{node="validator-1",component="validator"}"#,
            "1",
        ),
        (
            r#"splice_dr_component_up{node="validator-1",component="participant"}"#,
            "0",
        ),
        (
            r#"splice_dr_rule_breaker_tripped{rule="restore-on-down"}"#,
            "1",
        ),
        ("splice_dr_pending_approvals", "2"),
        (r#"splice_dr_backup_stale{node="validator-1"}"#, "0"),
        (r#"splice_dr_backup_stale{node="validator-2"}"#, "1"),
    ];
    for (series, value) in expect {
        let got = sample(&text, series).unwrap_or_else(|| panic!("{series} missing in:\n{text}"));
        assert_eq!(
            got.parse::<f64>().unwrap(),
            value.parse::<f64>().unwrap(),
            "{series}"
        );
    }
    for (name, kind) in [
        ("splice_dr_runs_total", "counter"),
        ("splice_dr_run_duration_seconds", "histogram"),
        (
            "splice_dr_last_successful_backup_timestamp_seconds",
            "gauge",
        ),
        ("splice_dr_component_up", "gauge"),
        ("splice_dr_pending_approvals", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}")),
            "# TYPE {name} {kind} missing in:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "# HELP {name} missing in:\n{text}"
        );
    }

    // Values move: a later reading replaces the gauge.
    metrics::pending_approvals(0);
    metrics::component_health("validator-1", "participant", true);
    let text = http
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&text, "splice_dr_pending_approvals"), Some("0"));
    assert_eq!(
        sample(
            &text,
            r#"splice_dr_component_up{node="validator-1",component="participant"}"#
        ),
        Some("1")
    );

    // The port is taken now: a second exporter in another process would get a clear
    // error; here, binding it directly shows the listener really holds it.
    assert!(std::net::TcpListener::bind(listen).is_err());
}

#[tokio::test]
async fn metrics_bind_error_is_clear() {
    // Runs in the same process as the test above but never installs: a taken port fails
    // before anything global is set. Order-independent: if the other test already
    // installed, the error is AlreadyInstalled, which is also a refusal.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = metrics::install(addr).expect_err("port taken");
    let text = e.to_string();
    assert!(
        text.contains(&addr.to_string()) || text.contains("restart"),
        "{text}"
    );
}

/// A webhook answering `first` for the first `failures` POSTs, then 200; counts POSTs.
async fn flaky_webhook(
    failures: usize,
    first: u16,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let seen = seen.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n < failures { first } else { 200 };
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, count)
}

/// One blip must not lose a "restore failed" message: 503s and 429s are tried again with
/// backoff until the webhook takes it; a 400 (the message itself refused) is not, and
/// `retries = 0` sends once.
#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_and_a_refusal_is_not() {
    use std::sync::atomic::Ordering;
    let summary = RunSummary::new("20261205-restore-1", "restore", Some("validator-1".into()))
        .with_error("boom");
    let notifier = |addr: SocketAddr, retries: u32| {
        let mut cfg = notify_config(format!("http://{addr}/hook"), NotifyKind::ALL.to_vec());
        cfg.retries = retries;
        Notifier::new(&cfg).unwrap()
    };

    let (addr, count) = flaky_webhook(2, 503).await;
    let started = std::time::Instant::now();
    let attempts = notifier(addr, 4)
        .deliver(NotifyKind::Failed, &summary)
        .await
        .expect("delivered on the third attempt");
    assert_eq!((attempts, count.load(Ordering::SeqCst)), (3, 3));
    // Pauses of 1 s and 2 s, each at least halved by the jitter.
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let (addr, count) = flaky_webhook(1, 429).await;
    assert_eq!(
        notifier(addr, 4)
            .deliver(NotifyKind::Failed, &summary)
            .await,
        Ok(2)
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);

    let (addr, count) = flaky_webhook(5, 400).await;
    let err = notifier(addr, 4)
        .deliver(NotifyKind::Failed, &summary)
        .await
        .expect_err("a refused message is final");
    assert!(
        err.contains("400") && err.contains("after 1 attempt"),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let (addr, count) = flaky_webhook(5, 503).await;
    let err = notifier(addr, 0)
        .deliver(NotifyKind::Failed, &summary)
        .await
        .expect_err("no retries");
    assert!(err.contains("503"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
