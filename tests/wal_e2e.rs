//! Continuous WAL of a bare Postgres server, end to end with the real daemon against a
//! real PostgreSQL 15 server the test makes for itself (1 MB WAL segments so a test
//! closes several): the daemon's `pg_receivewal` on its own replication slot, completed
//! segments sealed into the repository, restarts of the server and of the daemon without
//! a gap, RPO and lag in `status` and the metrics, and the slot dropped when streaming is
//! turned off; a physical backup restored past its end by replaying that WAL, to `latest`
//! (the open segment included) and to a time, and targets it cannot reach refused before
//! anything changes.

mod common;

use common::pg_cluster::*;
use common::*;

/// The node's replication slot of the daemon's, as the test server lists it.
const SLOT: &str = "splice_dr_validator_1";

impl Cluster {
    /// One value of a query on the `postgres` database, as the node's role.
    fn value(&self, sql: &str) -> String {
        self.client("postgres").query_one(sql, &[]).unwrap().get(0)
    }

    /// Whether the server holds the node's slot.
    fn has_slot(&self) -> bool {
        self.value(&format!(
            "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        )) == "1"
    }

    /// Writes rows, closes the current WAL segment and answers its name (the superuser's
    /// `pg_switch_wal()`): once the receiver has it, it is complete and must be sealed.
    fn write_and_switch(&self, tag: &str) -> String {
        self.client("participant-0")
            .batch_execute(&format!(
                "INSERT INTO t (v) SELECT '{tag}-' || g FROM generate_series(1, 200) g"
            ))
            .unwrap();
        let segment = self.value("SELECT pg_walfile_name(pg_current_wal_lsn())");
        self.psql("postgres", "SELECT pg_switch_wal()");
        segment
    }

    fn restart(&self) {
        sh(&self.stop_command());
        sh(&self.start_command());
    }
}

/// The node's WAL archive in the site's repository: segment names with a checksum file.
fn archived(site: &Site) -> Vec<String> {
    let dir = site.path("repo/wal/validator-1");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 24 && dir.join(format!("{n}.sha256")).is_file())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until `segment` is sealed in the archive.
fn wait_sealed(site: &Site, segment: &str) {
    wait_for(
        std::time::Duration::from_secs(60),
        &format!("WAL segment {segment} sealed in the repository"),
        || archived(site).iter().any(|s| s == segment),
    );
}

/// The node's `wal` part of `status --json`.
fn wal_status(site: &Site) -> serde_json::Value {
    let v: splice_dr_protocol::StatusView = site.json(&["status"]);
    let node = v
        .nodes
        .into_iter()
        .find(|n| n.name.as_deref() == Some("validator-1"))
        .expect("the node in status");
    serde_json::to_value(node.wal).expect("serializes")
}

fn scrape_metrics(port: u16) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .map(|r| r.into_body().read_to_string().unwrap_or_default())
        .unwrap_or_default()
}

/// Segment numbers (timeline 1) of `names` follow each other without a hole.
fn assert_contiguous(names: &[String]) {
    let numbers: Vec<u64> = names
        .iter()
        .filter(|n| n.starts_with("00000001"))
        .map(|n| {
            let log = u64::from_str_radix(&n[8..16], 16).unwrap();
            let seg = u64::from_str_radix(&n[16..24], 16).unwrap();
            // 1 MB segments: 4096 of them per 4 GB "log file".
            log * 4096 + seg
        })
        .collect();
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in the archive: {names:?}");
    }
}

