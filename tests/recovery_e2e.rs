//! The recovery flows beyond a restore, end to end with the real binary against
//! splice-sim: users onboarded after a backup come back after a restore (postgres and
//! compose backends) and the daemon's user-list record; re-onboarding from an identities
//! backup under a new participant id (compose, and the postgres backend through its
//! restart_command hook); network DR from a data snapshot (429 retried, 400 stops, wrong
//! migration id refused). Compose tests are skipped loudly only without a Docker engine.

mod common;
#[path = "common/compose.rs"]
mod compose;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use compose::{ago, backup, cli as cli_at, cli_restarting, last_run, validator_site, ComposeNode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sim::site_cli as cli;
use sim::*;
use splice_dr_protocol::{RunDetail, RunState, RunSummary};
use std::process::Command;
use std::time::Duration;

fn site_for(node: &splice_sim::RunningSim, extra_daemon: &str) -> Site {
    sim_site(node, extra_daemon, "retries = 2\n")
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
    let result = flow_result(&out);
    let reonboarded = result["reonboarded_users"]
        .as_array()
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
    let runs: Vec<RunSummary> = view(&out);
    let run_id = runs
        .iter()
        .filter(|r| r.flow == "restore")
        .map(|r| r.id.as_str())
        .max()
        .unwrap()
        .to_string();
    let out = cli(&site, &["--json", "show", &run_id]).await;
    let run: RunDetail = view(&out);
    let steps: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert!(steps.contains(&"onboard user bob"), "{steps:?}");
    assert!(steps.contains(&"onboard user carol"), "{steps:?}");
    assert!(!steps.contains(&"onboard user alice"), "{steps:?}");
    // The incident report names the re-onboarded users and the databases it dropped.
    let out = cli(&site, &["--json", "report", &run_id]).await;
    assert!(out.status.success(), "report: {}", text(&out));
    let report: splice_dr::report::Report = view(&out);
    assert_eq!(
        report.users_reonboarded,
        Some(vec!["bob".to_string(), "carol".into()])
    );
    assert_eq!(report.dropped.as_ref().map(Vec::len), Some(2), "{report:?}");
    assert!(report.rpo.is_some() && report.rto.is_some(), "{report:?}");
    node.shutdown().await;
}

/// After a restore the users are as they were just before it: a user onboarded after the
/// backup through `onboard_user` comes back with its own party id (recorded from the
/// validator's answer), one onboarded behind splice-dr's back comes back without (and the
/// log says so), and a user offboarded after the backup is offboarded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_come_back_with_their_recorded_parties_and_offboarded_ones_stay_gone() {
    let dbs = SimDbs::new("userparty");
    let node = dbs.start().await;
    let client = sim_client(&node);
    client.onboard_user("alice", None).await.unwrap();
    client.onboard_user("dave", None).await.unwrap();
    let site = site_for(&node, "");
    let out = cli(&site, &["backup"]).await;
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // After the backup: dave leaves, bob joins with a party of his own (through
    // splice-dr, which records it), carol joins behind splice-dr's back.
    client.offboard_user("dave").await.unwrap();
    let fingerprint = node.info().party_id.split_once("::").unwrap().1.to_string();
    let bobs = format!("bob-external::{fingerprint}");
    let out = cli(
        &site,
        &[
            "--json",
            "run",
            "onboard_user",
            "--param",
            "name=bob",
            "--param",
            &format!("party_id={bobs}"),
        ],
    )
    .await;
    assert!(out.status.success(), "onboard_user: {}", text(&out));
    assert_eq!(flow_result(&out)["party_id"], bobs.as_str());
    let carol = client.onboard_user("carol", None).await.unwrap();

