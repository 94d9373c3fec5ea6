//! Configuration of the bare-Postgres backend: the `[node.postgres]` table.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How to reach the node's Postgres and, optionally, how to stop and start the processes
/// that use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL of a superuser (or the databases' owner with CREATEDB), e.g.
    /// `postgresql://cnadmin@127.0.0.1:5432/postgres`. A password in the URL is allowed but
    /// `password_file` is preferred: it is never logged.
    pub url: String,
    /// File holding the password (first line; surrounding whitespace trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Physical name of the validator app database.
    #[serde(default = "default_validator_db")]
    pub validator_db: String,
    /// Physical name of the participant database (`participant-<migration_id>` on compose).
    #[serde(default = "default_participant_db")]
    pub participant_db: String,
    /// Parallel jobs for `pg_dump` and `pg_restore`.
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// gzip level of dumps, 0 (none) to 9. Level 1 is the default: on a 2-core machine
    /// it restored 1 GB about a third faster than pg_dump's default (level 6) for a
    /// repository only ~6% larger (see the README's benchmarks).
    #[serde(default = "splice_dr_pg_toolkit::dump::default_compress")]
    pub compress: u32,
    /// Directory holding `pg_dump`, `pg_restore` and `psql` when they are not on PATH,
    /// e.g. `/usr/lib/postgresql/15/bin`.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// `maintenance_work_mem` for the restore sessions (index builds), e.g. `512MB`.
    #[serde(default = "default_restore_mem")]
    pub restore_maintenance_work_mem: String,
    /// Whether `check_dump` also reads every data file (`pg_restore --file=/dev/null`),
    /// catching truncated or garbled data that the table of contents alone cannot show.
    /// Costs a full read and decompression of the dump.
    #[serde(default)]
    pub deep_check: bool,
    /// The processes that use the databases, by component name (`validator`,
    /// `participant`). Without any, restore works on the databases alone and says so.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentConfig>,
    /// The site's hook for flows that restart the node with new settings (re-onboarding
    /// with an identities dump and a new participant id, a migrating start). Run with
    /// `sh -c`; the settings arrive as environment variables (`SPLICE_DR_VALUES` as JSON,
    /// `SPLICE_DR_PARTICIPANT_ID`, `SPLICE_DR_IDENTITIES_DUMP`, `SPLICE_DR_MIGRATION_ID`,
    /// `SPLICE_DR_MIGRATING`). Without it those flows stop with an explanation.
    #[serde(default)]
    pub restart_command: Option<String>,
    /// The server's data directory (`SHOW data_directory`), on this host: where a physical
    /// restore lays a base backup down, after moving the current one aside next to it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Shell command that stops the database server and returns once it is stopped, e.g.
    /// `systemctl stop postgresql@15-main` (physical restores).
    #[serde(default)]
    pub server_stop_command: Option<String>,
    /// Shell command that starts the database server, e.g.
    /// `systemctl start postgresql@15-main` (physical restores).
    #[serde(default)]
    pub server_start_command: Option<String>,
    /// The operator's acknowledgement that a physical restore replaces the whole server's
    /// data — every database on it, not only the node's two — required for physical
    /// backups: the server may hold other databases a logical restore would leave alone.
    #[serde(default)]
    pub physical_replaces_cluster: bool,
}

impl PostgresConfig {
    /// What a physical restore still needs from this table, named by key; `None` when
    /// physical backups can be taken and restored.
    pub fn physical_missing(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.data_dir.is_none() {
            missing.push("data_dir");
        }
        if self.server_stop_command.is_none() {
            missing.push("server_stop_command");
        }
        if self.server_start_command.is_none() {
            missing.push("server_start_command");
        }
        if !self.physical_replaces_cluster {
            missing.push("physical_replaces_cluster = true");
        }
        (!missing.is_empty()).then(|| {
            format!(
                "a physical restore replaces the whole server's data, which needs [node.postgres] {} \
                 (docs/CONFIG.md); use logical backups otherwise: backup_kind = \"logical\" \
                 (the default) or `splice-dr backup --kind logical`",
                missing.join(", ")
            )
        })
    }
}

/// A process the operator runs by hand (e.g. under systemd) that uses the databases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// Shell command that stops it, e.g. `systemctl stop splice-validator`.
    #[serde(default)]
    pub stop_command: Option<String>,
    /// Shell command that starts it.
    #[serde(default)]
    pub start_command: Option<String>,
    /// URL answering 200 when it is ready, e.g. `http://127.0.0.1:5003/api/validator/readyz`,
    /// or an `https://` one.
    #[serde(default)]
    pub health_url: Option<String>,
    /// PEM file of the CA(s) that signed an `https://` `health_url`'s certificate, trusted
    /// besides the system roots: a health endpoint behind a private CA is common.
    #[serde(default)]
    pub health_ca_file: Option<PathBuf>,
}

fn default_validator_db() -> String {
    "validator".into()
}
fn default_participant_db() -> String {
    "participant-0".into()
}
fn default_jobs() -> u32 {
    2
}
fn default_restore_mem() -> String {
    "512MB".into()
}
