//! Programs a dead daemon left running.
//!
//! A daemon killed mid-step (the OOM killer, a power cut of its unit, `kill -9`) does not
//! take its children with it: `pg_restore` goes on writing into a staging database that
//! start-up recovery is about to drop, `start.sh` goes on starting a node recovery wants
//! stopped. Every child carries [`OWNER_VAR`] = `PID:STATE_DIR` (set through
//! `child_env`, inherited by the child's own children); at start-up the daemon ends the
//! marked processes of its state directory whose owner is gone, before anything else.

use splice_dr_pg_toolkit::child_env::{set_owner, OWNER_VAR};
use std::path::Path;

/// Marks every child this process starts from now on as owned by it and `state_dir`.
pub fn mark_children(state_dir: &Path) {
    set_owner(format!("{}:{}", std::process::id(), state_dir.display()));
}

/// Kills (SIGKILL) the processes marked for `state_dir` whose owner is no longer running
/// (or is this very process, started anew under a reused pid before it spawned anything),
/// and returns one line per process for the log. Processes of another state directory,
/// or of a live owner (a one-shot CLI run), are left alone.
pub fn reap(state_dir: &Path) -> Vec<String> {
    let me = std::process::id();
    let dir = state_dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut ended = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(owner) = owner_of(pid, &dir) else {
            continue;
        };
        if owner != me && Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let what = command_line(pid);
        if kill(pid) {
            ended.push(format!(
                "ended pid {pid} (`{what}`), left running by daemon pid {owner}"
            ));
        }
    }
    ended
}

/// The owner pid in `pid`'s mark when the mark names `dir`.
fn owner_of(pid: u32, dir: &str) -> Option<u32> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{OWNER_VAR}=");
    let mark = env
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))?;
    let mark = std::str::from_utf8(mark).ok()?;
    let (owner, marked_dir) = mark.split_once(':')?;
    (marked_dir == dir).then(|| owner.parse().ok()).flatten()
}

/// `pid`'s command line for the log, cut to 120 characters.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: String = String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .chars()
        .take(120)
        .collect();
    text
}

/// SIGKILL through kill(1) (the workspace forbids `unsafe`, which `libc::kill` needs).
fn kill(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    fn marked_sleep(owner: u32, dir: &Path) -> Child {
        Command::new("sleep")
            .arg("600")
            .env(OWNER_VAR, format!("{owner}:{}", dir.display()))
            .spawn()
            .unwrap()
    }

    fn dead_pid() -> u32 {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    fn wait_gone(c: &mut Child) -> bool {
        for _ in 0..100 {
            if c.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn only_the_orphans_of_this_state_dir_are_ended() {
        let state = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let mut orphan = marked_sleep(dead, state.path());
        let mut foreign = marked_sleep(dead, other.path());
        // Our own pid would count as a previous daemon's (a reused pid): the live owner
        // is another process.
        let mut keeper = Command::new("sleep").arg("600").spawn().unwrap();
        let mut owned = marked_sleep(keeper.id(), state.path());
        // /proc/PID/environ is readable once the child has exec'd.
        std::thread::sleep(std::time::Duration::from_millis(200));

        let ended = reap(state.path());
        assert!(wait_gone(&mut orphan), "the orphan still runs: {ended:?}");
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert!(ended[0].contains("sleep 600"), "{ended:?}");
        assert!(foreign.try_wait().unwrap().is_none(), "another state dir's");
        assert!(owned.try_wait().unwrap().is_none(), "a live owner's");
        for c in [&mut foreign, &mut owned, &mut keeper] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}
