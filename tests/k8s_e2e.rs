//! The Kubernetes/helm backend end to end: the real splice-dr binary against an in-process
//! fake API server (tests/common/k8s_fake.rs) that speaks real Kubernetes JSON and runs
//! exec'd commands on this machine against the real test Postgres. Each flow is checked
//! by the requests it made (scale, wait, exec into postgres-0, Secret, tar copy) and by
//! its effect on the data; helm is a recording script on PATH; leader election runs two
//! daemons on one Lease.

mod common;
#[path = "common/k8s_fake.rs"]
mod k8s_fake;
#[path = "common/sim.rs"]
mod sim;

use common::*;
use k8s_fake::{ExecEnv, FakeApi};
use serde_json::Value;
use splice_dr_plugin_api::{Databases, OpContext, Storage, Workloads};
use splice_dr_protocol::{LeaderView, RunDetail, RunState, RunSummary, StatusView};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A test site: fake API server, kubeconfig, fake helm on PATH, config for one k8s node.
struct K8sSite {
    dir: tempfile::TempDir,
    fake: FakeApi,
    config: PathBuf,
}

const HELM: &str = r#"#!/bin/sh
# Fake helm: records its arguments and every -f file it was given.
D="$(dirname "$0")"
echo "$*" >> "$D/helm-args.log"
# A test makes every upgrade fail (as `--wait` does when the pods never become ready).
if [ -e "$D/helm-fail" ]; then echo "Error: UPGRADE FAILED: context deadline exceeded" >&2; exit 1; fi
prev=""
for a in "$@"; do
    if [ "$prev" = "-f" ]; then cat "$a" >> "$D/helm-values.log"; fi
    prev="$a"
done
echo "Release has been upgraded. Happy Helming!"
"#;

