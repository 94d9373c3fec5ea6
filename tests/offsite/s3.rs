//! Off-site repositories against a real S3 server: moto in server mode (from PyPI, started
//! per test on a loopback port; `.ci/run` installs it). Backups are written to the bucket
//! manifest last, listed, restored after the local copy is gone, pruned per repository;
//! an upload cut short by killing the daemon is never listed; a corrupted object is caught
//! on download before anything is restored. Credentials come from key files, a session
//! token, web identity through moto's STS, or moto's instance metadata, and the S3
//! requests moto recorded show which credentials signed them.

use super::common::*;
use super::moto::{free_port, Moto, MotoSts};
use age::secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use splice_dr_protocol::{BackupList, RepoCheckReport, RunDetail, RunSummary};

/// A loopback TCP proxy that slows uploads to about `bytes_per_sec`, so a test can kill
/// the daemon while an upload is under way.
fn slow_proxy(target: u16, bytes_per_sec: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / bytes_per_sec));
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// A site whose node backs up to the local repository and to `bucket` on `endpoint`.
/// `extra` goes into the `[[repository.offsite]]` table.
fn s3_site(dbs: &NodeDbs, endpoint: &str, bucket: &str, extra: &str) -> Site {
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "",
        "",
        "",
    );
    std::fs::write(site.path("s3-key-id"), "testing\n").unwrap();
    std::fs::write(site.path("s3-secret"), "testing\n").unwrap();
    let text = std::fs::read_to_string(&site.config).unwrap();
    let table = format!(
        "[[repository.offsite]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"{endpoint}\"\n\
         bucket = \"{bucket}\"\nprefix = \"site-a\"\npath_style = true\nprimary = true\n\
         access_key_id_file = \"s3-key-id\"\nsecret_access_key_file = \"s3-secret\"\n{extra}\n"
    );
    let text = text.replace("\n\n[[node]]", &format!("\n{table}\n[[node]]"));
    std::fs::write(&site.config, text).unwrap();
    site
}

fn backup(site: &Site) -> String {
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn backups_json(site: &Site) -> BackupList {
    site.json(&["backups"])
}

#[test]
fn a_backup_goes_to_s3_encrypted_and_restores_after_the_local_copy_is_lost() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_restore", 2000);
    let key = age::x25519::Identity::generate();
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("offsite.key");
    std::fs::write(&key_file, key.to_string().expose_secret()).unwrap();
    let site = s3_site(
        &dbs,
        &moto.url(),
        "sdr-bk",
        &format!(
            "encrypt_to = [\"{}\"]\nidentity_file = \"{}\"\n",
            key.to_public(),
            key_file.display()
        ),
    );
    assert!(site.cli(&["check"]).status.success());
    let id = backup(&site);
    let before = dbs.fingerprint();

    // In the bucket: every file and the manifest, all age-encrypted (no plain SQL or JSON).
    let keys = moto.keys("sdr-bk");
    assert!(
        keys.iter()
            .any(|(k, _)| *k == format!("site-a/{id}/manifest.json.age")),
        "{keys:?}"
    );
    let local_files = std::fs::read_dir(site.path("repo").join(&id).join("participant"))
        .unwrap()
        .count();
    assert!(keys.len() > local_files, "{keys:?}");
    for (k, _) in &keys {
        assert!(k.ends_with(".age"), "{k} is not encrypted");
        let body = moto.get("sdr-bk", k);
        assert!(
            body.starts_with(b"age-encryption.org/v1"),
            "{k} is not an age file"
        );
    }
    let listed = backups_json(&site);
    assert_eq!(listed.backups[0].locations, ["local", "s3"]);

    // The machine is lost: the local repository is gone. The backup is still listed, from
    // S3, and restores from there.
    std::fs::remove_dir_all(site.path("repo")).unwrap();
    let listed = backups_json(&site);
    assert_eq!(listed.backups[0].id, id, "{listed:?}");
    assert_eq!(listed.backups[0].locations, ["s3"]);
    dbs.damage();
    assert_ne!(dbs.fingerprint(), before);
    let out = site.cli(&["--json", "restore", "--backup", "latest", "-y"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    let run: RunDetail = view(&out);
    let steps: Vec<String> = run.steps.into_iter().map(|s| s.name).collect();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with(&format!("download backup {id} from off-site repository s3"))),
        "{steps:?}"
    );
    assert_eq!(
        dbs.fingerprint(),
        before,
        "the restored node has the backed-up data"
    );
    assert!(site.path("repo").join(&id).join("manifest.json").exists());
}

