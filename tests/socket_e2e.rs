//! End-to-end tests of the socket's and the listeners' guards against the real daemon
//! binary: names from peers select configured entries only, roles, and recorded callers.

mod common;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use serde_json::Value;
use splice_dr_protocol::{
    ErrorCode, PingReply, Reply, RunDetail, RunEvent, RunStarted, RunState, RunSummary, StatusView,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request line and returns the first reply line. Requests are written as raw
/// JSON on purpose: these tests are about what the socket accepts from any peer.
fn ask(sock: &Path, request: &Value) -> Reply {
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    socket_reply(sock, &line)
}

/// The daemon's `status` over the socket, automation included.
fn automation(sock: &Path) -> splice_dr_protocol::AutomationView {
    let st: StatusView = answer(&ask(sock, &serde_json::json!({"cmd": "status"})));
    st.automation.expect("the daemon shows its automation")
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
    let (code, message) = refusal(&reply);
    assert_eq!(code, ErrorCode::Usage, "{reply:?}");
    assert!(
        message.contains("no node") && message.contains("validator-1"),
        "{message}"
    );
    // A configured node still works, and its log lands under state_dir/health.
    let ok = ask(
        &sock,
        &serde_json::json!({"cmd": "trigger", "event": "health.validator.down", "node": "validator-1"}),
    );
    assert!(is_ok(&ok), "{ok:?}");
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
    assert_eq!(refusal(&backups).0, ErrorCode::Usage, "{backups:?}");
    let show = ask(
        &sock,
        &serde_json::json!({"cmd": "show", "run": "../../etc/passwd"}),
    );
    assert_eq!(refusal(&show).0, ErrorCode::Usage, "{show:?}");
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
    std::fs::copy(common::bin(), &bin).unwrap();
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
    let st: StatusView = answer(&st);
    assert!(
        !st.automation.as_ref().expect("automation shown").paused,
        "{st:?}"
    );
    let runs = ask(
        &site.path("splice-dr.sock"),
        &serde_json::json!({"cmd": "runs"}),
    );
    assert!(answer::<Vec<RunSummary>>(&runs).is_empty(), "{runs:?}");
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
    let (code, message) = refusal(&reply);
    assert_eq!(code, ErrorCode::Denied, "{reply:?}");
    assert!(message.contains("[daemon] input_dirs"), "{reply:?}");
    let runs = ask(&sock, &serde_json::json!({"cmd": "runs"}));
    assert!(
        answer::<Vec<RunSummary>>(&runs).is_empty(),
        "nothing may start: {runs:?}"
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
    assert!(refusal(&outside).1.contains("not under"), "{outside:?}");
    std::fs::write(inputs.join("ids.json"), b"{}").unwrap();
    let inside = run(inputs.join("ids.json").to_str().unwrap());
    assert!(
        !matches!(
            inside,
            Reply::Error {
                code: ErrorCode::Denied,
                ..
            }
        ),
        "{inside:?}"
    );
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
        match reply_of(&lines.next().unwrap().unwrap()) {
            Reply::Event {
                event: RunEvent::Log { message, .. },
            } => saw_event |= message == me,
            Reply::Event { .. } => {}
            last => break last,
        }
    };
    let record: RunDetail = answer(&record);
    assert_eq!(record.requests(), std::slice::from_ref(&me), "{record:?}");
    assert!(saw_event, "the run's events must say who asked");
    stop(daemon);
}

/// Issue #13: ping and status say the daemon's version and protocol; a newer client's
/// unknown field or command is refused as a version skew naming both versions, over the
/// real socket; `pause` with a node stays refused whatever the protocol.
#[test]
fn the_protocol_version_is_reported_and_skew_is_named() {
    let dbs = NodeDbs::create("sdr_proto", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    let version = env!("CARGO_PKG_VERSION");
    let ping: PingReply = answer(&ask(
        &sock,
        &serde_json::json!({"cmd": "ping", "protocol": 1}),
    ));
    assert_eq!((ping.daemon_version.as_str(), ping.protocol), (version, 1));
    let status: StatusView = answer(&ask(
        &sock,
        &serde_json::json!({"cmd": "status", "protocol": 1}),
    ));
    assert_eq!(
        (status.daemon_version.as_str(), status.protocol),
        (version, 1)
    );
    let ours = format!("this daemon speaks protocol 1 (splice-dr {version})");
    for (request, what) in [
        (
            serde_json::json!({"cmd": "ping", "protocol": 99, "verbose": true}),
            "field `verbose`",
        ),
        (
            serde_json::json!({"cmd": "teleport", "protocol": 99, "node": "validator-1"}),
            "command `teleport`",
        ),
        (
            serde_json::json!({"cmd": "pause", "protocol": 99, "node": "validator-1"}),
            "field `node`",
        ),
    ] {
        let reply = ask(&sock, &request);
        let (code, message) = refusal(&reply);
        assert_eq!(code, ErrorCode::VersionSkew, "{reply:?}");
        assert!(message.contains(&ours), "{message}");
        assert!(message.contains("the client speaks 99"), "{message}");
        assert!(
            message.contains(&format!("{what} it does not know")),
            "{message}"
        );
    }
    for request in [
        serde_json::json!({"cmd": "pause", "node": "validator-1"}),
        serde_json::json!({"cmd": "pause", "node": "validator-1", "protocol": 1}),
    ] {
        let reply = ask(&sock, &request);
        let (code, message) = refusal(&reply);
        assert_eq!(code, ErrorCode::Usage, "{reply:?}");
        assert!(message.contains("unknown field `node`"), "{reply:?}");
    }
    assert!(!automation(&sock).paused, "nothing paused");
    // The CLI shows the version, and warns about nothing when the protocols agree.
    let ping = site.cli(&["ping"]);
    assert_eq!(ping.status.code(), Some(0), "{}", text(&ping));
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        out.contains(&format!("splice-dr {version}")),
        "{}",
        text(&ping)
    );
    assert!(
        !String::from_utf8_lossy(&ping.stderr).contains("warning"),
        "{}",
        text(&ping)
    );
    stop(daemon);
    // Without a daemon, ping fails instead of answering in-process.
    let ping = site.cli(&["ping"]);
    assert_eq!(ping.status.code(), Some(1), "{}", text(&ping));
    assert!(text(&ping).contains("no daemon answers"), "{}", text(&ping));
}

/// A site whose daemon listens for Alertmanager (token `s3cret`) and Prometheus, with a
/// 1 s head deadline so the tests need not wait 5 s.
fn listening_site(dbs: &NodeDbs) -> (Site, u16, u16) {
    let (am, prom) = (sim::closed_port(), sim::closed_port());
    let extra = format!(
        "http_header_timeout = \"1s\"\n\n[alertmanager]\nlisten = \"127.0.0.1:{am}\"\ntoken_file = \"am-token\"\n\n[metrics]\nlisten = \"127.0.0.1:{prom}\"\n"
    );
    let site = Site::new(dbs, BackendChoice::Builtin, &extra);
    std::fs::write(site.path("am-token"), "s3cret\n").unwrap();
    (site, am, prom)
}

/// Sends raw bytes and returns what the server answers until it closes (or 10 s pass).
fn raw_exchange(port: u16, request: &[u8]) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn alert_request(labels: &str) -> Vec<u8> {
    let body = format!(
        "{{\"status\":\"firing\",\"alerts\":[{{\"status\":\"firing\",\"labels\":{labels}}}]}}"
    );
    format!(
        "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_connections_neither_block_alerts_nor_exhaust_descriptors() {
    let dbs = NodeDbs::create("sdr_idle", 10);
    let (site, am, _) = listening_site(&dbs);
    let daemon = site.start_daemon();
    let pid = daemon.id();
    let before = open_fds(pid);
    let idle: Vec<_> = (0..200)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", am)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = open_fds(pid);
    assert!(
        during <= before + 32 + 8,
        "200 idle connections must not each hold a descriptor: {before} -> {during}"
    );
    // Alertmanager retries; within a few head deadlines the alert gets through.
    let start = std::time::Instant::now();
    let accepted = loop {
        let answer = raw_exchange(
            am,
            &alert_request(r#"{"alertname":"Real","node":"validator-1"}"#),
        );
        if answer.starts_with("HTTP/1.1 200") {
            break answer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "alert never accepted: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(accepted.contains("\"published\":1"), "{accepted}");
    drop(idle);
    stop(daemon);
}

#[test]
fn a_slow_request_head_is_closed_after_the_header_timeout() {
    use std::io::Read;
    let dbs = NodeDbs::create("sdr_slow", 10);
    let (site, am, prom) = listening_site(&dbs);
    let daemon = site.start_daemon();
    for port in [am, prom] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = std::time::Instant::now();
        s.write_all(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "port {port}: closed after {waited:?}"
        );
        assert!(
            n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "port {port}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    stop(daemon);
}

#[test]
fn webhook_checks_the_token_before_the_body_and_caps_the_body() {
    let dbs = NodeDbs::create("sdr_body", 10);
    let (site, am, prom) = listening_site(&dbs);
    let daemon = site.start_daemon();
    // 100 MiB announced, not one byte sent: the answer comes from the head alone.
    let head = "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n";
    let unauth = raw_exchange(am, format!("{head}\r\n").as_bytes());
    assert!(unauth.starts_with("HTTP/1.1 401"), "{unauth}");
    let big = raw_exchange(
        am,
        format!("{head}Authorization: Bearer s3cret\r\n\r\n").as_bytes(),
    );
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    // An alert's own `component` label does not become a metric series; probes' do.
    let ok = raw_exchange(
        am,
        &alert_request(r#"{"alertname":"X","node":"validator-1","component":"zzz-unbounded"}"#),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    std::thread::sleep(Duration::from_millis(500));
    let scrape = raw_exchange(prom, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(!scrape.contains("zzz-unbounded"), "{scrape}");
    stop(daemon);
}

/// Polls `show RUN` until `done` holds for the record.
fn wait_record(sock: &Path, run: &str, what: &str, done: impl Fn(&RunDetail) -> bool) -> RunDetail {
    let mut last = None;
    wait_for(Duration::from_secs(30), what, || {
        last = match ask(sock, &serde_json::json!({"cmd": "show", "run": run})) {
            ok @ Reply::Ok { .. } => Some(answer::<RunDetail>(&ok)),
            _ => None,
        };
        last.as_ref().is_some_and(&done)
    });
    last.expect("the record")
}

#[test]
fn approve_and_cancel_journal_who_asked() {
    let dbs = NodeDbs::create("sdr_who", 1);
    let blocker = format!(
        "[node.postgres.components.blocker]\nhealth_url = \"http://127.0.0.1:{}/never\"\n\n[[rule]]\nname = \"careful\"\non = \"operator.careful\"\nflow = \"noop\"\napproval = \"required\"\napproval_timeout = \"1h\"\n",
        sim::closed_port()
    );
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "scripts_dir = \"flows\"",
        "",
        &blocker,
    );
    std::fs::create_dir_all(site.path("flows")).unwrap();
    std::fs::write(site.path("flows/noop.rhai"), "//! does nothing\nparams\n").unwrap();
    std::fs::write(
        site.path("flows/slow.rhai"),
        "//! holds the node\nnode.wait_ready(\"blocker\", 10);\n",
    )
    .unwrap();
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    let me = format!("uid 0 (pid {})", std::process::id());

    let t = ask(
        &sock,
        &serde_json::json!({"cmd": "trigger", "event": "operator.careful"}),
    );
    assert!(is_ok(&t), "{t:?}");
    let mut pending = String::new();
    wait_for(Duration::from_secs(15), "a pending approval", || {
        pending = automation(&sock)
            .pending_approvals
            .first()
            .map(|p| p.run.clone())
            .unwrap_or_default();
        !pending.is_empty()
    });
    let a = ask(
        &sock,
        &serde_json::json!({"cmd": "approve", "run": pending}),
    );
    assert!(is_ok(&a), "{a:?}");
    let approved = wait_record(&sock, &pending, "the approved run to end", |r| {
        r.state == RunState::Succeeded
    });
    assert_eq!(
        approved
            .approval
            .as_ref()
            .and_then(|a| a.approved_by.as_deref()),
        Some(me.as_str()),
        "{approved:?}"
    );
    assert!(
        approved.requests().contains(&format!("approve by {me}")),
        "{approved:?}"
    );

    // Pausing is kept with its decision, naming the caller.
    assert!(is_ok(&ask(&sock, &serde_json::json!({"cmd": "pause"}))));
    let decisions = automation(&sock).recent_decisions;
    assert!(
        decisions
            .iter()
            .any(|d| d.outcome == "paused" && d.trigger == format!("operator {me}")),
        "{decisions:?}"
    );

    let started = ask(&sock, &serde_json::json!({"cmd": "run", "flow": "slow"}));
    let run = answer::<RunStarted>(&started).run;
    wait_record(&sock, &run, "the slow run to start", |r| {
        r.state == RunState::Running
    });
    let c = ask(&sock, &serde_json::json!({"cmd": "cancel", "run": run}));
    assert!(is_ok(&c), "{c:?}");
    // Journaled through the run's owner at once, whenever the flow notices the cancel.
    let cancelled = wait_record(&sock, &run, "the cancel to be journaled", |r| {
        r.requests().len() == 2
    });
    assert_eq!(
        cancelled.requests(),
        [format!("slow by {me}"), format!("cancel by {me}")],
        "{cancelled:?}"
    );
    stop(daemon);
}
