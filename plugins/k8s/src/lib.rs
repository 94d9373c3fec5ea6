//! splice-dr backend for a validator deployed with the Splice helm charts on Kubernetes.
//!
//! Everything goes through the Kubernetes API (kube-rs), never kubectl: components are
//! the charts' Deployments and StatefulSet, scaled through the `scale` subresource; dumps
//! stream out of `pg_dump` and back into `pg_restore` inside `postgres-0` over the exec
//! websocket; files reach the validator's PVC as a tar stream (what `kubectl cp` does);
//! the re-onboard identities go into the `participant-bootstrap-dump` Secret; redeploys
//! are `helm upgrade --reuse-values` with a values overlay that is also journaled.
//!
//! Restores are database level: the dump is restored into a staging database next to the
//! live one, verified, and swapped in by renames that keep the previous database (the
//! bare-Postgres backend's SQL, reached over the `postgres` Service), so Postgres keeps
//! running and nothing is destroyed before the new data is proven.

pub mod cluster;
pub mod config;
pub mod database;
pub mod exec;
pub mod files;
pub mod storage;
pub mod values;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

use splice_dr_plugin_api::{
    BackendError, BackendInfo, Capabilities, ComponentStatus, DatabaseCapabilities, DatabaseInfo,
    DatabaseStorage, Databases, DumpCheck, DumpInfo, ExecOutput, KeptDb, KeptStorage, Leftovers,
    OpContext, RestoreShape, StagedDb, Storage, StorageCapabilities, StorageTarget,
    WorkloadCapabilities, Workloads,
};
use splice_dr_postgres::{ConnSettings, PostgresBackend, PostgresConfig};

pub use cluster::Cluster;
pub use config::K8sConfig;
use exec::{Input, Streams};
use workloads::Workload;

/// Where the validator app mounts its migration PVC.
pub const DUMP_MOUNT: &str = "/domain-upgrade-dump";
/// File name of the migration dump on that PVC.
pub const DUMP_FILE: &str = "domain_migration_dump.json";
/// Overlay directory when none is configured and the daemon gave none.
pub const DEFAULT_OVERLAY_DIR: &str = "/var/lib/splice-dr/k8s-overlays";

/// One helm-deployed node, reached through the Kubernetes API.
pub struct K8sBackend {
    cfg: K8sConfig,
    cluster: Cluster,
    conn: ConnSettings,
    /// The bare-Postgres backend on the same server, for the SQL-only steps (swap, roll
    /// back, drop, leftovers, database list).
    sql: PostgresBackend,
    migration_id: u64,
}

impl std::fmt::Debug for K8sBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sBackend")
            .field("namespace", &self.cfg.namespace)
            .field("migration_id", &self.migration_id)
            .finish()
    }
}

