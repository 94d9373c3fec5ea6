//! Backups from places others can write, end to end with the real binary: a forged
//! off-site manifest (absolute or `../` paths, oversize, under another id) on a directory
//! store and on S3 (moto) creates nothing outside the repository and is refused with the
//! field named.

mod common;
#[allow(dead_code)]
#[path = "offsite/moto.rs"]
mod moto;

use common::*;
use serde_json::{json, Value};
use splice_dr_protocol::{BackupList, BackupSummary, DrillResult};
use std::path::Path;

/// A site whose node also copies backups to the directory `offsite` (repository `dr`).
fn dir_site(dbs: &NodeDbs) -> Site {
    Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "",
        "\n[[repository.offsite]]\nname = \"dr\"\nkind = \"directory\"\npath = \"offsite\"\n",
        "",
    )
}

/// A manifest as splice-dr writes it, for backup `id` of `validator-1`, listing `paths`.
fn forged_manifest(id: &str, created_at: &str, paths: &[&str]) -> Value {
    let dump = |role: &str| {
        json!({"dir": role, "role": role, "database": role, "format": "directory",
               "started_at": created_at, "finished_at": created_at,
               "server_version": "15", "tables": []})
    };
    json!({
        "format": 1, "id": id, "node": "validator-1", "migration_id": 0,
        "tool_version": "0", "server_version": "15",
        "created_at": created_at, "completed_at": created_at,
        "dumps": [dump("validator"), dump("participant")],
        "files": paths.iter().map(|p| json!({"path": p, "size": 4,
            "sha256": "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"}))
            .collect::<Vec<_>>(),
    })
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Every entry under `dir`, recursively (relative paths), to prove nothing appeared.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The escaping paths a forged manifest lists, for a site: one absolute (inside the
/// test's directory, so a failure is contained), one climbing out of the staging dir.
fn escaping_paths(site: &Site) -> (String, String) {
    let abs = site.path("outside-abs/evil").display().to_string();
    (abs, "../../../outside-rel/evil".into())
}

fn assert_nothing_escaped(site: &Site, out: &std::process::Output) {
    assert!(
        !out.status.success(),
        "the forged backup was used: {}",
        text(out)
    );
    assert!(
        text(out).contains("files[0].path"),
        "the error names the field: {}",
        text(out)
    );
    assert!(
        !site.path("outside-abs").exists(),
        "a directory was created outside"
    );
    assert!(
        !site.path("outside-rel").exists(),
        "a directory was created outside"
    );
    assert!(
        tree(&site.path("repo/.incomplete")).is_empty(),
        "nothing was staged: {:?}",
        tree(&site.path("repo/.incomplete"))
    );
}

#[test]
fn a_forged_directory_manifest_with_escaping_paths_creates_nothing() {
    let dbs = NodeDbs::create("sdr_trust_dir", 10);
    let site = dir_site(&dbs);
    let (abs, rel) = escaping_paths(&site);
    for (id, path) in [("forged-abs", abs.as_str()), ("forged-rel", rel.as_str())] {
        let m = forged_manifest(id, "2026-01-01T00:00:00Z", &[path]);
        write_json(&site.path("offsite").join(id).join("manifest.json"), &m);
        let out = site.cli(&["verify", id]);
        assert_nothing_escaped(&site, &out);
    }
}

#[test]
fn a_forged_s3_manifest_with_escaping_paths_creates_nothing() {
    let moto = moto::Moto::start();
    moto.create_bucket("sdr-trust");
    let dbs = NodeDbs::create("sdr_trust_s3", 10);
    let site = s3_site(&dbs, &moto.url(), "sdr-trust");
    let (abs, rel) = escaping_paths(&site);
    for (id, path) in [("forged-abs", abs.as_str()), ("forged-rel", rel.as_str())] {
        let m = forged_manifest(id, "2026-01-01T00:00:00Z", &[path]);
        let key = format!("site-a/{id}/manifest.json");
        moto.put("sdr-trust", &key, &serde_json::to_vec(&m).unwrap());
        // The object the path resolves to on S3 (`ID//abs/path`), so that without the
        // checks the download has bytes to write there.
        moto.put("sdr-trust", &format!("site-a/{id}/{path}"), b"evil");
        let out = site.cli(&["verify", id]);
        assert_nothing_escaped(&site, &out);
    }
}

/// A site backing up to `bucket` on moto at `endpoint` (prefix `site-a`), unencrypted.
fn s3_site(dbs: &NodeDbs, endpoint: &str, bucket: &str) -> Site {
    let site = Site::with(
        &dbs.validator,
        &dbs.participant,
        BackendChoice::Builtin,
        "",
        &format!(
            "\n[[repository.offsite]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"{endpoint}\"\n\
             bucket = \"{bucket}\"\nprefix = \"site-a\"\npath_style = true\n\
             access_key_id_file = \"s3-key-id\"\nsecret_access_key_file = \"s3-secret\"\n"
        ),
        "",
    );
    std::fs::write(site.path("s3-key-id"), "testing\n").unwrap();
    std::fs::write(site.path("s3-secret"), "testing\n").unwrap();
    site
}

#[test]
fn an_oversize_manifest_and_one_under_another_id_are_refused() {
    let dbs = NodeDbs::create("sdr_trust_size", 10);
    let site = dir_site(&dbs);
    let mut big = forged_manifest("big-1", "2026-01-01T00:00:00Z", &["a"]);
    big["tool_version"] = json!("x".repeat(17 << 20));
    write_json(&site.path("offsite/big-1/manifest.json"), &big);
    let copied = forged_manifest("real-1", "2026-01-01T00:00:00Z", &["a"]);
    write_json(&site.path("offsite/copy-1/manifest.json"), &copied);

    let v: BackupList = site.json(&["backups"]);
    assert!(v.backups.is_empty(), "neither is listed: {v:?}");
    let problems = v.problems.join("\n");
    assert!(
        problems.contains("big-1") && problems.contains("16 MiB"),
        "{problems}"
    );
    assert!(problems.contains("copy-1: id"), "{problems}");
    let out = site.cli(&["verify", "copy-1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("differs from the backup's directory"),
        "{}",
        text(&out)
    );
}

fn backup(site: &Site) -> String {
    let out = site.cli(&["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `backups --json`, the entry of backup `id`.
fn listed(site: &Site, id: &str) -> BackupSummary {
    let v: BackupList = site.json(&["backups"]);
    v.backups
        .iter()
        .find(|b| b.id == id)
        .unwrap_or_else(|| panic!("{id} not listed: {v:?}"))
        .clone()
}

#[test]
fn a_forged_future_drilled_backup_is_never_latest_and_restores_only_forced() {
    let dbs = NodeDbs::create("sdr_trust_2099", 10);
    let site = dir_site(&dbs);
    let real = backup(&site);
    let forged_id = "validator-1-20991231-000000";
    let mut forged = forged_manifest(forged_id, "2099-12-31T00:00:00Z", &["validator/toc.dat"]);
    forged["last_drill"] = json!({"at": "2099-12-31T01:00:00Z", "result": "passed",
                                  "duration_ms": 1, "detail": "", "run": "r"});
    write_json(
        &site.path("offsite").join(forged_id).join("manifest.json"),
        &forged,
    );

    let entry = listed(&site, forged_id);
    assert!(!entry.trusted, "{entry:?}");
    assert!(
        entry
            .untrusted_because
            .as_deref()
            .unwrap()
            .contains("future"),
        "{entry:?}"
    );
    assert!(listed(&site, &real).trusted);
    let table = text(&site.cli(&["backups"]));
    assert!(table.contains(&format!("UNTRUSTED {forged_id}")), "{table}");

    let out = site.cli(&["restore", "--backup", forged_id, "--yes"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("untrusted") && text(&out).contains("--force --reason"),
        "{}",
        text(&out)
    );

    let out = site.cli(&["restore", "--backup", "latest", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("result: {{\"backup\":\"{real}\"")),
        "the real backup was restored, not the forged one: {}",
        text(&out)
    );
}

#[test]
fn keys_cli_generates_once_0600_and_prints_the_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let dbs = NodeDbs::create("sdr_trust_keys", 1);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let out = site.cli(&["keys", "generate"]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        public.starts_with("ed25519:") && public.len() == 8 + 64,
        "{public}"
    );
    let key = site.path("state/keys/signing.key");
    let secret = std::fs::read(&key).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let again = site.cli(&["keys", "generate"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read(&key).unwrap(), secret, "the key is unchanged");

    let shown = site.cli(&["keys", "public"]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), public);
}

#[test]
fn a_backup_signed_by_another_site_is_trusted_only_once_its_key_is_listed() {
    let dbs = NodeDbs::create("sdr_trust_other", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup(&site);
    let other_key = site.path("other-site.key").display().to_string();
    let out = site.cli(&["keys", "generate", "--out", &other_key]);
    assert!(out.status.success(), "{}", text(&out));
    let other_public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mpath = site.path("repo").join(&id).join("manifest.json");
    resign(&mpath, &site.path("other-site.key"));

    let entry = listed(&site, &id);
    assert!(!entry.trusted, "an unknown key is not trusted: {entry:?}");
    assert!(
        entry
            .untrusted_because
            .as_deref()
            .unwrap()
            .contains("trusted_keys"),
        "{entry:?}"
    );

    let config = std::fs::read_to_string(&site.config).unwrap().replace(
        "max_age = \"30d\"\n",
        &format!("max_age = \"30d\"\ntrusted_keys = [\"{other_public}\"]\n"),
    );
    std::fs::write(&site.config, config).unwrap();
    assert!(listed(&site, &id).trusted);
}

#[test]
fn drill_refuses_an_untrusted_backup_unless_forced_and_only_keys_sign_makes_it_trusted() {
    let dbs = NodeDbs::create("sdr_trust_drill", 10);
    let site = Site::new(&dbs, BackendChoice::Builtin, "");
    let id = backup(&site);
    let mpath = site.path("repo").join(&id).join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("signature");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    let out = site.cli(&["drill", "--backup", &id]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("refusing to drill"), "{}", text(&out));
    assert!(text(&out).contains("unsigned"), "{}", text(&out));

    let out = site.cli(&[
        "drill",
        "--backup",
        &id,
        "--force",
        "--reason",
        "checking an old backup",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let entry = listed(&site, &id);
    assert_eq!(
        entry.last_drill.as_ref().map(|d| d.result),
        Some(DrillResult::Passed),
        "{entry:?}"
    );
    assert!(
        !entry.trusted,
        "a forced drill does not vouch for it: {entry:?}"
    );
}

#[test]
fn a_listing_entry_that_is_not_a_backup_id_is_skipped() {
    let dbs = NodeDbs::create("sdr_trust_names", 1);
    let site = dir_site(&dbs);
    let id = "bad id;rm";
    write_json(
        &site.path("offsite").join(id).join("manifest.json"),
        &forged_manifest(id, "2026-01-01T00:00:00Z", &["a"]),
    );
    let v: BackupList = site.json(&["backups"]);
    assert!(v.backups.is_empty(), "{v:?}");
    let out = site.cli(&["repo", "check"]);
    assert!(
        !text(&out).contains("bad id"),
        "not even an incomplete upload: {}",
        text(&out)
    );
}
