//! (6) Components run by hand: stop/start through shell commands, readiness through a
//! health URL (served here by a tiny HTTP server answering 200 only while a marker file,
//! created by the start command, exists), over plain HTTP or HTTPS with a test CA.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use splice_dr_plugin_api::{BackendError, ComponentStatus, Workloads};
use splice_dr_postgres::components::{HealthCheck, Probe};
use splice_dr_postgres::PostgresBackend;

mod common;
use common::tls::{Issued, TestCa};
use common::Recorder;

/// Reads one request's head, then answers `200` while `marker` exists, `503` otherwise.
/// Whether the client hung up (or failed a TLS handshake) does not matter to the caller.
fn answer(s: &mut (impl Read + Write), marker: &Path) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk)? {
            0 => return Ok(()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let (code, text) = if marker.exists() {
        (200, "OK")
    } else {
        (503, "Service Unavailable")
    };
    write!(
        s,
        "HTTP/1.1 {code} {text}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    )?;
    s.flush()
}

/// Serves [`answer`] forever (the thread dies with the test process). Returns the URL.
fn health_server(marker: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = answer(&mut s, &marker);
        }
    });
    format!("http://127.0.0.1:{port}/readyz")
}

/// The same over TLS with `server`'s certificate (a real rustls server). Returns the URL.
fn https_health_server(server: &Issued, marker: PathBuf) -> String {
    let certs = CertificateDer::pem_file_iter(&server.cert)
        .expect("open cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("server cert");
    let key = PrivateKeyDer::from_pem_file(&server.key).expect("server key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).expect("server connection");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            if answer(&mut tls, &marker).is_ok() {
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    format!("https://127.0.0.1:{port}/readyz")
}

/// A port nothing listens on.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/readyz")
}

fn backend(dir: &Path, health: &str) -> PostgresBackend {
    let marker = dir.join("running");
    let m = marker.display();
    PostgresBackend::from_json(serde_json::json!({
        "url": common::pg_url(),
        "components": {
            "validator": {
                "stop_command": format!("rm -f '{m}' && echo stopped >&2"),
                "start_command": format!("touch '{m}'"),
                "health_url": health,
            },
            "participant": {
                "stop_command": "echo cannot stop >&2; exit 7",
                "start_command": "true",
                "health_url": dead_url(),
            },
            "bare": {},
        }
    }))
    .expect("backend")
}

#[test]
fn stop_start_and_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = health_server(dir.path().join("running"));
    let b = backend(dir.path(), &url);
    let rec = Recorder::new();
    let ctx = &rec.ctx;

    let status = b.components(ctx).expect("components");
    let get = status_of;
    assert_eq!(status.len(), 3);
    let v = get(&status, "validator");
    assert!(v.managed);
    assert_eq!((v.state.as_str(), v.ready), ("running", false), "{v:?}");
    assert!(v.detail.contains("503"), "{}", v.detail);
    let p = get(&status, "participant");
    assert_eq!((p.state.as_str(), p.ready), ("stopped", false), "{p:?}");
    let bare = get(&status, "bare");
    assert!(!bare.managed);
    assert_eq!((bare.state.as_str(), bare.ready), ("unknown", false));

    // Start: marker appears, health turns 200, wait_ready returns.
    b.scale(ctx, "validator", 1).expect("start");
    assert!(dir.path().join("running").exists());
    b.wait_ready(ctx, "validator", Duration::from_secs(5))
        .expect("ready");
    let v = get(&b.components(ctx).expect("components"), "validator");
    assert_eq!((v.state.as_str(), v.ready), ("running", true));

    // Stop: marker gone, wait_ready times out.
    b.scale(ctx, "validator", 0).expect("stop");
    assert!(!dir.path().join("running").exists());
    assert!(
        rec.logs("info").iter().any(|m| m.contains("stopped")),
        "stderr logged"
    );
    let started = Instant::now();
    match b.wait_ready(ctx, "validator", Duration::from_secs(1)) {
        Err(BackendError::Timeout { seconds, what }) => {
            assert_eq!(seconds, 1);
            assert!(what.contains("validator"), "{what}");
        }
        other => panic!("expected timeout: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4));

    // A failing command reports its status and stderr.
    match b.scale(ctx, "participant", 0) {
        Err(BackendError::Command { status, stderr, .. }) => {
            assert!(status.contains('7'), "{status}");
            assert_eq!(stderr, "cannot stop");
        }
        other => panic!("expected command failure: {other:?}"),
    }

    // No command configured / unknown component.
    match b.scale(ctx, "bare", 0) {
        Err(BackendError::Config(m)) => assert!(m.contains("stop_command"), "{m}"),
        other => panic!("expected config error: {other:?}"),
    }
    match b.scale(ctx, "bare", 2) {
        Err(BackendError::Config(m)) => assert!(m.contains("start_command"), "{m}"),
        other => panic!("expected config error: {other:?}"),
    }
    assert!(matches!(
        b.scale(ctx, "sequencer", 0),
        Err(BackendError::NotFound(_))
    ));
    assert!(matches!(
        b.wait_ready(ctx, "sequencer", Duration::from_secs(1)),
        Err(BackendError::NotFound(_))
    ));

    // Without a health_url readiness cannot be checked: Ok with a warning.
    b.wait_ready(ctx, "bare", Duration::from_secs(1))
        .expect("no health_url");
    assert!(rec
        .logs("warn")
        .iter()
        .any(|m| m.contains("bare") && m.contains("health_url")));

    // Cancellation interrupts a long wait.
    let rec = Recorder::new();
    let flag = rec.cancel.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let r = b.wait_ready(&rec.ctx, "validator", Duration::from_secs(60));
    assert!(matches!(r, Err(BackendError::Cancelled { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    canceller.join().expect("join");
}

/// The status of component `n` in `st`.
fn status_of(st: &[ComponentStatus], n: &str) -> ComponentStatus {
    st.iter()
        .find(|c| c.name == n)
        .cloned()
        .expect("component listed")
}

/// An `https://` health URL works against a real TLS server whose certificate a test CA
/// signed: with the CA in `health_ca_file` the component is ready; without it (or with
/// another CA) the probe fails saying the certificate is not trusted and what to set.
#[test]
fn https_health_url_with_a_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "health-ca");
    let other = TestCa::new(dir.path(), "other-ca");
    let server = ca.issue("health", "127.0.0.1", &["IP:127.0.0.1", "DNS:localhost"]);
    let marker = dir.path().join("running");
    std::fs::write(&marker, "").expect("marker");
    let url = https_health_server(&server, marker.clone());

    // Trusted through health_ca_file: ready, through the backend as the flows use it.
    let b = PostgresBackend::from_json(serde_json::json!({
        "url": common::pg_url(),
        "components": {
            "validator": { "health_url": url, "health_ca_file": ca.cert },
            "untrusted": { "health_url": url },
            "wrong-ca": { "health_url": url, "health_ca_file": other.cert },
        }
    }))
    .expect("backend");
    let rec = Recorder::new();
    let st = b.components(&rec.ctx).expect("components");
    let v = status_of(&st, "validator");
    assert_eq!((v.state.as_str(), v.ready), ("running", true), "{v:?}");
    b.wait_ready(&rec.ctx, "validator", Duration::from_secs(5))
        .expect("ready over https");
    // The server answers 503 over TLS too: up, not ready.
    std::fs::remove_file(&marker).expect("rm marker");
    let v = status_of(&b.components(&rec.ctx).expect("components"), "validator");
    assert_eq!((v.state.as_str(), v.ready), ("running", false), "{v:?}");
    assert!(v.detail.contains("503"), "{}", v.detail);
    std::fs::write(&marker, "").expect("marker");

    // Not trusted without the CA file: a clear error naming the fix, and a restore's wait
    // ends with that error, not a bare timeout.
    let u = status_of(&st, "untrusted");
    assert_eq!((u.state.as_str(), u.ready), ("unknown", false), "{u:?}");
    assert!(
        u.detail.contains("certificate not trusted") && u.detail.contains("set health_ca_file"),
        "{}",
        u.detail
    );
    match b.wait_ready(&rec.ctx, "untrusted", Duration::from_secs(1)) {
        Err(BackendError::Timeout { what, .. }) => {
            assert!(what.contains("certificate not trusted"), "{what}")
        }
        other => panic!("expected a timeout naming the certificate: {other:?}"),
    }
    let w = status_of(&st, "wrong-ca");
    assert!(
        w.detail.contains("certificate not trusted") && w.detail.contains("other-ca.crt"),
        "{}",
        w.detail
    );

    // The same check used directly: the certificate names 127.0.0.1 and localhost only.
    let check = HealthCheck::new(&url, Some(&ca.cert)).expect("check");
    assert_eq!(check.probe(Duration::from_secs(2)), Probe::Ready);
    let stranger = ca.issue("stranger", "db.example", &["DNS:db.example"]);
    let url2 = https_health_server(&stranger, marker);
    match HealthCheck::new(&url2, Some(&ca.cert))
        .expect("check")
        .probe(Duration::from_secs(2))
    {
        Probe::Failed(e) => assert!(e.contains("not valid for the host"), "{e}"),
        other => panic!("expected a name mismatch: {other:?}"),
    }
}

/// A bad `health_ca_file` is refused when the backend is built, naming the key.
#[test]
fn bad_health_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("notes.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let ca = TestCa::new(dir.path(), "ca");
    for (component, expect) in [
        (
            serde_json::json!({ "health_url": "https://h/readyz", "health_ca_file": dir.path().join("missing.pem") }),
            "cannot read",
        ),
        (
            serde_json::json!({ "health_url": "https://h/readyz", "health_ca_file": not_pem }),
            "holds no certificate",
        ),
        (
            serde_json::json!({ "health_url": "http://h/readyz", "health_ca_file": ca.cert }),
            "plain http",
        ),
        (
            serde_json::json!({ "health_ca_file": ca.cert }),
            "without a `health_url`",
        ),
        (
            serde_json::json!({ "health_url": "ftp://h/readyz" }),
            "http:// or https://",
        ),
    ] {
        let r = PostgresBackend::from_json(serde_json::json!({
            "url": common::pg_url(),
            "components": { "v": component }
        }));
        match r {
            Err(BackendError::Config(m)) => {
                assert!(m.contains("component `v`") && m.contains(expect), "{m}")
            }
            other => panic!("expected a config error with {expect:?}: {other:?}"),
        }
    }
}