impl K8sBackend {
    /// Checks the settings and builds the client (in-cluster settings or the kubeconfig
    /// must be usable), so a daemon outside a cluster with no kubeconfig is told so when
    /// the config loads, not mid-restore. Nothing is contacted yet.
    pub fn new(cfg: K8sConfig, migration_id: u64) -> Result<Self, BackendError> {
        if cfg.namespace.trim().is_empty() {
            return Err(BackendError::Config("`namespace` must not be empty".into()));
        }
        splice_dr_pg_toolkit::dump::check_compress(cfg.compress)?;
        if let Some(k) = &cfg.kubeconfig {
            std::fs::metadata(k).map_err(|e| {
                BackendError::Config(format!("`kubeconfig` {} cannot be read: {e}", k.display()))
            })?;
        }
        let participant_db = cfg.participant_db(migration_id);
        let pg_cfg: PostgresConfig = serde_json::from_value(serde_json::json!({
            "url": cfg.sql_url(),
            "password_file": cfg.password_file,
            "validator_db": cfg.validator_db,
            "participant_db": participant_db,
        }))
        .map_err(|e| BackendError::Config(format!("database settings: {e}")))?;
        let sql = PostgresBackend::new(pg_cfg)
            .map_err(|e| BackendError::Config(format!("[node.k8s] database settings: {e}")))?;
        let conn = ConnSettings::new(&cfg.sql_url(), cfg.password_file.as_deref())?;
        let cluster = Cluster::connect(
            cfg.kubeconfig.as_deref(),
            cfg.context.as_deref(),
            &cfg.namespace,
        )?;
        Ok(K8sBackend {
            cfg,
            cluster,
            conn,
            sql,
            migration_id,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &K8sConfig {
        &self.cfg
    }

    /// The physical database of a role: `cantonnet_validator`, `participant_<id>`.
    pub fn db_for_role(&self, role: &str) -> Result<String, BackendError> {
        self.sql.db_for_role(role).map(str::to_string)
    }

    fn overlay_dir(&self) -> PathBuf {
        self.cfg
            .overlay_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OVERLAY_DIR))
    }

    fn workload(&self, component: &str) -> Result<Workload, BackendError> {
        workloads::find(&self.cfg.workloads, component)
    }

    /// The pod and container a component's commands run in.
    fn exec_target(
        &self,
        ctx: &OpContext,
        w: &Workload,
    ) -> Result<(String, Option<String>), BackendError> {
        if w.role == "postgres" {
            return Ok((
                self.cfg.postgres_pod.clone(),
                Some(self.cfg.postgres_container.clone()),
            ));
        }
        let pod =
            self.cluster
                .block(ctx, "finding a pod", workloads::ready_pod(&self.cluster, w))?;
        let container = (w.role == "validator")
            .then(|| self.cfg.validator_container.clone())
            .flatten();
        Ok((pod, container))
    }

    /// Copies `src` into the validator app's migration PVC through its pod.
    fn put_into_dump_volume(
        &self,
        ctx: &OpContext,
        dest: &Path,
        src: &Path,
    ) -> Result<(), BackendError> {
        let (dir, name) = files::split_dest(dest, DUMP_MOUNT)?;
        let w = self.workload("validator")?;
        let (pod, container) = self.exec_target(ctx, &w)?;
        let argv = files::untar_argv(&dir);
        let pods = self.cluster.api();
        let out = self
            .cluster
            .block(ctx, "copying a file into a pod", async {
                let (input, _) = files::tar_stream(src, &name).await?;
                exec::run(
                    &pods,
                    ctx,
                    &pod,
                    container.as_deref(),
                    &argv,
                    Streams {
                        input,
                        stdout: None,
                        progress: None,
                    },
                )
                .await
            })?;
        let shown = format!(
            "kubectl cp {} {}/{pod}:{dir}/{name}",
            src.display(),
            self.cfg.namespace
        );
        let out = out.check(&shown)?;
        ctx.info(format!(
            "placed {} as {dir}/{name} in pod {pod} ({} bytes streamed as tar)",
            src.display(),
            out.bytes_in
        ));
        Ok(())
    }

    fn put_secret(&self, ctx: &OpContext, name: &str, src: &Path) -> Result<(), BackendError> {
        let secrets = self.cluster.api();
        let existed = self.cluster.block(
            ctx,
            "writing a Secret",
            files::put_secret(&secrets, name, src),
        )?;
        ctx.info(format!(
            "{} Secret {name} (key `{}`) from {}",
            if existed { "replaced" } else { "created" },
            files::SECRET_KEY,
            src.display()
        ));
        Ok(())
    }

    /// Scales both apps to 1 (after a redeploy: helm's three-way merge leaves a replica
    /// count a flow set to 0 alone when the chart's own value did not change).
    fn start_apps(&self, ctx: &OpContext, wait: bool) -> Result<(), BackendError> {
        let apps = ["participant", "validator"];
        for c in apps {
            self.scale(ctx, c, 1)?;
        }
        if wait {
            for c in apps {
                self.wait_ready(ctx, c, Duration::from_secs(self.cfg.scale_timeout))?;
            }
        }
        Ok(())
    }

    /// A restart with the values in force: the apps scale to 0 and back to 1.
    fn restart_apps(&self, ctx: &OpContext, wait: bool) -> Result<(), BackendError> {
        for c in ["participant", "validator"] {
            self.scale(ctx, c, 0)?;
        }
        self.start_apps(ctx, wait)
    }
}

impl BackendInfo for K8sBackend {
    fn kind(&self) -> String {
        "k8s".into()
    }

