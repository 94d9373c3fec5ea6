//! A physical restore past the base backup's end: the stored WAL replayed to `latest` or
//! to a time.
//!
//! Before anything changes, the last commit the stored WAL holds is read (`pg_waldump`):
//! Postgres stops a time target at the first commit after it, and fails at the end of its
//! WAL when none comes, so a target past the last stored commit — or one behind a hole in
//! the WAL, or before the backup finished — is refused while the server still runs on its
//! own data. Once the copy is laid down, the stored segments go into its `pg_wal` (the
//! open `.partial` under its segment name: pg_receivewal pads it to a full segment), the
//! timeline history files beside them, and recovery is configured with a
//! `restore_command` that finds nothing (so Postgres reads `pg_wal`, and no file of the
//! repository has to be readable by the server's user), `recovery_target_timeline =
//! 'current'` (the backup's timeline, which the WAL was taken from) and the target. At the
//! target the server promotes to a new timeline, which the history files make one never
//! used before. The settings are removed again once recovery ended.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use splice_dr_pg_toolkit::physical::Owner;
use splice_dr_pg_toolkit::wal;
use splice_dr_plugin_api::{BackendError, BaseBackupInfo, OpContext, RecoveryTarget, WalReplay};

/// The line that opens splice-dr's recovery settings in `postgresql.auto.conf`.
const SETTINGS_BEGIN: &str = "# splice-dr: recovery of a restore (removed once it ended)";
/// The line that closes them.
const SETTINGS_END: &str = "# splice-dr: end of recovery settings";

/// Reads the last commit of the stored WAL (answered: how far a replay reaches) and
/// refuses a target it cannot reach.
pub(crate) fn check_reachable(
    ctx: &OpContext,
    bin_dir: Option<&Path>,
    expected: &BaseBackupInfo,
    replay: &WalReplay,
) -> Result<Option<DateTime<Utc>>, BackendError> {
    let last_commit = last_commit(bin_dir, &replay.segments)?;
    let reachable = last_commit.map_or_else(
        || {
            format!(
                "no commit is stored after the backup's end ({})",
                expected.finished_at.to_rfc3339()
            )
        },
        |t| format!("the last reachable time is {}", t.to_rfc3339()),
    );
    let gap = replay.gap_at.as_ref().map(|g| {
        format!(
            " (WAL segment {g} is missing from the repository: nothing after it can be replayed)"
        )
    });
    match replay.target {
        RecoveryTarget::Latest if gap.is_some() => {
            return Err(BackendError::Verification(format!(
                "the stored WAL has a hole{}: `latest` cannot be reached; {reachable}: restore \
                 to that time with --to, or to backup-end",
                gap.unwrap_or_default()
            )))
        }
        RecoveryTarget::Time(t) if t < expected.finished_at => {
            return Err(BackendError::Verification(format!(
                "{} is before this backup finished ({}): restore an older backup to reach it",
                t.to_rfc3339(),
                expected.finished_at.to_rfc3339()
            )))
        }
        RecoveryTarget::Time(t) if last_commit.is_none_or(|c| t > c) => {
            return Err(BackendError::Verification(format!(
                "no stored WAL reaches {}{}: {reachable}; restore to that time, to latest, or \
                 to backup-end",
                t.to_rfc3339(),
                gap.unwrap_or_default()
            )))
        }
        _ => {}
    }
    ctx.info(format!(
        "{} stored WAL segments replay after the backup's end; {reachable}",
        replay.segments.len()
    ));
    Ok(last_commit)
}

