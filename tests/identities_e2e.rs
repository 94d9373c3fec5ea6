//! Identities in backups, end to end: the real `splice-dr` binary backs up a simulated
//! validator (splice-sim on real Postgres) through its admin API; the identities dump is
//! stored age-encrypted and mode 0600, decryptable only with the right key; a validator
//! whose identities endpoint answers 404 makes the backup fail loudly; the manifest records
//! the validator party and the users at backup time.

mod common;
#[path = "common/sim.rs"]
mod sim;

use age::secrecy::ExposeSecret;
use common::*;
use serde_json::Value;
use sim::*;
use std::os::unix::fs::PermissionsExt;

struct Keys {
    recipient: String,
    good: std::path::PathBuf,
    bad: std::path::PathBuf,
}

fn keys(site: &Site) -> Keys {
    let key = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let good = site.path("identity.key");
    let bad = site.path("other.key");
    std::fs::write(&good, key.to_string().expose_secret()).unwrap();
    std::fs::write(&bad, other.to_string().expose_secret()).unwrap();
    Keys {
        recipient: key.to_public().to_string(),
        good,
        bad,
    }
}

fn site_for(node: &splice_sim::RunningSim, recipients: &str) -> Site {
    let info = node.info();
    let validator = format!(
        "[node.validator]\nurl = \"{}\"\nretries = 0\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.url()
    );
    Site::with(
        &info.validator_db,
        &info.participant_db,
        BackendChoice::Builtin,
        "",
        recipients,
        &validator,
    )
}

fn manifest(site: &Site, id: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(site.path("repo").join(id).join("manifest.json")).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_stores_identities_encrypted_and_records_users() {
    let dbs = SimDbs::new("ids");
    let node = dbs.start().await;
    let client = splice_dr::validator::ValidatorClient::from_config(&validator_config(
        &node.url(),
        no_auth(),
    ))
    .unwrap();
    client.onboard_user("alice", None).await.unwrap();

    // A first site only to get a temp dir for the keys, then the real one with the recipient.
    let probe = site_for(&node, "identities_recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]");
    let k = keys(&probe);
    let site = site_for(
        &node,
        &format!("identities_recipients = [\"{}\"]", k.recipient),
    );

    let out = tokio::task::spawn_blocking({
        let mut cmd = site.cmd();
        move || cmd.arg("backup").output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let m = manifest(&site, &id);
    assert_eq!(
        m["identities"]["participant_id"],
        node.info().participant_uid
    );
    assert_eq!(m["validator_party"], node.info().party_id);
    let users: Vec<&str> = m["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(users.contains(&"alice"), "{users:?}");
    let enc = site.path("repo").join(&id).join("identities.json.age");
    assert_eq!(
        std::fs::metadata(&enc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let raw = std::fs::read(&enc).unwrap();
    assert!(
        raw.starts_with(b"age-encryption.org/v1"),
        "must be an age file"
    );
    assert!(
        !String::from_utf8_lossy(&raw).contains("authorizedStoreSnapshot"),
        "must not be plaintext"
    );
    assert!(
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "identities.json.age"),
        "identities are checksummed too"
    );

    // Only the right key decrypts it.
    let wrong = site.cli(&[
        "identities",
        "export",
        "latest",
        "--identity",
        k.bad.to_str().unwrap(),
        "--out",
        site.path("x.json").to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("cannot decrypt"), "{}", text(&wrong));
    assert!(!site.path("x.json").exists());
    let out_file = site.path("ids.json");
    let right = site.cli(&[
        "identities",
        "export",
        &id,
        "--identity",
        k.good.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(right.status.success(), "{}", text(&right));
    assert_eq!(
        std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dump: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(dump["id"], node.info().participant_uid);
    // Never overwrites an existing file.
    let again = site.cli(&[
        "identities",
        "export",
        &id,
        "--identity",
        k.good.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_404_fails_the_backup_loudly_and_lists_nothing() {
    let dbs = SimDbs::new("ids404");
    let node = dbs.start().await;
    node.faults().apply(splice_sim::FaultsPatch {
        identities_404: Some(true),
        ..Default::default()
    });
    let site = site_for(&node, "identities_recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]");
    let out = tokio::task::spawn_blocking({
        let mut cmd = site.cmd();
        move || cmd.arg("backup").output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("404"), "{}", text(&out));
    assert!(text(&out).contains("identities"), "{}", text(&out));
    let listed: splice_dr_protocol::BackupList = view(&site.cli(&["--json", "backups"]));
    assert!(
        listed.backups.is_empty(),
        "a failed backup is never listed: {listed:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_without_identities_recipients_is_a_config_error() {
    let dbs = SimDbs::new("idscfg");
    let node = dbs.start().await;
    let site = site_for(&node, "");
    let out = site.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("identities_recipients"),
        "{}",
        text(&out)
    );
    node.shutdown().await;
}