    /// The runbook's helm shape: Postgres keeps running and the databases are restored
    /// next to the live ones; a fresh node gets empty databases (the old ones renamed
    /// aside) once the apps are stopped; files go onto the validator's migration PVC.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            databases: DatabaseCapabilities {
                restore: RestoreShape::Staged,
                physical: false,
                physical_unavailable: Some(splice_dr_plugin_api::physical_not_built("k8s")),
                wal_streaming: false,
                physical_drill: false,
                physical_drill_unavailable: Some(splice_dr_plugin_api::physical_drill_not_built(
                    "k8s",
                )),
            },
            storage: StorageCapabilities {
                database_storage: Some(DatabaseStorage {
                    target: "postgres".into(),
                    stop_first: ["validator", "participant"].map(Into::into).into(),
                }),
                file_targets: vec!["dump".into()],
                file_owner_uid: None,
            },
            workloads: WorkloadCapabilities {
                exec: true,
                values_persist: true,
                redeploy_unavailable: self.cfg.missing_chart(),
            },
        }
    }
}

impl Workloads for K8sBackend {
    fn components(&self, ctx: &OpContext) -> Result<Vec<ComponentStatus>, BackendError> {
        let all = workloads::all(&self.cfg.workloads);
        self.cluster.block(ctx, "reading workloads", async {
            let mut out = Vec::new();
            for w in &all {
                let install = values::install_command(&self.cfg, w.role);
                out.push(workloads::status(&self.cluster, w, &install).await);
            }
            Ok(out)
        })
    }

    fn scale(&self, ctx: &OpContext, component: &str, replicas: u32) -> Result<(), BackendError> {
        let w = self.workload(component)?;
        let timeout = Duration::from_secs(self.cfg.scale_timeout);
        self.cluster
            .block(ctx, &format!("scaling {}", w.shown()), async {
                workloads::set_replicas(&self.cluster, &w, replicas).await?;
                if replicas == 0 {
                    workloads::wait_gone(&self.cluster, &w, timeout).await?;
                }
                Ok(())
            })?;
        ctx.info(format!("scaled {} to {replicas}", w.shown()));
        Ok(())
    }

    fn wait_ready(
        &self,
        ctx: &OpContext,
        component: &str,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let w = self.workload(component)?;
        self.cluster.block(
            ctx,
            &format!("waiting for {}", w.shown()),
            workloads::wait_ready(&self.cluster, &w, timeout),
        )
    }

    fn exec(
        &self,
        ctx: &OpContext,
        component: &str,
        argv: &[String],
        stdin: Option<&Path>,
    ) -> Result<ExecOutput, BackendError> {
        if argv.is_empty() {
            return Err(BackendError::Config("exec: the command is empty".into()));
        }
        let w = self.workload(component)?;
        let (pod, container) = self.exec_target(ctx, &w)?;
        let pods = self.cluster.api();
        let input = stdin.map_or(Input::None, |p| Input::File(p.to_path_buf()));
        let out = self.cluster.block(
            ctx,
            &format!("exec in pod {pod}"),
            exec::run(
                &pods,
                ctx,
                &pod,
                container.as_deref(),
                argv,
                Streams {
                    input,
                    stdout: None,
                    progress: None,
                },
            ),
        )?;
        Ok(out.into())
    }

