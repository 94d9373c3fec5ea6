//! The objects a flow script sees: `node`, `pg`, `backups`, `log`, `params` and `step`.
//!
//! Scripts see objects, never files or config. Every host call that changes the world
//! runs inside a journaled step: inside the script's own `step(...)`, or else in an
//! implicit step named after the call, so the durable-steps invariant holds whatever a
//! site script does. The reference for script authors is `scripts/README.md`.

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext, Scope};
use serde::de::DeserializeOwned;
use serde::Serialize;
use splice_dr_plugin_api::{
    Backend, BackendError, KeptDb, KeptStorage, OpContext, StagedDb, StorageTarget,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::catalog::{Flow, FlowSource};
use super::engine::{hardened_engine, Limits};
use crate::run_context::RunContext;
use crate::run_context::StepKind;
use crate::validator::{ValidatorClient, ValidatorError};
use splice_dr_repo::{restore_objections, BackupWriter, Manifest, Repository, SealStamps};

pub(super) type RResult<T> = Result<T, Box<EvalAltResult>>;
pub(super) type BoxFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ValidatorError>> + Send>>;

pub(super) fn fail(msg: impl Into<String>) -> Box<EvalAltResult> {
    msg.into().into()
}

/// Facts about the node a run acts on.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Node name from config.
    pub name: String,
    /// Its configured migration id.
    pub migration_id: u64,
    /// The repository's `max_age`: older backups are not restored without `--force`.
    pub max_age: Duration,
    /// age recipients identities dumps are encrypted to.
    pub identities_recipients: Vec<String>,
    /// The daemon's state directory (user-list records live there).
    pub state_dir: std::path::PathBuf,
    /// Participant ids the config shows the node started with (compose: `-P`, else the
    /// party hint), which seed the registry of used ids.
    pub configured_participant_ids: Vec<String>,
    /// The validator's base URL as other hosts reach it (`[node.validator] public_url`, or
    /// a non-loopback `url`): recorded in every backup as the node's address.
    pub node_url: Option<String>,
    /// The site's drill sanity queries (`[[node.drill_check]]`).
    pub drill_checks: Vec<crate::config::DrillCheckConfig>,
    /// The participant database the node's apps use, where the config names it (see
    /// [`crate::config::NodeConfig::participant_db`]); a restore checks it.
    pub participant_db: Option<String>,
    /// What `backup` takes unless told otherwise (`[[node]] backup_kind`).
    pub backup_kind: splice_dr_plugin_api::BackupKind,
}

/// Everything one run's script can reach.
pub struct FlowEnv {
    /// The run (journal, steps, cancellation).
    pub run: Arc<RunContext>,
    /// The node's backend (a recording one in dry runs).
    pub backend: Arc<dyn Backend>,
    /// The backup repository.
    pub repo: Repository,
    /// The node.
    pub node: NodeFacts,
    /// Parameters given to the run.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The node's validator admin API, when configured.
    pub validator: Option<Arc<ValidatorClient>>,
    /// What the seals of this run saw of their backups' files, by backup id: the verify
    /// that follows a seal in the same run does not read those files again.
    pub sealed: Mutex<std::collections::BTreeMap<String, SealStamps>>,
}

impl FlowEnv {
    /// Runs a host operation inside a step (an implicit one named `label` when the script
    /// is not already in one). Forward operations refuse to start after a stop request;
    /// undo operations always start, and the run's undo budget covers their own need.
    pub(super) fn in_step<T>(
        self: &Arc<Self>,
        label: &str,
        kind: StepKind,
        op: impl FnOnce(&OpContext) -> Result<T, BackendError>,
    ) -> RResult<T> {
        if kind.is_forward() {
            if let Some(reason) = self.run.guard().soft_stop() {
                return Err(fail(format!("{label}: not started: {reason}")));
            }
        }
        let ctx = self.run.op_context(kind);
        let guard = self.run.guard();
        guard.begin_undo(kind);
        let result = self.journaled(label, || op(&ctx));
        if !kind.is_forward() {
            guard.end_undo();
        }
        result
    }

