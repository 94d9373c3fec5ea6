//! End-to-end tests of the spine against real Postgres, the real binary, real sockets
//! and real files: backup, restore, verification, crash recovery, the socket's guards,
//! config errors, script limits, and the postgres backend loaded as a C-ABI plugin.

mod common;

use common::*;
use serde_json::Value;
use splice_dr_protocol::{
    BackupList, ErrorCode, PingReply, RunDetail, RunState, RunSummary, StatusView,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn backup_id(site: &Site) -> String {
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        id.starts_with("validator-1-"),
        "unexpected backup id: {}",
        text(&out)
    );
    id
}

fn backup_restore_roundtrip(site: &Site, dbs: &NodeDbs) {
    let before = dbs.fingerprint();
    let id = backup_id(site);
    dbs.damage();
    assert_ne!(dbs.fingerprint(), before, "the damage must change the data");

    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert_eq!(
        dbs.fingerprint(),
        before,
        "every table and sequence must be identical to the backup"
    );
    let left = databases_like(dbs.validator.trim_end_matches("_v"));
    assert_eq!(
        left.len(),
        2,
        "no staging or kept databases may remain: {left:?}"
    );
}

#[test]
fn backup_then_restore_brings_back_every_table_exactly() {
    let dbs = NodeDbs::create("sdr_rt", 3000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    backup_restore_roundtrip(&site, &dbs);

    // The journal recorded both runs with their steps; `show` prints per-step results.
    let runs: Vec<RunSummary> = view(&site.cli(&["runs", "--json"]));
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert_eq!(states, [RunState::Succeeded, RunState::Succeeded]);
    let restore_id = &runs[0].id;
    let show = site.cli(&["show", restore_id]);
    let shown = String::from_utf8_lossy(&show.stdout);
    for step in [
        "verify backup",
        "scale components down",
        "restore validator database",
        "swap in restored databases",
        "drop the replaced databases",
    ] {
        assert!(shown.contains(step), "show lacks step `{step}`:\n{shown}");
    }

    // The manifest records what the issue asks for.
    let backups: BackupList = view(&site.cli(&["backups", "--json"]));
    let b = &backups.backups[0];
    assert_eq!(b.migration_id, 0);
    assert_eq!(b.dumps[0].role, "validator");
    assert_eq!(b.dumps[1].role, "participant");
    let v_end = b.dumps[0].finished_at;
    let p_start = b.dumps[1].started_at;
    assert!(
        v_end < p_start,
        "validator dump must finish before the participant dump starts"
    );
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(site.path("repo").join(&b.id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["sha256"].as_str().unwrap().len() == 64));
    assert!(manifest["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15"));
    assert!(manifest["tool_version"].is_string());
}

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let dbs = NodeDbs::create("sdr_dry", 100);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup_id(&site);
    dbs.damage();
    let damaged = dbs.fingerprint();
    let out = site.cli(&["restore", "--backup", &id, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("plan (nothing was changed)"), "{stdout}");
    assert!(
        stdout.contains("would swap the restored databases in atomically"),
        "{stdout}"
    );
    assert_eq!(dbs.fingerprint(), damaged);
    assert_eq!(
        databases_like(dbs.validator.trim_end_matches("_v")).len(),
        2
    );
}

#[test]
fn restore_without_yes_off_a_terminal_is_a_usage_error() {
    let dbs = NodeDbs::create("sdr_yes", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    backup_id(&site);
    let out = site.cli(&["restore", "--backup", "latest"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
}

#[test]
fn corrupted_or_truncated_dump_is_refused_and_live_data_is_untouched() {
    let dbs = NodeDbs::create("sdr_bad", 2000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup_id(&site);
    let dump_dir = site.path("repo").join(&id).join("participant");
    let data_file = largest_data_file(&dump_dir);
    dbs.damage();
    let live = dbs.fingerprint();

    // Flip bytes in the middle of the file: same size, wrong checksum.
    let mut bytes = std::fs::read(&data_file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data_file, &bytes).unwrap();
    let out = site.cli(&["verify", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("sha256 mismatch (file corrupted)"),
        "{}",
        text(&out)
    );

    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is damaged and will not be used"),
        "{}",
        text(&out)
    );
    assert_eq!(
        dbs.fingerprint(),
        live,
        "a refused restore must not touch live data"
    );

    // Truncation is caught too, and by size before any hashing is trusted.
    std::fs::write(&data_file, &bytes[..mid]).unwrap();
    let out = site.cli(&["verify", "latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("truncated or grown"), "{}", text(&out));
    assert_eq!(dbs.fingerprint(), live);
    assert_eq!(
        databases_like(dbs.validator.trim_end_matches("_v")).len(),
        2
    );
}

#[test]
fn restore_refuses_another_migration_id_unless_forced_with_a_reason() {
    let dbs = NodeDbs::create("sdr_mig", 50);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup_id(&site);
    let cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("migration_id = 0", "migration_id = 1");
    std::fs::write(&site.config, cfg).unwrap();
    dbs.damage();
    let live = dbs.fingerprint();
    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("taken at migration id 0, the node is at migration id 1"),
        "{}",
        text(&out)
    );
    assert_eq!(dbs.fingerprint(), live);

    let out = site.cli(&[
        "restore",
        "--backup",
        &id,
        "--yes",
        "--force",
        "--reason",
        "drill on staging",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let runs: Vec<RunSummary> = view(&site.cli(&["runs", "--json"]));
    let show: RunDetail = view(&site.cli(&["--json", "show", &runs[0].id]));
    assert_eq!(show.forced_reason.as_deref(), Some("drill on staging"));
}

#[test]
fn daemon_serves_the_cli_and_restores_through_the_socket() {
    let dbs = NodeDbs::create("sdr_dmn", 2000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let before = dbs.fingerprint();
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("in-process"),
        "must go through the daemon: {}",
        text(&out)
    );
    dbs.damage();
    let out = site.cli(&["restore", "--backup", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dbs.fingerprint(), before);
    let status: StatusView = view(&site.cli(&["--json", "status"]));
    assert_eq!(status.mode, "daemon");
    assert_eq!(status.nodes[0].name.as_deref(), Some("validator-1"));
    assert!(status.nodes[0].last_backup.is_some());
    stop(daemon);
}

/// The daemon's `status`, asked on its socket.
fn socket_status(sock: &std::path::Path) -> StatusView {
    answer(&socket_reply(sock, b"{\"cmd\":\"status\"}\n"))
}

#[test]
fn socket_answers_bad_input_with_errors_and_keeps_serving() {
    let dbs = NodeDbs::create("sdr_sock", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "socket must be private by default");

    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // The requests are raw bytes on purpose (malformed ones); the replies are typed.
    let mut ask = |line: &[u8]| {
        s.write_all(line).unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        reply_of(&reply)
    };
    let bad = ask(b"{this is not json\n");
    let (code, message) = refusal(&bad);
    assert_eq!(code, ErrorCode::Usage);
    assert!(message.contains("malformed request"));
    let unknown = ask(b"{\"cmd\":\"format_disk\"}\n");
    assert_eq!(refusal(&unknown).0, ErrorCode::Usage);
    // Same connection still works after malformed requests.
    let pong: PingReply = answer(&ask(b"{\"cmd\":\"ping\"}\n"));
    assert_eq!(pong.mode, "daemon");

    // An oversized request is answered with an error, then that connection is closed
    // (the rest of the line is never read); the daemon keeps serving others.
    let s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut huge = vec![b'x'; 2 << 20];
        huge.push(b'\n');
        let _ = w.write_all(&huge);
    });
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    let big = reply_of(&reply);
    assert!(refusal(&big).1.contains("longer than"), "{big:?}");
    writer.join().unwrap();
    assert!(is_ok(&socket_reply(&sock, b"{\"cmd\":\"ping\"}\n")));
    stop(daemon);
}

#[test]
fn socket_refuses_a_peer_with_another_uid() {
    let dbs = NodeDbs::create("sdr_uid", 10);
    // A world-writable socket so that only the SO_PEERCRED check stands in the way.
    let site = Site::new(&dbs, BackendChoice::Builtin, "socket_mode = \"0666\"");
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    // Run a client as `nobody`: a copy of this test's own socket client would need
    // Rust; the splice-dr binary itself is the client, so copy it somewhere nobody can
    // execute and read the config.
    let shared = tempfile::Builder::new()
        .prefix("sdr-uid")
        .tempdir_in("/tmp")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = shared.path().join("splice-dr");
    std::fs::copy(common::bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&bin)
            .arg("--config")
            .arg(&site.config)
            .arg("status")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("uid 65534 may not control this daemon"),
        "{}",
        text(&out)
    );
    // The daemon is still serving its own uid.
    assert!(is_ok(&socket_reply(&sock, b"{\"cmd\":\"ping\"}\n")));
    stop(daemon);
}

#[test]
fn config_with_an_unknown_key_is_exit_2_with_key_and_line() {
    let dbs = NodeDbs::create("sdr_cfg", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str("bogus_key = 1\n");
    let line = cfg.lines().count();
    std::fs::write(&site.config, cfg).unwrap();
    for args in [&["check"][..], &["status"][..]] {
        let out = site.cli(args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bogus_key"), "{err}");
        assert!(
            err.contains(&format!("splice-dr.toml:{line}:")),
            "expected line {line}: {err}"
        );
    }
}

/// A `health_ca_file` that cannot be read is a config error at its key: `check` exits 2.
#[test]
fn an_unreadable_health_ca_file_is_exit_2_at_its_key() {
    let dbs = NodeDbs::create("sdr_cafile", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str(
        "\n[node.postgres.components.validator]\nhealth_url = \"https://127.0.0.1:9/readyz\"\n\
         health_ca_file = \"missing-ca.pem\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    let out = site.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node[0].postgres.components.validator.health_ca_file")
            && err.contains("missing-ca.pem"),
        "{err}"
    );
}

/// Waits until the daemon's `status` reports a rejected reload whose error names `what`.
fn wait_for_rejection(sock: &std::path::Path, what: &str) {
    wait_for(
        Duration::from_secs(10),
        "reload rejection in status",
        || {
            socket_status(sock)
                .config
                .error
                .is_some_and(|e| e.contains(what))
        },
    );
}

#[test]
fn daemon_rejects_a_bad_config_edit_and_keeps_the_old_one() {
    let dbs = NodeDbs::create("sdr_reload", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let good = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        good.replace("max_age = \"30d\"", "max_age = \"30d\"\nretention = 3"),
    )
    .unwrap();
    let sock = site.path("splice-dr.sock");
    wait_for_rejection(&sock, "retention");
    // The CLI itself refuses the broken file (exit 2, same precise error)...
    let out = site.cli(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("repository.retention"),
        "{}",
        text(&out)
    );
    // ...while the daemon keeps working on the previous config.
    let done = socket_reply(
        &sock,
        b"{\"cmd\":\"run\",\"flow\":\"backup\",\"follow\":false}\n",
    );
    assert!(is_ok(&done), "{done:?}");
    // Fixing the file clears the error.
    std::fs::write(&site.config, &good).unwrap();
    wait_for(Duration::from_secs(10), "reload acceptance", || {
        socket_status(&sock).config.error.is_none()
    });
    stop(daemon);
}

/// The names of the rules the daemon's autopilot runs, from `status`.
fn rule_names(sock: &std::path::Path) -> Vec<String> {
    socket_status(sock)
        .automation
        .into_iter()
        .flat_map(|a| a.rules)
        .map(|r| r.rule)
        .collect()
}

#[test]
fn reload_whose_nodes_cannot_be_built_keeps_the_old_rules_too() {
    let dbs = NodeDbs::create("sdr_reload_atomic", 10);
    let rule = |name: &str| {
        format!("[[rule]]\nname = \"{name}\"\non = \"operator.{name}\"\nflow = \"backup\"\n")
    };
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let good = std::fs::read_to_string(&site.config).unwrap() + rule("keeper-a").as_str();
    std::fs::write(&site.config, &good).unwrap();
    let daemon = site.start_daemon();
    let sock = site.path("splice-dr.sock");
    assert_eq!(rule_names(&sock), ["keeper-a"]);
    // B: valid, different rules, but a node whose plugin does not exist.
    let broken_node = format!(
        "\n[[node]]\nname = \"broken-1\"\nbackend = \"plugin\"\nmigration_id = 0\n\n[node.plugin]\npath = \"{}\"\n",
        site.path("no-such-plugin.so").display()
    );
    let with_b = good.replace("keeper-a", "keeper-b");
    std::fs::write(&site.config, format!("{with_b}{broken_node}")).unwrap();
    wait_for_rejection(&sock, "broken-1");
    // Nothing of B is in force: A's rule still runs, B's is not there.
    assert_eq!(rule_names(&sock), ["keeper-a"], "{}", site.daemon_log());
    let out = site.cli(&["trigger", "operator.keeper-a", "--node", "validator-1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        Duration::from_secs(20),
        "keeper-a to start a backup",
        || {
            socket_status(&sock)
                .automation
                .into_iter()
                .flat_map(|a| a.recent_decisions)
                .any(|d| d.rule == "keeper-a" && d.outcome.starts_with("started"))
        },
    );
    // B without the broken node is taken whole: the rule change was observable all along.
    std::fs::write(&site.config, &with_b).unwrap();
    wait_for(Duration::from_secs(10), "reload of B's rules", || {
        rule_names(&sock) == ["keeper-b"]
    });
    assert!(socket_status(&sock).config.error.is_none());
    stop(daemon);
}

#[test]
fn check_writes_no_signing_key_and_refuses_what_the_daemon_refuses_to_start_with() {
    let dbs = NodeDbs::create("sdr_check_build", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let out = site.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !site.path("state/keys/signing.key").exists(),
        "check wrote a key"
    );
    // One build for both: a rule naming a missing flow stops `check` and the daemon alike.
    let mut cfg = std::fs::read_to_string(&site.config).unwrap();
    cfg.push_str("[[rule]]\nname = \"lost\"\non = \"operator.lost\"\nflow = \"no-such-flow\"\n");
    std::fs::write(&site.config, cfg).unwrap();
    let out = site.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such-flow"), "{}", text(&out));
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let mut daemon = site.cmd().arg("daemon").stderr(log).spawn().unwrap();
    let mut exited = None;
    wait_for(
        Duration::from_secs(20),
        "the daemon to refuse to start",
        || {
            exited = daemon.try_wait().unwrap();
            exited.is_some()
        },
    );
    assert!(
        exited.is_some_and(|s| !s.success()),
        "{}",
        site.daemon_log()
    );
    assert!(
        site.daemon_log().contains("no-such-flow"),
        "{}",
        site.daemon_log()
    );
}

#[test]
fn endless_loop_in_a_site_script_is_stopped_with_a_clear_error() {
    let dbs = NodeDbs::create("sdr_loop", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "scripts_dir = \"flows\"");
    std::fs::create_dir_all(site.path("flows")).unwrap();
    std::fs::write(
        site.path("flows/spin.rhai"),
        "//! never ends\nlet n = 0;\nloop { n += 1; }\n",
    )
    .unwrap();
    let out = site.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("spin"),
        "{}",
        text(&out)
    );
    let out = site.cli(&["run", "spin"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("operation limit"), "{}", text(&out));
    assert!(
        text(&out).contains("spin.rhai:3:"),
        "error must point at the loop: {}",
        text(&out)
    );

    // A syntax error is a config-time error with file:line:col.
    std::fs::write(site.path("flows/broken.rhai"), "let x = ;\n").unwrap();
    let out = site.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("broken.rhai:1:"), "{}", text(&out));
}

#[test]
fn daemon_killed_mid_restore_leaves_the_original_intact_and_the_run_interrupted() {
    let dbs = NodeDbs::create("sdr_kill", 400_000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    dbs.damage();
    let live = dbs.fingerprint();

    let restore = site
        .cmd()
        .args(["restore", "--backup", "latest", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the participant database is being restored into its staging copy.
    let state = site.path("state/runs");
    wait_for(
        Duration::from_secs(60),
        "the participant restore step",
        || {
            std::fs::read_dir(&state)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| {
                        t.contains("\"restore participant database from")
                            && t.contains("\"state\": \"running\"")
                    })
                })
                && databases_like(&dbs.participant).len() > 1
        },
    );
    let mut daemon = daemon;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let mut restore = restore;
    let _ = restore.wait();

    // The restore died before its swap: live data is exactly as it was.
    assert_eq!(dbs.fingerprint(), live);

    // A new daemon marks the run interrupted and drops the half-restored database.
    let daemon = site.start_daemon();
    let runs: Vec<RunSummary> = view(&site.cli(&["runs", "--json"]));
    let run = runs.iter().find(|r| r.flow == "restore").unwrap();
    assert_eq!(run.state, RunState::Interrupted, "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("restore participant database"),
        "{run:?}"
    );
    let show = site.cli(&["show", &run.id]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("[interrupted]"),
        "{}",
        text(&show)
    );
    wait_for(Duration::from_secs(10), "staging databases dropped", || {
        databases_like(dbs.validator.trim_end_matches("_v")).len() == 2
    });
    assert!(
        site.daemon_log().contains("marked interrupted"),
        "{}",
        site.daemon_log()
    );

    // And the node can be restored normally afterwards.
    let out = site.cli(&["restore", "--backup", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    stop(daemon);
}

#[test]
fn a_second_destructive_run_on_the_same_node_is_refused_visibly() {
    let dbs = NodeDbs::create("sdr_lock", 300_000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    backup_id(&site);
    // An in-process restore (no daemon) holds the node lock...
    let mut first = site
        .cmd()
        .args(["restore", "--backup", "latest", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = site.path("state/runs");
    wait_for(Duration::from_secs(30), "first restore running", || {
        std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| {
                    t.contains("\"flow\": \"restore\"") && t.contains("\"state\": \"running\"")
                })
            })
    });
    // ...so a second one from another process is refused with the holder named.
    let out = site.cli(&["restore", "--backup", "latest", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is busy"), "{}", text(&out));
    assert!(first.wait().unwrap().success());
    let runs: Vec<RunSummary> = view(&site.cli(&["runs", "--json"]));
    assert!(runs.iter().any(|r| r
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("refused: node `validator-1` is busy"))));
}

#[test]
fn cancel_stops_a_restore_and_rolls_back() {
    let dbs = NodeDbs::create("sdr_cancel", 400_000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let daemon = site.start_daemon();
    assert!(site.cli(&["backup"]).status.success());
    dbs.damage();
    let live = dbs.fingerprint();
    let restore = site
        .cmd()
        .args(["restore", "--backup", "latest", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = site.path("state/runs");
    let mut run_id = String::new();
    wait_for(
        Duration::from_secs(60),
        "the participant restore step",
        || {
            std::fs::read_dir(&state)
                .into_iter()
                .flatten()
                .flatten()
                // Not the journal's `.NAME.json` temporary files (atomic rewrites).
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .any(|e| {
                    let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let hit = t.contains("\"restore participant database from")
                        && t.contains("\"state\": \"running\"");
                    if hit {
                        run_id = e.path().file_stem().unwrap().to_string_lossy().into_owned();
                    }
                    hit
                })
        },
    );
    let out = site.cli(&["cancel", &run_id]);
    assert!(out.status.success(), "{}", text(&out));
    let mut restore = restore;
    assert_eq!(restore.wait().unwrap().code(), Some(1));
    let show: RunDetail = view(&site.cli(&["--json", "show", &run_id]));
    assert_eq!(show.state, RunState::Cancelled, "{show:?}");
    assert_eq!(
        dbs.fingerprint(),
        live,
        "a cancelled restore leaves live data as it was"
    );
    assert_eq!(
        databases_like(dbs.validator.trim_end_matches("_v")).len(),
        2
    );
    stop(daemon);
}

#[test]
fn postgres_backend_loaded_as_a_cdylib_plugin_passes_the_same_roundtrip() {
    let dbs = NodeDbs::create("sdr_so", 3000);
    let site = Site::new(&dbs, BackendChoice::Plugin(postgres_plugin_path()), "");
    let out = site.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("backend postgres"),
        "{}",
        text(&out)
    );
    backup_restore_roundtrip(&site, &dbs);
}

/// A Postgres that accepts connections and never answers (a hung host, a proxy whose
/// backend is gone) must not hang the daemon's start, `status` or a run: each gives up
/// after the connect timeout and names the server.
#[test]
fn a_postgres_that_accepts_but_never_answers_hangs_nothing() {
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in tarpit.incoming() {
            held.push(c);
        }
    });
    let site = Site::with("v", "p", BackendChoice::Builtin, "", "", "");
    let u = url_parts::parse(&pg_url());
    let config = std::fs::read_to_string(&site.config).unwrap().replace(
        &format!("@{}:{}/postgres\"", u.host, u.port),
        &format!("@127.0.0.1:{port}/postgres?connect_timeout=2\""),
    );
    assert!(config.contains("?connect_timeout=2"), "{config}");
    std::fs::write(&site.config, config).unwrap();

    let started = std::time::Instant::now();
    let daemon = site.start_daemon();
    eprintln!("daemon up after {:?}", started.elapsed());

    let started = std::time::Instant::now();
    let out = site.cli(&["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let v: StatusView = view(&out);
    let node = &v.nodes[0];
    let errors = [&node.databases_error, &node.leftovers_error]
        .map(|e| e.as_deref().unwrap_or_default())
        .join(" ");
    let server = format!("127.0.0.1:{port}");
    assert!(errors.contains(&server), "{node:?}");
    assert!(
        errors.contains("did not complete the startup handshake")
            || errors.contains("has not answered it yet"),
        "{node:?}"
    );

    let started = std::time::Instant::now();
    let out = site.cli(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(text(&out).contains(&server), "{}", text(&out));
    stop(daemon);
}

/// Threads of a process, from /proc.
fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// A Docker engine that accepts connections and never answers (a deadlocked dockerd):
/// the daemon still starts, `status` answers within its limit naming what did not answer,
/// and the health probes give up on time instead of leaving a blocked thread per round.
#[test]
fn a_hung_docker_engine_bounds_status_and_probes_and_leaks_no_threads() {
    let site = Site::with(
        "v",
        "p",
        BackendChoice::Builtin,
        "health_interval = \"200ms\"\nhealth_timeout = \"1s\"",
        "",
        "",
    );
    let engine_sock = site.path("hung-docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&engine_sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let config = std::fs::read_to_string(&site.config).unwrap();
    let node_start = config.find("backend = \"postgres\"").unwrap();
    let compose_node = format!(
        "backend = \"compose\"\nmigration_id = 0\n\n[node.compose]\nproject = \"sdr-hung\"\ndocker_host = \"unix://{}\"\n",
        engine_sock.display()
    );
    // Two nodes on the hung engine: each costs its own deadline, not one after the other.
    let second = format!("\n[[node]]\nname = \"validator-2\"\n{compose_node}")
        .replace("sdr-hung", "sdr-hung-2");
    std::fs::write(
        &site.config,
        format!("{}{compose_node}{second}", &config[..node_start]),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let child = site
        .cmd()
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(site.path("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let daemon = DaemonProcess::from_child(child);
    let sock = site.path("splice-dr.sock");
    wait_for(Duration::from_secs(40), "the daemon's socket", || {
        UnixStream::connect(&sock).is_ok()
    });
    let up = started.elapsed();
    eprintln!("daemon up after {up:?}");
    assert!(
        up < Duration::from_secs(28),
        "recovery ran node after node: {up:?}"
    );
    let log = site.daemon_log();
    assert!(
        log.contains("validator-2: cannot look for half-restored databases: no answer within 15s"),
        "{log}"
    );

    let started = std::time::Instant::now();
    let out = site.cli(&["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let took = started.elapsed();
    eprintln!("status answered in {took:?}");
    assert!(took < Duration::from_secs(18), "node after node: {took:?}");
    let v: StatusView = view(&out);
    assert_eq!(v.nodes.len(), 2);
    for node in &v.nodes {
        assert!(
            node.components_error
                .as_deref()
                .is_some_and(|e| e.contains("no answer within 10s")),
            "{node:?}"
        );
    }

    // Probe rounds every 200 ms, each cut off after 1 s: the thread count stays flat.
    std::thread::sleep(Duration::from_secs(3));
    let before = threads_of(pid);
    std::thread::sleep(Duration::from_secs(8));
    let after = threads_of(pid);
    eprintln!("daemon threads: {before} -> {after}");
    assert!(after <= before + 4, "threads grew from {before} to {after}");
    let health = site.cli(&["--json", "status"]);
    let v: StatusView = view(&health);
    let current = v.health.expect("the daemon probes health").current;
    assert!(
        current
            .iter()
            .any(|h| h.detail.contains("no answer within 1s")),
        "{current:?}"
    );
    stop(daemon);
}