/// Continuous WAL end to end: the daemon streams through its own slot; segments closed by
/// `pg_switch_wal()` are sealed in the repository; the server restarting and the daemon
/// restarting (segments written while it was down) leave no gap; RPO, lag and the slot
/// hazard are in `status --json` and the metrics; turning streaming off drops the slot.
#[test]
fn wal_streaming_archives_every_segment_across_restarts() {
    let c = Cluster::start();
    let port = free_port();
    let streaming = "wal_streaming = true\n";
    let far = tempfile::tempdir().unwrap();
    let metrics = format!(
        "\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[repository.offsite]]\nname = \"far\"\n\
         kind = \"directory\"\npath = \"{}\"\n",
        far.path().display()
    );
    let site = c.site_with(&c.start_command(), &c.stop_command(), streaming, &metrics);
    let daemon = site.start_daemon();

    let caught_up = || {
        let w = wal_status(&site);
        w["receiving"] == true && w["lag_bytes"] == 0 && w["rpo_seconds"].is_number()
    };
    let start = std::time::Instant::now();
    while !caught_up() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the receiver did not catch up: {}\n{}",
            wal_status(&site),
            site.daemon_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(c.has_slot(), "the daemon created its slot {SLOT}");
    let w = wal_status(&site);
    assert_eq!(w["slot"], SLOT, "{w}");
    assert!(
        w["rpo_seconds"].as_f64() < Some(30.0),
        "an idle, caught-up server is not stale: {w}"
    );
    let warning = w["warnings"].to_string();
    assert!(warning.contains("max_slot_wal_keep_size"), "{w}");
    let body = scrape_metrics(port);
    for series in [
        "splice_dr_rpo_seconds{node=\"validator-1\"}",
        "splice_dr_wal_slot_lag_bytes{node=\"validator-1\"}",
        "splice_dr_wal_receiving{node=\"validator-1\"} 1",
    ] {
        assert!(body.contains(series), "{series} missing from:\n{body}");
    }

    let first = c.write_and_switch("a");
    wait_sealed(&site, &first);
    // Copied off-site too, committed by its checksum, byte for byte.
    let far_wal = far.path().join("wal/validator-1");
    wait_for(
        std::time::Duration::from_secs(60),
        &format!("WAL segment {first} committed off-site"),
        || far_wal.join(format!("{first}.sha256")).is_file(),
    );
    assert_eq!(
        std::fs::read(far_wal.join(&first)).unwrap(),
        std::fs::read(site.path(&format!("repo/wal/validator-1/{first}"))).unwrap()
    );
    let listed = site.cli(&["backups"]);
    assert!(
        listed.status.success(),
        "the WAL is no backup: {}",
        text(&listed)
    );
    // Sealed segments leave staging; the open one, once written to, stays there.
    let staging = site.path("state/wal/validator-1");
    let staged = || -> Vec<String> {
        std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(!staged().contains(&first), "{:?}", staged());
    c.client("participant-0")
        .batch_execute("INSERT INTO t (v) VALUES ('open segment')")
        .unwrap();
    wait_for(
        std::time::Duration::from_secs(60),
        "the open segment in staging",
        || staged().iter().any(|n| n.ends_with(".partial")),
    );

    // The server restarts: the receiver is restarted, the slot kept what it missed.
    c.restart();
    let after_server = c.write_and_switch("b");
    wait_sealed(&site, &after_server);
    assert!(wal_status(&site)["restarts"].as_u64() >= Some(1));

    // The daemon restarts, and WAL is written while none runs: the slot keeps it.
    stop(daemon);
    let while_down = [c.write_and_switch("c"), c.write_and_switch("d")];
    assert!(c.has_slot());
    let daemon = site.start_daemon();
    for s in &while_down {
        wait_sealed(&site, s);
    }
    let names = archived(&site);
    assert!(names.first() <= Some(&first), "{names:?}");
    assert_contiguous(&names);
    // Everything sealed, the segments sealed while the daemon was down included, ends up
    // off-site.
    wait_for(
        std::time::Duration::from_secs(60),
        "every sealed segment off-site",
        || {
            names
                .iter()
                .all(|n| far_wal.join(format!("{n}.sha256")).is_file())
        },
    );
    for n in &names {
        let sum = std::fs::read_to_string(site.path(&format!("repo/wal/validator-1/{n}.sha256")))
            .unwrap();
        assert_eq!(sum.trim().len(), 64, "{n}");
    }

    // Streaming turned off (a reload): the receiver stops and the slot is dropped.
    let text_cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(&site.config, text_cfg.replace(streaming, "")).unwrap();
    wait_for(
        std::time::Duration::from_secs(60),
        "the slot dropped after streaming was turned off",
        || !c.has_slot(),
    );
    assert!(wal_status(&site).is_null(), "{}", wal_status(&site));
    stop(daemon);
}

/// Waits until the receiver runs and the slot holds nothing the archive lacks.
fn wait_caught_up(site: &Site) {
    wait_for(
        std::time::Duration::from_secs(60),
        "the WAL receiver caught up",
        || {
            let w = wal_status(site);
            w["receiving"] == true && w["lag_bytes"] == 0
        },
    );
}

impl Cluster {
    /// Rows of table `t` whose value starts with `tag-`.
    fn tagged(&self, tag: &str) -> i64 {
        self.client("participant-0")
            .query_one(
                "SELECT count(*) FROM t WHERE v LIKE $1",
                &[&format!("{tag}-%")],
            )
            .unwrap()
            .get(0)
    }
}

/// A physical backup, then commits after it: restored to `latest`, every row is back,
/// those only in the receiver's open segment included; restored to a time between two
/// writes, exactly the first is. A time past the stored WAL and `latest` behind a hole in
/// the archive are refused before the server stops, naming the last reachable time.
#[test]
fn a_physical_backup_replays_the_stored_wal_to_latest_or_a_time() {
    let c = Cluster::start();
    let site = c.site_with(
        &c.start_command(),
        &c.stop_command(),
        "wal_streaming = true\n",
        "",
    );
    let daemon = site.start_daemon();
    wait_caught_up(&site);
    let id = backup(&site, None);

    let first = c.write_and_switch("a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = c.write_and_switch("b");
    c.client("participant-0")
        .batch_execute("INSERT INTO t (v) SELECT 'open-' || g FROM generate_series(1, 10) g")
        .unwrap();
    wait_sealed(&site, &first);
    wait_sealed(&site, &second);
    wait_caught_up(&site);
    let counts = |c: &Cluster| [c.tagged("a"), c.tagged("b"), c.tagged("open")];
    assert_eq!(counts(&c), [200, 200, 10]);

    // Past the stored WAL: refused, nothing changed.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let out = site.cli(&["restore", "--backup", &id, "--yes", "--to", &future]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the last reachable time is"),
        "{}",
        text(&out)
    );
    assert!(c.running() && c.kept_dirs().is_empty());
    assert_eq!(counts(&c), [200, 200, 10]);

    // Latest: every commit, the open segment's too.
    let out = site.cli(&[
        "--json", "restore", "--backup", &id, "--yes", "--to", "latest",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        site.daemon_log()
    );
    assert_eq!(flow_result(&out)["restored_to"], "latest", "{}", text(&out));
    assert_eq!(counts(&c), [200, 200, 10], "every commit is back");
    assert!(c.kept_dirs().is_empty(), "kept: {:?}", c.kept_dirs());
    let auto = std::fs::read_to_string(c.data().join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("recovery_target"), "{auto}");

    // A time between the two writes: exactly the first.
    let out = site.cli(&[
        "restore",
        "--backup",
        &id,
        "--yes",
        "--to",
        &between.to_rfc3339(),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        site.daemon_log()
    );
    assert_eq!(
        counts(&c),
        [200, 0, 0],
        "only what was committed by {between}"
    );
    // The restored server runs on a new timeline and writes again.
    c.client("participant-0")
        .batch_execute("INSERT INTO t (v) VALUES ('after-1')")
        .unwrap();

    // A hole in the archive: `latest` of the old timeline cannot be reached past it.
    let hole = site.path(&format!("repo/wal/validator-1/{first}"));
    std::fs::remove_file(&hole).unwrap();
    let out = site.cli(&["restore", "--backup", &id, "--yes", "--to", "latest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("WAL segment {first} is missing")),
        "{}",
        text(&out)
    );
    assert!(c.running() && c.kept_dirs().is_empty());
    assert_eq!(counts(&c), [200, 0, 0]);
    assert_eq!(c.tagged("after"), 1, "the server was not touched");
    stop(daemon);
}