    /// Runs `op` in the script's open step, or in an implicit step named `label`.
    fn journaled<T>(
        &self,
        label: &str,
        op: impl FnOnce() -> Result<T, BackendError>,
    ) -> RResult<T> {
        if self.run.in_step() {
            return op().map_err(|e| fail(format!("{label}: {e}")));
        }
        let idx = self.run.begin_step(label, "").map_err(fail)?;
        let result = op().map_err(|e| format!("{label}: {e}"));
        let outcome = result
            .as_ref()
            .map(|_| "ok".to_string())
            .map_err(Clone::clone);
        self.run.end_step(idx, outcome).map_err(fail)?;
        result.map_err(fail)
    }

    /// The validator client, or an error saying how to configure it.
    fn validator(&self) -> RResult<Arc<ValidatorClient>> {
        self.validator.clone().ok_or_else(|| {
            fail(format!(
                "node `{}` has no [node.validator] table: the flow needs the validator admin API",
                self.node.name
            ))
        })
    }

    /// Runs a validator API call to completion from the script's blocking thread.
    pub(super) fn call_validator<T>(
        &self,
        f: impl FnOnce(Arc<ValidatorClient>) -> BoxFuture<T>,
    ) -> RResult<T> {
        let client = self.validator()?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| fail("internal: no async runtime for the validator API"))?;
        handle.block_on(f(client)).map_err(|e| fail(e.to_string()))
    }

    pub(super) fn manifest(&self, selector: &str) -> RResult<Manifest> {
        self.repo
            .resolve(selector, &self.node.name)
            .map_err(|e| fail(e.to_string()))
    }

    /// Resolves a backup and makes sure its files are in the local repository, downloading
    /// it from an off-site repository (in its own step, checksums checked) when they are
    /// not: what every operation reading dump files needs.
    /// The manifest of the physical backup `selector`, as [`FlowEnv::local_manifest`],
    /// with its base backup; an error for a logical backup.
    pub(super) fn local_physical(
        self: &Arc<Self>,
        selector: &str,
    ) -> RResult<(Manifest, splice_dr_repo::BaseBackupEntry)> {
        let m = self.local_manifest(selector)?;
        let base = m
            .base_backup
            .clone()
            .ok_or_else(|| fail(format!("backup {} is not a physical backup", m.id)))?;
        Ok((m, base))
    }

    pub(super) fn local_manifest(self: &Arc<Self>, selector: &str) -> RResult<Manifest> {
        let m = self.manifest(selector)?;
        if self.repo.manifest(&m.id).is_ok() || self.run.dry_run() {
            return Ok(m);
        }
        let (from, _) = self
            .repo
            .offsite()
            .find(&m.id)
            .map_err(|e| fail(e.to_string()))?;
        let repo = self.repo.clone();
        let total = m.total_bytes();
        let label = format!(
            "download backup {} from off-site repository {} ({})",
            m.id,
            from.name(),
            from.location()
        );
        self.in_step(&label, StepKind::Forward, |ctx| {
            let mut done = 0u64;
            from.download(&repo, &m.id, &mut |n| {
                done += n;
                ctx.progress("download", done, Some(total), "bytes");
            })
            .map_err(|e| BackendError::Verification(e.to_string()))
        })
    }
}

pub(super) fn to_dyn<T: Serialize>(v: &T) -> RResult<Dynamic> {
    rhai::serde::to_dynamic(v)
}

pub(super) fn from_dyn<T: DeserializeOwned>(what: &str, v: &Dynamic) -> RResult<T> {
    rhai::serde::from_dynamic(v).map_err(|e| fail(format!("{what}: unexpected value: {e}")))
}

/// The script's `node` object.
#[derive(Clone)]
pub(super) struct NodeApi(pub(super) Arc<FlowEnv>);
/// The script's `pg` object.
#[derive(Clone)]
pub(super) struct PgApi(pub(super) Arc<FlowEnv>);
/// The script's `backups` object.
#[derive(Clone)]
pub(super) struct BackupsApi(pub(super) Arc<FlowEnv>);
/// The script's `log` object.
#[derive(Clone)]
struct LogApi(Arc<FlowEnv>);
/// A backup being written, as returned by `backups.begin()`.
#[derive(Clone)]
pub(super) struct WriterApi {
    env: Arc<FlowEnv>,
    id: String,
    writer: Arc<Mutex<Option<BackupWriter>>>,
}

impl WriterApi {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut BackupWriter) -> T) -> RResult<T> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(w) => Ok(f(w)),
            None => Err(fail(format!("backup {} is already sealed", self.id))),
        }
    }
}

