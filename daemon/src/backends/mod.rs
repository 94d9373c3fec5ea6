//! Config-driven registration of backends: a node's `backend` key picks the
//! implementation, built in (statically linked) or a site plugin loaded through the C ABI.

mod metered;

pub use metered::metered;

use splice_dr_compose::ComposeBackend;
use splice_dr_k8s::K8sBackend;
use splice_dr_plugin_api::{Backend, BackendError};
use splice_dr_postgres::PostgresBackend;
use std::path::Path;
use std::sync::Arc;

use crate::config::{BackendKind, NodeConfig};

/// The backend of `node` after a config reload: the previous one when everything it was
/// built from is unchanged, else a new one. A plugin instance is never freed (the C ABI
/// has no destructor), so rebuilding on every reload would leak one per reload and drop
/// whatever state the plugin keeps between calls. A new backend comes wrapped in the
/// [`metered`] layer.
pub fn build_or_reuse(
    node: &NodeConfig,
    state_dir: &Path,
    previous: Option<(&NodeConfig, &Path, &Arc<dyn Backend>)>,
) -> Result<Arc<dyn Backend>, BackendError> {
    match previous {
        Some((old, old_state, backend)) if old_state == state_dir && same_backend(old, node) => {
            Ok(backend.clone())
        }
        _ => build(node, state_dir).map(|backend| metered(&node.name, backend)),
    }
}

/// Whether two node configs build the same backend (the settings [`build`] reads).
fn same_backend(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.name == b.name
        && a.backend == b.backend
        && a.migration_id == b.migration_id
        && a.postgres == b.postgres
        && a.compose == b.compose
        && a.k8s == b.k8s
        && a.plugin == b.plugin
}

/// Builds the backend of one node. Does not connect: a node whose database is down still
/// gets a backend, and the failure shows up in `status` and in runs.
/// `state_dir` is the daemon's state directory, where the k8s backend writes its helm
/// values overlays unless its table names another place.
pub fn build(node: &NodeConfig, state_dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    match node.backend {
        BackendKind::Postgres => {
            let cfg = node.postgres.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"postgres\" needs a [node.postgres] table",
                    node.name
                ))
            })?;
            Ok(Arc::new(PostgresBackend::new(cfg)?))
        }
        BackendKind::Compose => {
            let cfg = node.compose.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"compose\" needs a [node.compose] table",
                    node.name
                ))
            })?;
            Ok(Arc::new(ComposeBackend::new(cfg, node.migration_id)?))
        }
        BackendKind::K8s => {
            let mut cfg = node.k8s.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"k8s\" needs a [node.k8s] table",
                    node.name
                ))
            })?;
            cfg.overlay_dir
                .get_or_insert_with(|| state_dir.join("k8s-overlays").join(&node.name));
            Ok(Arc::new(K8sBackend::new(cfg, node.migration_id)?))
        }
        BackendKind::Plugin => {
            let plugin = node.plugin.as_ref().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"plugin\" needs a [node.plugin] table",
                    node.name
                ))
            })?;
            Ok(Arc::new(splice_dr_plugin_abi::load(
                &plugin.path,
                &plugin.config,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(jobs: u32, drill_check: bool) -> NodeConfig {
        let extra = if drill_check {
            "\n[[node.drill_check]]\nname = \"c\"\ndatabase = \"validator\"\nsql = \"select 1\"\n"
        } else {
            ""
        };
        let text = format!(
            "[repository]\npath = \"/var/backups/splice-dr\"\n\n[[node]]\nname = \"n\"\nbackend = \"postgres\"\nmigration_id = 0\n\n[node.postgres]\nurl = \"postgresql://cnadmin@127.0.0.1:5432/postgres\"\njobs = {jobs}\n{extra}"
        );
        let cfg = crate::config::parse(&text, Path::new("/etc/splice-dr/splice-dr.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        cfg.nodes[0].clone()
    }

    #[test]
    fn a_reload_keeps_the_backend_when_its_settings_did_not_change() {
        let state = Path::new("/var/lib/splice-dr");
        let old = node(2, false);
        let first = build(&old, state).unwrap();
        // A change elsewhere in the node (a drill check) keeps the same instance.
        let kept = build_or_reuse(&node(2, true), state, Some((&old, state, &first))).unwrap();
        assert!(
            Arc::ptr_eq(&first, &kept),
            "unchanged backend settings: reused"
        );
        let changed = build_or_reuse(&node(4, false), state, Some((&old, state, &first))).unwrap();
        assert!(!Arc::ptr_eq(&first, &changed), "changed settings: rebuilt");
        let moved = Path::new("/srv/splice-dr");
        let other = build_or_reuse(&old, moved, Some((&old, state, &first))).unwrap();
        assert!(!Arc::ptr_eq(&first, &other), "another state_dir: rebuilt");
    }
}
