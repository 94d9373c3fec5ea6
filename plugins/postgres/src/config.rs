//! Configuration of the bare-Postgres backend: the `[node.postgres]` table.

use serde::{Deserialize, Serialize};
use splice_dr_plugin_api::BackendError;
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
    #[serde(default = "default_compress")]
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
    /// URL answering 200 when it is ready, e.g. `http://127.0.0.1:5003/api/validator/readyz`.
    #[serde(default)]
    pub health_url: Option<String>,
}

fn default_validator_db() -> String {
    "validator".into()
}
fn default_participant_db() -> String {
    "participant-0".into()
}
/// The gzip level of dumps when `compress` is not set: shared by every backend that runs
/// `pg_dump` (bare, compose, k8s), so the same key means the same thing everywhere.
pub fn default_compress() -> u32 {
    1
}

/// Refuses a `compress` level `pg_dump` does not take, when the config loads rather than
/// at the first backup.
pub fn check_compress(level: u32) -> Result<(), BackendError> {
    if level > 9 {
        return Err(BackendError::Config(format!(
            "`compress` must be 0 (none) to 9 (smallest), got {level}"
        )));
    }
    Ok(())
}
fn default_jobs() -> u32 {
    2
}
fn default_restore_mem() -> String {
    "512MB".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one compress check compose, k8s and bare Postgres all run at load.
    #[test]
    fn compress_levels_past_9_are_refused_with_the_key() {
        assert!(check_compress(0).is_ok());
        assert!(check_compress(9).is_ok());
        let e = check_compress(10).expect_err("10");
        assert_eq!(
            e.to_string(),
            BackendError::Config("`compress` must be 0 (none) to 9 (smallest), got 10".into())
                .to_string()
        );
    }
}