fn manifest_summary(m: &Manifest) -> RResult<Dynamic> {
    let dumps: Vec<serde_json::Value> = m
        .dumps
        .iter()
        .map(|d| {
            serde_json::json!({
                "role": d.info.role, "database": d.info.database,
                "started_at": d.info.started_at, "finished_at": d.info.finished_at,
                "tables": d.info.tables.len(),
                "rows": d.info.tables.iter().map(|t| t.rows).sum::<u64>(),
            })
        })
        .collect();
    to_dyn(&serde_json::json!({
        "id": m.id, "node": m.node, "migration_id": m.migration_id, "kind": m.kind,
        "created_at": m.created_at, "bytes": m.total_bytes(), "dumps": dumps,
        "validator_party": m.validator_party, "users": m.users,
        "identities_participant_id": m.identities.as_ref().map(|i| i.participant_id.clone()),
        "last_drill": m.last_drill,
        "host": m.host.as_ref().map(|h| h.name.clone()),
    }))
}

fn register_node(engine: &mut Engine) {
    engine
        .register_type_with_name::<NodeApi>("Node")
        .register_get("name", |n: &mut NodeApi| n.0.node.name.clone())
        // The migration the node runs (the registry's after a network DR, before the
        // config file says it).
        .register_get("migration_id", |n: &mut NodeApi| -> RResult<i64> {
            let (m, _) = super::host_recovery::running_ids(&n.0)?;
            i64::try_from(m).map_err(|_| fail("migration id out of range"))
        })
        .register_get("backup_kind", |n: &mut NodeApi| {
            n.0.node.backup_kind.as_str().to_string()
        })
        // What the backend can do: scripts choose their path from it, never from the
        // backend's name (see splice_dr_plugin_api::capabilities).
        .register_get("capabilities", |n: &mut NodeApi| -> RResult<Dynamic> {
            to_dyn(&n.0.backend.capabilities())
        })
        .register_fn("components", |n: &mut NodeApi| -> RResult<Dynamic> {
            let ctx = n.0.run.op_context(StepKind::UNDO);
            let list =
                n.0.backend
                    .components(&ctx)
                    .map_err(|e| fail(e.to_string()))?;
            to_dyn(&list)
        })
        .register_fn(
            "scale",
            |n: &mut NodeApi, component: &str, replicas: i64| -> RResult<()> {
                let replicas =
                    u32::try_from(replicas).map_err(|_| fail("replicas must be >= 0"))?;
                let label = format!("scale {component} to {replicas}");
                let backend = n.0.backend.clone();
                if replicas == 0 {
                    n.0.run.note_component(component, true).map_err(fail)?;
                }
                n.0.in_step(&label, StepKind::UNDO, |ctx| {
                    backend.scale(ctx, component, replicas)
                })?;
                if replicas > 0 {
                    n.0.run.note_component(component, false).map_err(fail)?;
                }
                Ok(())
            },
        )
        .register_fn(
            "wait_ready",
            |n: &mut NodeApi, component: &str, secs: i64| -> RResult<()> {
                let timeout = Duration::from_secs(secs.max(0) as u64);
                let label = format!("wait for {component} to be ready");
                let backend = n.0.backend.clone();
                // Also the last step of a rollback: the budget grows by its timeout.
                let kind = StepKind::Undo { need: timeout };
                n.0.in_step(&label, kind, |ctx| {
                    backend.wait_ready(ctx, component, timeout)
                })
            },
        );
    register_node_storage(engine);
}

