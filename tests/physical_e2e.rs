//! Physical backups of a bare Postgres server, end to end with the real binary against a
//! real PostgreSQL 15 server the test makes for itself (initdb into a temporary directory
//! as the `postgres` user, its own port, `pg_ctl` as the server's stop and start
//! commands, a `REPLICATION` role over scram): a base backup restores to its end with
//! every row as it was; a damaged one is refused before the server is stopped; a server
//! that does not start on the restored data gets its previous data back and runs.

mod common;

use common::pg_cluster::*;
use common::*;
use splice_dr_protocol::BackupList;
use std::process::Command;

/// A physical backup, rows changed after it, restored to its end: every row is as it was
/// when the backup was taken, the previous data directory is gone, and the listing says
/// what kind of backup it was.
#[test]
fn a_physical_backup_restores_to_its_end() {
    let c = Cluster::start();
    let site = c.site(&c.start_command(), &c.stop_command());
    let id = backup(&site, None);
    let at_backup = c.digests();

    let listed: BackupList = site.json(&["backups"]);
    let b = listed.backups.iter().find(|b| b.id == id).expect("listed");
    assert_eq!(b.kind, splice_dr_plugin_api::BackupKind::Physical);
    assert!(b.trusted, "signed like any backup: {b:?}");
    let table = String::from_utf8_lossy(&site.cli(&["backups"]).stdout).into_owned();
    assert!(
        table.contains("KIND") && table.contains(" physical "),
        "{table}"
    );

    let verified = site.cli(&["--json", "verify", &id]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        flow_result(&verified)["base_backup"]["files"].as_u64() > Some(100),
        "{}",
        text(&verified)
    );

    c.change_rows();
    assert_ne!(c.digests(), at_backup);

    // Only the backup's own end exists for now: a time is refused before anything changes.
    let to_time = site.cli(&[
        "restore",
        "--backup",
        &id,
        "--yes",
        "--to",
        "2026-12-04T10:00:00Z",
    ]);
    assert!(!to_time.status.success(), "{}", text(&to_time));
    assert!(
        text(&to_time).contains("needs continuous WAL"),
        "{}",
        text(&to_time)
    );

    let out = site.cli(&["--json", "restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(flow_result(&out)["kind"], "physical", "{}", text(&out));
    assert_eq!(c.digests(), at_backup, "the restored rows are the backup's");
    assert!(c.kept_dirs().is_empty(), "kept: {:?}", c.kept_dirs());

    // A logical backup of the same node on request, once: the kind of the listing follows.
    let logical = backup(&site, Some("logical"));
    let listed: BackupList = site.json(&["backups"]);
    let l = listed
        .backups
        .iter()
        .find(|b| b.id == logical)
        .expect("listed");
    assert_eq!(l.kind, splice_dr_plugin_api::BackupKind::Logical);
    assert_eq!(l.dumps.len(), 2);
}

/// A base backup damaged in the repository is refused by verification before the
/// server's stop command ran: the server runs on its data, untouched.
#[test]
fn a_damaged_base_backup_is_refused_before_the_server_stops() {
    let c = Cluster::start();
    let stopped = c.dir.path().join("stop-command-ran");
    let stop = format!("touch {} && {}", stopped.display(), c.stop_command());
    let site = c.site(&c.start_command(), &stop);
    let id = backup(&site, None);
    c.change_rows();
    let now = c.digests();

    // The validator database's table: its largest file under base/.
    let cluster = site.dir.path().join("repo").join(&id).join("cluster");
    let victim = largest_file(&cluster.join("base"));
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();

    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("sha256 mismatch"), "{shown}");
    // pg_verifybackup, run on the copy where it lies, finds it too.
    assert!(
        shown.contains("base backup cluster does not verify") && shown.contains("pg_verifybackup"),
        "{shown}"
    );
    assert!(!stopped.exists(), "server_stop_command ran");
    assert!(c.running());
    assert_eq!(c.digests(), now, "the live data is untouched");
}

/// The server does not start on the restored data (its start command fails once): the
/// previous data directory is put back, the server started on it, and nothing is lost.
#[test]
fn a_server_that_does_not_start_gets_its_previous_data_back() {
    let c = Cluster::start();
    let fail_once = c.dir.path().join("fail-next-start");
    let start = format!(
        "if [ -e {f} ]; then rm {f}; echo 'refusing to start (test)' >&2; exit 1; fi; {}",
        c.start_command(),
        f = fail_once.display()
    );
    let site = c.site(&start, &c.stop_command());
    let id = backup(&site, None);
    c.change_rows();
    let now = c.digests();

    std::fs::write(&fail_once, "").unwrap();
    let out = site.cli(&["restore", "--backup", &id, "--yes"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("refusing to start (test)"), "{shown}");
    assert!(!fail_once.exists(), "the start command was not run");
    assert!(c.running(), "the server runs again");
    assert_eq!(c.digests(), now, "on its previous data");
    assert!(c.kept_dirs().is_empty(), "kept: {:?}", c.kept_dirs());
}

/// `backup_kind = "physical"` without the keys a physical restore needs is a config
/// error (exit 2) naming the file, the line and what is missing.
#[test]
fn physical_without_the_servers_keys_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("splice-dr.toml");
    std::fs::write(
        &config,
        "[daemon]\nsocket = \"s.sock\"\nstate_dir = \"state\"\n\n[repository]\npath = \"repo\"\n\n\
         [[node]]\nname = \"v\"\nbackend = \"postgres\"\nmigration_id = 0\nbackup_kind = \"physical\"\n\n\
         [node.postgres]\nurl = \"postgresql://u@127.0.0.1:5432/postgres\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("backups")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!("{}:12:", config.display()))
            && shown.contains("data_dir, server_stop_command, server_start_command"),
        "{shown}"
    );
}

/// Measures, on one scratch server, a physical and a logical backup and restore of the
/// same data and prints their times and ratios (no assertion on time). Run by hand:
/// `cargo nextest run -p splice-dr-e2e -E 'test(measure_physical)' --run-ignored only
/// --no-capture`; `SPLICE_DR_BENCH_ROWS` sizes the participant table (default 400 000).
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_physical_against_logical() {
    use std::time::Instant;
    let rows: u64 = std::env::var("SPLICE_DR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let c = Cluster::start();
    c.client("participant-0")
        .batch_execute(&format!(
            "INSERT INTO t (v, j) SELECT md5(g::text) || md5((g * 7)::text),
               jsonb_build_object('g', g, 'owner', md5(g::text))
             FROM generate_series(1, {rows}) g;
             CREATE INDEX t_j ON t ((j->>'owner'));"
        ))
        .unwrap();
    c.client("participant-0")
        .batch_execute("VACUUM ANALYZE t")
        .unwrap();
    let site = c.site(&c.start_command(), &c.stop_command());
    let timed = |args: &[&str]| {
        let start = Instant::now();
        let out = site.cli(args);
        assert!(out.status.success(), "{}", text(&out));
        (start.elapsed().as_secs_f64(), out)
    };
    let (pb, out) = timed(&["--json", "backup", "--kind", "physical"]);
    let physical_backup_log = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.trim_start().starts_with('✓'))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    println!("physical backup steps: {physical_backup_log}");
    let physical = flow_result(&out)["id"].as_str().unwrap().to_string();
    let (lb, out) = timed(&["--json", "backup", "--kind", "logical"]);
    let logical = flow_result(&out)["id"].as_str().unwrap().to_string();
    let at_backup = c.digests();
    let (pr, out) = timed(&["restore", "--backup", &physical, "--yes"]);
    // Where the time goes: each step's line with its duration.
    let steps = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.trim_start().starts_with('✓'))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
            .to_string()
    };
    println!("physical restore steps: {}", steps(&out));
    assert_eq!(c.digests(), at_backup);
    let (lr, _) = timed(&["restore", "--backup", &logical, "--yes"]);
    assert_eq!(c.digests(), at_backup);
    let size = |id: &str| {
        let list: BackupList = site.json(&["backups"]);
        list.backups
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.bytes)
            .unwrap_or(0)
    };
    println!(
        "participant rows {rows}: physical backup {pb:.1}s ({} MB), logical backup {lb:.1}s ({} MB); \
         physical restore {pr:.1}s, logical restore {lr:.1}s; logical/physical restore {:.2}x, backup {:.2}x",
        size(&physical) >> 20,
        size(&logical) >> 20,
        lr / pr,
        lb / pb
    );
}
