//! The built `splice-sim` binary: flags, start, SIGTERM, refusals with non-zero exits.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_splice-sim");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--pg-url",
        "--migration-id",
        "--validator-db",
        "--participant-db",
        "--party-hint",
        "--validator-user",
        "--participant-id",
        "--identity-seed",
        "--auth-secret-file",
        "--audience",
        "--sv-url",
        "--sv-listen",
        "--sv-db",
        "--migrating",
        "--dump-path",
        "--identities-dump",
        "--unhealthy",
        "--lag-secs",
        "--pruning-horizon",
        "--identities-404",
        "--delay-ms",
    ] {
        assert!(help.contains(flag), "missing {flag} in:\n{help}");
    }
    let out = Command::new(BIN).args(["sv", "--help"]).output().unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn runs_serves_and_stops_on_sigterm() {
    let dbs = TestDbs::new("bin");
    let port = free_port();
    let sv_port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pg-url",
            &pg_url(),
        ])
        .args([
            "--validator-db",
            &dbs.name("validator"),
            "--participant-db",
            &dbs.name("participant"),
        ])
        .args([
            "--sv-listen",
            &format!("127.0.0.1:{sv_port}"),
            "--sv-db",
            &dbs.name("sv"),
        ])
        .args(["--delay-ms", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}/api/validator");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = http().get(format!("{api}/readyz")).send().await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "binary did not become ready");
    let (s, _) = get(
        &format!("{api}/v0/admin/users"),
        Some(&default_admin_token()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        get(&format!("http://127.0.0.1:{sv_port}/sv/readyz"), None)
            .await
            .0,
        200
    );

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn migrating_without_dump_exits_non_zero_with_a_clear_message() {
    let dbs = TestDbs::new("binmig");
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let v = dbs.name("validator");
        let p = dbs.name("participant");
        let dump = dir.path().join("domain_migration_dump.json");
        move || {
            Command::new(BIN)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--pg-url",
                    &pg_url(),
                    "--migration-id",
                    "2",
                ])
                .args(["--validator-db", &v, "--participant-db", &p, "--migrating"])
                .arg("--dump-path")
                .arg(dump)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Migration ID was incremented") && err.contains("no migration dump"),
        "{err}"
    );
}