/// Volume-level operations, for backends (compose) whose restore follows the runbook:
/// copy the volume aside, wipe it, restore into the fresh databases, put it back on failure.
fn register_node_storage(engine: &mut Engine) {
    engine
        // The backend's name, for messages; flows branch on `capabilities`.
        .register_get("backend", |n: &mut NodeApi| n.0.backend.kind())
        .register_fn(
            "keep_storage",
            |n: &mut NodeApi, target: &str| -> RResult<Dynamic> {
                let backend = n.0.backend.clone();
                let t = StorageTarget {
                    name: target.into(),
                    path: None,
                };
                let kept = n.0.in_step(
                    &format!("copy the {target} volume aside"),
                    StepKind::Forward,
                    |ctx| backend.keep_storage(ctx, &t),
                )?;
                n.0.run.note_kept(&kept, true).map_err(fail)?;
                to_dyn(&kept)
            },
        )
        .register_fn("wipe", |n: &mut NodeApi, target: &str| -> RResult<()> {
            let backend = n.0.backend.clone();
            let t = StorageTarget {
                name: target.into(),
                path: None,
            };
            n.0.run.note_live_replaced(target, true).map_err(fail)?;
            n.0.in_step(
                &format!("wipe the {target} volume"),
                StepKind::Forward,
                |ctx| backend.wipe(ctx, &t),
            )
        })
        .register_fn(
            "restore_kept_storage",
            |n: &mut NodeApi, kept: Map| -> RResult<()> {
                let kept: KeptStorage = from_dyn("restore_kept_storage", &Dynamic::from_map(kept))?;
                let backend = n.0.backend.clone();
                let label = format!("put {} back from {}", kept.live, kept.kept);
                n.0.in_step(&label, StepKind::UNDO, |ctx| {
                    backend.restore_kept_storage(ctx, &kept)
                })?;
                n.0.run
                    .note_live_replaced(&kept.target, false)
                    .map_err(fail)
            },
        )
        .register_fn(
            "drop_kept_storage",
            |n: &mut NodeApi, kept: Map| -> RResult<()> {
                let kept: KeptStorage = from_dyn("drop_kept_storage", &Dynamic::from_map(kept))?;
                let backend = n.0.backend.clone();
                let label = format!("delete the kept copy {}", kept.kept);
                // Cleanup, also after a cancel once the volume was put back from the copy.
                n.0.run.note_kept(&kept, false).map_err(fail)?;
                n.0.in_step(&label, StepKind::UNDO, |ctx| {
                    backend.drop_kept_storage(ctx, &kept)
                })
            },
        );
}

fn register_pg(engine: &mut Engine) {
    engine
        .register_type_with_name::<PgApi>("Pg")
        .register_fn("databases", |p: &mut PgApi| -> RResult<Dynamic> {
            let ctx = p.0.run.op_context(StepKind::UNDO);
            to_dyn(
                &p.0.backend
                    .databases(&ctx)
                    .map_err(|e| fail(e.to_string()))?,
            )
        })
        .register_fn("leftovers", |p: &mut PgApi| -> RResult<Dynamic> {
            let ctx = p.0.run.op_context(StepKind::UNDO);
            to_dyn(
                &p.0.backend
                    .leftovers(&ctx)
                    .map_err(|e| fail(e.to_string()))?,
            )
        })
        .register_fn(
            "dump",
            |p: &mut PgApi, role: &str, w: WriterApi| -> RResult<Dynamic> {
                let dest = w.with(|w| w.dump_dir(role))?;
                let backend = p.0.backend.clone();
                let info =
                    p.0.in_step(&format!("dump {role} database"), StepKind::Forward, |ctx| {
                        backend.dump(ctx, role, &dest)
                    })?;
                let out = to_dyn(&info)?;
                w.with(|w| w.record_dump(info))?;
                Ok(out)
            },
        )
        .register_fn(
            "restore_staged",
            |p: &mut PgApi, role: &str, backup: &str| -> RResult<Dynamic> {
                let m = p.0.local_manifest(backup)?;
                let dump = m
                    .dump(role)
                    .ok_or_else(|| fail(format!("backup {} has no {role} dump", m.id)))?;
                let src = p.0.repo.backup_dir(&m.id).join(&dump.dir);
                let backend = p.0.backend.clone();
                let label = format!("restore {role} database from {}", m.id);
                let staged = p.0.in_step(&label, StepKind::Forward, |ctx| {
                    backend.restore_staged(ctx, role, &src, &dump.info)
                })?;
                to_dyn(&staged)
            },
        )
        .register_fn(
            "restore_into_empty",
            |p: &mut PgApi, role: &str, backup: &str| -> RResult<()> {
                let m = p.0.local_manifest(backup)?;
                let dump = m
                    .dump(role)
                    .ok_or_else(|| fail(format!("backup {} has no {role} dump", m.id)))?;
                let src = p.0.repo.backup_dir(&m.id).join(&dump.dir);
                let backend = p.0.backend.clone();
                let label = format!("restore {role} database from {}", m.id);
                p.0.in_step(&label, StepKind::Forward, |ctx| {
                    backend.restore_into_empty(ctx, role, &src, &dump.info)
                })
            },
        )
        .register_fn(
            "swap_in",
            |p: &mut PgApi, staged: Array| -> RResult<Dynamic> {
                let staged: Vec<StagedDb> = from_dyn("swap_in", &Dynamic::from_array(staged))?;
                let backend = p.0.backend.clone();
                let kept =
                    p.0.in_step("swap in restored databases", StepKind::Forward, |ctx| {
                        backend.swap_in(ctx, &staged)
                    })?;
                to_dyn(&kept)
            },
        )
        .register_fn("roll_back", |p: &mut PgApi, kept: Array| -> RResult<()> {
            let kept: Vec<KeptDb> = from_dyn("roll_back", &Dynamic::from_array(kept))?;
            let backend = p.0.backend.clone();
            p.0.in_step("roll back to the kept databases", StepKind::UNDO, |ctx| {
                backend.roll_back(ctx, &kept)
            })
        })
        .register_fn("drop_kept", |p: &mut PgApi, kept: Array| -> RResult<()> {
            let kept: Vec<KeptDb> = from_dyn("drop_kept", &Dynamic::from_array(kept))?;
            let backend = p.0.backend.clone();
            p.0.in_step("drop the replaced databases", StepKind::Forward, |ctx| {
                backend.drop_kept(ctx, &kept)
            })
        })
        .register_fn(
            "drop_staged",
            |p: &mut PgApi, staged: Array| -> RResult<()> {
                let staged: Vec<StagedDb> = from_dyn("drop_staged", &Dynamic::from_array(staged))?;
                let backend = p.0.backend.clone();
                p.0.in_step("drop staged databases", StepKind::UNDO, |ctx| {
                    backend.drop_staged(ctx, &staged)
                })
            },
        );
}

