//! Restore drills, end to end with the real binary and real Postgres: a good backup passes
//! and says so in `backups`; a backup whose table data was damaged after sealing (and
//! re-checksummed, so only a restore can notice) fails with the table named; the live
//! databases are byte-for-byte untouched and no scratch database is left behind.
//! Off-site repositories (S3 through a real moto server) are tested in `offsite/s3.rs`.

mod common;
#[path = "offsite/drills.rs"]
mod drills;
#[path = "offsite/moto.rs"]
mod moto;
#[path = "offsite/s3.rs"]
mod s3;

use common::*;
use splice_dr_protocol::{DrillRecord, DrillResult};
use std::process::Command;

/// The last drill the backup's manifest records.
fn last_drill(site: &Site, id: &str) -> DrillRecord {
    let m: splice_dr_repo::Manifest = serde_json::from_slice(
        &std::fs::read(site.path("repo").join(id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m.last_drill
        .unwrap_or_else(|| panic!("backup {id} records no drill"))
}

fn backup(site: &Site) -> String {
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_good_backup_passes_its_drill_and_the_live_databases_are_untouched() {
    let dbs = NodeDbs::create("sdr_drill_ok", 3000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup(&site);
    let live = dbs.fingerprint();
    let before: Vec<String> = [
        databases_like(&dbs.validator),
        databases_like(&dbs.participant),
    ]
    .concat();

    let out = site.cli(&["drill", "--backup", &id]);
    assert!(out.status.success(), "drill: {}", text(&out));
    let drill = last_drill(&site, &id);
    assert_eq!(drill.result, DrillResult::Passed, "{drill:?}");
    // `duration_ms` is typed (`u64`): reading the record is the check that it is there.
    let listed = site.cli(&["backups"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("passed"),
        "{}",
        text(&listed)
    );

    assert_eq!(
        dbs.fingerprint(),
        live,
        "the live databases are byte-for-byte the same"
    );
    let after: Vec<String> = [
        databases_like(&dbs.validator),
        databases_like(&dbs.participant),
    ]
    .concat();
    assert_eq!(after, before, "no scratch database is left behind");
    // The backup itself still verifies: recording the drill does not touch its files.
    assert!(site.cli(&["verify", &id]).status.success());
}

#[test]
fn a_damaged_table_fails_the_drill_with_the_table_named() {
    let dbs = NodeDbs::create("sdr_drill_bad", 3000);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup(&site);
    let live = dbs.fingerprint();

    // Rewrite the biggest table-data file of the participant dump with half its rows (valid
    // COPY data, gzipped when the dump is), then fix its checksum: only restoring it can tell.
    let dir = site.path("repo").join(&id).join("participant");
    let (file, _) = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(".dat.gz") || name.ends_with(".dat")
        })
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .max_by_key(|(_, len)| *len)
        .unwrap();
    let gzipped = file.to_string_lossy().ends_with(".gz");
    let plain = if gzipped {
        Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .output()
            .unwrap()
            .stdout
    } else {
        std::fs::read(&file).unwrap()
    };
    let text_data = String::from_utf8(plain).unwrap();
    let lines: Vec<&str> = text_data.lines().collect();
    let rows: Vec<&str> = lines.iter().copied().filter(|l| *l != "\\.").collect();
    let mut kept = rows[..rows.len() / 2].join("\n");
    kept.push_str("\n\\.\n\n");
    let damaged = if gzipped {
        let mut gz = Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        gz.stdin.take().unwrap().write_all(kept.as_bytes()).unwrap();
        gz.wait_with_output().unwrap().stdout
    } else {
        kept.into_bytes()
    };
    let rel = format!(
        "participant/{}",
        file.file_name().unwrap().to_string_lossy()
    );
    replace_and_reseal(&site.path("repo").join(&id), &rel, &damaged);
    assert!(
        site.cli(&["verify", &id]).status.success(),
        "checksums alone cannot see it"
    );

    let out = site.cli(&["drill", "--backup", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("public.contracts: expected 3000 rows, found 15"),
        "{err}"
    );
    let drill = last_drill(&site, &id);
    assert_eq!(drill.result, DrillResult::Failed, "{drill:?}");
    assert!(drill.detail.contains("public.contracts"), "{drill:?}");
    let listed = site.cli(&["backups"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("failed"),
        "{}",
        text(&listed)
    );

    assert_eq!(
        dbs.fingerprint(),
        live,
        "the live databases are byte-for-byte the same"
    );
    assert_eq!(
        databases_like(&dbs.participant),
        vec![dbs.participant.clone()],
        "no scratch left"
    );

    // A restore refuses the backup that failed its drill, before touching anything.
    dbs.damage();
    let damaged_live = dbs.fingerprint();
    let out = site.cli(&["restore", "--backup", "latest", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed its last drill"), "{err}");
    assert_eq!(dbs.fingerprint(), damaged_live, "nothing was touched");
}