/// The last commit of `segments`, read from the newest segment backwards until one holds
/// a commit.
fn last_commit(
    bin_dir: Option<&Path>,
    segments: &[PathBuf],
) -> Result<Option<DateTime<Utc>>, BackendError> {
    for seg in segments.iter().rev() {
        let found = match seg.file_name().and_then(|n| n.to_str()) {
            Some(name) if name.ends_with(".partial") => open_segment_commit(bin_dir, seg, name)?,
            _ => wal::last_commit_in(bin_dir, seg)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// pg_waldump reads segments by their WAL names only: the open segment is read through a
/// link under its segment name, in a private directory next to it.
fn open_segment_commit(
    bin_dir: Option<&Path>,
    partial: &Path,
    name: &str,
) -> Result<Option<DateTime<Utc>>, BackendError> {
    let parent = partial.parent().unwrap_or(Path::new("."));
    let dir = parent.join(format!(".waldump-{}", std::process::id()));
    let io = |what: &str, p: &Path, e| BackendError::io(format!("{what} {}", p.display()), e);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io("creating", &dir, e))?;
    let link = dir.join(name.trim_end_matches(".partial"));
    let result = std::os::unix::fs::symlink(partial, &link)
        .map_err(|e| io("linking", &link, e))
        .and_then(|()| wal::last_commit_in(bin_dir, &link));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Puts the stored WAL into the laid-down data directory and configures recovery to the
/// target: segments and history files into `pg_wal`, `recovery.signal`, and the settings
/// appended to `postgresql.auto.conf`, all owned by `owner`.
pub(crate) fn install(
    data_dir: &Path,
    replay: &WalReplay,
    owner: Owner,
) -> Result<u64, BackendError> {
    let pg_wal = data_dir.join("pg_wal");
    let mut bytes = 0;
    for seg in &replay.segments {
        let name = file_name(seg)?;
        bytes += place(seg, &pg_wal.join(name.trim_end_matches(".partial")), owner)?;
    }
    for history in &replay.histories {
        let to = pg_wal.join(file_name(history)?);
        if !to.exists() {
            place(history, &to, owner)?;
        }
    }
    let signal = data_dir.join("recovery.signal");
    write_owned(&signal, b"", owner)?;
    let auto = data_dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text = strip_settings(&text);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&settings(replay.target));
    write_owned(&auto, text.as_bytes(), owner)?;
    Ok(bytes)
}

/// The recovery settings for `target`, between the markers.
fn settings(target: RecoveryTarget) -> String {
    let mut s = format!(
        "{SETTINGS_BEGIN}\nrestore_command = 'false'\nrecovery_target_timeline = 'current'\n"
    );
    if let RecoveryTarget::Time(t) = target {
        s.push_str(&format!(
            "recovery_target_time = '{}'\nrecovery_target_inclusive = on\n\
             recovery_target_action = 'promote'\n",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ));
    }
    s.push_str(SETTINGS_END);
    s.push('\n');
    s
}

/// `text` without splice-dr's recovery settings.
fn strip_settings(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == SETTINGS_BEGIN {
            inside = true;
        } else if line == SETTINGS_END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Removes the recovery settings from a recovered server's `postgresql.auto.conf` (they
/// only act in recovery, but a later base backup would carry them).
pub(crate) fn remove_settings(data_dir: &Path) -> Result<(), BackendError> {
    let auto = data_dir.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto)
        .map_err(|e| BackendError::io(format!("reading {}", auto.display()), e))?;
    let stripped = strip_settings(&text);
    if stripped != text {
        // Rewritten in place: owner and mode stay the server's.
        std::fs::write(&auto, stripped)
            .map_err(|e| BackendError::io(format!("writing {}", auto.display()), e))?;
    }
    Ok(())
}

fn file_name(p: &Path) -> Result<&str, BackendError> {
    p.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BackendError::Verification(format!("{} has no file name", p.display())))
}

/// Copies `from` to `to` (0600, owned by `owner`) and answers the bytes copied.
fn place(from: &Path, to: &Path, owner: Owner) -> Result<u64, BackendError> {
    let n = std::fs::copy(from, to).map_err(|e| {
        BackendError::io(format!("copying {} to {}", from.display(), to.display()), e)
    })?;
    own(to, owner)?;
    Ok(n)
}

fn write_owned(path: &Path, bytes: &[u8], owner: Owner) -> Result<(), BackendError> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| BackendError::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BackendError::io(format!("writing {}", path.display()), e))?;
    own(path, owner)
}

fn own(path: &Path, owner: Owner) -> Result<(), BackendError> {
    let io = |e| {
        BackendError::io(
            format!("setting the owner and mode of {}", path.display()),
            e,
        )
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(io)
}

/// The replay's target as a log line says it.
pub(crate) fn target_text(replay: &WalReplay) -> String {
    match replay.target {
        RecoveryTarget::Latest => "the end of the stored WAL".into(),
        RecoveryTarget::Time(t) => t.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_settings_are_added_once_and_removed_whole() {
        let at = "2026-12-07T06:30:01.5Z".parse().unwrap();
        let s = settings(RecoveryTarget::Time(at));
        assert!(
            s.contains("recovery_target_time = '2026-12-07 06:30:01.500000+00'"),
            "{s}"
        );
        assert!(s.contains("recovery_target_action = 'promote'"), "{s}");
        assert!(!settings(RecoveryTarget::Latest).contains("recovery_target_time ="));
        let operators = "# Do not edit this file manually!\nwork_mem = '8MB'\n";
        let with = format!("{operators}{s}");
        assert_eq!(strip_settings(&with), operators);
        assert_eq!(strip_settings(&strip_settings(&with)), operators);
    }
}