fn register_backups(engine: &mut Engine) {
    engine
        .register_type_with_name::<WriterApi>("BackupWriter")
        .register_get("id", |w: &mut WriterApi| w.id.clone())
        .register_fn("seal", |w: &mut WriterApi| -> RResult<Dynamic> {
            let writer = {
                let mut guard = w.writer.lock().unwrap_or_else(|p| p.into_inner());
                guard
                    .take()
                    .ok_or_else(|| fail(format!("backup {} is already sealed", w.id)))?
            };
            if w.env.run.dry_run() {
                w.env
                    .run
                    .plan(&format!("would checksum and seal backup {}", w.id));
                drop(writer);
                return to_dyn(&serde_json::json!({ "id": w.id }));
            }
            let run = w.env.run.clone();
            let (manifest, stamps) = w.env.in_step(
                "seal backup (checksums + manifest)",
                StepKind::Forward,
                move |ctx| {
                    let mut done = 0u64;
                    writer
                        .seal_stamped(&mut |n| {
                            done += n;
                            ctx.progress("checksum", done, None, "bytes");
                        })
                        .map_err(|e| BackendError::Io {
                            context: "sealing backup".into(),
                            message: e.to_string(),
                        })
                },
            )?;
            run.log(
                "info",
                &format!(
                    "backup {} sealed: {} files",
                    manifest.id,
                    manifest.files.len()
                ),
            );
            w.env
                .sealed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(manifest.id.clone(), stamps);
            manifest_summary(&manifest)
        });
    engine
        .register_type_with_name::<BackupsApi>("Backups")
        .register_fn("begin", |b: &mut BackupsApi| -> RResult<WriterApi> {
            let env = &b.0;
            if env.run.dry_run() {
                return Ok(WriterApi {
                    env: env.clone(),
                    id: "dry-run".into(),
                    writer: Arc::new(Mutex::new(None)),
                });
            }
            // The migration the node runs, which the backend dumps: the registry's after a
            // network DR, before the config file says it.
            let (migration_id, _) = super::host_recovery::running_ids(env)?;
            let mut w = env
                .repo
                .begin(&env.node.name, migration_id)
                .map_err(|e| fail(e.to_string()))?;
            super::host_elsewhere::record_taker(env, &mut w)?;
            Ok(WriterApi {
                env: env.clone(),
                id: w.id().to_string(),
                writer: Arc::new(Mutex::new(Some(w))),
            })
        })
        .register_fn(
            "save_identities",
            |b: &mut BackupsApi, w: WriterApi| -> RResult<Dynamic> {
                let env = b.0.clone();
                if env.run.dry_run() {
                    env.run.plan(
                        "would fetch the node identities dump, check it and store it encrypted",
                    );
                    return Ok(Dynamic::UNIT);
                }
                let (raw, _) =
                    env.call_validator(|c| Box::pin(async move { c.identities_raw().await }))?;
                let participant =
                    crate::identities::validate_dump(&raw).map_err(|e| fail(e.to_string()))?;
                let recipients =
                    crate::identities::parse_recipients(&env.node.identities_recipients)
                        .map_err(|e| fail(e.to_string()))?;
                let path = w.with(|w| w.identities_path())?;
                crate::identities::encrypt_to_file(&path, &raw, &recipients)
                    .map_err(|e| fail(e.to_string()))?;
                let keys = env.node.identities_recipients.clone();
                w.with(|w| w.record_identities(participant.clone(), keys))?;
                env.run.log(
                    "info",
                    &format!(
                        "identities of {participant} stored encrypted ({} bytes, mode 0600)",
                        raw.len()
                    ),
                );
                Ok(Dynamic::from(participant))
            },
        )
        .register_fn(
            "record_users",
            |b: &mut BackupsApi, w: WriterApi| -> RResult<Dynamic> {
                let env = b.0.clone();
                let user =
                    env.call_validator(|c| Box::pin(async move { c.validator_user().await }))?;
                let users = env.call_validator(|c| Box::pin(async move { c.users().await }))?;
                let out =
                    to_dyn(&serde_json::json!({"validator_party": user.party_id, "users": users}))?;
                w.with(|w| w.record_users(user.party_id, users))?;
                Ok(out)
            },
        )
        .register_fn(
            "get",
            |b: &mut BackupsApi, selector: &str| -> RResult<Dynamic> {
                manifest_summary(&b.0.manifest(selector)?)
            },
        )
        .register_fn(
            "verify",
            |b: &mut BackupsApi, id: &str| -> RResult<Dynamic> {
                let env = b.0.clone();
                let m = env.local_manifest(id)?;
                let backend = env.backend.clone();
                let repo = env.repo.clone();
                let label = format!("verify backup {}", m.id);
                let total = m.total_bytes();
                // Sealed by this run moments ago: unchanged files keep the seal's hashes.
                let stamps = env
                    .sealed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&m.id);
                let report = env.in_step(&label, StepKind::UNDO, |ctx| {
                    let mut done = 0u64;
                    // A dump check that could not run (no container, a timeout) says nothing
                    // about the backup: that is not reported as damage.
                    let unable = std::cell::RefCell::new(None);
                    let note = |e: &BackendError| {
                        if could_not_check(e) {
                            unable.borrow_mut().get_or_insert_with(|| e.clone());
                        }
                    };
                    let dump = |p: &std::path::Path| backend.check_dump(ctx, p).inspect_err(&note);
                    let base_backup =
                        |p: &std::path::Path| backend.check_base_backup(ctx, p).inspect_err(&note);
                    let check = splice_dr_repo::ContentChecks {
                        dump: &dump,
                        base_backup: &base_backup,
                    };
                    let mut progress = |n| {
                        done += n;
                        ctx.progress("verify checksums", done, Some(total), "bytes");
                    };
                    let verified = match &stamps {
                        Some(s) => repo.verify_after_seal(&m.id, &check, s, &mut progress),
                        None => repo.verify(&m.id, &check, &mut progress),
                    };
                    if let Ok(r) = &verified {
                        if r.files_unchanged_since_seal > 0 {
                            ctx.info(format!(
                                "{} of {} files unchanged since this run sealed them: their \
                                 checksums are the seal's, not read again",
                                r.files_unchanged_since_seal, r.files_checked
                            ));
                        }
                    }
                    if let Some(e) = unable.into_inner() {
                        return Err(e);
                    }
                    verified
                        .map_err(|e| BackendError::Verification(e.to_string()))
                        .and_then(|r| {
                            if r.ok {
                                Ok(r)
                            } else {
                                Err(BackendError::Verification(format!(
                                    "backup {} is damaged and will not be used: {}",
                                    r.id,
                                    r.problems.join("; ")
                                )))
                            }
                        })
                })?;
                to_dyn(&report)
            },
        )
        .register_fn(
            "check_restorable",
            |b: &mut BackupsApi, id: &str| -> RResult<()> {
                let env = &b.0;
                let m = env.manifest(id)?;
                let (migration_id, participant) = super::host_recovery::running_ids(env)?;
                let into = splice_dr_repo::RunningNode {
                    name: &env.node.name,
                    migration_id,
                    participant: participant.as_deref(),
                    max_age: env.node.max_age,
                    participant_db: env.node.participant_db.as_deref(),
                };
                let mut objections = restore_objections(&m, &into, chrono::Utc::now());
                objections.extend(untrusted_objection(env, &m));
                allow_if_forced(env, &objections, "restore")
            },
        )
        .register_fn(
            "check_trusted",
            |b: &mut BackupsApi, id: &str| -> RResult<()> {
                let env = &b.0;
                let m = env.manifest(id)?;
                allow_if_forced(env, untrusted_objection(env, &m).as_slice(), "drill")
            },
        );
}

