//! splice-dr backend for a validator node whose Postgres the operator runs by hand.
//!
//! Dumps with `pg_dump -Fd` inside an exported snapshot whose exact row counts go into the
//! manifest, restores with `pg_restore` into a staging database verified against those
//! counts, and puts restored databases in service by renaming (keeping the replaced ones).
//! Components are stopped and started with operator-given shell commands.
//!
//! The crate is both a library (linked into the daemon) and a `cdylib` exporting the
//! splice-dr plugin ABI, which proves the dynamic-plugin path with a real backend.

pub mod components;
pub mod config;
mod dump;
mod physical;
mod physical_drill;
mod replay;
mod restore;
mod wal;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use splice_dr_plugin_api::{
    BackendError, BackendInfo, BaseBackupCheck, BaseBackupInfo, Capabilities, ComponentStatus,
    DatabaseCapabilities, DatabaseInfo, Databases, DumpCheck, DumpInfo, KeptDb, KeptStorage,
    Leftovers, OpContext, RestoreShape, ScratchChecks, StagedCheck, StagedDb, StagedQuery, Storage,
    WalReplay, WalSlot, Workloads,
};

use components::HealthCheck;
pub use config::{ComponentConfig, PostgresConfig};
pub use splice_dr_pg_toolkit::ConnSettings;
use splice_dr_pg_toolkit::{child_env, dump::check_compress, names, process, sql};

splice_dr_plugin_abi::export_backend!(crate::PostgresBackend::from_json);

/// The bare-Postgres backend: one node's two databases on one Postgres server, plus the
/// stop/start commands of the processes using them.
pub struct PostgresBackend {
    cfg: PostgresConfig,
    conn: ConnSettings,
    /// The readiness check of each component that has a `health_url`.
    health: BTreeMap<String, HealthCheck>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config itself: its URL may carry a password.
        f.debug_struct("PostgresBackend")
            .field("conn", &self.conn)
            .field("validator_db", &self.cfg.validator_db)
            .field("participant_db", &self.cfg.participant_db)
            .finish()
    }
}

/// Checks a configured database name is usable as a live name.
fn check_db_name(key: &str, name: &str) -> Result<(), BackendError> {
    if name.is_empty() || name.len() > names::MAX_IDENT_BYTES || name.contains('\0') {
        return Err(BackendError::Config(format!(
            "`{key}` must be a database name of 1 to {} bytes",
            names::MAX_IDENT_BYTES
        )));
    }
    Ok(())
}

/// Checks the physical-restore keys that are set: an absolute `data_dir`, commands that
/// are not blank.
fn check_physical_settings(cfg: &PostgresConfig) -> Result<(), BackendError> {
    if let Some(dir) = &cfg.data_dir {
        if !dir.is_absolute() {
            return Err(BackendError::Config(format!(
                "`data_dir` must be an absolute path (the server's `SHOW data_directory`), got `{}`",
                dir.display()
            )));
        }
    }
    for (key, v) in [
        ("server_stop_command", &cfg.server_stop_command),
        ("server_start_command", &cfg.server_start_command),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(BackendError::Config(format!("`{key}` is empty")));
        }
    }
    Ok(())
}