#[test]
fn a_corrupted_object_is_caught_on_download_and_nothing_is_restored() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_corrupt", 2000);
    let site = s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let id = backup(&site);

    // Flip bytes in the biggest participant object, same size, in the bucket only.
    let (victim, _) = moto
        .keys("sdr-bk")
        .into_iter()
        .filter(|(k, _)| k.contains("/participant/"))
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let mut body = moto.get("sdr-bk", &victim);
    let mid = body.len() / 2;
    for b in &mut body[mid..mid + 16] {
        *b ^= 0xff;
    }
    moto.put("sdr-bk", &victim, &body);
    std::fs::remove_dir_all(site.path("repo").join(&id)).unwrap();
    dbs.damage();
    let damaged = dbs.fingerprint();

    let out = site.cli(&["restore", "--backup", &id, "-y"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = victim.rsplit('/').next().unwrap();
    assert!(err.contains(file) && err.contains("corrupted"), "{err}");
    assert_eq!(dbs.fingerprint(), damaged, "nothing was restored");
    assert!(
        !site.path("repo").join(&id).exists(),
        "no half-downloaded backup is listed"
    );
    let listed = backups_json(&site);
    assert_eq!(listed.backups[0].locations, ["s3"]);
}

#[test]
fn an_upload_cut_short_by_killing_the_daemon_is_never_listed() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    // A few MB of dumps through a proxy at 250 kB/s: seconds of upload to cut into.
    // Compressed (the default is none), so that no single file's PUT needs longer than
    // the S3 client's 30 s request limit at that speed.
    let dbs = NodeDbs::create("sdr_s3_kill", 60_000);
    let proxy = slow_proxy(moto.port, 250_000);
    let site = s3_site(&dbs, &format!("http://127.0.0.1:{proxy}"), "sdr-bk", "");
    let config = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        config.replacen("[node.postgres]\n", "[node.postgres]\ncompress = 1\n", 1),
    )
    .unwrap();
    let daemon = site.start_daemon();
    let mut client = site
        .cmd()
        .arg("backup")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "the upload step", || {
        let runs = site.cli(&["--json", "runs"]);
        let runs: Vec<RunSummary> = serde_json::from_slice(&runs.stdout).unwrap_or_default();
        let Some(newest) = runs.first() else {
            return false;
        };
        let show = site.cli(&["--json", "show", &newest.id]);
        serde_json::from_slice::<RunDetail>(&show.stdout)
            .is_ok_and(|r| r.steps.iter().any(|s| s.name.starts_with("copy backup")))
            && moto.keys("sdr-bk").len() >= 2
    });
    let mut daemon = daemon;
    daemon.kill().unwrap();
    let _ = daemon.wait();
    let _ = client.wait();

    let uploaded = moto.keys("sdr-bk");
    assert!(!uploaded.is_empty(), "the upload had started");
    assert!(
        !uploaded.iter().any(|(k, _)| k.ends_with("manifest.json")),
        "the manifest is written last: {uploaded:?}"
    );
    let listed = backups_json(&site);
    assert_eq!(listed.backups[0].locations, ["local"], "{listed:?}");
    let check = site.cli(&["repo", "check"]);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("1 interrupted upload(s)"),
        "{}",
        text(&check)
    );

    // The next backup removes the leftovers (nothing else holds the node's lock) and
    // completes its own upload.
    let next = backup(&site);
    let keys = moto.keys("sdr-bk");
    let prefixes: std::collections::BTreeSet<&str> = keys
        .iter()
        .map(|(k, _)| k.split('/').nth(1).unwrap())
        .collect();
    assert_eq!(
        prefixes.into_iter().collect::<Vec<_>>(),
        vec![next.as_str()]
    );
}

