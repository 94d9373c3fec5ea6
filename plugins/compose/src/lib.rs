//! splice-dr backend for a validator deployed with the Splice docker-compose bundle.
//!
//! Everything goes through the Docker engine API (bollard), never the docker CLI:
//! containers are found by their compose labels, dumps stream out of `pg_dump` and back
//! into `pg_restore`/`psql` inside the postgres container, and the Postgres volume is
//! copied aside before the runbook's wipe so a failed restore puts the old data back.
//! Only restarts with new start flags run the bundle's own `start.sh`/`stop.sh`.

pub mod bundle;
pub mod components;
pub mod config;
pub mod database;
pub mod engine;
pub mod exec;
pub mod grpc_health;
pub mod probe;
pub mod staging;
pub mod storage;

use std::path::Path;
use std::time::Duration;

use splice_dr_pg_toolkit::names::{derived_name, ensure_kept_of, new_suffix};
use splice_dr_pg_toolkit::sql::database_exists;
use splice_dr_plugin_api::{
    BackendError, BackendInfo, Capabilities, ComponentStatus, DatabaseCapabilities, DatabaseInfo,
    DatabaseStorage, Databases, DumpCheck, DumpInfo, ExecOutput, KeptStorage, Leftovers, OpContext,
    RestoreShape, StagedCheck, StagedDb, StagedQuery, Storage, StorageCapabilities, StorageTarget,
    WorkloadCapabilities, Workloads,
};

pub use config::{BundleConfig, ComposeConfig, ReadinessConfig};
use engine::{env_value, volume_at, Engine};

/// Where the postgres service keeps its data.
pub const PGDATA: &str = "/var/lib/postgresql/data";
/// Where the validator reads the migration dump.
pub const DUMP_MOUNT: &str = "/domain-upgrade-dump";
/// Owner of files on the dump volume (newer bundles chown it to 1001).
pub const DUMP_OWNER: (u64, u64) = (1001, 1001);
/// File name of the migration dump on the dump volume.
pub const DUMP_FILE: &str = "domain_migration_dump.json";

/// One compose-deployed node, reached through the Docker engine.
pub struct ComposeBackend {
    cfg: ComposeConfig,
    engine: Engine,
    migration_id: u64,
}

impl std::fmt::Debug for ComposeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposeBackend")
            .field("project", &self.cfg.project)
            .field("migration_id", &self.migration_id)
            .finish()
    }
}

