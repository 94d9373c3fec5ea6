//! Identities in backups, end to end: the real `splice-dr` binary backs up a simulated
//! validator (splice-sim on real Postgres) through its admin API; the identities dump is
//! stored age-encrypted and mode 0600, decryptable only with the right key; a validator
//! whose identities endpoint answers 404 makes the backup fail loudly; the manifest records
//! the validator party and the users at backup time. A re-onboard checks an operator's
//! identities file before changing anything and records its participant id as used; a
//! restore refuses a participant database of another migration than the node runs.

mod common;
#[path = "common/sim.rs"]
mod sim;

use age::secrecy::ExposeSecret;
use common::*;
use serde_json::Value;
use sim::site_cli as cli;
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

/// The participant ids the node's registry lists as used (none when it has no file yet).
fn used_ids(site: &Site) -> Vec<(String, String)> {
    std::fs::read(site.path("state/participants/validator-1.json"))
        .ok()
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .map(|r| {
            r["used"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    (
                        u["id"].as_str().unwrap().to_string(),
                        u["source"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `reonboard --param identities_file=…` checks the file as a Splice NodeIdentitiesDump of
/// the backup's party before anything is chosen, burned or stopped: garbage and another
/// node's dump are refused naming the file and the fault, with the node untouched and no
/// id burned; a valid file's participant id is recorded as used (so it is never chosen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reonboard_checks_an_identities_file_before_changing_anything() {
    let dbs = SimDbs::new("idsfile");
    let node = dbs.start().await;
    let info = node.info();
    let probe = site_for(&node, "identities_recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]");
    let k = keys(&probe);
    let site = site_for(
        &node,
        &format!("identities_recipients = [\"{}\"]", k.recipient),
    );
    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let exported = site.path("exported.json");
    let out = cli(
        &site,
        &[
            "identities",
            "export",
            "latest",
            "--identity",
            k.good.to_str().unwrap(),
            "--out",
            exported.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "export: {}", text(&out));
    let dump: Value = serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    let fingerprint = info.party_id.split_once("::").unwrap().1.to_string();
    let before = used_ids(&site);

    let reonboard = |file: std::path::PathBuf, extra: Vec<String>| {
        let site = &site;
        async move {
            let param = format!("identities_file={}", file.display());
            let mut args = vec!["run", "reonboard", "--param", &param];
            args.extend(extra.iter().map(String::as_str));
            args.push("--yes");
            cli(site, &args).await
        }
    };

    // Garbage: no keys.
    let garbage = site.path("garbage.json");
    std::fs::write(
        &garbage,
        br#"{"id":"x::1220ab","keys":[],"authorizedStoreSnapshot":"c25hcA=="}"#,
    )
    .unwrap();
    let out = reonboard(garbage.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&garbage.display().to_string())
            && err.contains("NodeIdentitiesDump")
            && err.contains("`keys` is empty")
            && err.contains("Nothing was changed"),
        "{err}"
    );

    // A well-formed dump of another node (another namespace than the backup's party).
    let mut forged = dump.clone();
    forged["id"] = Value::from("intruder::1220deadbeefdeadbeef");
    let forged_file = site.path("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = reonboard(forged_file.clone(), vec![]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&forged_file.display().to_string()) && err.contains("another node's dump"),
        "{err}"
    );

    // Nothing was burned or stopped for either.
    assert_eq!(used_ids(&site), before, "no id burned for a refused file");
    let client = sim_client(&node);
    assert!(client.ready().await.unwrap(), "the node still answers");
    assert_eq!(
        client.validator_user().await.unwrap().party_id,
        info.party_id
    );

    // A valid dump of this node under an id the registry never saw (a re-onboard whose
    // backups were lost): its id is recorded as used even though this run then stops
    // (the requested id is the node's original one, refused before anything changes).
    let mut older = dump.clone();
    older["id"] = Value::from(format!("{}-7::{fingerprint}", info.participant_id));
    let older_file = site.path("older.json");
    std::fs::write(&older_file, serde_json::to_vec(&older).unwrap()).unwrap();
    let out = reonboard(
        older_file.clone(),
        vec![
            "--param".into(),
            format!("participant_id={}-7", info.participant_id),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "participant id `{}-7` was already used by this node (identities file {}",
            info.participant_id,
            older_file.display()
        )),
        "{err}"
    );
    let used = used_ids(&site);
    assert!(
        used.contains(&(
            format!("{}-7", info.participant_id),
            format!("identities file {}", older_file.display())
        )),
        "{used:?}"
    );
    assert!(client.ready().await.unwrap(), "the node still answers");
    node.shutdown().await;
}

/// A restore refuses, before anything changes, to fill a participant database that is not
/// the one of the migration the node runs (`participant-<id>`), or from a dump taken from
/// another database: here the config names `participant-1` on migration 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_participant_database_of_another_migration() {
    let dbs = SimDbs::new("idsdb");
    let node = dbs.start().await;
    let info = node.info();
    let site = site_for(&node, "identities_recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]");
    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let config = std::fs::read_to_string(&site.config).unwrap();
    let wrong = config.replace(
        &format!("participant_db = \"{}\"", info.participant_db),
        "participant_db = \"participant-1\"",
    );
    assert_ne!(config, wrong);
    std::fs::write(&site.config, wrong).unwrap();
    let out = cli(&site, &["restore", "--backup", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to restore"), "{err}");
    assert!(
        err.contains("would use participant database `participant-1`, but it runs migration 0"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "participant dump was taken from database `{}`",
            info.participant_db
        )),
        "{err}"
    );
    // Refused before anything changed: the node answers on its own data.
    let client = sim_client(&node);
    assert_eq!(
        client.validator_user().await.unwrap().party_id,
        info.party_id
    );
    node.shutdown().await;
}
