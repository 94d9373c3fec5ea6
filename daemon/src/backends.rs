//! Config-driven registration of backends: a node's `backend` key picks the
//! implementation, built in (statically linked) or a site plugin loaded through the C ABI.

use splice_dr_compose::ComposeBackend;
use splice_dr_k8s::K8sBackend;
use splice_dr_plugin_api::{Backend, BackendError, DynamicBackend};
use splice_dr_postgres::PostgresBackend;
use std::path::Path;
use std::sync::Arc;

use crate::config::{BackendKind, NodeConfig};

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
            Ok(Arc::new(DynamicBackend::load(
                &plugin.path,
                &plugin.config,
            )?))
        }
    }
}
