//! The release bundle's `start.sh` / `stop.sh`, for restarts with new settings: a new
//! migration id with `-M` (network DR), an identities import with `-i … -P …`
//! (re-onboarding). Container stops and starts that keep the settings go through the
//! engine API instead.

use std::path::PathBuf;

use serde::Deserialize;
use splice_dr_pg_toolkit::{child_env, process};
use splice_dr_plugin_api::{BackendError, OpContext};

use crate::config::BundleConfig;

/// What `set_values` accepts: the start flags a flow may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartValues {
    /// `-m`: the migration id [default: the node's].
    #[serde(default)]
    pub migration_id: Option<u64>,
    /// `-M`: start migrating from the dump on the dump volume (one start only).
    #[serde(default)]
    pub migrating: bool,
    /// `-i`: identities dump to import.
    #[serde(default)]
    pub identities_dump: Option<PathBuf>,
    /// `-P`: participant id [default: the bundle config's].
    #[serde(default)]
    pub participant_id: Option<String>,
    /// `-w`: wait for health (default true).
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// The `start.sh` argument list for `values` (without the script itself).
pub fn start_args(
    b: &BundleConfig,
    values: &StartValues,
    node_migration_id: u64,
) -> Result<Vec<String>, BackendError> {
    let migration_id = values.migration_id.unwrap_or(node_migration_id);
    let participant_id = values
        .participant_id
        .clone()
        .or_else(|| b.participant_id.clone());
    let mut args = vec![
        "-s".to_string(),
        b.sponsor_sv.clone(),
        "-o".into(),
        b.onboarding_secret.clone(),
        "-p".into(),
        b.party_hint.clone(),
        "-m".into(),
        migration_id.to_string(),
    ];
    if let Some(p) = &participant_id {
        args.extend(["-P".to_string(), p.clone()]);
    }
    if values.migrating {
        if values.identities_dump.is_some() {
            return Err(BackendError::Config(
                "`migrating` and `identities_dump` cannot be combined in one start".into(),
            ));
        }
        args.push("-M".into());
    }
    if let Some(dump) = &values.identities_dump {
        if participant_id.is_none() {
            return Err(BackendError::Config(
                "an identities import (-i) needs a new participant id (-P): give `participant_id`"
                    .into(),
            ));
        }
        args.extend(["-i".to_string(), dump.display().to_string()]);
    }
    if b.auth {
        args.push("-a".into());
    }
    if values.wait {
        args.push("-w".into());
    }
    args.extend(b.extra_args.iter().cloned());
    Ok(args)
}

/// Environment variable the onboarding secret travels in to the `start.sh` wrapper.
const SECRET_ENV: &str = "SPLICE_DR_ONBOARDING_SECRET";

/// Runs a bundle script with `args` sourced by a bash wrapper, so that the `-o` value is
/// read from [`SECRET_ENV`] inside the shell and never sits on any command line
/// (`/proc/PID/cmdline` is world-readable). The wrapper drops the variable before the
/// script runs; `start.sh` itself exports the secret only for `docker compose`.
const WRAPPER: &str = "s=${SPLICE_DR_ONBOARDING_SECRET-}; unset SPLICE_DR_ONBOARDING_SECRET; \
                       if [ -n \"${SPLICE_DR_HAS_SECRET-}\" ]; then unset SPLICE_DR_HAS_SECRET; \
                       set -- -o \"$s\" \"$@\"; fi; unset s; source \"$0\" \"$@\"";

/// Runs `stop.sh` then `start.sh args` in the bundle directory with `MIGRATION_ID` and
/// the project name exported (the runbook's `participant-` pitfall).
pub fn restart(
    ctx: &OpContext,
    b: &BundleConfig,
    project: &str,
    args: &[String],
    migration_id: u64,
) -> Result<(), BackendError> {
    for (script, script_args) in [("stop.sh", &[][..]), ("start.sh", args)] {
        let path = b.dir.join(script);
        if !path.is_file() {
            return Err(BackendError::Config(format!(
                "{} does not exist: `bundle.dir` must be the Splice release's docker-compose directory",
                path.display()
            )));
        }
        let (secret, rest) = split_secret(script_args);
        let mut cmd = child_env::command("bash", child_env::COMPOSE);
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg(&path)
            .args(&rest)
            .current_dir(&b.dir)
            .env("MIGRATION_ID", migration_id.to_string())
            .env("COMPOSE_PROJECT_NAME", project);
        if let Some(secret) = secret {
            cmd.env(SECRET_ENV, secret).env("SPLICE_DR_HAS_SECRET", "1");
        }
        // The onboarding secret must not reach logs: show the command with it masked.
        let shown = shown_masked(script, script_args);
        ctx.info(format!("running {shown}"));
        let out = process::run(ctx, cmd, &shown, script, &mut || {})?;
        if !out.stderr.trim().is_empty() {
            ctx.info(format!("{script}: {}", out.stderr.trim()));
        }
    }
    Ok(())
}

