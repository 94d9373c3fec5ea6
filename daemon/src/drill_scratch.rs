//! Scratch directories of drills of physical backups: `state_dir/drills/drill-<pid>-<hex>`,
//! private (0700), handed to the backend, which lays the copy down there and runs a server
//! of its own on it.
//!
//! The daemon owns them, so the daemon removes them: after each drill, whatever the
//! backend answered, and at start-up those of a daemon that is gone (killed mid-drill: its
//! scratch server still runs on the copy). A directory is removed only once nothing runs
//! in it: every process whose working directory lies inside it (a Postgres server and its
//! children chdir into their data directory) is asked to stop, then killed. That rule
//! holds for any backend's scratch server without knowing what it is.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use splice_dr_pg_toolkit::process::signal;

/// Name of the directory under `state_dir` holding the scratch directories.
pub const DIR: &str = "drills";
/// Prefix of each drill's scratch directory.
const PREFIX: &str = "drill-";
/// How long processes in a scratch directory get to end after SIGINT (a Postgres server's
/// fast shutdown: its sessions ended, a checkpoint of a copy with fsync off), then after
/// SIGKILL.
const GRACE: Duration = Duration::from_secs(30);
/// Interval between looks at what still runs.
const POLL: Duration = Duration::from_millis(100);

/// Creates a new private scratch directory for one drill, named after this process (a
/// later daemon tells a live drill's from a dead one's by it).
pub fn create(state_dir: &Path) -> std::io::Result<PathBuf> {
    let base = crate::private_tmp::private_dirs(state_dir, DIR)?;
    let dir = base.join(format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        splice_dr_pg_toolkit::names::new_suffix()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Ends whatever runs in `dir` and removes it. Refuses a path that is not a scratch
/// directory under `state_dir`'s [`DIR`].
pub fn remove(state_dir: &Path, dir: &Path) -> Result<Vec<String>, String> {
    let ours = dir.parent() == Some(state_dir.join(DIR).as_path())
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX));
    if !ours {
        return Err(format!(
            "refusing to remove {}: not a drill's scratch directory",
            dir.display()
        ));
    }
    let ended = end_processes_in(dir)?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(ended),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ended),
        Err(e) => Err(format!("removing {}: {e}", dir.display())),
    }
}

/// Start-up: removes the scratch directories of daemons that are gone (or of this very
/// pid, reused), with what ran in them; one line each for the log.
pub fn recover(state_dir: &Path) -> Vec<String> {
    let base = state_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut notes = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = owner_of(&name) else {
            continue;
        };
        if owner != me && Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        match remove(state_dir, &dir) {
            Ok(ended) => notes.push(format!(
                "removed the scratch directory {} of a drill interrupted with daemon pid \
                 {owner}{}",
                dir.display(),
                if ended.is_empty() {
                    String::new()
                } else {
                    format!(", after ending {}", ended.join(", "))
                }
            )),
            Err(e) => notes.push(format!(
                "cannot remove the scratch directory of an interrupted drill: {e}; remove it \
                 by hand once nothing runs in it"
            )),
        }
    }
    notes
}

/// The daemon pid a scratch directory's name carries.
fn owner_of(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Asks every process working inside `dir` to stop (SIGINT to those whose parent is not
/// among them: a server's children follow it), kills what is left after [`GRACE`], and
/// waits until none is left. Answers one line per process signalled.
fn end_processes_in(dir: &Path) -> Result<Vec<String>, String> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(Vec::new());
    };
    let found = processes_in(&dir);
    let mut ended = Vec::new();
    for (pid, ppid) in &found {
        if !found.iter().any(|(p, _)| p == ppid) {
            ended.push(format!("pid {pid} (`{}`)", command_line(*pid)));
            signal(*pid, "-INT");
        }
    }
    for sig in ["-KILL", ""] {
        let start = Instant::now();
        while start.elapsed() < GRACE {
            if processes_in(&dir).is_empty() {
                return Ok(ended);
            }
            std::thread::sleep(POLL);
        }
        if sig.is_empty() {
            break;
        }
        for (pid, _) in processes_in(&dir) {
            signal(pid, sig);
        }
    }
    Err(format!(
        "processes still run in {} after SIGKILL: {:?}",
        dir.display(),
        processes_in(&dir)
    ))
}

/// `(pid, parent pid)` of every process whose working directory is `dir` or below it.
fn processes_in(dir: &Path) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .map(|pid| (pid, parent_of(pid).unwrap_or_default()))
        .collect()
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid`'s command line for the log, cut to 80 characters.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .chars()
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A dead daemon's scratch directory is removed with what runs in it; a live
    /// daemon's stays, and so does anything that is not a scratch directory.
    #[test]
    fn a_dead_daemons_scratch_is_removed_with_what_runs_in_it() {
        let state = tempfile::tempdir().unwrap();
        let dir = create(state.path()).unwrap();
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&state.path().join(DIR)), 0o700);
        // A dead daemon's: rename it after a pid that no longer runs.
        let mut gone = Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let stale = state.path().join(DIR).join(format!("{PREFIX}{dead}-abc"));
        std::fs::rename(&dir, &stale).unwrap();
        std::fs::create_dir(stale.join("data")).unwrap();
        let mut server = Command::new("sleep")
            .arg("600")
            .current_dir(stale.join("data"))
            .spawn()
            .unwrap();
        // A live owner's (a one-shot CLI drill): another running process.
        let live = create(state.path()).unwrap();
        let keeper = Command::new("sleep").arg("600").spawn().unwrap();
        let theirs = state
            .path()
            .join(DIR)
            .join(format!("{PREFIX}{}-def", keeper.id()));
        std::fs::rename(&live, &theirs).unwrap();
        let other = state.path().join(DIR).join("not-a-drill");
        std::fs::create_dir(&other).unwrap();

        let notes = recover(state.path());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("sleep 600"), "{notes:?}");
        assert!(server.try_wait().unwrap().is_some(), "still runs");
        assert!(!stale.exists());
        assert!(theirs.exists() && other.exists());
        let mut keeper = keeper;
        keeper.kill().unwrap();
        keeper.wait().unwrap();
        assert!(remove(state.path(), &other).is_err());
        assert!(remove(state.path(), Path::new("/")).is_err());
    }
}
