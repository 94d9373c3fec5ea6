//! Stamps the binary with what an operator needs to say which build runs: the git commit
//! (short hash, `-dirty` when the tree had uncommitted changes) and the build date (UTC).
//!
//! Sets `SPLICE_DR_COMMIT` and `SPLICE_DR_BUILD_DATE` for `src/build_info.rs`. Never fails
//! the build: without git or a `.git` directory (a source tarball) the commit is `unknown`.
//! `SOURCE_DATE_EPOCH`, when set, fixes the date (reproducible builds).
//!
//! The script reruns when HEAD, the branch it points to or the index move (a commit, a
//! checkout, a `git add`) and when this crate's own sources change (which rebuilds it
//! anyway), not on every build. An unstaged edit of another crate marks the tree dirty
//! only at the next rerun.

use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_some_and(|changes| !changes.is_empty());
    let commit = match commit {
        Some(hash) if dirty => format!("{hash}-dirty"),
        Some(hash) => hash,
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=SPLICE_DR_COMMIT={commit}");
    println!("cargo:rustc-env=SPLICE_DR_BUILD_DATE={}", build_date());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    rerun_on_git_changes();
}

/// Runs `git ARGS` in this crate's directory: its trimmed output, or `None` when git is
/// missing, this is not a repository, or git fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Watches the files a commit, a checkout or a `git add` changes. `--git-path` resolves
/// them in a linked worktree too (its HEAD and index are not under `.git/`).
fn rerun_on_git_changes() {
    let mut watched = vec![
        "HEAD".to_string(),
        "index".to_string(),
        "packed-refs".to_string(),
    ];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    // An edit of this crate recompiles it anyway: rerun so `-dirty` says so. (Without any
    // `rerun-if-changed` cargo would watch the whole package, tests and docs included.)
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
}

/// `YYYY-MM-DD` (UTC) of `SOURCE_DATE_EPOCH` when set and valid, else of now.
fn build_date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(now);
    let (y, m, d) = civil_from_days(epoch.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`): a build script has no date library, and one is not worth a
/// build dependency.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
