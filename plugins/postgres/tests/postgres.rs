//! The backend against a real Postgres 15: dump → damage → staged restore → atomic swap,
//! rollback, corrupted dumps, row-count verification and cancellation.
//! Needs the cluster and test role from `tests/pg-setup.sh` (workspace root).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{create_fixture, exists, fingerprint, modify, Recorder, TestDbs};
use splice_dr_plugin_api::{BackendError, Databases, OpEvent, TableCount};
use splice_dr_postgres::PostgresBackend;

/// (1) Data, indexes and sequences come back exactly; the kept database holds the replaced
/// data until `drop_kept`; a connected client does not block the swap.
#[test]
fn dump_restore_swap_round_trip() {
    let dbs = TestDbs::new("cycle");
    let b = dbs.backend();
    common::full_cycle(&b, &dbs, 5000);
}

/// (2) `roll_back` puts the replaced data back in service and drops the restored copy; a
/// restore onto a node without a live database keeps nothing and rolls back to nothing.
#[test]
fn roll_back_restores_previous_live_data() {
    let dbs = TestDbs::new("rollback");
    let b = dbs.backend();
    let rec = Recorder::new();
    let ctx = &rec.ctx;
    create_fixture(&dbs.validator, 2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v");
    let info = b.dump(ctx, "validator", &dest).expect("dump");
    modify(&dbs.validator);
    let modified = fingerprint(&dbs.validator);

    let staged = b
        .restore_staged(ctx, "validator", &dest, &info)
        .expect("restore");
    let kept = b.swap_in(ctx, &[staged]).expect("swap");
    assert_ne!(
        fingerprint(&dbs.validator),
        modified,
        "restored data is live"
    );
    b.roll_back(ctx, &kept).expect("roll_back");
    assert_eq!(
        fingerprint(&dbs.validator),
        modified,
        "previous data is live again"
    );
    assert!(!exists(&kept[0].kept));
    assert_eq!(
        dbs.all(),
        vec![dbs.validator.clone()],
        "restored copy dropped"
    );
    assert_eq!(b.leftovers(ctx).expect("leftovers"), Default::default());

    // No live participant database: swap keeps nothing, rollback removes the restored one.
    let mut pinfo = info.clone();
    pinfo.role = "participant".into();
    let staged = b
        .restore_staged(ctx, "participant", &dest, &pinfo)
        .expect("restore participant");
    let kept = b.swap_in(ctx, &[staged]).expect("swap");
    assert!(!kept[0].existed);
    assert!(exists(&dbs.participant));
    let dbinfo = b.databases(ctx).expect("databases");
    assert!(dbinfo.iter().all(|d| d.exists));
    b.roll_back(ctx, &kept).expect("roll_back");
    assert!(!exists(&dbs.participant));
    let dbinfo = b.databases(ctx).expect("databases");
    assert!(dbinfo.iter().any(|d| d.role == "participant" && !d.exists));
}

/// (3) A garbled data file, a garbled TOC and a missing data file are caught: check_dump
/// fails with pg_restore's message, restore_staged fails and drops its staging database,
/// and the live database is untouched.
#[test]
fn corrupted_dump_is_rejected_and_live_untouched() {
    let dbs = TestDbs::new("corrupt");
    // gzip-compressed data, which deep_check can prove garbled (plain COPY data it cannot).
    let mut gz_cfg = dbs.config();
    gz_cfg["compress"] = 1.into();
    let b = PostgresBackend::from_json(gz_cfg).expect("backend");
    let rec = Recorder::new();
    let ctx = &rec.ctx;
    create_fixture(&dbs.validator, 5000);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v");
    let info = b.dump(ctx, "validator", &dest).expect("dump");
    modify(&dbs.validator);
    let live = fingerprint(&dbs.validator);

    // Garble the middle of the largest data file.
    let mut files: Vec<_> = std::fs::read_dir(&dest)
        .expect("read dump")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".dat.gz"))
        .collect();
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    let victim = files[0].clone();
    let mut bytes = std::fs::read(&victim).expect("read data file");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&victim, &bytes).expect("garble");

    // The TOC is intact, so the cheap check passes; deep_check reads the data and fails.
    b.check_dump(ctx, &dest).expect("TOC still readable");
    let mut deep_cfg = dbs.config();
    deep_cfg["deep_check"] = true.into();
    deep_cfg["compress"] = 1.into();
    let deep = PostgresBackend::from_json(deep_cfg).expect("backend");
    match deep.check_dump(ctx, &dest) {
        Err(BackendError::Verification(m)) => assert!(m.contains("pg_restore"), "{m}"),
        other => panic!("deep check should fail: {other:?}"),
    }

    match b.restore_staged(ctx, "validator", &dest, &info) {
        Err(BackendError::Command {
            command, stderr, ..
        }) => {
            assert!(command.contains("pg_restore"), "{command}");
            assert!(!stderr.is_empty());
            assert!(
                !command.contains("splice_dr_test:"),
                "no password in the command"
            );
        }
        other => panic!("restore of a garbled dump should fail: {other:?}"),
    }
    assert_eq!(dbs.all(), vec![dbs.validator.clone()], "staging dropped");
    assert_eq!(fingerprint(&dbs.validator), live, "live untouched");
    assert!(rec.logs("warn").iter().any(|m| m.contains("dropping")));

    // A missing data file and a garbled TOC fail check_dump.
    std::fs::remove_file(&victim).expect("rm");
    match b.check_dump(ctx, &dest) {
        Err(BackendError::Verification(m)) => assert!(m.contains("missing"), "{m}"),
        other => panic!("missing data file: {other:?}"),
    }
    std::fs::write(dest.join("toc.dat"), b"PGDMP garbage garbage garbage").expect("garble toc");
    match b.check_dump(ctx, &dest) {
        Err(BackendError::Verification(m)) => {
            assert!(m.contains("table of contents"), "{m}")
        }
        other => panic!("garbled toc: {other:?}"),
    }
}

