//! Script functions for off-site repositories: `backups.replicate(id)` copies a sealed
//! backup to every `[[repository.offsite]]`, one journaled step per repository.
//!
//! Reading from off-site needs no script function: every operation that reads dump
//! files downloads a backup that is not local first (`FlowEnv::local_manifest`).

use rhai::{Array, Dynamic, Engine};
use splice_dr_plugin_api::BackendError;

use super::host::{fail, BackupsApi, RResult};
use crate::run_context::StepKind;

/// Registers `backups.replicate`.
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn(
        "replicate",
        |b: &mut BackupsApi, id: &str| -> RResult<Array> {
            let env = b.0.clone();
            let offsite = env.repo.offsite();
            if offsite.is_empty() {
                return Ok(Array::new());
            }
            if env.run.dry_run() {
                for r in offsite.repos() {
                    env.run.plan(&format!(
                        "would copy backup {id} to off-site repository {} ({})",
                        r.name(),
                        r.location()
                    ));
                }
                return Ok(Array::new());
            }
            let m = env.repo.manifest(id).map_err(|e| fail(e.to_string()))?;
            let total = m.total_bytes();
            let mut done_repos = Array::new();
            for r in offsite.repos() {
                let label = format!(
                    "copy backup {id} to off-site repository {} ({})",
                    r.name(),
                    r.location()
                );
                let repo = env.repo.clone();
                let node = env.node.name.clone();
                env.in_step(&label, StepKind::Forward, |ctx| {
                    let to_err = |e: splice_dr_repo::RepoError| BackendError::Io {
                        context: format!("off-site repository {}", r.name()),
                        message: e.to_string(),
                    };
                    // The node's lock is held: nothing of it is being uploaded, so objects
                    // without a manifest are leftovers of an interrupted upload.
                    for gone in r.discard_incomplete(&node).map_err(to_err)? {
                        ctx.info(format!(
                            "removed the interrupted upload {gone} from {}",
                            r.name()
                        ));
                    }
                    let mut done = 0u64;
                    r.upload(&repo, &m, &mut |n| {
                        done += n;
                        ctx.progress("upload", done, Some(total), "bytes");
                    })
                    .map_err(to_err)
                })?;
                done_repos.push(Dynamic::from(r.name().to_string()));
            }
            Ok(done_repos)
        },
    );
}
