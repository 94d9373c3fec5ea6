//! Host functions for the recovery flows beyond a restore: the participant-id registry,
//! restarting a node with new settings, files onto the node's volumes, and identities
//! dumps decrypted for a re-onboard. See `scripts/README.md`.

use rhai::{Dynamic, Engine, Map};
use splice_dr_plugin_api::{BackendError, StorageTarget};
use std::path::{Path, PathBuf};

use super::host::{fail, to_dyn, BackupsApi, FlowEnv, NodeApi, RResult};
use crate::participants::Registry;

/// Prefix of the decrypted identities files this module creates (and alone may delete).
const IDENTITIES_PREFIX: &str = "identities-";

/// The registry with everything known to be used merged in: the ids the config shows and
/// the ids inside this node's backups.
fn seeded_registry(env: &FlowEnv) -> RResult<Registry> {
    let (state_dir, node) = (&env.node.state_dir, &env.node.name);
    let mut reg = Registry::load(state_dir, node).map_err(|e| fail(e.to_string()))?;
    let mut changed = false;
    for id in &env.node.configured_participant_ids {
        changed |= reg.mark_used(id, "config");
    }
    let (backups, _) = env.repo.list().unwrap_or_default();
    for m in backups.iter().filter(|m| &m.node == node) {
        if let Some(ids) = &m.identities {
            changed |= reg.mark_used(&ids.participant_id, &format!("backup {}", m.id));
        }
    }
    if changed {
        reg.save(state_dir, node).map_err(|e| fail(e.to_string()))?;
    }
    Ok(reg)
}

fn registry_view(reg: &Registry) -> RResult<Dynamic> {
    to_dyn(&serde_json::json!({
        "current": reg.current,
        "used": reg.used.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
    }))
}

/// Registers the functions on `node` and `backups`.
pub(super) fn register(engine: &mut Engine) {
    register_participants(engine);
    register_restart(engine);
    register_identities(engine);
}

fn register_participants(engine: &mut Engine) {
    engine
        .register_fn("participant_ids", |n: &mut NodeApi| -> RResult<Dynamic> {
            registry_view(&seeded_registry(&n.0)?)
        })
        .register_fn(
            "choose_participant_id",
            |n: &mut NodeApi, requested: &str, hint: &str| -> RResult<String> {
                let reg = seeded_registry(&n.0)?;
                if requested.is_empty() {
                    return Ok(reg.next_free(hint));
                }
                if let Some(u) = reg.used.iter().find(|u| u.id == requested) {
                    return Err(fail(format!(
                        "participant id `{requested}` was already used by this node ({}, since {}); \
                         Splice needs an id never used before: leave `participant_id` out to get \
                         `{}`, or choose another",
                        u.source,
                        u.since.format("%Y-%m-%d %H:%M"),
                        reg.next_free(hint)
                    )));
                }
                Ok(requested.to_string())
            },
        )
        .register_fn(
            "burn_participant_id",
            |n: &mut NodeApi, id: &str, reason: &str| -> RResult<()> {
                let env = n.0.clone();
                let label = format!("record participant id {id} as used");
                if env.run.dry_run() {
                    env.run.plan(&format!("would {label}"));
                    return Ok(());
                }
                env.in_step(&label, false, |_ctx| {
                    let mut reg = seeded_registry(&env).map_err(|e| BackendError::Plugin(e.to_string()))?;
                    reg.mark_used(id, reason);
                    reg.save(&env.node.state_dir, &env.node.name)
                        .map_err(|e| BackendError::Plugin(e.to_string()))
                })
            },
        )
        .register_fn(
            "set_participant_id",
            |n: &mut NodeApi, id: &str| -> RResult<()> {
                let env = n.0.clone();
                let label = format!("make {id} the participant id of every later start");
                if env.run.dry_run() {
                    env.run.plan(&format!("would {label}"));
                    return Ok(());
                }
                env.in_step(&label, false, |_ctx| {
                    let mut reg = seeded_registry(&env).map_err(|e| BackendError::Plugin(e.to_string()))?;
                    reg.current = Some(id.to_string());
                    reg.save(&env.node.state_dir, &env.node.name)
                        .map_err(|e| BackendError::Plugin(e.to_string()))
                })
            },
        );
}