#[test]
fn prune_applies_each_repository_s_retention_and_dry_run_deletes_nothing() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_prune", 200);
    let site = s3_site(
        &dbs,
        &moto.url(),
        "sdr-bk",
        "[repository.offsite.retention]\nkeep_last = 2\n",
    );
    let text_cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{text_cfg}\n[retention]\nkeep_last = 1\n"),
    )
    .unwrap();
    let ids: Vec<String> = (0..3)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(1100));
            backup(&site)
        })
        .collect();

    let dry = site.cli(&["prune", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(out.contains(&format!("would delete {}", ids[0])), "{out}");
    assert!(out.contains(&format!("would delete {}", ids[1])), "{out}");
    assert!(out.contains("nothing was deleted"), "{out}");
    assert_eq!(backups_json(&site).backups.len(), 3);

    let done = site.cli(&["--json", "prune"]);
    assert!(done.status.success(), "{}", text(&done));
    let listed = backups_json(&site);
    let where_of = |id: &str| {
        listed
            .backups
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.locations.clone())
    };
    assert_eq!(where_of(&ids[0]), None, "{listed:?}");
    assert_eq!(where_of(&ids[1]), Some(vec!["s3".into()]), "{listed:?}");
    assert_eq!(
        where_of(&ids[2]),
        Some(vec!["local".into(), "s3".into()]),
        "{listed:?}"
    );
}