    fn set_values(&self, ctx: &OpContext, values: &serde_json::Value) -> Result<(), BackendError> {
        let v: values::FlowValues = serde_json::from_value(values.clone()).map_err(|e| {
            BackendError::Config(format!(
                "set_values: {e} (known keys: migration_id, migrating, identities_dump, \
                 participant_id, migration_dump, wait)"
            ))
        })?;
        if let Some(dump) = &v.migration_dump {
            self.put_into_dump_volume(ctx, Path::new(DUMP_FILE), dump)?;
        }
        if let Some(ids) = &v.identities_dump {
            if v.participant_id.is_none() {
                return Err(BackendError::Config(
                    "set_values: an identities dump needs the new participant_id".into(),
                ));
            }
            let secret = self.cfg.bootstrap_secret.clone();
            self.put_secret(ctx, &secret, ids)?;
        }
        let overlays = values::overlays(&self.cfg, &v, self.migration_id);
        let wait = v.wait.unwrap_or(false);
        if overlays.is_empty() {
            ctx.info("no helm values change: restarting validator and participant");
            return self.restart_apps(ctx, wait);
        }
        let dir = self.overlay_dir();
        // Every release's upgrade is prepared before the first runs: a release that cannot
        // be upgraded (no chart) never leaves the other one upgraded alone.
        let mut upgrades = Vec::new();
        for o in &overlays {
            let path = values::write_overlay(&dir, o)?;
            ctx.info(format!(
                "values overlay for release {} written to {}: {}",
                o.release.name,
                path.display(),
                o.values
            ));
            upgrades.push((values::helm_args(&self.cfg, o, &path, wait)?, path));
        }
        for (args, path) in &upgrades {
            values::run_helm(ctx, &self.cfg.helm, args, path)?;
        }
        self.start_apps(ctx, wait)
    }
}

/// Restores are staged next to the live databases in `postgres-0` and swapped in by the
/// bare-Postgres backend's SQL; nothing is restored into emptied storage.
impl Databases for K8sBackend {
    fn databases(&self, ctx: &OpContext) -> Result<Vec<DatabaseInfo>, BackendError> {
        self.sql.databases(ctx)
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
        self.sql.swap_in(ctx, staged)
    }

    fn roll_back(&self, ctx: &OpContext, kept: &[KeptDb]) -> Result<(), BackendError> {
        self.sql.roll_back(ctx, kept)
    }

    fn drop_kept(&self, ctx: &OpContext, kept: &[KeptDb]) -> Result<(), BackendError> {
        self.sql.drop_kept(ctx, kept)
    }

    fn drop_staged(&self, ctx: &OpContext, staged: &[StagedDb]) -> Result<(), BackendError> {
        self.sql.drop_staged(ctx, staged)
    }

    fn leftovers(&self, ctx: &OpContext) -> Result<Leftovers, BackendError> {
        self.sql.leftovers(ctx)
    }
}

impl Storage for K8sBackend {
    /// Targets: `dump` (the validator app's migration PVC, through its pod; default file
    /// `domain_migration_dump.json`) and `secret:NAME` (a Secret with the file under key
    /// `content`, created or replaced).
    fn put_file(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
        src: &Path,
    ) -> Result<(), BackendError> {
        if let Some(secret) = files::secret_target(&target.name) {
            return self.put_secret(ctx, secret, src);
        }
        match target.name.as_str() {
            "dump" => {
                let dest = files::dump_dest(target.path.as_ref(), DUMP_FILE);
                self.put_into_dump_volume(ctx, &dest, src)
            }
            other => Err(BackendError::NotFound(format!(
                "storage target `{other}`: the k8s backend knows `dump` (the validator's \
                 migration PVC at {DUMP_MOUNT}) and `secret:NAME` (a Secret, key `content`)"
            ))),
        }
    }

    /// Target `postgres`: the node's databases are renamed aside (see [`storage`]).
    fn keep_storage(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
    ) -> Result<KeptStorage, BackendError> {
        self.keep_storage_impl(ctx, target)
    }

    /// Target `postgres`: empty live databases (refused while one holds tables).
    fn wipe(&self, ctx: &OpContext, target: &StorageTarget) -> Result<(), BackendError> {
        self.wipe_impl(ctx, target)
    }

    fn restore_kept_storage(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        self.restore_kept_storage_impl(ctx, kept)
    }

    fn drop_kept_storage(&self, ctx: &OpContext, kept: &KeptStorage) -> Result<(), BackendError> {
        self.drop_kept_storage_impl(ctx, kept)
    }
}