fn register_restart(engine: &mut Engine) {
    engine
        .register_fn(
            "set_values",
            |n: &mut NodeApi, values: Map| -> RResult<()> {
                let env = n.0.clone();
                let mut values: serde_json::Value =
                    rhai::serde::from_dynamic(&Dynamic::from_map(values))
                        .map_err(|e| fail(format!("set_values: {e}")))?;
                // Every start after a re-onboard passes the same -P (Splice's rule).
                if values.get("participant_id").is_none() {
                    if let Some(current) = seeded_registry(&env)?.current {
                        values["participant_id"] = serde_json::Value::String(current);
                    }
                }
                let backend = env.backend.clone();
                let label = format!("restart the node with {values}");
                env.in_step(&label, true, |ctx| backend.set_values(ctx, &values))
            },
        )
        .register_fn(
            "put_file",
            |n: &mut NodeApi, target: &str, path: &str| -> RResult<()> {
                let env = n.0.clone();
                let backend = env.backend.clone();
                let t = StorageTarget {
                    name: target.into(),
                    path: None,
                };
                let label = format!("place {path} on the {target} volume");
                env.in_step(&label, true, |ctx| {
                    backend.put_file(ctx, &t, Path::new(path))
                })
            },
        );
}

/// Decrypts a backup's identities dump with an age key into a new private file under
/// `state_dir/tmp`, owned by `uid` when given (compose's validator runs as 1001).
fn decrypt_identities(env: &FlowEnv, backup: &str, key: &Path, uid: i64) -> RResult<PathBuf> {
    let m = env.manifest(backup)?;
    let ids = m.identities.as_ref().ok_or_else(|| {
        fail(format!(
            "backup {} holds no identities dump (was [node.validator] configured when it was taken?)",
            m.id
        ))
    })?;
    let plain = crate::identities::decrypt_file(&env.repo.backup_dir(&m.id).join(&ids.file), key)
        .map_err(|e| fail(e.to_string()))?;
    let dir = env.node.state_dir.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "{IDENTITIES_PREFIX}{}-{}.json",
        m.id,
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    crate::identities::write_private(&path, &plain).map_err(|e| fail(e.to_string()))?;
    if uid >= 0 {
        let uid = u32::try_from(uid).map_err(|_| fail("uid out of range"))?;
        if let Err(e) = std::os::unix::fs::chown(&path, Some(uid), Some(uid)) {
            let _ = std::fs::remove_file(&path);
            return Err(fail(format!(
                "cannot give the decrypted identities to uid {uid} (the validator reads them as \
                 that user): {e}; run the daemon as root"
            )));
        }
    }
    Ok(path)
}

fn register_identities(engine: &mut Engine) {
    engine
        .register_fn(
            "identities_file",
            |b: &mut BackupsApi, backup: &str, key: &str, uid: i64| -> RResult<String> {
                let env = b.0.clone();
                let label = format!("decrypt the identities dump of backup {backup}");
                let out = env.in_step(&label, true, |_ctx| {
                    decrypt_identities(&env, backup, Path::new(key), uid)
                        .map_err(|e| BackendError::Plugin(e.to_string()))
                })?;
                Ok(out.display().to_string())
            },
        )
        .register_fn(
            "remove_identities_file",
            |b: &mut BackupsApi, path: &str| -> RResult<()> {
                let p = PathBuf::from(path);
                let ours = p.parent() == Some(b.0.node.state_dir.join("tmp").as_path())
                    && p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with(IDENTITIES_PREFIX));
                if !ours {
                    return Err(fail(format!(
                        "refusing to delete {path}: not an identities file this flow decrypted"
                    )));
                }
                std::fs::remove_file(&p).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(fail(format!("removing {path}: {e}")))
                    }
                })
            },
        );
}