/// The objection to an untrusted backup (see `splice_dr_repo::trust`), if it is one.
fn untrusted_objection(env: &FlowEnv, m: &Manifest) -> Option<String> {
    env.repo
        .untrusted_because(m)
        .map(|why| format!("backup {} is untrusted: {why}", m.id))
}

/// Passes when there is no objection, or when the run was forced with a reason (which is
/// journaled and each overridden objection logged); else refuses to `what`.
pub(super) fn allow_if_forced(env: &FlowEnv, objections: &[String], what: &str) -> RResult<()> {
    if objections.is_empty() {
        return Ok(());
    }
    let forced = env
        .params
        .get("force")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let reason = env
        .params
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .trim();
    if forced && !reason.is_empty() {
        env.run.record_forced(reason).map_err(fail)?;
        for o in objections {
            env.run
                .log("warn", &format!("overridden with --force ({reason}): {o}"));
        }
        return Ok(());
    }
    Err(fail(format!(
        "refusing to {what}: {}. To override, pass --force --reason \"why\" (the reason is journaled)",
        objections.join("; ")
    )))
}

/// The script's `validator` object.
#[derive(Clone)]
pub(super) struct ValidatorApi(pub(super) Arc<FlowEnv>);

fn register_validator(engine: &mut Engine) {
    engine
        .register_type_with_name::<ValidatorApi>("Validator")
        .register_get("configured", |v: &mut ValidatorApi| v.0.validator.is_some())
        .register_fn("ready", |v: &mut ValidatorApi| -> RResult<bool> {
            v.0.call_validator(|c| Box::pin(async move { c.ready().await }))
        })
        .register_fn(
            "validator_user",
            |v: &mut ValidatorApi| -> RResult<Dynamic> {
                to_dyn(&v.0.call_validator(|c| Box::pin(async move { c.validator_user().await }))?)
            },
        )
        .register_fn("identities", |v: &mut ValidatorApi| -> RResult<Dynamic> {
            to_dyn(&v.0.call_validator(|c| Box::pin(async move { c.identities().await }))?)
        })
        .register_fn("users", |v: &mut ValidatorApi| -> RResult<Dynamic> {
            to_dyn(&v.0.call_validator(|c| Box::pin(async move { c.users().await }))?)
        })
        .register_fn("balance", |v: &mut ValidatorApi| -> RResult<Dynamic> {
            to_dyn(&v.0.call_validator(|c| Box::pin(async move { c.balance().await }))?)
        })
        .register_fn(
            "data_snapshot",
            |v: &mut ValidatorApi, ts: &str, migration_id: i64| -> RResult<Dynamic> {
                let id =
                    u64::try_from(migration_id).map_err(|_| fail("migration_id must be >= 0"))?;
                to_dyn(&probe_data_snapshot(&v.0, ts, id)?)
            },
        );
}