impl ComposeBackend {
    /// Checks the settings and connects to the engine, so a wrong address or missing
    /// engine is reported when the config loads, not mid-restore.
    pub fn new(cfg: ComposeConfig, migration_id: u64) -> Result<Self, BackendError> {
        if cfg.project.is_empty() {
            return Err(BackendError::Config("`project` must not be empty".into()));
        }
        splice_dr_pg_toolkit::dump::check_compress(cfg.compress)?;
        cfg.readiness.check().map_err(BackendError::Config)?;
        if let Some(f) = &cfg.password_file {
            std::fs::metadata(f).map_err(|e| {
                BackendError::Config(format!(
                    "`password_file` {} cannot be read: {e}",
                    f.display()
                ))
            })?;
        }
        let engine = Engine::connect(cfg.docker_host.as_deref(), &cfg.project)?;
        Ok(ComposeBackend {
            cfg,
            engine,
            migration_id,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &ComposeConfig {
        &self.cfg
    }

    /// The physical database of a role: `validator` and `participant-<migration id>`.
    pub fn db_for_role(&self, role: &str) -> Result<String, BackendError> {
        match role {
            "validator" => Ok(self.cfg.validator_db.clone()),
            "participant" => Ok(self.cfg.participant_db(self.migration_id)),
            other => Err(BackendError::NotFound(format!(
                "database role `{other}` (known: validator, participant)"
            ))),
        }
    }

    /// The Docker volume behind a storage target (`postgres` or `dump`, or a volume name
    /// given in full) and the image helper containers run from. A storage step on a node
    /// whose postgres container is gone creates it from the bundle first.
    fn volume(&self, ctx: &OpContext, target: &str) -> Result<(String, String), BackendError> {
        self.volume_of(ctx, target, true)
    }

    /// [`Self::volume`]; `create` = false only looks (status and leftovers never create a
    /// container).
    fn volume_of(
        &self,
        ctx: &OpContext,
        target: &str,
        create: bool,
    ) -> Result<(String, String), BackendError> {
        let (service, mount, configured) = match target {
            "postgres" => (
                &self.cfg.services.postgres,
                PGDATA,
                &self.cfg.volumes.postgres,
            ),
            "dump" => (
                &self.cfg.services.validator,
                DUMP_MOUNT,
                &self.cfg.volumes.dump,
            ),
            other => {
                return Err(BackendError::NotFound(format!(
                    "storage target `{other}`: the compose backend knows `postgres` (the \
                     database volume) and `dump` (the migration-dump volume)"
                )))
            }
        };
        let pg = if create {
            self.postgres_container(ctx)?
        } else {
            self.engine.block(
                ctx,
                "inspecting postgres",
                self.engine.inspect(&self.cfg.services.postgres),
            )?
        };
        let image = pg
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .ok_or_else(|| BackendError::Plugin("the postgres container has no image".into()))?;
        let volume = match configured {
            Some(v) => v.clone(),
            None => {
                let c = self.engine.block(
                    ctx,
                    "inspecting containers",
                    self.engine.inspect(service),
                )?;
                volume_at(&c, mount).ok_or_else(|| {
                    BackendError::NotFound(format!(
                        "the {service} container mounts no volume at {mount}; name it in \
                         [node.compose.volumes]"
                    ))
                })?
            }
        };
        self.engine.block(
            ctx,
            "checking the volume",
            storage::ensure_exists(&self.engine, &volume),
        )?;
        Ok((volume, image))
    }

    /// The postgres container, created from the bundle (never started here) when the node
    /// has none: after `stop.sh`, or on a new host, the volumes are all that is left, and
    /// every storage step needs the container's image and mounts. Without a bundle the
    /// missing container is an error saying how to get one.
    pub(crate) fn postgres_container(
        &self,
        ctx: &OpContext,
    ) -> Result<bollard::models::ContainerInspectResponse, BackendError> {
        let service = &self.cfg.services.postgres;
        match self
            .engine
            .block(ctx, "inspecting postgres", self.engine.inspect(service))
        {
            Err(BackendError::NotFound(why)) => {
                let Some(b) = self.cfg.bundle.as_ref() else {
                    return Err(BackendError::NotFound(format!(
                        "{why}. Without the postgres container splice-dr needs the bundle to \
                         create it: set [node.compose.bundle] dir (the Splice release's \
                         docker-compose directory)"
                    )));
                };
                bundle::create_service(ctx, b, &self.cfg.project, service, self.migration_id)?;
                self.engine
                    .block(ctx, "inspecting postgres", self.engine.inspect(service))
            }
            other => other,
        }
    }

    /// The volumes whose kept copies belong to this node.
    fn own_volumes(&self, ctx: &OpContext) -> Vec<String> {
        ["postgres", "dump"]
            .iter()
            .filter_map(|t| self.volume_of(ctx, t, false).ok().map(|(v, _)| v))
            .collect()
    }

    /// Whether `from`'s data can move into `to` by one rename: both are plain local
    /// volumes under the same engine root. Returns that root.
    fn rename_root(&self, from: &str, to: &str) -> Result<Option<String>, BackendError> {
        let layouts = self
            .engine
            .block_uncancellable("inspecting volumes", async {
                Ok((
                    storage::local_layout(&self.engine, from).await?,
                    storage::local_layout(&self.engine, to).await?,
                ))
            })?;
        Ok(match layouts {
            (Some((a, _)), Some((b, _))) if a == b => Some(a),
            _ => None,
        })
    }

    /// Replaces `to`'s data directory by `from`'s with one rename (see
    /// [`storage::move_data`]); `from` is left with an empty one.
    fn move_data(
        &self,
        image: &str,
        root: &str,
        from: &str,
        to: &str,
    ) -> Result<u64, BackendError> {
        self.engine.block_uncancellable(
            "moving volume data",
            storage::move_data(&self.engine, image, root, from, to),
        )
    }

    fn copy_volume(&self, image: &str, from: &str, to: &str) -> Result<u64, BackendError> {
        let script = "cp -a /from/. /to/ && du -sb /to | cut -f1";
        let out = self.engine.block_uncancellable(
            "copying a volume",
            storage::run_helper(
                &self.engine,
                image,
                vec![format!("{from}:/from:ro"), format!("{to}:/to")],
                script,
            ),
        )?;
        Ok(out.trim().parse().unwrap_or_default())
    }

    fn wipe_volume(&self, image: &str, volume: &str) -> Result<(), BackendError> {
        self.engine
            .block_uncancellable(
                "wiping a volume",
                storage::run_helper(
                    &self.engine,
                    image,
                    vec![format!("{volume}:/v")],
                    "find /v -mindepth 1 -maxdepth 1 -exec rm -rf {} +",
                ),
            )
            .map(|_| ())
    }
}

impl BackendInfo for ComposeBackend {
    fn kind(&self) -> String {
        "compose".into()
    }

    /// The runbook's compose shape: restores go through the Postgres volume (kept aside,
    /// wiped, refilled), which also recovers a Postgres that no longer starts; the
    /// validator reads its migration dump from the `dump` volume, as uid 1001.
    fn capabilities(&self) -> Capabilities {
        let owner = u32::try_from(DUMP_OWNER.0).ok();
        Capabilities {
            databases: DatabaseCapabilities {
                restore: RestoreShape::Volume,
                physical: false,
                physical_unavailable: Some(splice_dr_plugin_api::physical_not_built("compose")),
                wal_streaming: false,
                physical_drill: false,
                physical_drill_unavailable: Some(splice_dr_plugin_api::physical_drill_not_built(
                    "compose",
                )),
            },
            storage: StorageCapabilities {
                database_storage: Some(DatabaseStorage {
                    target: "postgres".into(),
                    stop_first: ["validator", "participant", "postgres"]
                        .map(Into::into)
                        .into(),
                }),
                file_targets: vec!["dump".into()],
                file_owner_uid: owner,
            },
            workloads: WorkloadCapabilities {
                exec: true,
                values_persist: false,
                redeploy_unavailable: None,
            },
        }
    }

    /// Kept copies are Docker volumes.
    fn kept_removal_command(&self, kept: &str) -> Option<String> {
        splice_dr_pg_toolkit::names::shell_quotable(kept)
            .then(|| format!("docker volume rm '{kept}'"))
    }
}

impl Workloads for ComposeBackend {
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

    fn exec(
        &self,
        ctx: &OpContext,
        component: &str,
        argv: &[String],
        stdin: Option<&Path>,
    ) -> Result<ExecOutput, BackendError> {
        let service = self.service_of(component)?;
        let c = self
            .engine
            .block(ctx, "inspecting", self.engine.inspect(&service))?;
        let id = engine::id_of(&c, &service)?;
        let out = exec::run(
            &self.engine,
            ctx,
            &id,
            None,
            argv,
            &[],
            exec::Streams {
                stdin,
                stdout: None,
                progress: None,
            },
        )?;
        Ok(out.into())
    }

    fn set_values(&self, ctx: &OpContext, values: &serde_json::Value) -> Result<(), BackendError> {
        let values: bundle::StartValues = serde_json::from_value(values.clone()).map_err(|e| {
            BackendError::Config(format!(
                "set_values: {e} (known keys: migration_id, migrating, identities_dump, participant_id, wait)"
            ))
        })?;
        let b = self.cfg.bundle.as_ref().ok_or_else(|| {
            BackendError::Config(
                "restarting with new start flags needs [node.compose.bundle] (dir, sponsor_sv, party_hint)"
                    .into(),
            )
        })?;
        let migration_id = values.migration_id.unwrap_or(self.migration_id);
        let args = bundle::start_args(b, &values, self.migration_id)?;
        bundle::restart(ctx, b, &self.cfg.project, &args, migration_id)
    }
}

/// A compose restore is volume-level (the databases are refilled after [`Storage::wipe`]),
/// so nothing is swapped in: the staged operations serve drills only.
impl Databases for ComposeBackend {
    fn databases(&self, ctx: &OpContext) -> Result<Vec<DatabaseInfo>, BackendError> {
        let mut admin = self.conn(ctx)?.connect_admin()?;
        let mut out = Vec::new();
        for role in splice_dr_plugin_api::DB_ROLES {
            let name = self.db_for_role(role)?;
            let exists = database_exists(&mut admin, &name)?;
            out.push(DatabaseInfo {
                role: role.into(),
                name,
                exists,
            });
        }
        Ok(out)
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
        let lives = self.own_volumes(ctx);
        let kept = self.engine.block(
            ctx,
            "listing kept volumes",
            storage::kept_copies(&self.engine, &lives),
        )?;
        Ok(Leftovers {
            staged: self.staged_leftovers(ctx)?,
            kept,
        })
    }

    fn restore_into_empty(
        &self,
        ctx: &OpContext,
        role: &str,
        src: &Path,
        expected: &DumpInfo,
    ) -> Result<(), BackendError> {
        self.restore_into_empty_impl(ctx, role, src, expected)
    }
}

impl Storage for ComposeBackend {
    fn put_file(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
        src: &Path,
    ) -> Result<(), BackendError> {
        let (volume, image) = self.volume(ctx, &target.name)?;
        let dest = target
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| DUMP_FILE.into());
        let bytes = self.engine.block(
            ctx,
            "copying a file into a volume",
            storage::put_file(&self.engine, &image, &volume, src, &dest, DUMP_OWNER, 0o644),
        )?;
        ctx.info(format!(
            "placed {} as {dest} on volume {volume} ({bytes} bytes, owner {}:{})",
            src.display(),
            DUMP_OWNER.0,
            DUMP_OWNER.1
        ));
        Ok(())
    }

    fn wipe(&self, ctx: &OpContext, target: &StorageTarget) -> Result<(), BackendError> {
        let (volume, image) = self.volume(ctx, &target.name)?;
        self.engine.block(
            ctx,
            "checking volume users",
            storage::ensure_unused(&self.engine, &volume),
        )?;
        self.wipe_volume(&image, &volume)?;
        ctx.info(format!("wiped volume {volume}"));
        Ok(())
    }

    fn keep_storage(
        &self,
        ctx: &OpContext,
        target: &StorageTarget,
    ) -> Result<KeptStorage, BackendError> {
        let (live, image) = self.volume(ctx, &target.name)?;
        self.engine.block(
            ctx,
            "checking volume users",
            storage::ensure_unused(&self.engine, &live),
        )?;
        let kept = derived_name(&live, storage::KEPT_MARKER, &new_suffix());
        self.engine.block(
            ctx,
            "creating the kept volume",
            storage::create_kept(&self.engine, &live, &kept),
        )?;
        let bytes = match self.rename_root(&live, &kept)? {
            // One rename: the data is never split between the volumes, so on an error it
            // is wholly in one of them and nothing may be deleted.
            Some(root) => {
                let bytes = self.move_data(&image, &root, &live, &kept)?;
                ctx.info(format!(
                    "moved the data of {live} into {kept} with one rename ({bytes} bytes)"
                ));
                bytes
            }
            None => {
                ctx.info(format!("copying volume {live} to {kept}"));
                match self.copy_volume(&image, &live, &kept) {
                    Ok(b) => b,
                    Err(e) => {
                        // A failed copy leaves the live volume as it was: the half copy goes.
                        let _ = self.engine.block_uncancellable(
                            "removing a half copy",
                            storage::remove_kept(&self.engine, &kept),
                        );
                        return Err(e);
                    }
                }
            }
        };
        ctx.info(format!(
            "kept the previous data of {live} as {kept} ({bytes} bytes)"
        ));
        Ok(KeptStorage {
            target: target.name.clone(),
            live,
            kept,
            bytes,
        })
    }

    fn restore_kept_storage(
        &self,
        ctx: &OpContext,
        kept: &KeptStorage,
    ) -> Result<(), BackendError> {
        ensure_kept_of(&kept.kept, &kept.live, "restore from")?;
        let (live, image) = self.volume(ctx, &kept.target)?;
        if live != kept.live {
            return Err(BackendError::Config(format!(
                "kept copy {} was taken from {}, but the {} volume is now {live}",
                kept.kept, kept.live, kept.target
            )));
        }
        self.engine.block_uncancellable(
            "checking volume users",
            storage::ensure_unused(&self.engine, &live),
        )?;
        // The live volume holds the failed restore's data: it goes, the kept data returns
        // (the rename replaces it; a copy needs it emptied first).
        let (bytes, how) = match self.rename_root(&kept.kept, &live)? {
            Some(root) => (
                self.move_data(&image, &root, &kept.kept, &live)?,
                "moved back",
            ),
            None => {
                self.wipe_volume(&image, &live)?;
                (self.copy_volume(&image, &kept.kept, &live)?, "copied")
            }
        };
        ctx.info(format!(
            "put {live} back from {} ({bytes} bytes, {how})",
            kept.kept
        ));
        Ok(())
    }

    fn drop_kept_storage(&self, ctx: &OpContext, kept: &KeptStorage) -> Result<(), BackendError> {
        ensure_kept_of(&kept.kept, &kept.live, "delete")?;
        self.engine.block(
            ctx,
            "removing the kept volume",
            storage::remove_kept(&self.engine, &kept.kept),
        )?;
        ctx.info(format!("deleted the kept copy {}", kept.kept));
        Ok(())
    }
}

/// Whether the postgres container was created with the node's migration id: compose bakes
/// `CREATE_DATABASE_participant` in at creation, so a container made while `MIGRATION_ID`
/// was unset re-initialises a database literally named `participant-`.
pub fn participant_env_matches(
    c: &bollard::models::ContainerInspectResponse,
    expected: &str,
) -> bool {
    env_value(c, "CREATE_DATABASE_participant").is_none_or(|v| v == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name checks run before any engine call: no Docker engine is needed to prove
    /// that a record naming a live volume is refused.
    #[test]
    fn kept_storage_calls_refuse_names_without_the_kept_marker() {
        let backend = ComposeBackend::new(ComposeConfig::with_project("sdr-unit"), 0).unwrap();
        let ctx = OpContext::with_deadline(Duration::from_secs(5));
        let live = "sdr-unit_postgres-splice";
        for wrong in [
            live.to_string(),
            "other_postgres-splice".to_string(),
            format!("other{}abcd1234", storage::KEPT_MARKER),
            format!("{live}__sdr_staging_abcd1234"),
        ] {
            let kept = KeptStorage {
                target: "postgres".into(),
                live: live.into(),
                kept: wrong.clone(),
                bytes: 0,
            };
            for err in [
                backend.drop_kept_storage(&ctx, &kept).unwrap_err(),
                backend.restore_kept_storage(&ctx, &kept).unwrap_err(),
            ] {
                let e = err.to_string();
                assert!(e.contains("refusing") && e.contains(&wrong), "{e}");
            }
        }
    }
}
