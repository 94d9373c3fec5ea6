//! Recovery beyond the databases, end to end: users onboarded after a backup come back
//! after a restore (the runbook's "re-onboard any users that were onboarded after the
//! backup was taken"), and the daemon keeps the validator's user list for restores that
//! start while the validator is down. Real binary, real Postgres, splice-sim's admin API.

mod common;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use serde_json::Value;
use sim::*;
use std::time::Duration;

fn site_for(node: &splice_sim::RunningSim, extra_daemon: &str) -> Site {
    let info = node.info();
    let key = age::x25519::Identity::generate();
    let validator = format!(
        "[node.validator]\nurl = \"{}\"\nretries = 2\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.url()
    );
    Site::with(
        &info.validator_db,
        &info.participant_db,
        BackendChoice::Builtin,
        extra_daemon,
        &format!("identities_recipients = [\"{}\"]", key.to_public()),
        &validator,
    )
}

async fn cli(site: &Site, args: &[&str]) -> std::process::Output {
    let mut cmd = site.cmd();
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_onboarded_after_the_backup_come_back_after_a_restore() {
    let dbs = SimDbs::new("users");
    let node = dbs.start().await;
    let client = splice_dr::validator::ValidatorClient::from_config(&validator_config(
        &node.url(),
        no_auth(),
    ))
    .unwrap();
    let alice = client.onboard_user("alice", None).await.unwrap();
    let site = site_for(&node, "");

    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // Onboarded after the backup: the restored databases will not know them.
    let bob = client.onboard_user("bob", None).await.unwrap();
    client.onboard_user("carol", None).await.unwrap();

    let out = cli(&site, &["--json", "restore", "--backup", &id, "--yes"]).await;
    assert!(out.status.success(), "restore: {}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("restore --json");
    let reonboarded = result["result"]["reonboarded_users"]
        .as_array()
        .or_else(|| result["reonboarded_users"].as_array())
        .unwrap_or_else(|| panic!("reonboarded_users in {result}"));
    assert_eq!(reonboarded, &vec![Value::from("bob"), Value::from("carol")]);

    let mut users = client.users().await.unwrap();
    users.sort();
    assert_eq!(users, ["administrator", "alice", "bob", "carol"]);
    // Same participant after a restore: the same parties come back.
    assert_eq!(client.onboard_user("alice", None).await.unwrap(), alice);
    assert_eq!(client.onboard_user("bob", None).await.unwrap(), bob);

    // Each re-onboarding is a journaled step.
    let out = cli(&site, &["--json", "runs"]).await;
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_id = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["flow"] == "restore")
        .filter_map(|r| r["id"].as_str())
        .max()
        .unwrap()
        .to_string();
    let out = cli(&site, &["--json", "show", &run_id]).await;
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(steps.contains(&"onboard user bob"), "{steps:?}");
    assert!(steps.contains(&"onboard user carol"), "{steps:?}");
    assert!(!steps.contains(&"onboard user alice"), "{steps:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_records_the_user_list_and_keeps_it_while_the_validator_is_down() {
    let dbs = SimDbs::new("userrec");
    let node = dbs.start().await;
    let client = splice_dr::validator::ValidatorClient::from_config(&validator_config(
        &node.url(),
        no_auth(),
    ))
    .unwrap();
    client.onboard_user("dave", None).await.unwrap();
    let site = site_for(
        &node,
        "users_interval = \"300ms\"\nhealth_interval = \"300ms\"\n",
    );
    let daemon = site.start_daemon();
    let record = site.path("state/users/validator-1.json");
    let read = |p: &std::path::Path| -> Vec<String> {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| {
                v["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let r = record.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(20), "the first user list", || {
            read(&r) == ["administrator", "dave"]
        })
    })
    .await
    .unwrap();
    client.onboard_user("erin", None).await.unwrap();
    let r = record.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(20), "the updated user list", || {
            read(&r) == ["administrator", "dave", "erin"]
        })
    })
    .await
    .unwrap();

    // The validator goes away: the record stays as it was.
    node.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(read(&record), ["administrator", "dave", "erin"]);
    stop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_the_validator_down_uses_the_recorded_list_and_says_what_is_left() {
    let dbs = SimDbs::new("usersdown");
    let node = dbs.start().await;
    let client = splice_dr::validator::ValidatorClient::from_config(&validator_config(
        &node.url(),
        no_auth(),
    ))
    .unwrap();
    client.onboard_user("frank", None).await.unwrap();
    let site = site_for(&node, "");
    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    client.onboard_user("grace", None).await.unwrap();
    // What the daemon's recorder would have written before the disaster.
    std::fs::create_dir_all(site.path("state/users")).unwrap();
    std::fs::write(
        site.path("state/users/validator-1.json"),
        serde_json::to_vec(&serde_json::json!({
            "at": "2026-11-24T10:00:00Z",
            "users": ["administrator", "frank", "grace"],
        }))
        .unwrap(),
    )
    .unwrap();
    node.shutdown().await;

    let out = cli(&site, &["--json", "restore", "--backup", &id, "--yes"]).await;
    assert!(
        out.status.success(),
        "the data restore itself succeeds: {}",
        text(&out)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("restore --json");
    let r = if result["result"].is_object() {
        &result["result"]
    } else {
        &result
    };
    assert_eq!(
        r["users_not_reonboarded"],
        serde_json::json!(["administrator", "frank", "grace"]),
        "{result}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("using the 3 users the daemon recorded at 2026-11-24T10:00:00Z"),
        "{err}"
    );
    assert!(err.contains("re-onboard these by hand"), "{err}");
}