/// `validator.data_snapshot(ts, migration_id)`: whether the node can make the snapshot,
/// and what it holds. The answer (gigabytes on a real node) is streamed to the private
/// tmp directory, checked, and removed; the script gets its small fields.
fn probe_data_snapshot(env: &FlowEnv, ts: &str, id: u64) -> RResult<serde_json::Value> {
    let tmp = crate::private_tmp::ensure(&env.node.state_dir)
        .map_err(|e| fail(format!("creating the private tmp directory: {e}")))?;
    let answer = tmp.join(format!(
        "{}{}-probe.json",
        crate::private_tmp::SNAPSHOT_PREFIX,
        env.node.name
    ));
    let _ = std::fs::remove_file(&answer);
    let (ts, path) = (ts.to_string(), answer.clone());
    let got = env.call_validator(move |c| {
        Box::pin(async move { c.data_snapshot_to_file(&ts, id, true, &path).await })
    });
    let _ = std::fs::remove_file(&answer);
    let f = got?;
    Ok(serde_json::json!({
        "migration_id": f.head.data_snapshot.migration_id,
        "acs_timestamp": f.head.data_snapshot.acs_timestamp,
        "domain_id": f.head.data_snapshot.domain_id,
        "bytes": f.bytes,
        "sha256": f.sha256,
    }))
}