/// (4) A staged restore whose row counts disagree with the manifest fails, naming the
/// table, the expected and found counts and any missing table; staging is dropped.
#[test]
fn row_count_mismatch_names_the_table() {
    let dbs = TestDbs::new("counts");
    let b = dbs.backend();
    let rec = Recorder::new();
    let ctx = &rec.ctx;
    create_fixture(&dbs.validator, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v");
    let mut info = b.dump(ctx, "validator", &dest).expect("dump");
    for t in &mut info.tables {
        if t.table == "odd-Name" {
            t.rows += 1;
        }
    }
    info.tables.push(TableCount {
        schema: "app".into(),
        table: "vanished".into(),
        rows: 7,
    });
    match b.restore_staged(ctx, "validator", &dest, &info) {
        Err(BackendError::Verification(m)) => {
            assert!(
                m.contains("public.odd-Name: expected 51 rows, found 50"),
                "{m}"
            );
            assert!(m.contains("app.vanished: missing"), "{m}");
        }
        other => panic!("expected a verification error: {other:?}"),
    }
    assert_eq!(dbs.all(), vec![dbs.validator.clone()], "staging dropped");

    // A dump of another role is refused before anything is created.
    info.role = "participant".into();
    assert!(matches!(
        b.restore_staged(ctx, "validator", &dest, &info),
        Err(BackendError::Verification(_))
    ));
    assert!(matches!(
        b.restore_staged(ctx, "sequencer", &dest, &info),
        Err(BackendError::NotFound(_))
    ));
}

/// (5) Cancelling while pg_restore runs kills it, returns Cancelled and drops the staging
/// database; the live database is untouched.
#[test]
fn cancel_during_restore_drops_staging() {
    let dbs = TestDbs::new("cancel");
    let b = dbs.backend();
    create_fixture(&dbs.validator, 200_000);
    let live = fingerprint(&dbs.validator);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("v");
    let info = b
        .dump(&Recorder::new().ctx, "validator", &dest)
        .expect("dump");

    // Cancel at the first progress tick of pg_restore (it has been running ~500 ms).
    let rec = Recorder::with_hook(|ev, cancel| {
        if let OpEvent::Progress { what, done, .. } = ev {
            if what.starts_with("restore") && *done > 0 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    });
    let started = Instant::now();
    let r = b.restore_staged(&rec.ctx, "validator", &dest, &info);
    assert!(
        matches!(r, Err(BackendError::Cancelled { .. })),
        "expected Cancelled, got {r:?}"
    );
    assert!(rec.cancel.load(Ordering::Relaxed), "cancelled by the hook");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(dbs.all(), vec![dbs.validator.clone()], "staging dropped");
    assert_eq!(
        b.leftovers(&rec.ctx).expect("leftovers"),
        Default::default()
    );
    assert_eq!(fingerprint(&dbs.validator), live);

    // Cancelling a dump removes its partial output.
    let rec = Recorder::with_hook(|ev, cancel| {
        if matches!(ev, OpEvent::Progress { what, .. } if what.starts_with("dump")) {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    let dest2 = dir.path().join("v2");
    let r = b.dump(&rec.ctx, "validator", &dest2);
    assert!(matches!(r, Err(BackendError::Cancelled { .. })), "{r:?}");
    assert!(!dest2.exists(), "partial dump removed");
}

/// Drop operations refuse names that are not this node's staged/kept databases, and dump
/// refuses a non-empty destination.
#[test]
fn guards_against_dropping_live_data() {
    let dbs = TestDbs::new("guards");
    let b = dbs.backend();
    let ctx = &Recorder::new().ctx;
    create_fixture(&dbs.validator, 10);
    let evil = splice_dr_plugin_api::StagedDb {
        role: "validator".into(),
        live: dbs.validator.clone(),
        staging: dbs.validator.clone(),
    };
    assert!(matches!(
        b.drop_staged(ctx, std::slice::from_ref(&evil)),
        Err(BackendError::Config(_))
    ));
    assert!(matches!(
        b.swap_in(ctx, &[evil]),
        Err(BackendError::Config(_))
    ));
    let kept = splice_dr_plugin_api::KeptDb {
        role: "validator".into(),
        live: dbs.validator.clone(),
        kept: dbs.validator.clone(),
        existed: true,
    };
    assert!(matches!(
        b.drop_kept(ctx, &[kept]),
        Err(BackendError::Config(_))
    ));
    assert!(exists(&dbs.validator));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("x"), "x").expect("write");
    assert!(matches!(
        b.dump(ctx, "validator", dir.path()),
        Err(BackendError::Io { .. })
    ));
    assert!(matches!(
        b.dump(ctx, "nope", &dir.path().join("n")),
        Err(BackendError::NotFound(_))
    ));
}