impl PostgresBackend {
    /// Validates the configuration, parses the URL and reads the password file, so that
    /// configuration mistakes surface when the daemon loads its config, not mid-restore.
    pub fn new(cfg: PostgresConfig) -> Result<Self, BackendError> {
        check_db_name("validator_db", &cfg.validator_db)?;
        check_db_name("participant_db", &cfg.participant_db)?;
        if cfg.validator_db == cfg.participant_db {
            return Err(BackendError::Config(
                "`validator_db` and `participant_db` must differ".into(),
            ));
        }
        if cfg.jobs == 0 {
            return Err(BackendError::Config("`jobs` must be at least 1".into()));
        }
        check_compress(cfg.compress)?;
        let mem = &cfg.restore_maintenance_work_mem;
        if mem.is_empty() || !mem.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BackendError::Config(format!(
                "`restore_maintenance_work_mem` must look like `512MB`, got `{mem}`"
            )));
        }
        check_physical_settings(&cfg)?;
        let mut health = BTreeMap::new();
        for (name, c) in &cfg.components {
            for (key, v) in [
                ("stop_command", &c.stop_command),
                ("start_command", &c.start_command),
            ] {
                if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    return Err(BackendError::Config(format!(
                        "component `{name}`: `{key}` is empty"
                    )));
                }
            }
            match (&c.health_url, &c.health_ca_file) {
                (Some(url), ca_file) => {
                    let check = HealthCheck::new(url, ca_file.as_deref())
                        .map_err(|e| BackendError::Config(format!("component `{name}`: {e}")))?;
                    health.insert(name.clone(), check);
                }
                (None, Some(_)) => {
                    return Err(BackendError::Config(format!(
                        "component `{name}`: `health_ca_file` is set without a `health_url`"
                    )))
                }
                (None, None) => {}
            }
        }
        let conn = ConnSettings::new(&cfg.url, cfg.password_file.as_deref())?;
        Ok(PostgresBackend { cfg, conn, health })
    }

    /// Builds the backend from its JSON config (the plugin ABI's `create`).
    pub fn from_json(v: serde_json::Value) -> Result<Self, BackendError> {
        let cfg: PostgresConfig = serde_json::from_value(v)
            .map_err(|e| BackendError::Config(format!("postgres backend config: {e}")))?;
        Self::new(cfg)
    }

    /// The configuration the backend was built from.
    pub fn config(&self) -> &PostgresConfig {
        &self.cfg
    }

    /// The physical database name of a role (`validator`, `participant`).
    pub fn db_for_role(&self, role: &str) -> Result<&str, BackendError> {
        match role {
            "validator" => Ok(&self.cfg.validator_db),
            "participant" => Ok(&self.cfg.participant_db),
            other => Err(BackendError::NotFound(format!(
                "database role `{other}` (known: validator, participant)"
            ))),
        }
    }
}

impl BackendInfo for PostgresBackend {
    fn kind(&self) -> String {
        "postgres".into()
    }

    /// Database-level restores of dumps; physical backups when the operator named the
    /// server's data directory, its stop and start commands and acknowledged that a
    /// physical restore replaces the whole server.
    fn capabilities(&self) -> Capabilities {
        let physical_unavailable = self.cfg.physical_missing();
        let physical_drill_unavailable = physical_drill::unavailable(self.cfg.bin_dir.as_deref());
        Capabilities {
            databases: DatabaseCapabilities {
                restore: RestoreShape::Staged,
                physical: physical_unavailable.is_none(),
                wal_streaming: physical_unavailable.is_none(),
                physical_unavailable,
                // A drill needs only pg_ctl: none of the keys a restore needs.
                physical_drill: physical_drill_unavailable.is_none(),
                physical_drill_unavailable,
            },
            ..Capabilities::default()
        }
    }

    /// `psql` on the admin URL (password removed; read from the password file when set).
    fn kept_removal_command(&self, kept: &str) -> Option<String> {
        if let Some(rm) = self.kept_dir_removal_command(kept) {
            return Some(rm);
        }
        names::shell_quotable(kept).then(|| {
            names::drop_database_command(&self.cfg.url, self.cfg.password_file.as_deref(), kept)
        })
    }
}

impl Workloads for PostgresBackend {
    fn components(&self, ctx: &OpContext) -> Result<Vec<ComponentStatus>, BackendError> {
        self.components_impl(ctx)
    }

    fn scale(&self, ctx: &OpContext, component: &str, replicas: u32) -> Result<(), BackendError> {
        self.scale_impl(ctx, component, replicas)
    }

    fn wait_ready(
        &self,
        ctx: &OpContext,
        component: &str,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        self.wait_ready_impl(ctx, component, timeout)
    }

    fn set_values(&self, ctx: &OpContext, values: &serde_json::Value) -> Result<(), BackendError> {
        let command = self.cfg.restart_command.as_deref().ok_or_else(|| {
            BackendError::Config(
                "this flow restarts the node with new settings, which a hand-run node does through \
                 [node.postgres] restart_command (see docs/CONFIG.md); it is not set"
                    .into(),
            )
        })?;
        let mut cmd = child_env::command("sh", child_env::POSTGRES);
        cmd.arg("-c")
            .arg(command)
            .env("SPLICE_DR_VALUES", values.to_string());
        let text = |k: &str| match &values[k] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        };
        for (key, var) in [
            ("participant_id", "SPLICE_DR_PARTICIPANT_ID"),
            ("identities_dump", "SPLICE_DR_IDENTITIES_DUMP"),
            ("migration_id", "SPLICE_DR_MIGRATION_ID"),
            ("migrating", "SPLICE_DR_MIGRATING"),
            ("migration_dump", "SPLICE_DR_MIGRATION_DUMP"),
        ] {
            if let Some(v) = text(key) {
                cmd.env(var, v);
            }
        }
        ctx.info(format!("running restart_command with {values}"));
        let out = process::run(ctx, cmd, command, "restart_command", &mut || {})?;
        if !out.stderr.trim().is_empty() {
            ctx.info(format!("restart_command: {}", out.stderr.trim()));
        }
        Ok(())
    }
}

