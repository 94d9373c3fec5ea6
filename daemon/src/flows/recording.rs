//! The backend used by `--dry-run`: reads pass through to the real backend, every call
//! that would change the world is written to the plan instead and answered with a
//! plausible value, so the flow runs to the end and the operator sees each step.

use splice_dr_plugin_api::backend::BackendResult;
use splice_dr_plugin_api::{
    Backend, ComponentStatus, DatabaseInfo, DumpCheck, DumpInfo, ExecOutput, KeptDb, KeptStorage,
    Leftovers, OpContext, StagedCheck, StagedDb, StagedQuery, StorageTarget,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::RunContext;

/// A [`Backend`] that changes nothing.
pub struct RecordingBackend {
    inner: Arc<dyn Backend>,
    run: Arc<RunContext>,
}

impl RecordingBackend {
    /// Records into `run`'s plan, reading through `inner`.
    pub fn new(inner: Arc<dyn Backend>, run: Arc<RunContext>) -> Self {
        RecordingBackend { inner, run }
    }

    fn live_name(&self, ctx: &OpContext, role: &str) -> String {
        self.inner
            .databases(ctx)
            .ok()
            .and_then(|dbs| dbs.into_iter().find(|d| d.role == role))
            .map(|d| d.name)
            .unwrap_or_else(|| role.to_string())
    }
}

impl Backend for RecordingBackend {
    fn kind(&self) -> String {
        self.inner.kind()
    }
    fn capabilities(&self) -> splice_dr_plugin_api::Capabilities {
        self.inner.capabilities()
    }
    fn components(&self, ctx: &OpContext) -> BackendResult<Vec<ComponentStatus>> {
        self.inner.components(ctx)
    }
    fn scale(&self, _ctx: &OpContext, component: &str, replicas: u32) -> BackendResult<()> {
        self.run
            .plan(&format!("would scale {component} to {replicas}"));
        Ok(())
    }
    fn wait_ready(
        &self,
        _ctx: &OpContext,
        component: &str,
        timeout: Duration,
    ) -> BackendResult<()> {
        self.run.plan(&format!(
            "would wait up to {}s for {component} to be ready",
            timeout.as_secs()
        ));
        Ok(())
    }
    fn databases(&self, ctx: &OpContext) -> BackendResult<Vec<DatabaseInfo>> {
        self.inner.databases(ctx)
    }
    fn dump(&self, ctx: &OpContext, role: &str, dest: &Path) -> BackendResult<DumpInfo> {
        let database = self.live_name(ctx, role);
        self.run.plan(&format!(
            "would dump database {database} ({role}) to {}",
            dest.display()
        ));
        let now = chrono::Utc::now();
        Ok(DumpInfo {
            role: role.into(),
            database,
            format: "directory".into(),
            started_at: now,
            finished_at: now,
            server_version: String::new(),
            tables: Vec::new(),
        })
    }
    fn check_dump(&self, ctx: &OpContext, src: &Path) -> BackendResult<DumpCheck> {
        self.inner.check_dump(ctx, src)
    }
    fn restore_staged(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> BackendResult<StagedDb> {
        let live = self.live_name(ctx, role);
        self.run.plan(&format!(
            "would restore {} into a new database next to {live} and check {} tables' row counts",
            src.display(),
            expected.tables.len()
        ));
        Ok(StagedDb {
            role: role.into(),
            staging: format!("{live}__sdr_staging_dryrun"),
            live,
        })
    }
    fn swap_in(&self, _ctx: &OpContext, staged: &[StagedDb]) -> BackendResult<Vec<KeptDb>> {
        let names: Vec<&str> = staged.iter().map(|s| s.live.as_str()).collect();
        self.run.plan(&format!(
            "would swap the restored databases in atomically, keeping the current {}",
            names.join(" and ")
        ));
        Ok(staged
            .iter()
            .map(|s| KeptDb {
                role: s.role.clone(),
                live: s.live.clone(),
                kept: format!("{}__sdr_kept_dryrun", s.live),
                existed: true,
            })
            .collect())
    }
    fn roll_back(&self, _ctx: &OpContext, kept: &[KeptDb]) -> BackendResult<()> {
        self.run
            .plan(&format!("would put back {} kept database(s)", kept.len()));
        Ok(())
    }
    fn drop_kept(&self, _ctx: &OpContext, kept: &[KeptDb]) -> BackendResult<()> {
        let names: Vec<&str> = kept.iter().map(|k| k.kept.as_str()).collect();
        self.run.plan(&format!(
            "would drop the replaced databases {}",
            names.join(", ")
        ));
        Ok(())
    }
    fn drop_staged(&self, _ctx: &OpContext, staged: &[StagedDb]) -> BackendResult<()> {
        self.run
            .plan(&format!("would drop {} staged database(s)", staged.len()));
        Ok(())
    }
    fn leftovers(&self, ctx: &OpContext) -> BackendResult<Leftovers> {
        self.inner.leftovers(ctx)
    }
    fn kept_removal_command(&self, kept: &str) -> Option<String> {
        self.inner.kept_removal_command(kept)
    }
    fn check_staged(
        &self,
        _ctx: &OpContext,
        staged: &StagedDb,
        queries: &[StagedQuery],
    ) -> BackendResult<StagedCheck> {
        self.run.plan(&format!(
            "would check every B-tree index of {} with amcheck and run {} site queries",
            staged.staging,
            queries.len()
        ));
        Ok(StagedCheck {
            database: staged.staging.clone(),
            amcheck_note: Some("dry run: nothing checked".into()),
            ..StagedCheck::default()
        })
    }
    fn exec(
        &self,
        _ctx: &OpContext,
        component: &str,
        argv: &[String],
        _stdin: Option<&Path>,
    ) -> BackendResult<ExecOutput> {
        self.run
            .plan(&format!("would run `{}` in {component}", argv.join(" ")));
        Ok(ExecOutput {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        })
    }
    fn put_file(&self, _ctx: &OpContext, target: &StorageTarget, src: &Path) -> BackendResult<()> {
        self.run.plan(&format!(
            "would copy {} into {}",
            src.display(),
            target.name
        ));
        Ok(())
    }
    fn wipe(&self, _ctx: &OpContext, target: &StorageTarget) -> BackendResult<()> {
        self.run.plan(&format!("would wipe {}", target.name));
        Ok(())
    }
    fn set_values(&self, _ctx: &OpContext, values: &serde_json::Value) -> BackendResult<()> {
        self.run.plan(&format!("would apply values {values}"));
        Ok(())
    }
    fn keep_storage(&self, _ctx: &OpContext, target: &StorageTarget) -> BackendResult<KeptStorage> {
        self.run.plan(&format!(
            "would copy storage {} aside before wiping it",
            target.name
        ));
        Ok(KeptStorage {
            target: target.name.clone(),
            live: target.name.clone(),
            kept: format!("{}__sdr_kept_dry_run", target.name),
            bytes: 0,
        })
    }
    fn restore_kept_storage(&self, _ctx: &OpContext, kept: &KeptStorage) -> BackendResult<()> {
        self.run
            .plan(&format!("would put {} back from {}", kept.live, kept.kept));
        Ok(())
    }
    fn drop_kept_storage(&self, _ctx: &OpContext, kept: &KeptStorage) -> BackendResult<()> {
        self.run
            .plan(&format!("would delete the kept copy {}", kept.kept));
        Ok(())
    }
    fn restore_into_empty(
        &self,
        _ctx: &OpContext,
        role: &str,
        src: &Path,
        _expected: &DumpInfo,
    ) -> BackendResult<()> {
        self.run.plan(&format!(
            "would restore {} into the emptied {role} database and verify its row counts",
            src.display()
        ));
        Ok(())
    }
}
