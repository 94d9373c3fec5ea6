//! End-to-end tests of the socket's and the listeners' guards against the real daemon
//! binary: names from peers select configured entries only, roles, and recorded callers.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request line and returns the first reply line.
fn ask(sock: &Path, request: &Value) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

#[test]
fn trigger_with_a_hostile_node_name_creates_nothing() {
    let dbs = NodeDbs::create("sdr_names", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    let target = format!("sdr-socket-names-{}", std::process::id());
    let hostile = format!("../../../../../../../../tmp/{target}");
    let reply = ask(
        &sock,
        &serde_json::json!({"cmd": "trigger", "event": "health.validator.down", "node": hostile}),
    );
    assert_eq!(reply["code"], "usage", "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("no node") && message.contains("validator-1"),
        "{message}"
    );
    // A configured node still works, and its log lands under state_dir/health.
    let ok = ask(
        &sock,
        &serde_json::json!({"cmd": "trigger", "event": "health.validator.down", "node": "validator-1"}),
    );
    assert_eq!(ok["type"], "ok", "{ok}");
    wait_for(Duration::from_secs(10), "health log of validator-1", || {
        site.path("state/health/validator-1.jsonl").exists()
    });
    assert!(!Path::new(&format!("/tmp/{target}.jsonl")).exists());
    assert!(!Path::new(&format!("/tmp/{target}")).exists());
    // Unknown nodes on other requests are refused with the list too.
    let backups = ask(
        &sock,
        &serde_json::json!({"cmd": "backups", "node": "nope"}),
    );
    assert_eq!(backups["code"], "usage", "{backups}");
    let show = ask(
        &sock,
        &serde_json::json!({"cmd": "show", "run": "../../etc/passwd"}),
    );
    assert_eq!(show["code"], "usage", "{show}");
    stop(daemon);
}