impl Databases for PostgresBackend {
    fn databases(&self, _ctx: &OpContext) -> Result<Vec<DatabaseInfo>, BackendError> {
        let mut admin = self.conn.connect_admin()?;
        splice_dr_plugin_api::DB_ROLES
            .iter()
            .map(|role| {
                let name = self.db_for_role(role)?.to_string();
                let exists = sql::database_exists(&mut admin, &name)?;
                Ok(DatabaseInfo {
                    role: role.to_string(),
                    name,
                    exists,
                })
            })
            .collect()
    }

    fn dump(&self, ctx: &OpContext, role: &str, dest: &Path) -> Result<DumpInfo, BackendError> {
        self.dump_impl(ctx, role, dest)
    }

    fn check_dump(&self, ctx: &OpContext, src: &Path) -> Result<DumpCheck, BackendError> {
        self.check_dump_impl(ctx, src)
    }

    fn restore_staged(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<StagedDb, BackendError> {
        self.restore_staged_impl(ctx, role, src, expected)
    }

    fn swap_in(&self, ctx: &OpContext, staged: &[StagedDb]) -> Result<Vec<KeptDb>, BackendError> {
        self.swap_in_impl(ctx, staged)
    }

    fn roll_back(&self, ctx: &OpContext, kept: &[KeptDb]) -> Result<(), BackendError> {
        self.roll_back_impl(ctx, kept)
    }

    fn drop_kept(&self, ctx: &OpContext, kept: &[KeptDb]) -> Result<(), BackendError> {
        self.drop_kept_impl(ctx, kept)
    }

    fn drop_staged(&self, ctx: &OpContext, staged: &[StagedDb]) -> Result<(), BackendError> {
        self.drop_staged_impl(ctx, staged)
    }

    fn check_staged(
        &self,
        ctx: &OpContext,
        staged: &StagedDb,
        queries: &[StagedQuery],
    ) -> Result<StagedCheck, BackendError> {
        self.check_staged_impl(ctx, staged, queries)
    }

    fn leftovers(&self, ctx: &OpContext) -> Result<Leftovers, BackendError> {
        self.leftovers_impl(ctx)
    }

    fn base_backup(&self, ctx: &OpContext, dest: &Path) -> Result<BaseBackupInfo, BackendError> {
        self.base_backup_impl(ctx, dest)
    }

    fn check_base_backup(
        &self,
        ctx: &OpContext,
        src: &Path,
    ) -> Result<BaseBackupCheck, BackendError> {
        self.check_base_backup_impl(ctx, src)
    }

    fn restore_base_backup(
        &self,
        ctx: &OpContext,
        src: &Path,
        expected: &BaseBackupInfo,
        timeout: Duration,
    ) -> Result<KeptStorage, BackendError> {
        self.restore_base_backup_impl(ctx, src, expected, None, timeout)
    }

    fn replay_base_backup(
        &self,
        ctx: &OpContext,
        src: &Path,
        expected: &BaseBackupInfo,
        replay: &WalReplay,
        timeout: Duration,
    ) -> Result<KeptStorage, BackendError> {
        self.restore_base_backup_impl(ctx, src, expected, Some(replay), timeout)
    }

    fn stream_wal(&self, ctx: &OpContext, slot: &str, dir: &Path) -> Result<(), BackendError> {
        self.stream_wal_impl(ctx, slot, dir)
    }

    fn wal_slot(&self, _ctx: &OpContext, slot: &str) -> Result<WalSlot, BackendError> {
        self.wal_slot_impl(slot)
    }

    fn drop_wal_slot(&self, ctx: &OpContext, slot: &str) -> Result<bool, BackendError> {
        self.drop_wal_slot_impl(ctx, slot)
    }

    // Drills of physical backups (physical_drill.rs).
    fn drill_base_backup(
        &self,
        ctx: &OpContext,
        src: &Path,
        expected: &BaseBackupInfo,
        scratch: &Path,
        checks: &[ScratchChecks],
        timeout: Duration,
    ) -> Result<Vec<StagedCheck>, BackendError> {
        self.drill_base_backup_impl(ctx, src, expected, scratch, checks, timeout)
    }
}

/// The storage under a hand-run Postgres is the operator's: the only storage reached from
/// here is the data directory a physical restore kept aside (`restore_base_backup`), put
/// back or removed; every other storage operation answers `Unsupported` (the capabilities
/// announce no database storage), and a fresh node comes from `restart_command`.
impl Storage for PostgresBackend {
    fn restore_kept_storage(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        self.restore_kept_data_impl(ctx, kept)
    }

