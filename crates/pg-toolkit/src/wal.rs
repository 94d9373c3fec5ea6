//! Continuous WAL with Postgres' own receiver: `pg_receivewal` on a physical replication
//! slot, and the slot's name for a node.
//!
//! The slot is what makes streaming gap-free: while it exists the server keeps every
//! segment the receiver has not confirmed, across a receiver restart, a daemon restart or
//! a server restart. It is also the hazard (an abandoned slot keeps WAL until the disk is
//! full), which is why its name is derived from the node's and nothing else: the daemon
//! can always find and drop its own slot, and never touches one it did not make.

use std::path::Path;
use std::process::Command;

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
