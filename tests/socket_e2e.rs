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

/// Runs the splice-dr CLI as `uid` (a copy of the binary anyone may execute; the site
/// made readable), so the daemon sees that uid through SO_PEERCRED.
fn cli_as(site: &Site, uid: u32, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let shared = tempfile::Builder::new()
        .prefix("sdr-role")
        .tempdir_in("/tmp")
        .unwrap();
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(shared.path(), 0o755).unwrap();
    open(site.dir.path(), 0o755).unwrap();
    open(&site.config, 0o644).unwrap();
    let bin = shared.path().join("splice-dr");
    std::fs::copy(env!("CARGO_BIN_EXE_splice-dr"), &bin).unwrap();
    open(&bin, 0o755).unwrap();
    std::process::Command::new(&bin)
        .arg("--config")
        .arg(&site.config)
        .args(args)
        .uid(uid)
        .gid(uid)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_viewer_reads_but_changes_nothing() {
    let dbs = NodeDbs::create("sdr_viewer", 10);
    let site = Site::new(
        &dbs,
        BackendChoice::Builtin,
        "socket_mode = \"0666\"\nviewer_uids = [65534]",
    );
    let daemon = site.start_daemon();
    let status = cli_as(&site, 65534, &["--json", "status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    for change in [vec!["pause"], vec!["run", "backup"], vec!["cancel", "x"]] {
        let out = cli_as(&site, 65534, &change);
        assert_eq!(out.status.code(), Some(1), "{change:?}: {}", text(&out));
        assert!(
            text(&out).contains("uid 65534 is a viewer") && text(&out).contains("operator_uids"),
            "{change:?}: {}",
            text(&out)
        );
    }
    let st = ask(
        &site.path("splice-dr.sock"),
        &serde_json::json!({"cmd": "status"}),
    );
    assert_eq!(st["result"]["automation"]["paused"], false, "{st}");
    let runs = ask(
        &site.path("splice-dr.sock"),
        &serde_json::json!({"cmd": "runs"}),
    );
    assert_eq!(runs["result"], serde_json::json!([]), "{runs}");
    stop(daemon);
}

#[test]
fn file_parameters_outside_input_dirs_are_refused() {
    let dbs = NodeDbs::create("sdr_inputs", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    let run = |file: &str| {
        ask(
            &sock,
            &serde_json::json!({"cmd": "run", "flow": "reonboard", "dry_run": true,
                "params": {"identities_file": file}}),
        )
    };
    let reply = run("/etc/shadow");
    assert_eq!(reply["code"], "denied", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("[daemon] input_dirs"),
        "{reply}"
    );
    let runs = ask(&sock, &serde_json::json!({"cmd": "runs"}));
    assert_eq!(
        runs["result"],
        serde_json::json!([]),
        "nothing may start: {runs}"
    );
    stop(daemon);

    // With an input directory, a file under it passes the check (and one outside does not).
    let inputs = site.path("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let text_cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\ninput_dirs = [\"inputs\"]\n");
    std::fs::write(&site.config, text_cfg).unwrap();
    let daemon = site.start_daemon();
    let outside = run("/etc/shadow");
    assert!(
        outside["message"].as_str().unwrap().contains("not under"),
        "{outside}"
    );
    std::fs::write(inputs.join("ids.json"), b"{}").unwrap();
    let inside = run(inputs.join("ids.json").to_str().unwrap());
    assert_ne!(inside["code"], "denied", "{inside}");
    stop(daemon);
}

#[test]
fn a_run_requested_on_the_socket_journals_the_peer_uid_and_pid() {
    let dbs = NodeDbs::create("sdr_peer", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let mut s = UnixStream::connect(site.path("splice-dr.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(b"{\"cmd\":\"run\",\"flow\":\"backup\",\"follow\":true}\n")
        .unwrap();
    let me = format!("backup by uid 0 (pid {})", std::process::id());
    let mut saw_event = false;
    let mut lines = BufReader::new(s).lines();
    let record = loop {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line["type"] != "event" {
            break line;
        }
        saw_event |= line["event"]["message"] == me.as_str();
    };
    assert_eq!(record["type"], "ok", "{record}");
    assert_eq!(
        record["result"]["requests"],
        serde_json::json!([me]),
        "{record}"
    );
    assert!(saw_event, "the run's events must say who asked");
    stop(daemon);
}