    let out = cli(&site, &["--json", "restore", "--backup", &id, "--yes"]).await;
    assert!(out.status.success(), "restore: {}", text(&out));
    let result = flow_result(&out);
    assert_eq!(
        result["reonboarded_users"],
        serde_json::json!(["bob", "carol"]),
        "{result}"
    );
    assert_eq!(
        result["offboarded_users"],
        serde_json::json!(["dave"]),
        "{result}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no party id is recorded for user carol"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "re-onboarding user bob with its recorded party {bobs}"
        )),
        "{err}"
    );

    let mut users = client.users().await.unwrap();
    users.sort();
    assert_eq!(users, ["administrator", "alice", "bob", "carol"]);
    // bob has his own party again (the validator refuses another party for a known user),
    // carol the one derived from her name.
    assert_eq!(client.onboard_user("bob", Some(&bobs)).await.unwrap(), bobs);
    assert_eq!(client.onboard_user("carol", None).await.unwrap(), carol);
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
    let result = flow_result(&out);
    assert_eq!(
        result["users_not_reonboarded"],
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

// ---- compose backend ----

#[test]
fn users_onboarded_after_the_backup_come_back_after_a_compose_restore() {
    require_docker!();
    let node = ComposeNode::start("users");
    let site = tempfile::tempdir().unwrap();
    let (config, _key, client) = validator_site(&node, site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.onboard_user("alice", None)).unwrap();
    let id = backup(&config);
    rt.block_on(client.onboard_user("bob", None)).unwrap();

    let out = cli_at(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    let mut users = rt.block_on(client.users()).unwrap();
    users.sort();
    assert_eq!(users, ["administrator", "alice", "bob"]);
    let run = last_run(&config, "restore");
    let result = run.result.clone().unwrap_or_default();
    assert_eq!(
        result["reonboarded_users"],
        serde_json::json!(["bob"]),
        "{run:?}"
    );
}

#[test]
fn reonboard_recovers_the_balance_under_a_new_participant_id_that_every_restart_keeps() {
    require_docker!();
    let node = ComposeNode::start("reonboard");
    let site = tempfile::tempdir().unwrap();
    let (config, key_file, client) = validator_site(&node, site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let party = rt.block_on(client.validator_user()).unwrap().party_id;
    // The network (the SV) holds the party's coins, not the node.
    let set = ureq::post(&format!("{}/sv/parties/{party}/balance", node.sv_host_url))
        .header("content-type", "application/json")
        .send(r#"{"effective_unlocked_qty": "1234.5"}"#)
        .unwrap();
    assert_eq!(set.status(), 200);
    let id = backup(&config);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(site.path().join("repo").join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    // The dump carries the uid (`identifier::fingerprint`); -P takes the identifier.
    let old_participant = manifest["identities"]["participant_id"]
        .as_str()
        .unwrap()
        .split("::")
        .next()
        .unwrap()
        .to_string();

    let key = format!("identity_key={}", key_file.display());
    let backup_param = format!("backup={id}");
    let out = cli_restarting(
        &node,
        &config,
        &[
            "--json",
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &key,
            "--yes",
        ],
    );
    if !out.status.success() {
        let logs = Command::new("docker")
            .args(["logs", "--tail", "30", &node.container("validator")])
            .output()
            .unwrap();
        let ps = Command::new("docker").args(["ps", "-a"]).output().unwrap();
        panic!(
            "reonboard: {}\n--- validator logs\n{}{}\n--- docker ps\n{}",
            text(&out),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr),
            String::from_utf8_lossy(&ps.stdout)
        );
    }
    let run = last_run(&config, "reonboard");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let result = run.result.unwrap_or_default();
    let new_id = result["participant_id"].as_str().unwrap().to_string();
    assert_eq!(
        new_id,
        format!("{}-2", node.party_hint),
        "the first id never used"
    );
    assert_eq!(result["party"], party.as_str(), "same validator party");
    assert_eq!(
        result["balance"], "1234.5000000000",
        "the balance came back"
    );
    assert_eq!(
        node.container_env("validator", "SPLICE_APP_VALIDATOR_PARTICIPANT_IDENTIFIER")
            .as_deref(),
        Some(new_id.as_str())
    );
    // The decrypted identities (private keys) did not outlive the run.
    let tmp = site.path().join("state/tmp");
    assert!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0,
        "decrypted identities left in {}",
        tmp.display()
    );
    // The old database volume is kept, not deleted.
    assert_eq!(node.kept_volumes().len(), 1);

    // status shows the id every start must now pass.
    let out = cli_at(&config, &["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("participant id: {new_id}")));

    // An id this node used before is refused before anything changes.
    for used in [new_id.as_str(), old_participant.as_str()] {
        let p = format!("participant_id={used}");
        let out = cli_restarting(
            &node,
            &config,
            &[
                "run",
                "reonboard",
                "--param",
                &backup_param,
                "--param",
                &key,
                "--param",
                &p,
                "--yes",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("was already used by this node"),
            "{}",
            text(&out)
        );
    }
    assert!(node.validator_ready(), "the refused runs changed nothing");

    // A later restart keeps passing the new id (the sim, like Splice, refuses another).
    let out = cli_restarting(&node, &config, &["run", "restart"]);
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(
        node.container_env("validator", "SPLICE_APP_VALIDATOR_PARTICIPANT_IDENTIFIER")
            .as_deref(),
        Some(new_id.as_str())
    );
    assert!(node.validator_ready());
    assert_eq!(
        rt.block_on(client.validator_user()).unwrap().party_id,
        party
    );
}

/// The runbook's "catastrophic failure": the first host is gone (its node stopped with
/// stop.sh, its disks lost to splice-dr: only the off-site copy of its backups is left). A
/// second bundle directory and project on the same engine is the new host: a fresh state
/// directory, the off-site repository, the backup's identities — `reonboard` brings the
/// validator party and its balance back under a new participant id, and the first host's
/// id is refused.
#[test]
fn a_new_host_reonboards_from_the_first_hosts_offsite_backup() {
    require_docker!();
    let old = ComposeNode::start("oldhost");
    let offsite = tempfile::tempdir().unwrap();
    let offsite_table = format!(
        "[[repository.offsite]]\nname = \"vault\"\nkind = \"directory\"\npath = \"{}\"\n",
        offsite.path().display()
    );
    let with_offsite = |config: &std::path::Path| {
        let text = std::fs::read_to_string(config).unwrap();
        let text = text.replacen("\n[[node]]", &format!("\n{offsite_table}\n[[node]]"), 1);
        std::fs::write(config, text).unwrap();
    };
    let old_site = tempfile::tempdir().unwrap();
    let (old_config, key_file, client) = validator_site(&old, old_site.path());
    with_offsite(&old_config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let party = rt.block_on(client.validator_user()).unwrap().party_id;
    let set = ureq::post(&format!("{}/sv/parties/{party}/balance", old.sv_host_url))
        .header("content-type", "application/json")
        .send(r#"{"effective_unlocked_qty": "777.25"}"#)
        .unwrap();
    assert_eq!(set.status(), 200);
    let id = backup(&old_config);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(offsite.path().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let old_participant = manifest["identities"]["participant_id"]
        .as_str()
        .unwrap()
        .split("::")
        .next()
        .unwrap()
        .to_string();
    // The operator keeps the age key off the node.
    let safe = tempfile::tempdir().unwrap();
    let saved_key = safe.path().join("identity.key");
    std::fs::copy(&key_file, &saved_key).unwrap();
    // The first host is lost: its node is down, its machine (state, local repository) gone.
    let out = old.stop_sh();
    assert!(out.status.success(), "stop.sh: {}", text(&out));
    drop(old_site);

    // The new host: only the bundle, the config and the age key (kept off the node).
    let new = ComposeNode::new_host_of(&old, "newhost");
    let new_site = tempfile::tempdir().unwrap();
    let (new_config, _, _) = validator_site(&new, new_site.path());
    with_offsite(&new_config);
    let kept_key = new_site.path().join("identity.key");
    std::fs::copy(&saved_key, &kept_key).unwrap();
    let key = format!("identity_key={}", kept_key.display());
    let backup_param = format!("backup={id}");

    // The operator says the first host is stopped for good (its address, wallet.localhost,
    // is local to each host, so no address is recorded to check). The first host's id is
    // refused before anything changes.
    let reuse = format!("participant_id={old_participant}");
    let out = cli_restarting(
        &new,
        &new_config,
        &[
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &key,
            "--param",
            &reuse,
            "--param",
            "old_node_stopped=true",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was already used by this node"),
        "{}",
        text(&out)
    );

    let out = cli_restarting(
        &new,
        &new_config,
        &[
            "--json",
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &key,
            "--param",
            "old_node_stopped=true",
            "--yes",
        ],
    );
    assert!(
        out.status.success(),
        "reonboard on the new host: {}",
        text(&out)
    );
    let run = last_run(&new_config, "reonboard");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let result = run.result.unwrap_or_default();
    let new_id = result["participant_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_participant, "a never used id");
    assert_eq!(result["party"], party.as_str(), "the same validator party");
    assert_eq!(result["balance"], "777.2500000000", "the balance came back");
    assert!(
        new.validator_ready(),
        "the new host answers through its nginx"
    );
    assert_eq!(
        new.container_env("validator", "SPLICE_APP_VALIDATOR_PARTICIPANT_IDENTIFIER")
            .as_deref(),
        Some(new_id.as_str())
    );
}

#[test]
fn a_reonboard_failing_midway_burns_the_id_and_stops_with_instructions() {
    require_docker!();
    let mut node = ComposeNode::start("reonbfail");
    let site = tempfile::tempdir().unwrap();
    let (config, key_file, _client) = validator_site(&node, site.path());
    let id = backup(&config);
    let key = format!("identity_key={}", key_file.display());
    let backup_param = format!("backup={id}");

    // A wrong key fails before anything starts: no id is burned for it.
    let wrong = site.path().join("wrong.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &wrong,
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret(),
        )
        .unwrap();
    }
    let wrong_param = format!("identity_key={}", wrong.display());
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &wrong_param,
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot decrypt"),
        "{}",
        text(&out)
    );

    // The network is unreachable: the new node cannot register, the start fails (the
    // validator never answers readyz; a test waits 20 s for it, not the default 600).
    node.stop_sv();
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &key,
            "--param",
            "ready_timeout=20",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let burned = format!("{}-2", node.party_hint);
    assert!(
        err.contains(&format!("participant id {burned} is burned")),
        "{err}"
    );
    assert!(err.contains("fresh node"), "{err}");
    let registry: Value = serde_json::from_slice(
        &std::fs::read(site.path().join("state/participants/validator-1.json")).unwrap(),
    )
    .unwrap();
    let used: Vec<&str> = registry["used"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert!(used.contains(&burned.as_str()), "{registry}");
    assert!(
        registry["current"].is_null(),
        "a failed re-onboard sets no id for later starts"
    );
    assert!(
        std::fs::read_dir(site.path().join("state/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the decrypted identities are removed on failure too"
    );
    // The next attempt proposes a fresh id; a dry run shows it and records nothing (it ends
    // failed here: its party check asks the real validator, which is still down).
    let out = cli_at(
        &config,
        &[
            "run",
            "reonboard",
            "--param",
            &backup_param,
            "--param",
            &key,
            "--dry-run",
        ],
    );
    let next = format!("{}-3", node.party_hint);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("as participant {next}")),
        "{}",
        text(&out)
    );
    let registry =
        std::fs::read_to_string(site.path().join("state/participants/validator-1.json")).unwrap();
    assert!(
        !registry.contains(&next),
        "a dry run burns nothing: {registry}"
    );
}

#[test]
fn dr_snapshot_moves_the_node_to_the_next_migration_and_later_starts_keep_it() {
    require_docker!();
    // The participant lags 8 s: a snapshot of 1 s ago is "not caught up" (429) at first.
    let node = ComposeNode::start_with("drsnap", "--lag-secs 8");
    let site = tempfile::tempdir().unwrap();
    let (config, key_file, client) = validator_site(&node, site.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let party = rt.block_on(client.validator_user()).unwrap().party_id;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let ts = ago(2);

    // A migration id that is not the next one is refused before anything changes.
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={ts}"),
            "--param",
            "migration_id=2",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not this node's next one") && err.contains("the next is 1"),
        "{err}"
    );
    // A timestamp that is not UTC RFC 3339 is refused too.
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "dr_snapshot",
            "--param",
            "timestamp=2024-04-17 19:12:02",
            "--param",
            "migration_id=1",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2024-04-17T19:12:02Z"),
        "{}",
        text(&out)
    );
    assert!(node.validator_ready(), "nothing changed");

    // Taken now, not before the refusals above: their time would eat the 7 s in which the
    // participant has not caught up with it (on a loaded machine, all of it).
    let ts = ago(1);
    let out = cli_restarting(
        &node,
        &config,
        &[
            "--json",
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={ts}"),
            "--param",
            "migration_id=1",
            "--param",
            "deadline=120",
            "--yes",
        ],
    );
    assert!(out.status.success(), "dr_snapshot: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has not caught up") && err.contains("asking again"),
        "the 429 was retried: {err}"
    );
    assert!(
        err.contains("no health history"),
        "says it cannot check health: {err}"
    );
    let run = last_run(&config, "dr_snapshot");
    let result = run.result.clone().unwrap_or_default();
    assert_eq!(result["migration_id"], 1, "{run:?}");
    // The snapshot is kept in the repository encrypted (it holds the node's keys), with
    // the checksum of its plaintext; the plaintext the node started from is gone.
    let snap = std::path::PathBuf::from(result["snapshot"].as_str().unwrap());
    assert!(
        snap.starts_with(site.path().join("repo/snapshots/validator-1"))
            && snap.to_string_lossy().ends_with(".json.age"),
        "{}",
        snap.display()
    );
    let plain = splice_dr::identities::decrypt_file(&snap, &key_file).unwrap();
    let dump: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(dump["migration_id"], 1, "the DomainMigrationDump: {dump}");
    assert!(!String::from_utf8_lossy(&std::fs::read(&snap).unwrap()).contains("acs_timestamp"));
    let sum = std::fs::read_to_string(snap.with_extension("sha256")).unwrap();
    assert_eq!(
        sum.split_whitespace().next().unwrap(),
        hex::encode(Sha256::digest(&plain))
    );
    let left: Vec<_> = std::fs::read_dir(site.path().join("state/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "plaintext left in state/tmp: {left:?}");
    // The node runs migration 1 on participant-1, same party.
    assert_eq!(node.validator_migration_id().as_deref(), Some("1"));
    assert_eq!(node.psql("participant-1", "SELECT 1"), "1");
    assert_eq!(
        rt.block_on(client.validator_user()).unwrap().party_id,
        party
    );
    // A later restart passes -m 1 and no -M.
    let out = cli_restarting(&node, &config, &["run", "restart"]);
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(node.validator_migration_id().as_deref(), Some("1"));
    assert!(!node.validator_migrating());
    assert!(node.validator_ready());
    // The config still says migration 0; the node's registry is the truth: a backup dumps
    // participant-1 and records migration 1 (#14 item 4).
    let id = backup(&config);
    let out = cli_at(&config, &["--json", "backups"]);
    let list: splice_dr_protocol::BackupList = view(&out);
    let b = list.backups.iter().find(|b| b.id == id).unwrap();
    assert_eq!(b.migration_id, 1, "{b:?}");
    let participant = b.dumps.iter().find(|d| d.role == "participant").unwrap();
    assert_eq!(participant.database, "participant-1", "{b:?}");
}

#[test]
fn dr_snapshot_of_a_pruned_moment_stops_and_points_to_reonboard() {
    require_docker!();
    let horizon = ago(0);
    let node = ComposeNode::start_with("drpruned", &format!("--pruning-horizon {horizon}"));
    let site = tempfile::tempdir().unwrap();
    let (config, _key, _client) = validator_site(&node, site.path());
    let out = cli_restarting(
        &node,
        &config,
        &[
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={}", ago(3600)),
            "--param",
            "migration_id=1",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pruned") && err.contains("re-onboard"),
        "{err}"
    );
    assert!(node.validator_ready(), "nothing was changed");
    assert_eq!(node.validator_migration_id().as_deref(), Some("0"));
}

// ---- postgres backend: the node restarts through the site's restart_command ----

/// A validator run by hand as a splice-sim process, restarted by a site hook that turns
/// splice-dr's SPLICE_DR_* variables into its flags — what an operator's systemd wrapper
/// would do. Databases and the process are removed on drop.
struct HandRunNode {
    dir: tempfile::TempDir,
    port: u16,
    prefix: String,
    hint: String,
}

impl HandRunNode {
    /// Started with `faults`: extra splice-sim flags (e.g. `--pruning-horizon T`), or none.
    fn start_with(sv_url: &str, test: &str, faults: &str) -> HandRunNode {
        let dir = tempfile::tempdir().unwrap();
        let port = closed_port();
        let prefix = format!("vdr_{}_{test}", std::process::id());
        let hint = format!("{test}-validator");
        let sim = compose::sim_binary();
        let url = pg_url();
        let hook = format!(
            r#"#!/bin/sh
# The site's restart_command: (re)start the validator with the settings splice-dr passes.
set -eu
D='{dir}'
if [ -f "$D/sim.pid" ]; then
    pid=$(cat "$D/sim.pid"); kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
M="${{SPLICE_DR_MIGRATION_ID:-0}}"
set -- --listen 127.0.0.1:{port} --migration-id "$M" --validator-db {prefix}_validator \
    --participant-db "{prefix}_participant-$M" --party-hint {hint} --sv-url {sv_url} {faults}
if [ -n "${{SPLICE_DR_IDENTITIES_DUMP:-}}" ]; then
    # A fresh node: the old databases are kept aside under other names.
    # (Whatever migration the participant database was on: a re-onboard may join a new one.)
    for db in $(psql -Atq '{url}' -c "SELECT datname FROM pg_database WHERE datname = '{prefix}_validator' OR (datname LIKE '{prefix}_participant-%' AND datname NOT LIKE '%_old')"); do
        psql -q '{url}' -c "ALTER DATABASE \"$db\" RENAME TO \"${{db}}_old\""
    done
    set -- "$@" --identities-dump "$SPLICE_DR_IDENTITIES_DUMP"
fi
[ -z "${{SPLICE_DR_PARTICIPANT_ID:-}}" ] || set -- "$@" --participant-id "$SPLICE_DR_PARTICIPANT_ID"
[ "${{SPLICE_DR_MIGRATING:-}}" != true ] || set -- "$@" --migrating --dump-path "$SPLICE_DR_MIGRATION_DUMP"
SPLICE_SIM_PG_URL='{url}' SPLICE_SIM_LOG=warn setsid {sim} "$@" >>"$D/sim.log" 2>&1 </dev/null &
echo $! >"$D/sim.pid"
# Like a systemd unit with a readiness check: fail when the validator does not come up.
i=0
until curl -sf -o /dev/null http://127.0.0.1:{port}/api/validator/readyz; do
    if ! kill -0 "$(cat "$D/sim.pid")" 2>/dev/null; then tail -3 "$D/sim.log" >&2; exit 1; fi
    i=$((i + 1)); [ "$i" -lt 300 ] || {{ echo "validator not ready after 30 s" >&2; exit 1; }}
    sleep 0.1
done
"#,
            dir = dir.path().display(),
            sim = sim.display(),
        );
        std::fs::write(dir.path().join("node.sh"), hook).unwrap();
        let node = HandRunNode {
            dir,
            port,
            prefix,
            hint,
        };
        let out = std::process::Command::new("sh")
            .arg(node.dir.path().join("node.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "first start: {}", text(&out));
        node.wait_ready();
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let url = format!("{}/api/validator/readyz", self.url());
        wait_for(Duration::from_secs(30), "the hand-run validator", || {
            ureq::get(&url).call().is_ok()
        });
    }

    /// A site config for this node with the validator API, an age key and the hook.
    fn site(&self) -> (std::path::PathBuf, std::path::PathBuf) {
        use age::secrecy::ExposeSecret;
        let root = self.dir.path();
        let key = age::x25519::Identity::generate();
        let key_file = root.join("identity.key");
        std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
        let mut u = url_parts::parse(&pg_url());
        std::fs::write(
            root.join("pg-password"),
            u.password.take().unwrap_or_default(),
        )
        .unwrap();
        let text = format!(
            "[daemon]\nsocket = \"splice-dr.sock\"\nstate_dir = \"state\"\n\n\
             [repository]\npath = \"repo\"\nmax_age = \"30d\"\nidentities_recipients = [\"{}\"]\n\n\
             [[node]]\nname = \"validator-1\"\nbackend = \"postgres\"\nmigration_id = 0\n\n\
             [node.postgres]\nurl = \"postgresql://{}@{}:{}/postgres\"\npassword_file = \"pg-password\"\n\
             validator_db = \"{p}_validator\"\nparticipant_db = \"{p}_participant-0\"\n\
             restart_command = \"sh {}/node.sh\"\n\n\
             [node.postgres.components.validator]\nhealth_url = \"{}/api/validator/readyz\"\n\n\
             [node.validator]\nurl = \"{}\"\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
            key.to_public(),
            u.user,
            u.host,
            u.port,
            root.display(),
            self.url(),
            self.url(),
            p = self.prefix,
        );
        let config = root.join("splice-dr.toml");
        std::fs::write(&config, text).unwrap();
        (config, key_file)
    }
}

impl Drop for HandRunNode {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("sim.pid")) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        std::thread::sleep(Duration::from_millis(300));
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let mut admin = connect("postgres");
            let names: Vec<String> = admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1",
                    &[&format!("{prefix}%")],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default();
            for n in names {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"));
            }
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reonboard_and_dr_snapshot_on_the_postgres_backend_through_restart_command() {
    let f = PgFixture::start("pgnode", "").await;
    let (node, key_file, client, party) = (&f.node, &f.key_file, &f.client, f.party.clone());
    let run = |args: Vec<String>| f.cli(args);
    let out = run(vec!["backup".into()]).await.unwrap();
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let key = format!("identity_key={}", key_file.display());
    let b = format!("backup={id}");

    // The original participant id (inside the backup's identities) is refused.
    let out = run(vec![
        "run".into(),
        "reonboard".into(),
        "--param".into(),
        b.clone(),
        "--param".into(),
        key.clone(),
        "--param".into(),
        format!("participant_id={}", node.hint),
        "--yes".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was already used by this node"),
        "{}",
        text(&out)
    );

    let out = run(vec![
        "--json".into(),
        "run".into(),
        "reonboard".into(),
        "--param".into(),
        b.clone(),
        "--param".into(),
        key.clone(),
        "--param".into(),
        "ready_timeout=60".into(),
        "--yes".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "reonboard: {}\n{}",
        text(&out),
        std::fs::read_to_string(node.dir.path().join("sim.log")).unwrap_or_default()
    );
    let r = flow_result(&out);
    assert_eq!(r["participant_id"], format!("{}-2", node.hint));
    assert_eq!(r["party"], party.as_str());
    assert_eq!(r["balance"], "77.0000000000");

    // A restart through the hook keeps the new id (the sim refuses any other).
    let out = run(vec![
        "run".into(),
        "restart".into(),
        "--param".into(),
        "ready_timeout=60".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(client.validator_user().await.unwrap().party_id, party);

    // Network DR to migration 1 through the same hook.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = run(vec![
        "run".into(),
        "dr_snapshot".into(),
        "--param".into(),
        format!("timestamp={}", ago(1)),
        "--param".into(),
        "migration_id=1".into(),
        "--param".into(),
        "ready_timeout=60".into(),
        "--yes".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "dr_snapshot: {}\n{}",
        text(&out),
        std::fs::read_to_string(node.dir.path().join("sim.log")).unwrap_or_default()
    );
    assert_eq!(client.validator_user().await.unwrap().party_id, party);
    let dbs: Vec<String> = tokio::task::spawn_blocking({
        let like = format!("{}_participant-1", node.prefix);
        move || databases_like(&like)
    })
    .await
    .unwrap();
    assert!(!dbs.is_empty(), "the migrated participant database exists");
    f.stop().await;
}

/// An SV and a hand-run validator (restarted by a site hook) with a site config, the
/// validator's party holding a balance of 77 on the SV.
struct PgFixture {
    sv: splice_sim::RunningSv,
    sv_db: String,
    node: HandRunNode,
    config: std::path::PathBuf,
    key_file: std::path::PathBuf,
    client: splice_dr::validator::ValidatorClient,
    party: String,
}

impl PgFixture {
    async fn start(test: &str, faults: &str) -> PgFixture {
        let sv_db = format!("sv_{}_{test}", std::process::id());
        let sv = splice_sim::Sv::start(splice_sim::SvConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            pg_url: pg_url(),
            sv_db: sv_db.clone(),
        })
        .await
        .unwrap();
        let sv_url = sv.url();
        let node = tokio::task::spawn_blocking({
            let (sv_url, test, faults) = (sv_url.clone(), test.to_string(), faults.to_string());
            move || HandRunNode::start_with(&sv_url, &test, &faults)
        })
        .await
        .unwrap();
        let (config, key_file) = node.site();
        let client = splice_dr::validator::ValidatorClient::from_config(&validator_config(
            &node.url(),
            no_auth(),
        ))
        .unwrap();
        let party = client.validator_user().await.unwrap().party_id;
        let set = ureq::post(&format!("{sv_url}/sv/parties/{party}/balance"))
            .header("content-type", "application/json")
            .send(r#"{"effective_unlocked_qty": "77"}"#)
            .unwrap();
        assert_eq!(set.status(), 200);
        PgFixture {
            sv,
            sv_db,
            node,
            config,
            key_file,
            client,
            party,
        }
    }

    /// The CLI on the site config, off the async runtime.
    fn cli(&self, args: Vec<String>) -> tokio::task::JoinHandle<std::process::Output> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_at(&config, &args)
        })
    }

    async fn stop(self) {
        let PgFixture {
            sv, sv_db, node, ..
        } = self;
        drop(node);
        sv.shutdown().await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = connect("postgres")
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{sv_db}\" WITH (FORCE)"));
        })
        .await;
    }
}

/// The runbook: a 400 (pruned) or 429 (not caught up) on the data snapshot means the node
/// cannot make the dump and, the network being down, never will: the flow stops at once,
/// changes nothing, and names the re-onboard onto the new migration id — which brings the
/// validator back with its balance on that migration, kept by every later start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_node_cannot_make_ends_the_dr_with_the_reonboard_that_recovers_it() {
    let horizon = ago(0);
    let f = PgFixture::start("pgdr400", &format!("--pruning-horizon {horizon}")).await;
    let out = f.cli(vec!["backup".into()]).await.unwrap();
    assert!(out.status.success(), "backup: {}", text(&out));
    let before = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = f
        .cli(vec![
            "run".into(),
            "dr_snapshot".into(),
            "--param".into(),
            format!("timestamp={}", ago(3600)),
            "--param".into(),
            "migration_id=1".into(),
            "--yes".into(),
        ])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let next = "splice-dr run reonboard --node validator-1 --param identity_key=<age key file> --param migration_id=1 --yes";
    assert!(
        err.contains("Nothing was changed") && err.contains(next),
        "{err}"
    );
    assert_eq!(f.client.validator_user().await.unwrap().party_id, f.party);

    // The command it names, with the key filled in.
    let out = f
        .cli(vec![
            "--json".into(),
            "run".into(),
            "reonboard".into(),
            "--node".into(),
            "validator-1".into(),
            "--param".into(),
            format!("identity_key={}", f.key_file.display()),
            "--param".into(),
            "migration_id=1".into(),
            "--param".into(),
            "ready_timeout=60".into(),
            "--yes".into(),
        ])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "reonboard: {}\n{}",
        text(&out),
        std::fs::read_to_string(f.node.dir.path().join("sim.log")).unwrap_or_default()
    );
    let r = flow_result(&out);
    assert_eq!(r["migration_id"], 1, "{r}");
    assert_eq!(r["party"], f.party.as_str());
    assert_eq!(r["balance"], "77.0000000000");
    // Later starts keep migration 1: a restart comes up on participant-1.
    let out = f
        .cli(vec![
            "run".into(),
            "restart".into(),
            "--param".into(),
            "ready_timeout=60".into(),
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(f.client.validator_user().await.unwrap().party_id, f.party);
    let like = format!("{}_participant-1", f.node.prefix);
    let dbs = tokio::task::spawn_blocking(move || databases_like(&like))
        .await
        .unwrap();
    assert!(dbs.iter().any(|d| !d.ends_with("_old")), "{dbs:?}");
    // The backup from before is refused: it is of migration 0 (the node runs 1 although
    // the config file still says 0) and of the burned participant id.
    let out = f
        .cli(vec![
            "run".into(),
            "restore".into(),
            "--param".into(),
            format!("backup={before}"),
            "--yes".into(),
        ])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the node is at migration id 1")
            && err.contains(&format!(
                "was taken when the node was participant {}",
                f.node.hint
            )),
        "{err}"
    );
    assert_eq!(f.client.validator_user().await.unwrap().party_id, f.party);
    // A re-onboard to an older migration than the node's is refused before anything.
    let out = f
        .cli(vec![
            "run".into(),
            "reonboard".into(),
            "--param".into(),
            format!("identity_key={}", f.key_file.display()),
            "--param".into(),
            "migration_id=0".into(),
            "--yes".into(),
        ])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is older than the one this node runs"),
        "{}",
        text(&out)
    );
    f.stop().await;
}

/// The participant-id registry travels with every backup (issue #14 item 6) and a
/// re-onboard of another host's backup needs the old node stopped (item 7): host A
/// re-onboards (burning `<hint>-2`) and backs up to an off-site directory; host B, a fresh
/// state directory and local repository sharing only that off-site repository and trusting
/// A's signing key, is refused without the confirmation, refused `<hint>-2` naming A's
/// registry as the reason, and by default re-onboards as `<hint>-3`; with the shared
/// repository unreadable it chooses no id at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_host_reads_the_burned_ids_from_the_offsite_repository() {
    let f = PgFixture::start("hostsreg", "").await;
    let offsite = tempfile::tempdir().unwrap();
    let shared = format!(
        "\n[[repository.offsite]]\nname = \"shared\"\nkind = \"directory\"\npath = \"{}\"\n",
        offsite.path().display()
    );
    let a_text = std::fs::read_to_string(&f.config).unwrap() + shared.as_str();
    std::fs::write(&f.config, &a_text).unwrap();
    let key = format!("identity_key={}", f.key_file.display());
    let hint = f.node.hint.clone();
    let run = |config: std::path::PathBuf, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_at(&config, &args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let reonboard = |config: &std::path::Path, extra: &[&str]| {
        let mut list = args(&["--json", "run", "reonboard", "--param", &key]);
        for e in ["ready_timeout=60"].iter().chain(extra) {
            list.extend(["--param".to_string(), e.to_string()]);
        }
        list.push("--yes".into());
        run(config.to_path_buf(), list)
    };

    // Host A: a backup, a re-onboard (burns <hint>-2), a backup carrying the registry.
    let out = run(f.config.clone(), args(&["backup"])).await.unwrap();
    assert!(out.status.success(), "backup: {}", text(&out));
    let out = reonboard(&f.config, &[]).await.unwrap();
    assert!(out.status.success(), "A's reonboard: {}", text(&out));
    assert_eq!(flow_result(&out)["participant_id"], format!("{hint}-2"));
    let out = run(f.config.clone(), args(&["backup"])).await.unwrap();
    assert!(out.status.success(), "backup: {}", text(&out));
    let b1 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let copy: splice_dr_repo::Manifest = serde_json::from_slice(
        &std::fs::read(offsite.path().join(&b1).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(
        copy.participant_ids
            .iter()
            .any(|u| u.id == format!("{hint}-2")),
        "the off-site copy carries the registry: {:?}",
        copy.participant_ids
    );
    let out = run(f.config.clone(), args(&["keys", "public"]))
        .await
        .unwrap();
    let a_public = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // The operator removes A's kept databases once the re-onboard is proven (the hook
    // keeps one generation).
    let prefix = f.node.prefix.clone();
    tokio::task::spawn_blocking(move || {
        let mut admin = connect("postgres");
        for db in [
            format!("{prefix}_validator_old"),
            format!("{prefix}_participant-0_old"),
        ] {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .unwrap();
        }
    })
    .await
    .unwrap();

    // Host B: its own (empty) state directory and local repository, the shared off-site.
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        f.node.dir.path().join("pg-password"),
        b_dir.path().join("pg-password"),
    )
    .unwrap();
    let b_config = b_dir.path().join("splice-dr.toml");
    std::fs::write(
        &b_config,
        a_text.replace(
            "max_age = \"30d\"\n",
            &format!("max_age = \"30d\"\ntrusted_keys = [\"{a_public}\"]\n"),
        ),
    )
    .unwrap();
    let reonboard_b = |extra: &[&str]| reonboard(&b_config, extra);
    let refused = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        text(&out)
    };

    let msg = refused(reonboard_b(&[]).await.unwrap());
    assert!(
        msg.contains(&format!("backup {b1} was taken on another host")),
        "{msg}"
    );
    assert!(msg.contains("old_node_stopped=true"), "{msg}");

    let burned = format!("participant_id={hint}-2");
    let msg = refused(
        reonboard_b(&["old_node_stopped=true", &burned])
            .await
            .unwrap(),
    );
    assert!(msg.contains("was already used by this node"), "{msg}");
    assert!(
        msg.contains(&format!("registry in backup {b1}")),
        "A's registry is the reason: {msg}"
    );

    let out = reonboard_b(&["old_node_stopped=true"]).await.unwrap();
    assert!(
        out.status.success(),
        "B's reonboard: {}\n{}",
        text(&out),
        std::fs::read_to_string(f.node.dir.path().join("sim.log")).unwrap_or_default()
    );
    assert_eq!(flow_result(&out)["participant_id"], format!("{hint}-3"));
    let registry =
        std::fs::read_to_string(b_dir.path().join("state/participants/validator-1.json")).unwrap();
    assert!(registry.contains(&format!("\"{hint}-2\"")), "{registry}");

    // The shared repository cannot be read: no id is chosen blind, nothing is burned.
    std::fs::rename(offsite.path(), b_dir.path().join("moved")).unwrap();
    std::fs::write(offsite.path(), "not a directory").unwrap();
    let from_b1 = format!("backup={b1}");
    let msg = refused(
        reonboard_b(&["old_node_stopped=true", &from_b1])
            .await
            .unwrap(),
    );
    assert!(
        msg.contains("cannot choose a participant id never used before"),
        "{msg}"
    );
    assert!(msg.contains("shared"), "names the repository: {msg}");
    let after =
        std::fs::read_to_string(b_dir.path().join("state/participants/validator-1.json")).unwrap();
    assert!(!after.contains(&format!("\"{hint}-4\"")), "{after}");
    std::fs::remove_file(offsite.path()).unwrap();
    std::fs::rename(b_dir.path().join("moved"), offsite.path()).unwrap();
    f.stop().await;
}