fn register_log(engine: &mut Engine) {
    engine
        .register_type_with_name::<LogApi>("Log")
        .register_fn("info", |l: &mut LogApi, m: &str| l.0.run.log("info", m))
        .register_fn("warn", |l: &mut LogApi, m: &str| l.0.run.log("warn", m))
        .register_fn("error", |l: &mut LogApi, m: &str| l.0.run.log("error", m));
}

fn register_step(engine: &mut Engine, env: &Arc<FlowEnv>) {
    let env = env.clone();
    engine.register_fn(
        "step",
        move |ctx: NativeCallContext, name: &str, f: FnPtr| -> RResult<Dynamic> {
            let idx = env.run.begin_step(name, "").map_err(fail)?;
            let result = f.call_within_context::<Dynamic>(&ctx, ());
            let outcome = match &result {
                Ok(v) => Ok(crate::util::truncate(&v.to_string(), 500)),
                Err(e) => Err(root_message(e)),
            };
            env.run.end_step(idx, outcome).map_err(fail)?;
            result
        },
    );
}

/// The innermost error of a nested script error, in plain words.
pub fn root_message(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => root_message(inner),
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorTerminated(v, _) => format!("stopped: {v}"),
        EvalAltResult::ErrorTooManyOperations(_) => {
            "stopped: the script exceeded its operation limit (an endless loop?)".into()
        }
        other => other.to_string(),
    }
}

fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        other => other,
    }
}

/// `file:line:col: message` for a script error.
pub fn describe_error(err: &EvalAltResult, flow: &Flow) -> String {
    let pos = innermost(err).position();
    let file = match &flow.source {
        FlowSource::Builtin => format!("{}.rhai (built-in)", flow.name),
        FlowSource::Site(p) => p.display().to_string(),
    };
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}: {}", root_message(err)),
        _ => format!("{file}: {}", root_message(err)),
    }
}

/// Runs `flow` with `env` and returns the script's value as JSON.
pub fn execute(
    flow: &Flow,
    env: Arc<FlowEnv>,
    limits: &Limits,
) -> Result<serde_json::Value, String> {
    let mut engine = hardened_engine(limits, Some(env.run.guard().clone()));
    register_node(&mut engine);
    super::host_recovery::register(&mut engine);
    super::host_offsite::register(&mut engine);
    super::host_drill::register(&mut engine);
    super::host_users::register(&mut engine);
    super::host_elsewhere::register(&mut engine);
    super::host_physical::register(&mut engine);
    register_pg(&mut engine);
    register_backups(&mut engine);
    register_log(&mut engine);
    register_validator(&mut engine);
    register_step(&mut engine, &env);
    let printer = env.clone();
    engine.on_print(move |s| printer.run.log("info", s));
    let debugger = env.clone();
    engine.on_debug(move |s, _, _| debugger.run.log("info", s));

    let params: Map = rhai::serde::to_dynamic(&env.params)
        .ok()
        .and_then(|d| d.try_cast::<Map>())
        .unwrap_or_default();
    let mut scope = Scope::new();
    scope.push_constant("node", NodeApi(env.clone()));
    scope.push_constant("pg", PgApi(env.clone()));
    scope.push_constant("backups", BackupsApi(env.clone()));
    scope.push_constant("log", LogApi(env.clone()));
    scope.push_constant("validator", ValidatorApi(env.clone()));
    scope.push_constant("params", params);
    let value: Dynamic = engine
        .eval_ast_with_scope(&mut scope, &flow.ast)
        .map_err(|e| describe_error(&e, flow))?;
    Ok(rhai::serde::from_dynamic::<serde_json::Value>(&value).unwrap_or(serde_json::Value::Null))
}

/// Whether a backend error means a check could not run at all (the container or server it
/// runs in is missing, the call timed out or was cancelled), as opposed to a check that ran
/// and found the input bad.
fn could_not_check(e: &BackendError) -> bool {
    matches!(
        e,
        BackendError::NotFound(_)
            | BackendError::Unsupported { .. }
            | BackendError::Timeout { .. }
            | BackendError::Cancelled { .. }
            | BackendError::Config(_)
    )
}
