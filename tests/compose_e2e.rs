//! The docker-compose backend end to end on a real Docker engine: the test bundle (same
//! service, volume and database names as the Splice one) started with its start.sh, the
//! real splice-dr binary backing it up and restoring it the runbook's way, and the backend
//! library's volume and file operations. Skipped loudly only when no engine answers.

mod common;
#[path = "common/compose.rs"]
mod compose;

use common::text;
use compose::ComposeNode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use splice_dr_compose::{ComposeBackend, ComposeConfig};
use splice_dr_plugin_api::{Backend, OpContext, StorageTarget};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the CLI against `config`.
fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_splice-dr"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs the CLI for a flow that restarts `node` through its start.sh: the bundle reads
/// the project's published port from the environment, as an operator's shell would have it.
fn cli_restarting(node: &ComposeNode, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_splice-dr"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("VALIDATOR_HOST_PORT", node.port.to_string())
        .env("SPLICE_SIM_LOG", "warn")
        // A start that cannot succeed should fail in tests, not after the bundle's 600 s.
        .env("START_WAIT_TIMEOUT", "20")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Takes a backup and returns its id.
fn backup(config: &Path) -> String {
    let out = cli(config, &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The journal record of the newest run of `flow`.
fn last_run(config: &Path, flow: &str) -> Value {
    let out = cli(config, &["--json", "runs"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("runs --json");
    let id = v
        .as_array()
        .expect("an array of runs")
        .iter()
        .filter(|r| r["flow"] == flow)
        .filter_map(|r| r["id"].as_str())
        .max()
        .expect("a run")
        .to_string();
    let out = cli(config, &["--json", "show", &id]);
    serde_json::from_slice(&out.stdout).expect("show --json")
}

fn step_names(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Damages a file of a sealed backup and re-seals the manifest, so that only the restore
/// itself can notice (the repository's checksums pass).
fn corrupt_and_reseal(repo: &Path, id: &str, rel: &str) {
    let dir = repo.join(id);
    let file = dir.join(rel);
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len();
    assert!(len > 4096, "{rel} is too small to damage");
    for b in &mut bytes[len / 2..len / 2 + 2048] {
        *b = !*b;
    }
    std::fs::write(&file, &bytes).unwrap();
    let mpath = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let sum = hex::encode(Sha256::digest(&bytes));
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == rel {
            f["sha256"] = Value::String(sum.clone());
            f["size"] = Value::from(bytes.len() as u64);
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn backup_and_restore_bring_back_every_row_the_runbook_way() {
    require_docker!();
    let node = ComposeNode::start("restore");
    // Large enough (a few MB of dump) that streams outgrow socket buffers.
    node.seed(150_000);
    let before = node.fingerprint();
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");

    let id = backup(&config);
    let out = cli(&config, &["verify", &id]);
    assert!(out.status.success(), "verify: {}", text(&out));

    // The disaster: rows lost in one database, rows added in the other.
    node.psql("validator", "DELETE FROM app.items WHERE id % 3 = 0");
    node.psql(
        "participant-0",
        "INSERT INTO app.items VALUES (999999, 'late')",
    );
    assert_ne!(node.fingerprint(), before);

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert_eq!(
        node.fingerprint(),
        before,
        "every row as it was at the backup"
    );
    assert!(
        node.validator_ready(),
        "the validator answers readyz after the restore"
    );
    assert!(
        node.kept_volumes().is_empty(),
        "the copy is deleted once the restore is proven"
    );

    let run = last_run(&config, "restore");
    assert_eq!(run["state"], "succeeded", "{run}");
    let steps = step_names(&run).join("\n");
    for expected in [
        "stop validator and participant",
        "stop postgres",
        "copy the postgres volume aside",
        "wipe the postgres volume",
        "start only postgres on the empty volume",
        "restore validator database",
        "restore participant database",
        "start participant and validator and wait until healthy",
    ] {
        assert!(
            steps.contains(expected),
            "step `{expected}` missing in:\n{steps}"
        );
    }
    let v = steps.find("restore validator database").unwrap();
    let p = steps.find("restore participant database").unwrap();
    assert!(v < p, "the validator database is restored first");
}

#[test]
fn a_restore_failing_midway_puts_the_old_volume_back() {
    require_docker!();
    let node = ComposeNode::start("rollback");
    node.seed(20_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);

    // Data written after the backup: the node's current state, which must survive.
    node.psql(
        "validator",
        "INSERT INTO app.items VALUES (777777, 'after the backup')",
    );
    let current = node.fingerprint();
    corrupt_and_reseal(
        &site.path().join("repo"),
        &id,
        "participant/database.pgdump",
    );

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "restore must fail: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pg_restore"),
        "the failing tool is named: {err}"
    );

    assert_eq!(
        node.fingerprint(),
        current,
        "the node is back on its previous data"
    );
    assert!(node.validator_ready(), "and healthy");
    assert!(
        node.kept_volumes().is_empty(),
        "the copy goes once the node is back on it"
    );
    let run = last_run(&config, "restore");
    assert_eq!(run["state"], "failed");
    let steps = step_names(&run).join("\n");
    assert!(
        steps.contains("put ") && steps.contains(" back from "),
        "{steps}"
    );
}

#[test]
fn wrong_project_and_missing_container_are_clear_errors() {
    require_docker!();
    let node = ComposeNode::start("errors");
    let site = tempfile::tempdir().unwrap();

    // A project name that matches nothing: the error names the label query to try.
    let config = node.site_config(site.path(), "");
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        &format!("project = \"{}\"", node.project),
        "project = \"no-such-project\"",
    );
    std::fs::write(&config, text_cfg).unwrap();
    let out = cli(&config, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no container of service `postgres-splice` in compose project `no-such-project`"
        ),
        "{err}"
    );
    assert!(
        err.contains("--filter label=com.docker.compose.project=no-such-project"),
        "{err}"
    );

    // A container removed behind the backend's back.
    let backend = ComposeBackend::new(ComposeConfig::with_project(&node.project), 0).unwrap();
    let ctx = OpContext::detached(Default::default());
    let status = Command::new("docker")
        .args(["rm", "-f", &node.container("participant")])
        .output()
        .unwrap();
    assert!(status.status.success());
    let e = backend
        .scale(&ctx, "participant", 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no container of service `participant`"), "{e}");
    let comps = backend.components(&ctx).unwrap();
    let p = comps.iter().find(|c| c.name == "participant").unwrap();
    assert_eq!(p.state, "missing");
}

#[test]
fn volume_in_use_is_refused_and_files_land_owned_by_1001() {
    require_docker!();
    let node = ComposeNode::start("volumes");
    let backend = ComposeBackend::new(ComposeConfig::with_project(&node.project), 0).unwrap();
    let ctx = OpContext::detached(Default::default());
    let pg = StorageTarget {
        name: "postgres".into(),
        path: None,
    };
    let e = backend.keep_storage(&ctx, &pg).unwrap_err().to_string();
    assert!(e.contains("in use by running container"), "{e}");
    let e = backend.wipe(&ctx, &pg).unwrap_err().to_string();
    assert!(e.contains("in use by running container"), "{e}");

    // The migration dump goes onto the dump volume owned by the validator's uid/gid.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("dump.json");
    std::fs::write(&src, br#"{"migration_id": 1, "payload": "x"}"#).unwrap();
    let dump = StorageTarget {
        name: "dump".into(),
        path: None,
    };
    backend.put_file(&ctx, &dump, &src).unwrap();
    let out = Command::new("docker")
        .args(["exec", &node.container("validator")])
        .args([
            "sh",
            "-c",
            "stat -c '%u:%g %a' /domain-upgrade-dump/domain_migration_dump.json && cat /domain-upgrade-dump/domain_migration_dump.json",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.starts_with("1001:1001 644\n"), "{shown}");
    assert!(shown.contains(r#""migration_id": 1"#), "{shown}");

    // Keep / wipe / put back / drop on a stopped postgres, through the library.
    node.seed(500);
    let before = node.fingerprint();
    for c in ["validator", "participant", "postgres"] {
        backend.scale(&ctx, c, 0).unwrap();
    }
    let kept = backend.keep_storage(&ctx, &pg).unwrap();
    assert!(kept.kept.contains("__sdr_kept_"), "{kept:?}");
    assert!(kept.bytes > 0);
    assert_eq!(
        backend.leftovers(&ctx).unwrap().kept,
        vec![kept.kept.clone()]
    );
    backend.wipe(&ctx, &pg).unwrap();
    backend.restore_kept_storage(&ctx, &kept).unwrap();
    for c in ["postgres", "participant", "validator"] {
        backend.scale(&ctx, c, 1).unwrap();
    }
    backend
        .wait_ready(&ctx, "postgres", std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(node.fingerprint(), before);
    backend.drop_kept_storage(&ctx, &kept).unwrap();
    assert!(backend.leftovers(&ctx).unwrap().kept.is_empty());
    // Only kept copies can be dropped.
    let mut live = kept.clone();
    live.kept = kept.live.clone();
    let e = backend
        .drop_kept_storage(&ctx, &live)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a copy splice-dr kept"), "{e}");
}

#[test]
fn cancel_during_the_database_restore_puts_the_old_volume_back() {
    require_docker!();
    let node = ComposeNode::start("cancel");
    node.seed(300_000);
    let site = tempfile::tempdir().unwrap();
    let config = node.site_config(site.path(), "");
    let id = backup(&config);
    node.psql(
        "validator",
        "INSERT INTO app.items VALUES (888888, 'after the backup')",
    );
    let current = node.fingerprint();

    let restore = Command::new(env!("CARGO_BIN_EXE_splice-dr"))
        .arg("--config")
        .arg(&config)
        .args(["restore", "--backup", &id, "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cancel once the live volume has been wiped: from then on only the kept copy holds
    // the node's data.
    // The journal files are read directly (cheap, so the window is not missed).
    let runs_dir = site.path().join("state/runs");
    let mut run_id = String::new();
    common::wait_for(
        std::time::Duration::from_secs(120),
        "the restore to reach the database restore",
        || {
            std::fs::read_dir(&runs_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .any(|e| {
                    let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let hit = t.contains("\"flow\": \"restore\"")
                        && t.contains("\"state\": \"running\"")
                        && (t.contains("\"wipe the postgres volume")
                            || t.contains("\"start only postgres"));
                    if hit {
                        run_id = e.path().file_stem().unwrap().to_string_lossy().into_owned();
                    }
                    hit
                })
        },
    );
    let out = cli(&config, &["cancel", &run_id]);
    assert!(out.status.success(), "cancel: {}", text(&out));
    let out = restore.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    assert_eq!(node.fingerprint(), current, "the previous data is back");
    assert!(node.validator_ready());
    assert!(node.kept_volumes().is_empty(), "{:?}", node.kept_volumes());
    let run = last_run(&config, "restore");
    assert_eq!(run["state"], "cancelled", "{run}");
}

#[test]
fn users_onboarded_after_the_backup_come_back_after_a_compose_restore() {
    require_docker!();
    let node = ComposeNode::start("users");
    let site = tempfile::tempdir().unwrap();
    let validator = format!(
        "\n[node.validator]\nurl = \"http://127.0.0.1:{}\"\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.port
    );
    let config = node.site_config(site.path(), &validator);
    let key = age::x25519::Identity::generate();
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!(
            "max_age = \"30d\"\nidentities_recipients = [\"{}\"]\n",
            key.to_public()
        ),
    );
    std::fs::write(&config, text_cfg).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client =
        splice_dr::validator::ValidatorClient::from_config(&splice_dr::config::ValidatorConfig {
            url: format!("http://127.0.0.1:{}", node.port),
            timeout: std::time::Duration::from_secs(10),
            retries: 3,
            retry_backoff: std::time::Duration::from_millis(200),
            auth: splice_dr::config::ValidatorAuth::SelfSigned(splice_dr::config::SelfSignedAuth {
                secret_file: None,
                secret: Some("unsafe".into()),
                user: "administrator".into(),
                audience: "https://validator.example.com".into(),
            }),
        })
        .unwrap();
    rt.block_on(client.onboard_user("alice", None)).unwrap();
    let id = backup(&config);
    rt.block_on(client.onboard_user("bob", None)).unwrap();

    let out = cli(&config, &["restore", "--backup", &id, "--yes"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    let mut users = rt.block_on(client.users()).unwrap();
    users.sort();
    assert_eq!(users, ["administrator", "alice", "bob"]);
    let run = last_run(&config, "restore");
    assert_eq!(
        run["result"]["reonboarded_users"],
        serde_json::json!(["bob"]),
        "{run}"
    );
}

/// A node config with the validator API and an age key for identities; returns the
/// config path, the key file and an admin-API client.
fn validator_site(
    node: &ComposeNode,
    dir: &Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    splice_dr::validator::ValidatorClient,
) {
    use age::secrecy::ExposeSecret;
    let validator = format!(
        "\n[node.validator]\nurl = \"http://127.0.0.1:{}\"\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.port
    );
    let config = node.site_config(dir, &validator);
    let key = age::x25519::Identity::generate();
    let key_file = dir.join("identity.key");
    std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!(
            "max_age = \"30d\"\nidentities_recipients = [\"{}\"]\n",
            key.to_public()
        ),
    );
    std::fs::write(&config, text_cfg).unwrap();
    let client =
        splice_dr::validator::ValidatorClient::from_config(&splice_dr::config::ValidatorConfig {
            url: format!("http://127.0.0.1:{}", node.port),
            timeout: std::time::Duration::from_secs(10),
            retries: 3,
            retry_backoff: std::time::Duration::from_millis(200),
            auth: splice_dr::config::ValidatorAuth::SelfSigned(splice_dr::config::SelfSignedAuth {
                secret_file: None,
                secret: Some("unsafe".into()),
                user: "administrator".into(),
                audience: "https://validator.example.com".into(),
            }),
        })
        .unwrap();
    (config, key_file, client)
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
    let old_participant = manifest["identities"]["participant_id"]
        .as_str()
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
    assert_eq!(run["state"], "succeeded", "{run}");
    let new_id = run["result"]["participant_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        new_id,
        format!("{}-2", node.party_hint),
        "the first id never used"
    );
    assert_eq!(
        run["result"]["party"],
        party.as_str(),
        "same validator party"
    );
    assert_eq!(
        run["result"]["balance"], "1234.5000000000",
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
    let out = cli(&config, &["status"]);
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

    // The network is unreachable: the new node cannot register, the start fails.
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
    let out = cli(
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

/// `now - secs` as the flow's timestamp format.
fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn dr_snapshot_moves_the_node_to_the_next_migration_and_later_starts_keep_it() {
    require_docker!();
    // The participant lags 6 s: a snapshot of 2 s ago is "not caught up" (429) at first.
    let node = ComposeNode::start_with("drsnap", "--lag-secs 6");
    let site = tempfile::tempdir().unwrap();
    let (config, _key, client) = validator_site(&node, site.path());
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
    assert_eq!(run["result"]["migration_id"], 1, "{run}");
    // The snapshot is kept in the repository with its checksum.
    let snap = std::path::PathBuf::from(run["result"]["snapshot"].as_str().unwrap());
    assert!(
        snap.starts_with(site.path().join("repo/snapshots/validator-1")),
        "{}",
        snap.display()
    );
    let sum = std::fs::read_to_string(snap.with_extension("json.sha256")).unwrap();
    assert_eq!(
        sum.split_whitespace().next().unwrap(),
        hex::encode(Sha256::digest(std::fs::read(&snap).unwrap()))
    );
    // The node runs migration 1 on participant-1, same party.
    assert_eq!(
        node.container_env("validator", "SPLICE_SIM_MIGRATION_ID")
            .as_deref(),
        Some("1")
    );
    assert_eq!(node.psql("participant-1", "SELECT 1"), "1");
    assert_eq!(
        rt.block_on(client.validator_user()).unwrap().party_id,
        party
    );
    // A later restart passes -m 1 and no -M.
    let out = cli_restarting(&node, &config, &["run", "restart"]);
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(
        node.container_env("validator", "SPLICE_SIM_MIGRATION_ID")
            .as_deref(),
        Some("1")
    );
    assert!(node
        .container_env("validator", "SPLICE_SIM_RESTORE_FROM_MIGRATION_DUMP")
        .is_none());
    assert!(node.validator_ready());
    // Backups refuse to run on the stale config (it still says migration 0).
    let out = cli(&config, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migration_id"),
        "{}",
        text(&out)
    );
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
    assert_eq!(
        node.container_env("validator", "SPLICE_SIM_MIGRATION_ID")
            .as_deref(),
        Some("0")
    );
}