/// Creates the container of `service` from the bundle's compose files without starting
/// it — the runbook's `docker compose up -d postgres-splice` (with `MIGRATION_ID` exported,
/// so the participant database is `participant-<id>`, never `participant-`), minus the
/// start: a node whose containers are gone (after `stop.sh`, or on a new host with only the
/// bundle unpacked) gets its postgres container back over its existing volume, and the
/// flow starts it when it is ready to. Compose reads `compose.yaml` and the bundle's
/// `compose.override.yaml`, as for the operator's own command.
pub fn create_service(
    ctx: &OpContext,
    b: &BundleConfig,
    project: &str,
    service: &str,
    migration_id: u64,
) -> Result<(), BackendError> {
    if !b.dir.join("compose.yaml").is_file() {
        return Err(BackendError::Config(format!(
            "{} has no compose.yaml: `bundle.dir` must be the Splice release's docker-compose directory",
            b.dir.display()
        )));
    }
    let mut cmd = child_env::command("docker", child_env::COMPOSE);
    cmd.args(["compose", "up", "--no-start", service])
        .current_dir(&b.dir)
        .env("MIGRATION_ID", migration_id.to_string())
        .env("COMPOSE_PROJECT_NAME", project);
    let shown = format!("MIGRATION_ID={migration_id} docker compose up --no-start {service}");
    ctx.info(format!(
        "the {service} container does not exist: creating it from the bundle in {} ({shown})",
        b.dir.display()
    ));
    process::run(ctx, cmd, &shown, "docker compose", &mut || {})?;
    Ok(())
}

/// Takes `-o VALUE` out of `args`: the value (possibly empty) and the other arguments.
fn split_secret(args: &[String]) -> (Option<&str>, Vec<&str>) {
    let mut secret = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), secret) {
            ("-o", None) => secret = Some(it.next().map(String::as_str).unwrap_or("")),
            _ => rest.push(a.as_str()),
        }
    }
    (secret, rest)
}

fn shown_masked(script: &str, args: &[String]) -> String {
    let mut out = vec![format!("./{script}")];
    let mut mask_next = false;
    for a in args {
        if mask_next {
            out.push(if a.is_empty() {
                "\"\"".into()
            } else {
                "<secret>".into()
            });
            mask_next = false;
        } else {
            mask_next = a == "-o";
            out.push(a.clone());
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> BundleConfig {
        BundleConfig {
            dir: "/opt/splice".into(),
            sponsor_sv: "https://sv.example.com".into(),
            onboarding_secret: "s3cret".into(),
            party_hint: "acme-validator-1".into(),
            participant_id: None,
            auth: false,
            extra_args: vec![],
        }
    }

    #[test]
    fn flags_follow_the_splice_start_script() {
        let v = StartValues {
            migration_id: Some(3),
            migrating: true,
            wait: true,
            ..Default::default()
        };
        let args = start_args(&bundle(), &v, 2).expect("args");
        assert_eq!(
            args.join(" "),
            "-s https://sv.example.com -o s3cret -p acme-validator-1 -m 3 -M -w"
        );
        assert_eq!(
            shown_masked("start.sh", &args),
            "./start.sh -s https://sv.example.com -o <secret> -p acme-validator-1 -m 3 -M -w"
        );
    }

    #[test]
    fn identities_import_needs_a_participant_id() {
        let v = StartValues {
            identities_dump: Some("/tmp/id.json".into()),
            ..Default::default()
        };
        let e = start_args(&bundle(), &v, 0).expect_err("needs -P");
        assert!(e.to_string().contains("participant id"), "{e}");
        let v = StartValues {
            identities_dump: Some("/tmp/id.json".into()),
            participant_id: Some("acme-2".into()),
            wait: false,
            ..Default::default()
        };
        let args = start_args(&bundle(), &v, 0).expect("args");
        assert!(
            args.join(" ").ends_with("-m 0 -P acme-2 -i /tmp/id.json"),
            "{args:?}"
        );
    }

    /// While start.sh runs (the `-w` wait), no process's command line holds the secret,
    /// and the script still receives it as its `-o` value.
    #[test]
    fn the_secret_is_on_no_command_line() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let got = dir.path().join("got");
        std::fs::write(dir.path().join("stop.sh"), "exit 0\n").expect("stop.sh");
        std::fs::write(
            dir.path().join("start.sh"),
            format!(
                "while getopts ':s:o:p:m:w' opt; do case $opt in o) secret=$OPTARG;; esac; done\n\
                 printf '%s' \"$secret\" > {}\n\
                 env | grep -q SPLICE_DR_ONBOARDING_SECRET && echo leaked >> {}\n\
                 sleep 2\n",
                got.display(),
                got.display()
            ),
        )
        .expect("start.sh");
        let mut b = bundle();
        b.dir = dir.path().to_path_buf();
        b.onboarding_secret = format!("s3cret-{}", std::process::id());
        let args = start_args(&b, &StartValues::default(), 0).expect("args");
        let ctx = OpContext::detached(Arc::new(AtomicBool::new(false)));
        let secret = b.onboarding_secret.clone();
        let scan = std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(1800);
            let mut seen = Vec::new();
            let mut scans = 0;
            while std::time::Instant::now() < until {
                scans += 1;
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                        if String::from_utf8_lossy(&c).contains(&secret) {
                            seen.push(String::from_utf8_lossy(&c).replace('\0', " "));
                        }
                    }
                }
            }
            (scans, seen)
        });
        restart(&ctx, &b, "proj", &args, 0).expect("restart");
        let (scans, seen) = scan.join().expect("scanner");
        assert!(scans > 1);
        assert!(
            seen.is_empty(),
            "the secret was on a command line: {seen:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&got).expect("got"),
            b.onboarding_secret
        );
    }

    #[test]
    fn an_empty_secret_is_still_passed() {
        let args: Vec<String> = ["-s", "u", "-o", "", "-w"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(split_secret(&args), (Some(""), vec!["-s", "u", "-w"]));
    }
}