    fn drop_kept_storage(&self, ctx: &OpContext, kept: &KeptStorage) -> Result<(), BackendError> {
        self.drop_kept_data_impl(ctx, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PostgresConfig {
        serde_json::from_value(serde_json::json!({"url": "postgresql://u@127.0.0.1/postgres"}))
            .expect("config")
    }

    /// `status` shows this command and it may reach logs: the URL's password never
    /// appears, a password file is read by the shell; a name that could break out of the
    /// quoting gets no command at all.
    #[test]
    fn the_removal_command_carries_no_password_and_refuses_unquotable_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pg.pw");
        std::fs::write(&pw, "secret\n").expect("password file");
        let mut c = cfg();
        c.url = "postgresql://u:secret@h:5432/postgres".into();
        c.password_file = Some(pw.clone());
        let b = PostgresBackend::new(c).expect("backend");
        let cmd = b
            .kept_removal_command("participant-0__sdr_kept_ab12")
            .expect("a command");
        assert_eq!(
            cmd,
            format!(
                "PGPASSWORD=\"$(head -n1 '{}')\" psql 'postgresql://u@h:5432/postgres' \
                 -c 'DROP DATABASE \"participant-0__sdr_kept_ab12\"'",
                pw.display()
            )
        );
        assert!(!cmd.contains("secret"), "{cmd}");
        for bad in ["", "x'; rm -rf /", "a\"b", "a\nb", "a\\b"] {
            assert_eq!(b.kept_removal_command(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn restart_command_gets_the_values_in_its_environment() {
        let dir = std::env::temp_dir().join(format!("sdr-restart-{}", std::process::id()));
        let mut c = cfg();
        c.restart_command = Some(format!(
            "echo \"$SPLICE_DR_PARTICIPANT_ID $SPLICE_DR_IDENTITIES_DUMP $SPLICE_DR_MIGRATING\" > {}",
            dir.display()
        ));
        let b = PostgresBackend::new(c).expect("backend");
        let ctx = OpContext::detached(Default::default());
        b.set_values(
            &ctx,
            &serde_json::json!({"participant_id": "acme-2", "identities_dump": "/tmp/id.json", "migrating": false}),
        )
        .expect("hook runs");
        let seen = std::fs::read_to_string(&dir).expect("hook output");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(seen.trim(), "acme-2 /tmp/id.json false");
        let e = PostgresBackend::new(cfg())
            .expect("backend")
            .set_values(&ctx, &serde_json::json!({}))
            .expect_err("no hook");
        assert!(e.to_string().contains("restart_command"), "{e}");
    }

    #[test]
    fn roles_map_to_databases() {
        let b = PostgresBackend::new(cfg()).expect("backend");
        assert_eq!(b.db_for_role("validator").expect("v"), "validator");
        assert_eq!(b.db_for_role("participant").expect("p"), "participant-0");
        assert!(matches!(
            b.db_for_role("sv"),
            Err(BackendError::NotFound(_))
        ));
        assert_eq!(b.kind(), "postgres");
    }

    #[test]
    fn config_is_validated() {
        let mut c = cfg();
        c.participant_db = c.validator_db.clone();
        assert!(matches!(
            PostgresBackend::new(c),
            Err(BackendError::Config(_))
        ));
        let mut c = cfg();
        c.restore_maintenance_work_mem = "1GB -c fsync=off".into();
        assert!(matches!(
            PostgresBackend::new(c),
            Err(BackendError::Config(_))
        ));
        let e = PostgresBackend::from_json(serde_json::json!({"url": "x", "bogus": 1}))
            .expect_err("unknown key");
        assert!(matches!(e, BackendError::Config(m) if m.contains("bogus")));
    }

    #[test]
    fn debug_hides_password() {
        let mut c = cfg();
        c.url = "postgresql://u:hunter2@127.0.0.1/postgres".into();
        let b = PostgresBackend::new(c).expect("backend");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