#[test]
fn repo_check_reports_an_unreachable_repository_with_exit_1() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_check", 10);
    let good = s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let out = good.cli(&["repo", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OK     s3 (s3://sdr-bk/site-a)"),
        "{stdout}"
    );
    assert!(stdout.contains("OK     local"), "{stdout}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = s3_site(&dbs, &format!("http://127.0.0.1:{closed}"), "sdr-bk", "");
    let out = bad.cli(&["--json", "repo", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: RepoCheckReport = view(&out);
    let s3 = v
        .repositories
        .iter()
        .find(|r| r.repository == "s3")
        .unwrap();
    assert!(!s3.ok, "{s3:?}");
    assert!(
        s3.checks.iter().any(|c| c.contains("listable: FAILED")),
        "{s3:?}"
    );
}

#[test]
fn the_daemon_checks_repositories_periodically_metric_and_events() {
    let dbs = NodeDbs::create("sdr_s3_watch", 10);
    let port = free_port();
    let metrics = free_port();
    let site = s3_site(&dbs, &format!("http://127.0.0.1:{port}"), "sdr-bk", "");
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    let cfg = cfg.replacen("[daemon]\n", "[daemon]\nrepo_check_interval = \"1s\"\n", 1);
    std::fs::write(
        &site.config,
        format!("{cfg}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
    )
    .unwrap();
    let _daemon = site.start_daemon();
    let scrape = || {
        ureq::get(&format!("http://127.0.0.1:{metrics}/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), "s3 reported down", || {
        scrape().contains("splice_dr_repository_up{repository=\"s3\"} 0")
    });
    assert!(scrape().contains("splice_dr_repository_up{repository=\"local\"} 1"));
    assert!(scrape().contains("splice_dr_repository_free_bytes{repository=\"local\"}"));
    assert!(site
        .daemon_log()
        .contains("repository s3 (s3://sdr-bk/site-a) failed its check"));

    // The server comes up on that port: the next check says so.
    let moto = Moto::start_on(port);
    moto.create_bucket("sdr-bk");
    wait_for(Duration::from_secs(60), "s3 reported up", || {
        scrape().contains("splice_dr_repository_up{repository=\"s3\"} 1")
    });
    wait_for(Duration::from_secs(10), "the up event in the log", || {
        site.daemon_log()
            .contains("repository s3 (s3://sdr-bk/site-a) is reachable again")
    });
}

// ---- Credentials: the AWS chain besides the repository's key files -----------------------

/// The site of `s3_site` without its key files: credentials must come from the
/// environment's AWS chain.
fn keyless_s3_site(dbs: &NodeDbs, endpoint: &str, bucket: &str, extra: &str) -> Site {
    let site = s3_site(dbs, endpoint, bucket, extra);
    let text = std::fs::read_to_string(&site.config).unwrap();
    let text = text.replace(
        "access_key_id_file = \"s3-key-id\"\nsecret_access_key_file = \"s3-secret\"\n",
        "",
    );
    std::fs::write(&site.config, text).unwrap();
    site
}

/// `cmd` with no `AWS_*` variable from the test's own environment, then `vars`.
fn aws_env<'a>(cmd: &'a mut Command, vars: &[(&str, &str)]) -> &'a mut Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied())
}

fn cli_env(site: &Site, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    aws_env(&mut site.cmd(), vars).args(args).output().unwrap()
}

/// A header of a request moto recorded (header names as the client sent them).
fn header<'a>(req: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    req["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The signed S3 requests moto recorded (the instance metadata calls are not signed).
fn signed(moto: &Moto) -> Vec<serde_json::Value> {
    let all = moto.recorded();
    let signed: Vec<_> = all
        .into_iter()
        .filter(|r| header(r, "Authorization").is_some())
        .collect();
    assert!(!signed.is_empty(), "moto recorded no signed request");
    signed
}

/// Each signed request's access key id and session token.
fn credentials_used(moto: &Moto) -> std::collections::BTreeSet<(String, Option<String>)> {
    signed(moto)
        .iter()
        .map(|r| {
            let auth = header(r, "Authorization").unwrap();
            let key = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_else(|| panic!("no Credential in {auth}"));
            (
                key.to_string(),
                header(r, "X-Amz-Security-Token").map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn web_identity_from_sts_backs_up_and_restores_with_no_static_keys() {
    let moto = Moto::start_recording();
    moto.create_bucket("sdr-bk");
    let sts = MotoSts::start();
    let dbs = NodeDbs::create("sdr_s3_webid", 500);
    let site = keyless_s3_site(
        &dbs,
        &moto.url(),
        "sdr-bk",
        &format!("ca_file = \"{}\"\n", sts.ca_file().display()),
    );
    let token = "web-identity-token-from-the-projected-volume";
    std::fs::write(site.path("web-identity-token"), token).unwrap();
    let token_file = site.path("web-identity-token").display().to_string();
    let role = "arn:aws:iam::123456789012:role/splice-dr-backup";
    let sts_url = sts.url();
    let closed = free_port().to_string();
    let elsewhere = format!("http://127.0.0.1:{closed}");
    // What an IRSA pod has, plus variables meant for other tools that must not redirect
    // the repository's requests: its endpoint, bucket and region are the config's.
    let daemon_env = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
        ("AWS_ROLE_ARN", role),
        ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
        ("AWS_ENDPOINT", elsewhere.as_str()),
        ("AWS_ENDPOINT_URL_S3", elsewhere.as_str()),
        ("AWS_BUCKET", "another-bucket"),
        ("AWS_DEFAULT_REGION", "ap-south-2"),
        ("AWS_METADATA_ENDPOINT", elsewhere.as_str()),
    ];
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let child = aws_env(&mut site.cmd(), &daemon_env)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _daemon = DaemonProcess::from_child(child);
    wait_for(Duration::from_secs(20), "the daemon to answer", || {
        daemon_answers(&site.path("splice-dr.sock"))
    });

    // The CLI has no credentials at all: the daemon does the S3 work.
    let out = cli_env(&site, &[], &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        moto.keys("sdr-bk")
            .iter()
            .any(|(k, _)| *k == format!("site-a/{id}/manifest.json")),
        "{:?}",
        moto.keys("sdr-bk")
    );

    // The token went to STS once with the role, and every S3 request was signed with the
    // temporary credentials STS issued (an ASIA… key and its session token).
    let exchanges: Vec<String> = sts
        .recorded()
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .filter(|u| u.contains("Action=AssumeRoleWithWebIdentity"))
        .collect();
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    let exchange = &exchanges[0];
    for part in [
        format!("WebIdentityToken={token}"),
        "RoleSessionName=splice-dr".to_string(),
        format!("RoleArn={role}"),
    ] {
        assert!(exchange.contains(&part), "{part} not in {exchange}");
    }
    let used = credentials_used(&moto);
    assert_eq!(used.len(), 1, "one credential for every request: {used:?}");
    let (key, session) = used.into_iter().next().unwrap();
    assert!(
        key.starts_with("ASIA"),
        "an STS key, not a static one: {key}"
    );
    assert!(
        session.is_some(),
        "temporary credentials carry a session token"
    );

    // The machine is lost: the backup is listed from S3 and restores from there.
    std::fs::remove_dir_all(site.path("repo")).unwrap();
    let before = dbs.fingerprint();
    dbs.damage();
    let out = cli_env(&site, &[], &["restore", "--backup", "latest", "-y"]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert_eq!(dbs.fingerprint(), before, "restored from S3");
    assert!(
        !site.daemon_log().contains(token),
        "the web identity token is never logged"
    );

    // STS that cannot be reached (its CA not trusted): the error names the source, the
    // role and STS — and not the token, though the request carried it in its URL.
    let untrusting = keyless_s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let out = cli_env(&untrusting, &daemon_env, &["repo", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    for part in ["web identity", role, sts_url.as_str(), token_file.as_str()] {
        assert!(all.contains(part), "{part} not in {all}");
    }
    assert!(!all.contains(token), "the token leaked: {all}");
}

#[test]
fn a_session_token_goes_with_static_keys_from_the_files_or_the_environment() {
    let moto = Moto::start_recording();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_session", 10);
    let site = s3_site(
        &dbs,
        &moto.url(),
        "sdr-bk",
        "session_token_file = \"s3-session-token\"\n",
    );
    std::fs::write(
        site.path("s3-session-token"),
        "session-token-from-the-file\n",
    )
    .unwrap();
    // The key files win over the environment, its session token included.
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "session-token-from-the-environment"),
    ];
    let out = cli_env(&site, &env, &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    assert_eq!(
        credentials_used(&moto).into_iter().collect::<Vec<_>>(),
        [(
            "testing".to_string(),
            Some("session-token-from-the-file".to_string())
        )]
    );
    assert!(!text(&out).contains("session-token-from"), "{}", text(&out));

    // Without key files, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
    let moto = Moto::start_recording();
    moto.create_bucket("sdr-bk");
    let site = keyless_s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let out = cli_env(&site, &env, &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    assert_eq!(
        credentials_used(&moto).into_iter().collect::<Vec<_>>(),
        [(
            "AKIAENVIRONMENT".to_string(),
            Some("session-token-from-the-environment".to_string())
        )]
    );
}

#[test]
fn instance_metadata_is_the_last_resort() {
    // moto also serves the instance metadata service's token and role credentials.
    let moto = Moto::start_recording();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_imds", 10);
    let site = keyless_s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let url = moto.url();
    let out = cli_env(&site, &[("AWS_METADATA_ENDPOINT", &url)], &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    assert_eq!(
        credentials_used(&moto).into_iter().collect::<Vec<_>>(),
        [(
            "test-key".to_string(),
            Some("test-session-token".to_string())
        )],
        "the instance role's credentials from moto's metadata service"
    );
}

#[test]
fn with_no_credentials_anywhere_the_error_names_every_source_and_comes_quickly() {
    let moto = Moto::start();
    moto.create_bucket("sdr-bk");
    let dbs = NodeDbs::create("sdr_s3_nocreds", 10);
    let site = keyless_s3_site(&dbs, &moto.url(), "sdr-bk", "");
    let sources = [
        "access_key_id_file",
        "secret_access_key_file",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "instance metadata",
    ];
    // Off AWS the instance metadata service does not answer; here it is a closed
    // loopback port (refused at once) instead of 169.254.169.254, which may or may not
    // answer on the machine running the tests.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = cli_env(
        &site,
        &[("AWS_METADATA_ENDPOINT", &closed)],
        &["repo", "check"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains(&closed), "{all}");
    for s in sources {
        assert!(all.contains(s), "{s} is not named: {all}");
    }
    // A refused connection is retried 3 times with sub-second backoff; the bound only
    // catches a hang (the default retry budget is 30 s per request).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // With the metadata service disabled, the error comes before anything is contacted.
    let out = cli_env(&site, &[("AWS_EC2_METADATA_DISABLED", "true")], &["backup"]);
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("AWS_EC2_METADATA_DISABLED"), "{all}");
    for s in sources {
        assert!(all.contains(s), "{s} is not named: {all}");
    }
    assert!(moto.keys("sdr-bk").is_empty());
}