impl K8sSite {
    fn new(validator_db: &str, participant_db: &str, extra_node: &str) -> K8sSite {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut u = url_parts::parse(&pg_url());
        let password = u.password.take().unwrap_or_default();
        let fake = FakeApi::start(ExecEnv {
            pg_env: vec![
                ("PGHOST".into(), u.host.clone()),
                ("PGPORT".into(), u.port.to_string()),
                ("PGPASSWORD".into(), password.clone()),
            ],
            pods_root: root.join("pods"),
        });
        fake.write_kubeconfig(&root.join("kubeconfig"));
        std::fs::write(root.join("pg-password"), format!("{password}\n")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let helm = root.join("bin/helm");
        std::fs::write(&helm, HELM).unwrap();
        let _ = Command::new("chmod").arg("755").arg(&helm).status();
        let text = format!(
            "[daemon]\nsocket = \"splice-dr.sock\"\nstate_dir = \"state\"\n\n\
             [repository]\npath = \"repo\"\nmax_age = \"30d\"\n\n\
             [[node]]\nname = \"validator-1\"\nbackend = \"k8s\"\nmigration_id = 0\n\n\
             [node.k8s]\nkubeconfig = \"kubeconfig\"\n\
             db_url = \"postgresql://{user}@{host}:{port}/postgres\"\npassword_file = \"pg-password\"\n\
             db_user = \"{user}\"\nvalidator_db = \"{validator_db}\"\nparticipant_db = \"{participant_db}\"\n\
             scale_timeout = 20\n\n\
             [node.k8s.releases.validator]\nname = \"validator\"\nchart = \"oci://charts.example/splice-validator\"\nversion = \"0.4.15\"\n\n\
             [node.k8s.releases.participant]\nname = \"participant\"\nchart = \"oci://charts.example/splice-participant\"\nversion = \"0.4.15\"\n\
             {extra_node}\n",
            user = u.user,
            host = u.host,
            port = u.port,
        );
        let config = root.join("splice-dr.toml");
        std::fs::write(&config, text).unwrap();
        K8sSite { dir, fake, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The CLI with the fake helm first on PATH.
    fn cmd(&self) -> Command {
        let mut c = Command::new(common::bin());
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.arg("--config")
            .arg(&self.config)
            .env("PATH", path)
            .stdin(Stdio::null());
        c
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn backup(&self) -> String {
        let out = self.cli(&["backup"]);
        assert!(out.status.success(), "backup: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn helm_args(&self) -> String {
        std::fs::read_to_string(self.path("bin/helm-args.log")).unwrap_or_default()
    }

    fn helm_values(&self) -> String {
        std::fs::read_to_string(self.path("bin/helm-values.log")).unwrap_or_default()
    }

    /// The requests that matter to a flow, condensed: `scale NAME N`, `exec POD ARGV0
    /// ARGV1`, `pods` (a pods list: someone waited), `secret METHOD NAME`.
    fn actions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.fake.seen() {
            let line = if s.path.ends_with("/scale") && s.method == "PATCH" {
                let v: Value = serde_json::from_str(&s.body).unwrap_or_default();
                let name = s
                    .path
                    .trim_end_matches("/scale")
                    .rsplit('/')
                    .next()
                    .unwrap();
                format!("scale {name} {}", v["spec"]["replicas"])
            } else if s.path.ends_with("/exec") {
                let pod = s.path.trim_end_matches("/exec").rsplit('/').next().unwrap();
                // Tools fed on stdin run under the drain wrapper: show the tool itself.
                let body = s.body.split("exit $rc ").nth(1).unwrap_or(&s.body);
                let argv: Vec<&str> = body.split(' ').take(2).collect();
                format!("exec {pod} {}", argv.join(" "))
            } else if s.path.ends_with("/pods") {
                "pods".into()
            } else if s.path.contains("/secrets") && s.method != "GET" {
                format!("secret {} {}", s.method, s.body.contains("\"content\""))
            } else {
                continue;
            };
            if out.last() != Some(&line) || line.starts_with("exec") {
                out.push(line);
            }
        }
        out
    }
}

fn last_run(site: &K8sSite, flow: &str) -> RunDetail {
    let runs: Vec<RunSummary> = view(&site.cli(&["--json", "runs"]));
    let id = runs
        .into_iter()
        .filter(|r| r.flow == flow)
        .map(|r| (r.created_at, r.id))
        .max()
        .expect("a run")
        .1;
    view(&site.cli(&["--json", "show", &id]))
}

/// Index of the first action equal to `what` at or after `from`, or a panic showing all.
fn find_from(actions: &[String], from: usize, what: &str) -> usize {
    actions[from..]
        .iter()
        .position(|a| a == what)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no `{what}` after position {from} in {actions:#?}"))
}

/// Issue #14 item 3 on k8s: a node whose workloads are gone (a release uninstalled, a new
/// cluster) cannot be restored into. The restore stops before anything changes — no
/// Deployment scaled, no database touched — and names the helm command that installs the
/// missing release; once it exists the flow can run again.
#[test]
fn a_restore_into_a_node_that_is_not_installed_stops_with_the_helm_command() {
    let dbs = NodeDbs::create("k8sgone", 500);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let id = site.backup();
    dbs.damage();
    let damaged = dbs.fingerprint();
    site.fake.uninstall("participant");
    site.fake.clear_seen();
    let out = site.cli(&[
        "run",
        "restore",
        "--param",
        &format!("backup={id}"),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not installed")
            && err.contains("Deployment participant does not exist")
            && err.contains("helm install participant")
            && err.contains("splice-participant"),
        "{err}"
    );
    let scaled: Vec<_> = site
        .fake
        .seen()
        .into_iter()
        .map(|s| s.line())
        .filter(|l| l.contains("scale") || l.contains("exec"))
        .collect();
    assert!(scaled.is_empty(), "nothing was scaled or run: {scaled:?}");
    assert_eq!(
        site.fake.replicas("validator-app"),
        1,
        "the validator still runs"
    );
    assert_eq!(dbs.fingerprint(), damaged, "no database was touched");
}

#[test]
fn restore_scales_the_apps_down_streams_into_postgres_0_and_scales_them_back_up() {
    let dbs = NodeDbs::create("k8srestore", 3000);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let before = dbs.fingerprint();

    let id = site.backup();
    let actions = site.actions();
    // Dumps stream out of postgres-0: validator strictly before participant.
    let v = find_from(&actions, 0, "exec postgres-0 pg_dump --format=custom");
    find_from(&actions, v + 1, "exec postgres-0 pg_dump --format=custom");
    let dump = site.path("repo").join(&id);
    assert!(
        std::fs::read_dir(&dump).unwrap().count() > 0,
        "the backup holds files"
    );

    dbs.damage();
    assert_ne!(dbs.fingerprint(), before);
    site.fake.clear_seen();
    let started = Instant::now();
    let out = site.cli(&[
        "--json",
        "run",
        "restore",
        "--param",
        &format!("backup={id}"),
        "--yes",
    ]);
    assert!(out.status.success(), "restore: {}", text(&out));
    eprintln!("restore took {:?}", started.elapsed());
    assert_eq!(dbs.fingerprint(), before, "the data is the backup's again");

    // The runbook's order: both apps to 0 and waited for, the dumps streamed into
    // postgres-0, both apps back to 1. Postgres itself is never scaled.
    let a = site.actions();
    let down_p = find_from(&a, 0, "scale participant 0");
    let wait_p = find_from(&a, down_p, "pods");
    let down_v = find_from(&a, wait_p, "scale validator-app 0");
    let wait_v = find_from(&a, down_v, "pods");
    let restore_v = find_from(&a, wait_v, "exec postgres-0 pg_restore --exit-on-error");
    let restore_p = find_from(
        &a,
        restore_v + 1,
        "exec postgres-0 pg_restore --exit-on-error",
    );
    let up_p = find_from(&a, restore_p, "scale participant 1");
    find_from(&a, up_p, "scale validator-app 1");
    assert!(
        !a.iter().any(|x| x.starts_with("scale postgres")),
        "postgres keeps running: {a:#?}"
    );
    // Nothing destructive before the backup was verified (pg_restore --list first).
    let list = find_from(&a, 0, "exec postgres-0 pg_restore --list");
    assert!(list < down_p, "{a:#?}");
    assert_eq!(site.fake.replicas("validator-app"), 1);
    assert_eq!(site.fake.replicas("participant"), 1);
    // The replaced databases were kept until the end, then dropped: nothing is left.
    let left = databases_like(dbs.validator.trim_end_matches("_v"));
    assert_eq!(
        left.len(),
        2,
        "only the two live databases remain: {left:?}"
    );
}

#[test]
fn a_failed_restore_keeps_the_live_data_and_brings_the_apps_back() {
    let dbs = NodeDbs::create("k8sfail", 200);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let id = site.backup();
    dbs.damage();
    let damaged = dbs.fingerprint();
    // The participant dump is damaged in a way only pg_restore notices.
    let dir = site.path("repo").join(&id);
    let participant = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .contains("participant")
        })
        .expect("participant dump dir");
    let file = participant.join("database.pgdump");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes.truncate(n * 2 / 3);
    let rel = file
        .strip_prefix(&dir)
        .unwrap()
        .to_string_lossy()
        .to_string();
    replace_and_reseal(&dir, &rel, &bytes);

    let out = site.cli(&[
        "run",
        "restore",
        "--param",
        &format!("backup={id}"),
        "--yes",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(dbs.fingerprint(), damaged, "live data untouched");
    assert_eq!(site.fake.replicas("validator-app"), 1, "{}", text(&out));
    assert_eq!(site.fake.replicas("participant"), 1);
}

#[test]
fn reonboard_creates_the_bootstrap_secret_and_applies_the_overlay_with_helm() {
    let dbs = NodeDbs::create("k8sreon", 50);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    site.backup();
    let before = dbs.fingerprint();
    let ids = site.path("identities.json");
    let dump = r#"{"id":"hint-1::1220abcd","keys":[{"name":"k","keyPair":"c2VjcmV0"}],"authorizedStoreSnapshot":"AA=="}"#;
    std::fs::write(&ids, dump).unwrap();
    site.fake.clear_seen();

    let out = site.cli(&[
        "--json",
        "run",
        "reonboard",
        "--param",
        &format!("identities_file={}", ids.display()),
        "--param",
        "party_hint=hint",
        "--param",
        "ready_timeout=30",
        "--yes",
    ]);
    assert!(out.status.success(), "reonboard: {}", text(&out));
    let run = last_run(&site, "reonboard");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    // The first unused `<hint>-N` (the hint itself counts as used: it was the default id).
    let result = run.result.clone().unwrap_or_default();
    let new_id = result["participant_id"].as_str().unwrap().to_string();
    assert!(new_id.starts_with("hint-"), "{run:?}");

    // The Secret holds the dump under `content`, as `kubectl create secret generic
    // participant-bootstrap-dump --from-file=content=…` would.
    assert_eq!(
        site.fake
            .secret("participant-bootstrap-dump", "content")
            .as_deref(),
        Some(dump.as_bytes())
    );
    // The apps stopped before their databases were renamed aside, the Secret written,
    // and the apps started again after the upgrade.
    let a = site.actions();
    let down =
        find_from(&a, 0, "scale participant 0").max(find_from(&a, 0, "scale validator-app 0"));
    let secret = find_from(&a, down, "secret POST true");
    let up = find_from(&a, secret, "scale participant 1");
    find_from(&a, up, "scale validator-app 1");
    // The old databases are kept (renamed aside, data intact); the live ones are empty.
    let prefix = dbs.validator.trim_end_matches("_v").to_string();
    let kept: Vec<String> = databases_like(&prefix)
        .into_iter()
        .filter(|d| d.contains("__sdr_kept_"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let mut kept_prints = Vec::new();
    for live in [&dbs.validator, &dbs.participant] {
        let k = kept.iter().find(|k| k.starts_with(live.as_str())).unwrap();
        kept_prints.extend(
            fingerprint_db(k)
                .into_iter()
                .map(|(name, sum)| (name.replacen(k.as_str(), live, 1), sum)),
        );
        assert!(fingerprint_db(live).is_empty(), "{live} starts empty");
    }
    assert_eq!(kept_prints, before);

    // helm upgrade of the validator release with --reuse-values and the overlay.
    let args = site.helm_args();
    assert!(
        args.contains("upgrade validator oci://charts.example/splice-validator --namespace validator --reuse-values --version 0.4.15 -f"),
        "{args}"
    );
    let values: Value = serde_json::from_str(site.helm_values().trim()).expect("overlay JSON");
    assert_eq!(
        values,
        serde_json::json!({
            "participantIdentitiesDumpImport": {
                "secretName": "participant-bootstrap-dump",
                "newParticipantIdentifier": new_id
            },
            "nodeIdentifier": new_id,
            "migrateValidatorParty": true
        })
    );
    // The overlay is in the run's journal for an operator to apply by hand.
    let journal = serde_json::to_string(&run).unwrap();
    assert!(
        journal.contains("participantIdentitiesDumpImport"),
        "{journal}"
    );

    // The file's own participant id is recorded as used, so no re-onboard chooses it.
    let registry =
        std::fs::read_to_string(site.path("state/participants/validator-1.json")).unwrap();
    assert!(
        registry.contains(&format!(
            "\"source\": \"identities file {}\"",
            ids.display()
        )),
        "{registry}"
    );

    // A second re-onboard replaces the Secret's data (update, not a second create).
    let second = r#"{"id":"hint-1::1220abcd","keys":[{"name":"k2","keyPair":"b3RoZXI="}],"authorizedStoreSnapshot":"AQ=="}"#;
    std::fs::write(&ids, second).unwrap();
    let out = reonboard_from_file(&site, &ids);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        site.fake
            .secret("participant-bootstrap-dump", "content")
            .as_deref(),
        Some(second.as_bytes())
    );
    assert!(site.actions().contains(&"secret PUT true".to_string()));
}

/// `run reonboard` from an identities file with party hint `hint`.
fn reonboard_from_file(site: &K8sSite, ids: &Path) -> Output {
    site.cli(&[
        "run",
        "reonboard",
        "--param",
        &format!("identities_file={}", ids.display()),
        "--param",
        "party_hint=hint",
        "--yes",
    ])
}

/// A well-formed identities dump for the k8s re-onboard tests (no validator API here, so
/// no party to compare its namespace with).
const VALID_DUMP: &str = r#"{"id":"hint-1::1220abcd","keys":[{"name":"k","keyPair":"c2VjcmV0"}],"authorizedStoreSnapshot":"AA=="}"#;

/// A node whose helm releases have no chart reference (valid config: backups and restores
/// run no helm) is not re-onboarded: the flow refuses before stopping anything, burning
/// an id or setting the databases aside, instead of failing at `helm upgrade` on an
/// emptied node.
#[test]
fn reonboard_without_a_chart_refuses_before_anything_changes() {
    let dbs = NodeDbs::create("k8snochart", 10);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let chartless: String = std::fs::read_to_string(&site.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("chart = ") && !l.starts_with("version = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&site.config, chartless).unwrap();
    site.backup();
    let before = dbs.fingerprint();
    let ids = site.path("identities.json");
    std::fs::write(&ids, VALID_DUMP).unwrap();
    site.fake.clear_seen();
    let out = reonboard_from_file(&site, &ids);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be re-onboarded")
            && err.contains("has no chart reference")
            && err.contains("[node.k8s.releases.validator]")
            && err.contains("nothing was changed"),
        "{err}"
    );
    let a = site.actions();
    assert!(
        !a.iter()
            .any(|x| x.starts_with("scale") || x.starts_with("secret")),
        "nothing stopped or written: {a:?}"
    );
    assert_eq!(dbs.fingerprint(), before, "the databases are untouched");
    assert!(site.helm_args().is_empty(), "helm never ran");
    let registry = std::fs::read_to_string(site.path("state/participants/validator-1.json"))
        .unwrap_or_default();
    assert!(!registry.contains("hint-2"), "no id burned: {registry}");
}

#[test]
fn a_missing_helm_is_a_clear_error_and_the_overlay_is_kept() {
    let dbs = NodeDbs::create("k8shelm", 10);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let text_cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "scale_timeout = 20\n",
        "scale_timeout = 20\nhelm = \"helm-not-installed\"\n",
    );
    std::fs::write(&site.config, text_cfg).unwrap();
    site.backup();
    let ids = site.path("identities.json");
    std::fs::write(&ids, VALID_DUMP).unwrap();
    let out = reonboard_from_file(&site, &ids);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`helm-not-installed` was not found") && err.contains("apply it by hand"),
        "{err}"
    );
    let overlays: Vec<_> = std::fs::read_dir(site.path("state/k8s-overlays/validator-1"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(overlays.len(), 1, "the overlay file stays for the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_snapshot_copies_the_dump_into_the_validator_pod_and_redeploys_migrating() {
    let dbs = sim::SimDbs::new("k8sdr");
    let node = dbs.start().await;
    let info = node.info();
    let validator = format!(
        "\n[node.validator]\nurl = \"{}\"\nretries = 2\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.url()
    );
    let site = K8sSite::new(&info.validator_db, &info.participant_db, &validator);
    let key = age::x25519::Identity::generate();
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!(
            "max_age = \"30d\"\nidentities_recipients = [\"{}\"]\n",
            key.to_public()
        ),
    );
    std::fs::write(&site.config, cfg).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ts = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = {
        let mut cmd = site.cmd();
        cmd.args([
            "--json",
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={ts}"),
            "--param",
            "migration_id=1",
            "--param",
            "deadline=60",
            "--yes",
        ]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    assert!(out.status.success(), "dr_snapshot: {}", text(&out));
    let run = {
        let s = &site;
        last_run(s, "dr_snapshot")
    };
    let result = run.result.unwrap_or_default();
    let snap = PathBuf::from(result["snapshot"].as_str().unwrap());

    // Copied with tar over exec into the validator app's pod, byte for byte.
    let a = site.actions();
    find_from(&a, 0, "exec validator-app-5d9c7b-0x tar -xmf");
    let placed = site.fake.pod_path(
        "validator-app-5d9c7b-0x",
        "/domain-upgrade-dump/domain_migration_dump.json",
    );
    let key_file = site.dir.path().join("identity.key");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
    }
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        splice_dr::identities::decrypt_file(&snap, &key_file).unwrap()
    );

    // Both releases upgraded: the participant onto participant_1, the validator migrating.
    let args = site.helm_args();
    assert!(
        args.contains("upgrade participant oci://charts.example/splice-participant"),
        "{args}"
    );
    assert!(
        args.contains("upgrade validator oci://charts.example/splice-validator"),
        "{args}"
    );
    assert!(
        args.contains("--reuse-values") && args.contains("--wait"),
        "{args}"
    );
    let values = site.helm_values();
    assert!(
        values.contains("\"databaseName\": \"participant_1\""),
        "{values}"
    );
    assert!(
        values.contains("\"migration\"")
            && values.contains("\"migrating\": true")
            && values.contains("\"id\": 1"),
        "{values}"
    );
    // The runbook: migrating once, then set back. The release keeps its values, so the
    // flow's last upgrade deploys migration 1 with migrating false (else the next pod
    // restart would import the dump again).
    let last = values.rfind("\"migrating\"").unwrap();
    assert!(
        values[last..].starts_with("\"migrating\": false"),
        "{values}"
    );
    assert!(values[..last].rfind("\"id\": 1").is_some(), "{values}");
}

/// A k8s site for `node` (splice-sim) with its validator API and identities recipients.
fn dr_site(node: &splice_sim::RunningSim) -> K8sSite {
    let info = node.info();
    let validator = format!(
        "\n[node.validator]\nurl = \"{}\"\nretries = 2\n\n[node.validator.auth]\nmode = \"self_signed\"\nsecret = \"unsafe\"\n",
        node.url()
    );
    let site = K8sSite::new(&info.validator_db, &info.participant_db, &validator);
    let key = age::x25519::Identity::generate();
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!(
            "max_age = \"30d\"\nidentities_recipients = [\"{}\"]\n",
            key.to_public()
        ),
    );
    std::fs::write(&site.config, cfg).unwrap();
    site
}

/// Runs the CLI off the test's runtime (the sim answers on it).
async fn cli_async(site: &K8sSite, args: &[&str]) -> Output {
    let mut cmd = site.cmd();
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Issue #14 item 4 on k8s: a migrating start that fails (helm's `--wait` gives up) leaves
/// the registry on the new id, unproven; `status` says so; `restart` deploys migration 1
/// migrating again, and once healthy records it proven and sets `migrating` back to false
/// (the release keeps its values under `--reuse-values`: left true, every later upgrade or
/// pod restart would import the dump again). Later restarts deploy migrating false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migrating_start_is_finished_by_restart_which_sets_migrating_back() {
    let dbs = sim::SimDbs::new("k8smigfail");
    let node = dbs.start().await;
    let site = dr_site(&node);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ts = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    std::fs::write(site.path("bin/helm-fail"), "").unwrap();
    let out = cli_async(
        &site,
        &[
            "run",
            "dr_snapshot",
            "--param",
            &format!("timestamp={ts}"),
            "--param",
            "migration_id=1",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "dr_snapshot: {}", text(&out));
    assert!(text(&out).contains("UPGRADE FAILED"), "{}", text(&out));
    let registry = || -> Value {
        serde_json::from_slice(
            &std::fs::read(site.path("state/participants/validator-1.json")).unwrap(),
        )
        .unwrap()
    };
    let reg = registry();
    assert_eq!(reg["migration_id"], 1, "{reg}");
    assert_eq!(reg["migration_unproven"], true, "{reg}");
    let status: StatusView = view(&cli_async(&site, &["--json", "status"]).await);
    assert_eq!(status.nodes[0].running_migration_id, Some(1));
    assert!(status.nodes[0].migration_unproven);
    let shown = text(&cli_async(&site, &["status"]).await);
    assert!(
        shown.contains("splice-dr run restart --node validator-1"),
        "{shown}"
    );

    // helm works again: restart deploys migration 1 migrating, then migrating false.
    std::fs::remove_file(site.path("bin/helm-fail")).unwrap();
    let _ = std::fs::remove_file(site.path("bin/helm-values.log"));
    let out = cli_async(&site, &["--json", "run", "restart"]).await;
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(flow_result(&out)["migrated"], true, "{}", text(&out));
    let values = site.helm_values();
    let first = values.find("\"migrating\"").expect("migration values");
    assert!(
        values[first..].starts_with("\"migrating\": true"),
        "{values}"
    );
    let last = values.rfind("\"migrating\"").unwrap();
    assert!(
        values[last..].starts_with("\"migrating\": false"),
        "{values}"
    );
    assert!(
        values.contains("\"id\": 1") && !values.contains("\"id\": 0"),
        "{values}"
    );
    // The failed upgrade never moved the participant: this one does.
    assert!(
        values.contains("\"databaseName\": \"participant_1\""),
        "{values}"
    );
    let reg = registry();
    assert_eq!(reg["migration_id"], 1, "{reg}");
    assert!(reg["migration_unproven"].is_null(), "proven: {reg}");

    // A later restart keeps migration 1 and never migrates again.
    let _ = std::fs::remove_file(site.path("bin/helm-values.log"));
    let out = cli_async(&site, &["--json", "run", "restart"]).await;
    assert!(out.status.success(), "restart: {}", text(&out));
    assert_eq!(flow_result(&out)["migrated"], false);
    let values = site.helm_values();
    assert!(
        values.contains("\"id\": 1") && !values.contains("\"migrating\": true"),
        "{values}"
    );
}

/// A kube client and backend for in-process checks against a fake.
fn backend_for(site: &K8sSite) -> splice_dr_k8s::K8sBackend {
    let text = std::fs::read_to_string(&site.config).unwrap();
    let table = text.split("[node.k8s]\n").nth(1).unwrap();
    let table = table.split("\n[node.k8s.releases").next().unwrap();
    let mut cfg: splice_dr_k8s::K8sConfig = toml::from_str(table).unwrap();
    cfg.kubeconfig = Some(site.path("kubeconfig"));
    cfg.password_file = Some(site.path("pg-password"));
    splice_dr_k8s::K8sBackend::new(cfg, 0).unwrap()
}

#[test]
fn exec_streams_megabytes_both_ways_byte_exact() {
    let dbs = NodeDbs::create("k8sexec", 150_000);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let backend = backend_for(&site);
    let ctx = OpContext::detached(Default::default());
    // 12 MB of incompressible bytes in, their digest out.
    let input = site.path("payload.bin");
    let mut data = Vec::with_capacity(12 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 12 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&input, &data).unwrap();
    let started = Instant::now();
    let out = backend
        .exec(&ctx, "postgres", &["sha256sum".into()], Some(&input))
        .unwrap();
    eprintln!("12 MB through exec stdin in {:?}", started.elapsed());
    assert_eq!(out.code, 0, "{}", out.stderr);
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(out.stdout.split_whitespace().next(), Some(want.as_str()));

    // And out: the same bytes streamed back on stdout into a file.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let copy = site.path("copy.bin");
    rt.block_on(async {
        let client = splice_dr_k8s::cluster::connect(Some(&site.path("kubeconfig")), None)
            .await
            .unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client, "validator");
        let r = splice_dr_k8s::exec::run(
            &pods,
            &ctx,
            "postgres-0",
            Some("postgres"),
            &["cat".into(), input.display().to_string()],
            splice_dr_k8s::exec::Streams {
                input: splice_dr_k8s::exec::Input::None,
                stdout: Some(&copy),
                progress: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(r.code, 0);
        assert_eq!(r.bytes_out, data.len() as u64);
    });
    assert!(std::fs::read(&copy).unwrap() == data, "byte-exact copy");

    // A command that exits without reading its 12 MB of stdin does not hang the caller:
    // the server closes the connection, the call ends with the exit code or says why not.
    let started = Instant::now();
    let early = backend.exec(&ctx, "postgres", &["true".into()], Some(&input));
    eprintln!("a command not reading its stdin: {early:?}");
    match early {
        Ok(out) => assert_eq!(out.code, 0),
        Err(e) => assert!(
            e.to_string().contains("before reading all its input"),
            "{e}"
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // The Postgres tools fed on stdin drain what they do not read: `pg_restore --list`
    // reads only the table of contents of a multi-MB dump and still reports its result.
    let dump = site.path("dump-participant");
    let info = backend.dump(&ctx, "participant", &dump).unwrap();
    let size = std::fs::metadata(dump.join("database.pgdump"))
        .unwrap()
        .len();
    assert!(size > 4 << 20, "a multi-MB dump: {size} bytes");
    assert_eq!(info.tables.iter().map(|t| t.rows).sum::<u64>(), 150_000);
    let check = backend.check_dump(&ctx, &dump).unwrap();
    assert!(check.table_data >= 1, "{check:?}");

    // A failing command's exit code and stderr come back.
    let out = backend
        .exec(
            &ctx,
            "postgres",
            &["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            None,
        )
        .unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.stderr.trim(), "boom");
}

#[test]
fn kept_databases_come_back_or_go_and_a_wipe_never_destroys_data() {
    let dbs = NodeDbs::create("k8skeep", 100);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let backend = backend_for(&site);
    let ctx = OpContext::detached(Default::default());
    let pg = splice_dr_plugin_api::StorageTarget {
        name: "postgres".into(),
        path: None,
    };
    let before = dbs.fingerprint();

    // A wipe refuses databases that hold data: they must be kept aside first.
    let e = backend.wipe(&ctx, &pg).unwrap_err();
    assert!(e.to_string().contains("keep it aside first"), "{e}");
    let kept = backend.keep_storage(&ctx, &pg).unwrap();
    backend.wipe(&ctx, &pg).unwrap();
    assert!(fingerprint_db(&dbs.validator).is_empty());
    // Something is written to the fresh databases, then the kept ones come back.
    connect(&dbs.validator)
        .batch_execute("CREATE TABLE fresh (x int)")
        .unwrap();
    backend.restore_kept_storage(&ctx, &kept).unwrap();
    assert_eq!(dbs.fingerprint(), before);
    let prefix = dbs.validator.trim_end_matches("_v").to_string();
    assert_eq!(
        databases_like(&prefix).len(),
        2,
        "the failed fresh ones were dropped"
    );

    // Kept again and dropped: only the (empty) live databases remain.
    let kept = backend.keep_storage(&ctx, &pg).unwrap();
    backend.wipe(&ctx, &pg).unwrap();
    backend.drop_kept_storage(&ctx, &kept).unwrap();
    assert_eq!(databases_like(&prefix).len(), 2);
    assert!(fingerprint_db(&dbs.participant).is_empty());
}

fn leader_site(dbs: &NodeDbs, fake_from: Option<&K8sSite>, who: &str) -> K8sSite {
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    if let Some(first) = fake_from {
        // The second replica talks to the first one's API server.
        std::fs::copy(first.path("kubeconfig"), site.path("kubeconfig")).unwrap();
    }
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "state_dir = \"state\"\n",
        &format!(
            "state_dir = \"state\"\n\n[daemon.leader_election]\nlease = \"splice-dr\"\nnamespace = \"validator\"\nidentity = \"{who}\"\nkubeconfig = \"kubeconfig\"\nlease_duration = \"3s\"\nrenew_interval = \"1s\"\n"
        ),
    );
    std::fs::write(&site.config, cfg).unwrap();
    site
}

fn start_daemon(site: &K8sSite) -> DaemonProcess {
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let child = site
        .cmd()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = site.path("splice-dr.sock");
    let d = DaemonProcess::from_child(child);
    wait_for(Duration::from_secs(20), "daemon socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    d
}

/// `status`, or `None` while the replica does not answer it (polled while starting).
/// The replica daemon's own status. A CLI that finds no daemon answering yet (one still
/// starting, on a loaded machine) answers in-process, without automation or the daemon's
/// view of the lease: such an answer is not the replica's, so it is asked again (up to 5 s)
/// and otherwise counts as no answer.
fn status_of(site: &K8sSite) -> Option<StatusView> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let answer: Option<StatusView> =
            serde_json::from_slice(&site.cli(&["--json", "status"]).stdout).ok();
        match answer {
            Some(s) if s.mode == "daemon" => return Some(s),
            _ if Instant::now() >= until => return None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn automation_paused(site: &K8sSite) -> bool {
    status_of(site)
        .and_then(|s| s.automation)
        .is_some_and(|a| a.paused)
}

fn leader_status(site: &K8sSite) -> Option<LeaderView> {
    status_of(site).map(|s| s.leader)
}

/// Whether the replica says it leads (`None`: no answer).
fn leads(site: &K8sSite) -> Option<bool> {
    leader_status(site).map(|l| l.leader)
}

/// The Lease holder the replica names.
fn holder(site: &K8sSite) -> Option<String> {
    leader_status(site).and_then(|l| l.holder)
}

#[test]
fn only_the_lease_holder_runs_flows_and_a_follower_takes_over_when_it_dies() {
    let dbs = NodeDbs::create("k8slease", 10);
    let a = leader_site(&dbs, None, "replica-a");
    let b = leader_site(&dbs, Some(&a), "replica-b");
    // The replicas share the state directory, as on the deployment's shared volume.
    let shared = std::fs::read_to_string(&b.config).unwrap().replace(
        "state_dir = \"state\"\n",
        &format!("state_dir = {:?}\n", a.path("state").display().to_string()),
    );
    std::fs::write(&b.config, shared).unwrap();
    let mut da = start_daemon(&a);
    wait_for(Duration::from_secs(10), "replica-a to lead", || {
        leads(&a) == Some(true)
    });
    // The leader's operator pauses automation before the second replica starts: the
    // follower reads the shared memory at its start.
    assert!(a.cli(&["pause"]).status.success());
    let db = start_daemon(&b);
    wait_for(Duration::from_secs(10), "replica-b to follow", || {
        holder(&b).as_deref() == Some("replica-a")
    });
    assert_eq!(leads(&b), Some(false));
    assert_eq!(
        a.fake.lease_holder("splice-dr").as_deref(),
        Some("replica-a")
    );

    // The follower refuses runs and says who leads.
    let out = b.cli(&["run", "backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the leader") && err.contains("replica-a"),
        "{err}"
    );
    // The leader runs them.
    let out = a.cli(&["run", "backup"]);
    assert!(out.status.success(), "{}", text(&out));

    assert!(automation_paused(&b), "read at the follower's start");
    // Then the leader's operator resumes; the follower reads nothing until it leads.
    assert!(a.cli(&["resume"]).status.success());
    assert!(automation_paused(&b));

    // The holder dies without releasing: the follower takes over once the lease expires.
    da.kill().unwrap();
    let _ = da.wait();
    let died = Instant::now();
    wait_for(Duration::from_secs(15), "replica-b to take over", || {
        leads(&b) == Some(true)
    });
    let took = died.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not before the lease expired: {took:?}"
    );
    eprintln!("takeover after {took:?}");
    assert_eq!(
        a.fake.lease_holder("splice-dr").as_deref(),
        Some("replica-b")
    );
    // The new leader takes over what the old one remembered last: the resume.
    wait_for(Duration::from_secs(15), "the resume to carry over", || {
        !automation_paused(&b)
    });
    let out = b.cli(&["run", "backup"]);
    assert!(out.status.success(), "{}", text(&out));
    stop(db);
    // A clean stop releases the lease for the next replica at once.
    assert_eq!(a.fake.lease_holder("splice-dr"), None);
}

#[test]
fn a_replica_that_loses_the_lease_mid_run_starts_no_further_step() {
    let dbs = NodeDbs::create("k8slost", 10);
    let a = leader_site(&dbs, None, "replica-a");
    let _da = start_daemon(&a);
    wait_for(Duration::from_secs(10), "replica-a to lead", || {
        leads(&a) == Some(true)
    });
    // Each dump now takes 3 s to start: the run is caught in its first dump.
    a.fake.set_exec_delay(Duration::from_secs(3));
    let mut run = a
        .cmd()
        .args(["run", "backup"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the dump to start", || {
        a.fake.seen().iter().any(|s| s.path.ends_with("/exec"))
    });
    a.fake.steal_lease("splice-dr", "replica-b");
    wait_for(
        Duration::from_secs(10),
        "replica-a to see it lost the lease",
        || leads(&a) == Some(false),
    );
    let out = {
        let status = run.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    };
    assert_eq!(out.0.code(), Some(1), "{}", out.1);
    let rec = last_run(&a, "backup");
    assert_eq!(rec.state, RunState::Failed, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap_or_default()
            .contains("lost the leader lease"),
        "{rec:?}"
    );
    // The participant dump never started.
    let dumps = a
        .fake
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/exec") && s.body.starts_with("pg_dump"))
        .count();
    assert_eq!(dumps, 1, "only the first dump was attempted");
    assert!(holder(&a).as_deref() == Some("replica-b"));
}

#[test]
fn check_validates_an_in_cluster_config() {
    let dbs = NodeDbs::create("k8scheck", 1);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    let out = site.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("backend k8s"));
    // Leader election is checked too: with a kubeconfig it builds its client.
    let with_le = std::fs::read_to_string(&site.config).unwrap().replace(
        "state_dir = \"state\"\n",
        "state_dir = \"state\"\n\n[daemon.leader_election]\nkubeconfig = \"kubeconfig\"\nidentity = \"r1\"\n",
    );
    std::fs::write(&site.config, &with_le).unwrap();
    let out = site.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("leader election: Lease validator/splice-dr as `r1`"),
        "{}",
        text(&out)
    );
    // Without a kubeconfig the daemon must run in a pod: outside one, check says so.
    let cfg = std::fs::read_to_string(&site.config)
        .unwrap()
        .replace("kubeconfig = \"kubeconfig\"\n", "");
    std::fs::write(&site.config, cfg).unwrap();
    let out = site
        .cmd()
        .arg("check")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("KUBERNETES_SERVICE_HOST") && err.contains("serviceaccount/token"),
        "{err}"
    );
}

/// The Role in deploy/k8s/rbac.yaml grants every (resource, verb) the backend and the
/// leader election were seen to use by the fake API server, and nothing else beyond a
/// documented extra.
#[test]
fn the_role_grants_exactly_what_the_backend_and_the_election_use() {
    let dbs = NodeDbs::create("k8srole", 10);
    let site = K8sSite::new(&dbs.validator, &dbs.participant, "");
    site.backup();
    let backend = backend_for(&site);
    let ctx = OpContext::detached(Default::default());
    backend.components(&ctx).unwrap();
    backend.scale(&ctx, "validator", 0).unwrap();
    backend.scale(&ctx, "validator", 1).unwrap();
    backend.scale(&ctx, "postgres", 1).unwrap();
    backend
        .wait_ready(&ctx, "validator", Duration::from_secs(10))
        .unwrap();
    let file = site.path("f.json");
    std::fs::write(&file, "{}").unwrap();
    for _ in 0..2 {
        let secret = splice_dr_plugin_api::StorageTarget {
            name: "secret:x".into(),
            path: None,
        };
        backend.put_file(&ctx, &secret, &file).unwrap();
    }
    let dump = splice_dr_plugin_api::StorageTarget {
        name: "dump".into(),
        path: None,
    };
    backend.put_file(&ctx, &dump, &file).unwrap();
    // Two election rounds and a release.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg: splice_dr::config::LeaderElectionConfig = toml::from_str(&format!(
            "kubeconfig = \"{}\"\nidentity = \"r\"\nlease_duration = \"2s\"\nrenew_interval = \"1s\"\n",
            site.path("kubeconfig").display()
        ))
        .unwrap();
        let l = splice_dr::leader::Leadership::elected("splice-dr", "r");
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(splice_dr::leader::run(cfg, l.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(l.is_leader());
        stop.cancel();
        task.await.unwrap().unwrap();
    });

    let mut used: Vec<(String, String)> = site
        .fake
        .seen()
        .iter()
        .map(|s| rbac_of(&s.method, &s.path, &s.query))
        .collect();
    used.sort();
    used.dedup();
    let role = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/rbac.yaml"),
    )
    .unwrap();
    let granted = role_rules(&role);
    for u in &used {
        assert!(
            granted.contains(u),
            "the Role lacks {u:?}; it grants {granted:?}"
        );
    }
    // Websocket exec is authorized as `get` by API servers before 1.30, `create` after.
    let extra = [("pods/exec".to_string(), "get".to_string())];
    for g in &granted {
        assert!(
            used.contains(g) || extra.contains(g),
            "the Role grants {g:?}, which nothing uses (least privilege): used {used:?}"
        );
    }
}

/// The RBAC (resource, verb) a request needs.
fn rbac_of(method: &str, path: &str, query: &str) -> (String, String) {
    let rest = path
        .split("/namespaces/")
        .nth(1)
        .and_then(|r| r.split_once('/'))
        .map(|(_, r)| r)
        .unwrap_or(path);
    let segs: Vec<&str> = rest.split('/').collect();
    let resource = match segs.as_slice() {
        [kind, _, sub] => format!("{kind}/{sub}"),
        [kind, ..] => kind.to_string(),
        [] => String::new(),
    };
    let verb = match (method, segs.len()) {
        (_, 3) if resource.ends_with("/exec") => "create",
        ("GET", 1) if query.contains("watch=true") => "watch",
        ("GET", 1) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    };
    (resource, verb.to_string())
}

/// (resource, verb) pairs of the Role's rules (a reader for that file's flow-style lists).
fn role_rules(yaml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut resources: Vec<String> = Vec::new();
    let list = |s: &str| -> Vec<String> {
        s.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|x| x.trim().trim_matches('"').to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    for line in yaml.lines() {
        let l = line.trim().trim_start_matches("- ");
        if let Some(r) = l.strip_prefix("resources:") {
            resources = list(r);
        } else if let Some(v) = l.strip_prefix("verbs:") {
            for r in &resources {
                for verb in list(v) {
                    out.push((r.clone(), verb));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Issue #12 item 4: the fake API server hangs the holder's Lease requests (accepted
/// connections, no answer). Sampling both replicas' leader state every few milliseconds,
/// there is never an instant where both believe they lead: the hung holder demotes itself
/// at its renew deadline, before the lease can expire for the other replica.
#[test]
fn a_holder_whose_api_server_hangs_demotes_itself_before_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApi::start(ExecEnv {
        pg_env: vec![],
        pods_root: dir.path().join("pods"),
    });
    let (door, door_url) = fake.open_door();
    let config_for = |who: &str, url: &str| {
        let kubeconfig = dir.path().join(format!("kubeconfig-{who}"));
        fake.write_kubeconfig_at(&kubeconfig, url);
        let cfg: splice_dr::config::LeaderElectionConfig = toml::from_str(&format!(
            "kubeconfig = \"{}\"\nidentity = \"{who}\"\nlease_duration = \"3s\"\nrenew_interval = \"1s\"\n",
            kubeconfig.display()
        ))
        .unwrap();
        cfg
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = splice_dr::leader::Leadership::elected("splice-dr", "replica-a");
        let b = splice_dr::leader::Leadership::elected("splice-dr", "replica-b");
        let stop = tokio_util::sync::CancellationToken::new();
        let ta = tokio::spawn(splice_dr::leader::run(
            config_for("replica-a", &door_url),
            a.clone(),
            stop.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !a.is_leader() {
            assert!(Instant::now() < deadline, "replica-a never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tb = tokio::spawn(splice_dr::leader::run(
            config_for("replica-b", &fake.url()),
            b.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(a.is_leader() && !b.is_leader(), "b follows while a renews");

        fake.hang_leases(door, true);
        let hung = Instant::now();
        let (mut a_demoted, mut b_led) = (None, None);
        let mut samples = 0u64;
        while hung.elapsed() < Duration::from_secs(8) {
            let (la, lb) = (a.is_leader(), b.is_leader());
            samples += 1;
            assert!(
                !(la && lb),
                "two leaders {:?} after the hang ({samples} samples)",
                hung.elapsed()
            );
            if !la && a_demoted.is_none() {
                a_demoted = Some(hung.elapsed());
            }
            if lb && b_led.is_none() {
                b_led = Some(hung.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let a_demoted = a_demoted.expect("the hung holder demotes itself");
        let b_led = b_led.expect("the other replica takes over the expired lease");
        eprintln!("{samples} samples: a demoted after {a_demoted:?}, b leads after {b_led:?}");
        assert!(
            a_demoted < b_led,
            "demoted first: {a_demoted:?} vs {b_led:?}"
        );
        assert!(
            a_demoted <= Duration::from_secs(2) + Duration::from_millis(200),
            "within the renew deadline (2/3 of the 3 s lease): {a_demoted:?}"
        );
        assert!(!a.is_leader() && b.is_leader());

        // Answered again, the old holder follows the new one.
        fake.hang_leases(door, false);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!a.is_leader() && b.is_leader());
        assert_eq!(fake.lease_holder("splice-dr").as_deref(), Some("replica-b"));
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), ta).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tb).await;
    });
}
