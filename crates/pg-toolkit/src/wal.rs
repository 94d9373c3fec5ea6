//! Continuous WAL with Postgres' own receiver: `pg_receivewal` on a physical replication
//! slot, and the slot's name for a node.
//!
//! The slot is what makes streaming gap-free: while it exists the server keeps every
//! segment the receiver has not confirmed, across a receiver restart, a daemon restart or
//! a server restart. It is also the hazard (an abandoned slot keeps WAL until the disk is
//! full), which is why its name is derived from the node's and nothing else: the daemon
//! can always find and drop its own slot, and never touches one it did not make.

use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, NaiveDateTime, Utc};

use splice_dr_plugin_api::BackendError;

use crate::connection::ConnSettings;
use crate::{child_env, process};

/// Prefix of every slot splice-dr creates.
pub const SLOT_PREFIX: &str = "splice_dr_";
/// Postgres' limit on a slot name (NAMEDATALEN - 1).
const SLOT_NAME_MAX: usize = 63;

/// The replication slot of node `node`: [`SLOT_PREFIX`] and the node's name with every
/// character a slot name may not hold (`[a-z0-9_]` only) turned into `_`, cut to 63.
pub fn slot_name(node: &str) -> String {
    let mut name: String = SLOT_PREFIX.to_string();
    name.extend(node.chars().map(|c| {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name.truncate(SLOT_NAME_MAX);
    name
}

/// Whether `slot` is a name [`slot_name`] could have made: the only slots a backend
/// creates or drops on the daemon's word.
pub fn is_own_slot(slot: &str) -> bool {
    slot.len() > SLOT_PREFIX.len()
        && slot.len() <= SLOT_NAME_MAX
        && slot.starts_with(SLOT_PREFIX)
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `pg_receivewal` streaming the server `conn` reaches through `slot` into `dir`: each
/// write flushed and acknowledged at once (`--synchronous`, so the slot's position is
/// what is on disk), exiting on a lost connection instead of retrying by itself
/// (`--no-loop`: the daemon restarts it and sees every failure). The password travels in
/// the child's environment, never on its command line.
pub fn receivewal_command(
    bin_dir: Option<&Path>,
    conn: &ConnSettings,
    slot: &str,
    dir: &Path,
) -> Result<Command, BackendError> {
    let tool = process::find_tool(bin_dir, "pg_receivewal")?;
    let mut cmd = child_env::command(tool, child_env::POSTGRES);
    cmd.arg("--dbname")
        .arg(conn.conninfo(&conn.admin_db()))
        .arg("--directory")
        .arg(dir)
        .arg("--slot")
        .arg(slot)
        .args(["--synchronous", "--no-loop", "--no-password", "--verbose"])
        .envs(conn.child_env());
    Ok(cmd)
}

/// The time of the last transaction commit in the WAL segment `segment` (its file name is
/// its WAL name), read with `pg_waldump`; `None` when it holds no commit. The replay of a
/// restore can stop at any time up to this one and not later: Postgres refuses a target
/// its WAL never reaches. pg_waldump stops with an error at the end of valid WAL (a
/// zero-padded open segment ends so): what it printed until then counts.
pub fn last_commit_in(
    bin_dir: Option<&Path>,
    segment: &Path,
) -> Result<Option<DateTime<Utc>>, BackendError> {
    let tool = process::find_tool(bin_dir, "pg_waldump")?;
    let mut cmd = child_env::command(tool, &[]);
    // The segment as start and end: that one file, not the ones after it in its directory.
    cmd.arg("--rmgr=Transaction")
        .arg(segment)
        .arg(segment)
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| BackendError::io(format!("running pg_waldump on {}", segment.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().filter_map(commit_time).max())
}

/// The commit time of one `pg_waldump` line of a `COMMIT` record (`desc: COMMIT
/// 2026-12-07 06:30:01.123456 UTC…`), printed in UTC (`TZ=UTC`).
fn commit_time(line: &str) -> Option<DateTime<Utc>> {
    let rest = line.split_once("desc: COMMIT ")?.1;
    let stamp = rest.get(..rest.find(" UTC")?)?;
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_slot_name_is_a_valid_slot_name_of_ours() {
        assert_eq!(slot_name("validator-1"), "splice_dr_validator_1");
        assert_eq!(slot_name("A.b"), "splice_dr_a_b");
        let long = slot_name(&"x".repeat(100));
        assert_eq!(long.len(), 63);
        for n in ["validator-1", "A.b", &"x".repeat(100)] {
            assert!(is_own_slot(&slot_name(n)), "{n}");
        }
        for other in [
            "",
            "splice_dr_",
            "pg_slot",
            "splice_dr_x;drop",
            "splice_dr_X",
        ] {
            assert!(!is_own_slot(other), "{other}");
        }
    }

    #[test]
    fn commit_times_are_read_from_pg_waldump_lines() {
        let line = "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: \
                    0/01000060, prev 0/01000028, desc: COMMIT 2026-12-07 06:30:01.123456 UTC";
        assert_eq!(
            commit_time(line).map(|t| t.to_rfc3339()),
            Some("2026-12-07T06:30:01.123456+00:00".to_string())
        );
        let with_items = "desc: COMMIT 2026-12-07 06:30:02.5 UTC; inval msgs: catcache 7";
        assert!(commit_time(with_items).is_some());
        for other in [
            "desc: ABORT 2026-12-07 06:30:01.123456 UTC",
            "desc: COMMIT garbage UTC",
            "desc: COMMIT 2026-12-07 06:30:01.123456 CET",
        ] {
            assert_eq!(commit_time(other), None, "{other}");
        }
    }

    #[test]
    fn the_password_never_reaches_the_command_line() {
        let conn =
            ConnSettings::new("postgresql://u:secret-pw@127.0.0.1:5432/postgres", None).unwrap();
        let Ok(cmd) = receivewal_command(
            Some(Path::new("/usr/lib/postgresql/15/bin")),
            &conn,
            "splice_dr_v",
            Path::new("/w"),
        ) else {
            return; // no PostgreSQL client tools here
        };
        let argv = process::shown(&cmd);
        assert!(!argv.contains("secret-pw"), "{argv}");
        assert!(
            argv.contains("--slot splice_dr_v") && argv.contains("--synchronous"),
            "{argv}"
        );
        let env: Vec<_> = cmd.get_envs().collect();
        assert!(env
            .iter()
            .any(|(k, v)| *k == "PGPASSWORD" && *v == Some("secret-pw".as_ref())));
    }
}
