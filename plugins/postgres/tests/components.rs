//! (6) Components run by hand: stop/start through shell commands, readiness through a
//! health URL (served here by a tiny HTTP server answering 200 only while a marker file,
//! created by the start command, exists).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use splice_dr_plugin_api::{BackendError, Workloads};
use splice_dr_postgres::PostgresBackend;

mod common;
use common::Recorder;

/// Serves `200` while `marker` exists, `503` otherwise, forever (the thread dies with the
/// test process). Returns the URL.
fn health_server(marker: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let (code, text) = if marker.exists() {
                (200, "OK")
            } else {
                (503, "Service Unavailable")
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code} {text}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    format!("http://127.0.0.1:{port}/readyz")
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
    let get = |st: &[splice_dr_plugin_api::ComponentStatus], n: &str| {
        st.iter()
            .find(|c| c.name == n)
            .cloned()
            .expect("component listed")
    };
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

#[test]
fn https_health_url_is_a_config_error() {
    let r = PostgresBackend::from_json(serde_json::json!({
        "url": common::pg_url(),
        "components": { "v": { "health_url": "https://x/readyz" } }
    }));
    assert!(matches!(r, Err(BackendError::Config(m)) if m.contains("health_url")));
}
