//! Drills of physical backups, end to end with the real binary against a real PostgreSQL
//! 15 server the test makes for itself (`common::pg_cluster`): the copy is started as a
//! scratch server of its own under the daemon's state directory, checked, stopped and
//! removed, and the node's server and data directory are never touched. The daemon and
//! CLI run as the `postgres` user: PostgreSQL refuses to run as root.

mod common;

use common::pg_cluster::*;
use common::*;
use splice_dr_repo::{DrillRecord, DrillResult};
use std::time::{Duration, Instant};

/// The last drill the backup's manifest records, if any.
fn last_drill(site: &Site, id: &str) -> Option<DrillRecord> {
    let m: splice_dr_repo::Manifest = serde_json::from_slice(
        &std::fs::read(site.path("repo").join(id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m.last_drill
}

/// A node on `c` that takes a physical backup (all the keys a restore needs), which is
/// then reconfigured with only what a drill needs: no `data_dir`, no server commands, no
/// `physical_replaces_cluster`. `extra_node` is appended (e.g. `[[node.drill_check]]`).
/// Returns the site, handed to the `postgres` user, and the backup's id.
fn backed_up(c: &Cluster, extra_node: &str) -> (Site, String) {
    let site = c.site(&c.start_command(), &c.stop_command());
    let id = backup(&site, None);
    let text = c.config_text("", "", extra_node);
    std::fs::write(&site.config, text).unwrap();
    give_to_postgres(&site);
    (site, id)
}

/// What must hold after any drill: no scratch server runs and no scratch directory is
/// left, and the node's server is the same process on the same rows.
fn assert_node_untouched(c: &Cluster, site: &Site, pid: u32, digests: &[String]) {
    assert!(
        scratch_processes(site).is_empty(),
        "a scratch server still runs: {:?}",
        scratch_processes(site)
    );
    assert!(
        scratch_dirs(site).is_empty(),
        "left: {:?}",
        scratch_dirs(site)
    );
    assert_eq!(c.postmaster_pid(), pid, "the node's server was restarted");
    assert_eq!(c.digests(), digests, "the node's rows changed");
    assert!(c.kept_dirs().is_empty(), "kept: {:?}", c.kept_dirs());
}

/// A good physical backup passes its drill, recorded in its manifest with what was read
/// and checked; the node's server (same postmaster) and rows are untouched and nothing of
/// the drill is left. As root the drill is refused before anything, saying what to do,
/// and nothing is recorded.
#[test]
fn a_good_physical_backup_passes_its_drill_and_the_node_is_untouched() {
    let c = Cluster::start();
    let (site, id) = backed_up(&c, "");
    c.change_rows();
    let (pid, digests) = (c.postmaster_pid(), c.digests());

    let as_root = site.cli(&["drill", "--backup", &id]);
    let shown = text(&as_root);
    assert!(!as_root.status.success(), "{shown}");
    assert!(
        shown.contains("PostgreSQL refuses to run as root") && shown.contains("postgres"),
        "{shown}"
    );
    assert!(last_drill(&site, &id).is_none(), "a refusal is no drill");
    // What the root run wrote into the state directory goes back to the server's user.
    give_to_postgres(&site);

    let started = Instant::now();
    let out = cli_as_server_user(&site, &["--json", "drill", "--backup", &id]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let result = flow_result(&out);
    assert_eq!(result["kind"], "physical", "{result}");
    assert!(result["indexes_checked"].as_u64() >= Some(4), "{result}");
    assert!(result["rows_read"].as_u64() >= Some(2300), "{result}");
    let drill = last_drill(&site, &id).expect("recorded");
    assert_eq!(drill.result, DrillResult::Passed, "{drill:?}");
    assert!(
        drill.detail.contains("started as a scratch server")
            && drill.detail.contains("tables read"),
        "{drill:?}"
    );
    println!(
        "drill of a physical backup ({} rows): {:.1}s",
        result["rows_read"],
        took.as_secs_f64()
    );
    assert_node_untouched(&c, &site, pid, &digests);
    // The listing shows the drill like a logical one's.
    let listed = cli_as_server_user(&site, &["backups"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("passed"),
        "{}",
        text(&listed)
    );
}

/// A data file of the base backup garbled after the backup was sealed: the drill fails on
/// its checksum and pg_verifybackup, before any scratch server, with the reason recorded.
#[test]
fn a_garbled_base_backup_fails_its_drill_with_the_reason_recorded() {
    let c = Cluster::start();
    let (site, id) = backed_up(&c, "");
    let (pid, digests) = (c.postmaster_pid(), c.digests());
    let victim = largest_file(&site.path("repo").join(&id).join("cluster").join("base"));
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();

    let out = cli_as_server_user(&site, &["drill", "--backup", &id]);
    assert!(!out.status.success(), "{}", text(&out));
    let drill = last_drill(&site, &id).expect("recorded");
    assert_eq!(drill.result, DrillResult::Failed, "{drill:?}");
    assert!(
        drill.detail.contains("sha256 mismatch") && drill.detail.contains("pg_verifybackup"),
        "{drill:?}"
    );
    assert_node_untouched(&c, &site, pid, &digests);
}

/// The copy starts but fails a site check: the drill, run through the daemon, is recorded
/// failed naming the check and its value, the daemon shows it in `status` and its metric,
/// and the scratch server and its directory are gone.
#[test]
fn a_failed_check_fails_the_drill_and_leaves_no_scratch_server() {
    let c = Cluster::start();
    let metrics = free_port();
    let check = format!(
        r#"[[node.drill_check]]
name = "participant holds one row"
database = "participant"
sql = "SELECT count(*) FROM t"
expect = "1"

[metrics]
listen = "127.0.0.1:{metrics}"
"#
    );
    let (site, id) = backed_up(&c, &check);
    let (pid, digests) = (c.postmaster_pid(), c.digests());
    let daemon = daemon_as_server_user(&site);

    let out = cli_as_server_user(&site, &["drill", "--backup", &id]);
    assert!(!out.status.success(), "{}", text(&out));
    let drill = last_drill(&site, &id).expect("recorded");
    assert_eq!(drill.result, DrillResult::Failed, "{drill:?}");
    assert!(
        drill
            .detail
            .contains("site check \"participant holds one row\" returned 2000, expected 1"),
        "{drill:?}"
    );
    assert_node_untouched(&c, &site, pid, &digests);
    // The daemon saw the drill's end: `status` names the failed drill, and its gauge is 0
    // (set when the autopilot sees the run's end, after the CLI returned).
    let status = cli_as_server_user(&site, &["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("DRILL FAILED: "),
        "{}",
        text(&status)
    );
    wait_for(Duration::from_secs(30), "the drill's metric", || {
        ureq::get(&format!("http://127.0.0.1:{metrics}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .is_some_and(|body| {
                body.lines().any(|l| {
                    l.starts_with("splice_dr_last_drill_success{")
                        && l.contains("validator-1")
                        && l.ends_with(" 0")
                })
            })
    });
    stop(daemon);
}

/// The daemon is killed (SIGKILL) while its drill's scratch server runs a site check: the
/// server outlives it, and the next daemon start stops it and removes its directory; the
/// node is untouched throughout.
#[test]
fn a_daemon_killed_mid_drill_leaves_nothing_after_its_next_start() {
    let c = Cluster::start();
    let slow = r#"[[node.drill_check]]
name = "slow"
database = "validator"
sql = "SELECT count(*) FROM (SELECT pg_sleep(600)) s"
"#;
    let (site, id) = backed_up(&c, slow);
    let (pid, digests) = (c.postmaster_pid(), c.digests());
    let mut daemon = daemon_as_server_user(&site);
    let mut drill = as_server_user(&site)
        .args(["drill", "--backup", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Mid-drill: the scratch server runs the site check.
    wait_for(
        Duration::from_secs(120),
        "the scratch server's site check",
        || scratch_sleeping(&site),
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let _ = drill.wait();
    assert!(
        !scratch_processes(&site).is_empty(),
        "the scratch server outlives a killed daemon"
    );
    assert_eq!(scratch_dirs(&site).len(), 1, "{:?}", scratch_dirs(&site));

    let daemon = daemon_as_server_user(&site);
    assert_node_untouched(&c, &site, pid, &digests);
    assert!(
        site.daemon_log().contains("removed the scratch directory"),
        "{}",
        site.daemon_log()
    );
    // An interrupted drill proved nothing: nothing recorded.
    assert!(last_drill(&site, &id).is_none());
    stop(daemon);
}

/// Whether a scratch server's session runs `pg_sleep` (asked over its private socket).
fn scratch_sleeping(site: &Site) -> bool {
    for dir in scratch_dirs(site) {
        let sock = drills_dir(site).join(&dir).join("s");
        let Ok(entries) = std::fs::read_dir(&sock) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(port) = name
                .strip_prefix(".s.PGSQL.")
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            let mut cfg = postgres::Config::new();
            cfg.host_path(&sock)
                .port(port)
                .user("postgres")
                .dbname("postgres");
            if let Ok(mut client) = cfg.connect(postgres::NoTls) {
                let n: i64 = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                if n > 0 {
                    return true;
                }
            }
        }
    }
    false
}
