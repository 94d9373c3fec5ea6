//! `splice-dr demo` end to end, as root (the cluster then runs as `nobody`) and as an
//! unprivileged user: it must exit 0 with a report whose restored data matches.

mod common;

use common::text;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn check_report(out: &std::process::Output) {
    assert!(out.status.success(), "{}", text(out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    assert!(
        report["rows_verified"].as_u64().unwrap() >= 200_000,
        "{report}"
    );
    assert!(report["tables_verified"].as_u64().unwrap() >= 5, "{report}");
    let rto = report["rto_secs"].as_f64().unwrap();
    let detection = report["detection_secs"].as_f64().unwrap();
    assert!(detection > 0.0 && detection < rto, "{report}");
    assert!(report["restore_secs"].as_f64().unwrap() > 0.0, "{report}");
    // The restore's incident report outlives the demo: a private page that starts at the
    // health probe's detection and shows the rule's steps.
    let page_path = std::path::PathBuf::from(report["incident_report"].as_str().unwrap());
    let page = std::fs::read_to_string(&page_path).unwrap();
    let mode = std::fs::metadata(&page_path).unwrap().permissions().mode() & 0o777;
    std::fs::remove_file(&page_path).unwrap();
    assert_eq!(mode, 0o600);
    for expected in [
        "detected: health.validator.down",
        "rule restore-when-validator-down decided",
        "restore validator database",
        "healthy again",
    ] {
        assert!(
            page.contains(expected),
            "`{expected}` not in the report page"
        );
    }
    assert!(page.matches(" data-step=\"").count() >= 5);
}

#[test]
fn demo_runs_end_to_end() {
    let out = Command::new(common::bin())
        .args(["demo", "--json"])
        .output()
        .unwrap();
    check_report(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the daemon notices, its rule fires"),
        "{}",
        text(&out)
    );
}

#[test]
fn demo_works_for_an_unprivileged_user() {
    let dir = tempfile::Builder::new()
        .prefix("sdr-demo-user")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("splice-dr");
    std::fs::copy(common::bin(), &bin).unwrap();
    let out = Command::new(&bin)
        .args(["demo", "--json"])
        .env("HOME", "/tmp")
        .current_dir("/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    check_report(&out);
}
