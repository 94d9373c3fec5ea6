//! The environment every child program gets: cleared, then an allowlist copied from the
//! daemon's own environment.
//!
//! The daemon may run with cloud credentials (`AWS_*` for an S3 repository) or other
//! secrets in its environment; a stop command, `pg_dump` or `start.sh` has no business
//! seeing them, and whatever a child inherits it can leak to its own logs and children.
//! So children never inherit: [`command`] starts from an empty environment.

use std::ffi::{OsStr, OsString};
use std::process::Command;
use std::sync::OnceLock;

/// The variable that marks every child with its owner (`PID:STATE_DIR`), inherited by the
/// child's own children: a daemon killed mid-step (OOM killer, power cut of the unit)
/// leaves `pg_restore` or `start.sh` running, and the next daemon finds them by this mark
/// and ends them before start-up recovery touches the databases they write.
pub const OWNER_VAR: &str = "SPLICE_DR_OWNER";

static OWNER: OnceLock<String> = OnceLock::new();

/// Sets the owner mark once per process (the daemon, at start-up); later calls are
/// ignored, so a mark cannot change under running children.
pub fn set_owner(mark: String) {
    let _ = OWNER.set(mark);
}

/// Names every child gets when the daemon has them (a `*` ends a prefix).
const BASE: &[&str] = &["PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR", "USER"];

/// Never passed on, even when a family's allowlist would match them.
const DENIED: &[&str] = &["AWS_*", "AZURE_*", "GOOGLE_*", "GCP_*", "SPLICE_DR_*"];

/// Extra names for the PostgreSQL client tools and the operator's shell commands.
pub const POSTGRES: &[&str] = &["PG*"];

/// Extra names for the compose bundle's scripts: the Docker client's settings and the
/// variables the release bundle's `start.sh` reads.
pub const COMPOSE: &[&str] = &[
    "DOCKER_*",
    "COMPOSE_*",
    // How long the test bundle's start.sh -w waits (tests/compose/bundle).
    "START_WAIT_TIMEOUT",
    // The Splice docs have operators `export IMAGE_TAG=…` before running start.sh.
    "IMAGE_TAG",
    "IMAGE_REPO",
];

/// Extra names for helm.
pub const HELM: &[&str] = &["KUBECONFIG", "HELM_*"];

/// A command for `program` whose environment is [`BASE`] plus `extra` taken from the
/// daemon's environment, minus [`DENIED`]. Set anything else with `.env` afterwards
/// (`env_clear` after `.env` would drop it, so this is the only place that clears).
pub fn command(program: impl AsRef<OsStr>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().envs(allowed(std::env::vars_os(), extra));
    if let Some(mark) = OWNER.get() {
        cmd.env(OWNER_VAR, mark);
    }
    cmd
}

/// The entries of `vars` a child may see.
fn allowed(
    vars: impl Iterator<Item = (OsString, OsString)>,
    extra: &[&str],
) -> Vec<(OsString, OsString)> {
    vars.filter(|(k, _)| {
        let k = k.to_string_lossy();
        let listed = BASE.iter().chain(extra).any(|p| matches(p, &k));
        listed && !DENIED.iter().any(|p| matches(p, &k))
    })
    .collect()
}

/// Whether `name` is `pattern`, or starts with it when it ends in `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(vars: &[(&str, &str)], extra: &[&str]) -> Vec<String> {
        let vars = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        allowed(vars, extra)
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn only_listed_names_pass_and_cloud_credentials_never() {
        let vars = [
            ("PATH", "/bin"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "x"),
            ("PGPASSWORD", "x"),
            ("DOCKER_HOST", "x"),
            ("RANDOM_TOKEN", "x"),
        ];
        assert_eq!(names(&vars, &[]), ["PATH"]);
        assert_eq!(names(&vars, POSTGRES), ["PATH", "PGPASSWORD"]);
        assert_eq!(names(&vars, COMPOSE), ["PATH", "DOCKER_HOST"]);
        assert!(names(&vars, &["AWS_*", "GOOGLE_*"]) == ["PATH"]);
    }

    /// A real child, started while this process has AWS credentials in its environment,
    /// finds none in its own `/proc/PID/environ`.
    #[test]
    fn a_child_does_not_inherit_cloud_credentials() {
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "leak-me");
        std::env::set_var("PGHOST", "/run/postgresql");
        let out = command("sh", POSTGRES)
            .args(["-c", "tr '\\0' '\\n' < /proc/$$/environ"])
            .output()
            .expect("sh runs");
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(!env.contains("leak-me"), "{env}");
        assert!(env.lines().any(|l| l == "PGHOST=/run/postgresql"), "{env}");
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    }
}
