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

/// What a node's backend was built from: its config table, the migration id the node
/// runs (the registry's after a network DR, which the config file may lag behind) and the
/// daemon's state directory.
#[derive(Clone, Copy)]
pub struct BuiltFrom<'a> {
    /// The node's config.
    pub node: &'a NodeConfig,
    /// The migration id the node runs (see [`crate::participants::Registry::running_migration_id`]).
    pub migration_id: u64,
    /// The daemon's state directory.
    pub state_dir: &'a Path,
}

/// The backend of a node built from `now`: the `previous` one when everything it was
/// built from is unchanged, else a new one. A plugin instance is never freed (the C ABI
/// has no destructor), so rebuilding on every config reload or migration would leak one
/// each time and drop whatever state the plugin keeps between calls. A new backend comes
/// wrapped in the [`metered`] layer.
pub fn build_or_reuse(
    now: BuiltFrom<'_>,
    previous: Option<(BuiltFrom<'_>, &Arc<dyn Backend>)>,
) -> Result<Arc<dyn Backend>, BackendError> {
    match previous {
        Some((old, backend)) if same_backend(&old, &now) => Ok(backend.clone()),
        _ => build(now.node, now.migration_id, now.state_dir)
            .map(|backend| metered(&now.node.name, backend)),
    }
}

/// Whether two builds give the same backend (the settings [`build`] reads; the migration
/// id only for the backends that name databases and start nodes with it).
fn same_backend(a: &BuiltFrom<'_>, b: &BuiltFrom<'_>) -> bool {
    let (x, y) = (a.node, b.node);
    let reads_migration = x.backend != BackendKind::Plugin;
    a.state_dir == b.state_dir
        && x.name == y.name
        && x.backend == y.backend
        && (!reads_migration || a.migration_id == b.migration_id)
        && x.postgres == y.postgres
        && x.compose == y.compose
        && x.k8s == y.k8s
        && x.plugin == y.plugin
}

/// Builds the backend of one node. Does not connect: a node whose database is down still
/// gets a backend, and the failure shows up in `status` and in runs.
/// `migration_id` is the one the node runs, which the daemon reads from the node's
/// registry (a network DR moves it before the operator edits the config): compose and k8s
/// name the participant database and start the node with it. `state_dir` is the daemon's
/// state directory, where the k8s backend writes its helm values overlays unless its
/// table names another place.
pub fn build(
    node: &NodeConfig,
    migration_id: u64,
    state_dir: &Path,
) -> Result<Arc<dyn Backend>, BackendError> {
    match node.backend {
        BackendKind::Postgres => {
            let mut cfg = node.postgres.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"postgres\" needs a [node.postgres] table",
                    node.name
                ))
            })?;
            cfg.participant_db = node
                .participant_db_at(migration_id)
                .unwrap_or(cfg.participant_db);
            Ok(Arc::new(PostgresBackend::new(cfg)?))
        }
        BackendKind::Compose => {
            let mut cfg = node.compose.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"compose\" needs a [node.compose] table",
                    node.name
                ))
            })?;
            if cfg.participant_db.is_some() {
                cfg.participant_db = node.participant_db_at(migration_id);
            }
            Ok(Arc::new(ComposeBackend::new(cfg, migration_id)?))
        }
        BackendKind::K8s => {
            let mut cfg = node.k8s.clone().ok_or_else(|| {
                BackendError::Config(format!(
                    "node `{}`: backend \"k8s\" needs a [node.k8s] table",
                    node.name
                ))
            })?;
            if cfg.participant_db.is_some() {
                cfg.participant_db = node.participant_db_at(migration_id);
            }
            cfg.overlay_dir
                .get_or_insert_with(|| state_dir.join("k8s-overlays").join(&node.name));
            Ok(Arc::new(K8sBackend::new(cfg, migration_id)?))
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

    fn from<'a>(node: &'a NodeConfig, migration_id: u64, state_dir: &'a Path) -> BuiltFrom<'a> {
        BuiltFrom {
            node,
            migration_id,
            state_dir,
        }
    }

    #[test]
    fn a_reload_keeps_the_backend_when_its_settings_did_not_change() {
        let state = Path::new("/var/lib/splice-dr");
        let old = node(2, false);
        let first = build(&old, 0, state).unwrap();
        let prev = Some((from(&old, 0, state), &first));
        // A change elsewhere in the node (a drill check) keeps the same instance.
        let kept = build_or_reuse(from(&node(2, true), 0, state), prev).unwrap();
        assert!(
            Arc::ptr_eq(&first, &kept),
            "unchanged backend settings: reused"
        );
        // The bare backend names its participant database for the migration: rebuilt.
        let migrated = build_or_reuse(from(&old, 1, state), prev).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &migrated),
            "another migration: rebuilt"
        );
        let changed = build_or_reuse(from(&node(4, false), 0, state), prev).unwrap();
        assert!(!Arc::ptr_eq(&first, &changed), "changed settings: rebuilt");
        let moved = Path::new("/srv/splice-dr");
        let other = build_or_reuse(from(&old, 0, moved), prev).unwrap();
        assert!(!Arc::ptr_eq(&first, &other), "another state_dir: rebuilt");
    }

    /// After a network DR (the config still on 0) the bare backend's default
    /// `participant-0` names the running migration's database; a site's own name stays.
    #[test]
    fn the_participant_database_follows_the_running_migration_id() {
        let n = node(2, false);
        assert_eq!(n.participant_db_at(0).as_deref(), Some("participant-0"));
        assert_eq!(n.participant_db_at(1).as_deref(), Some("participant-1"));
        let mut own = n.clone();
        if let Some(p) = own.postgres.as_mut() {
            p.participant_db = "ledger".into();
        }
        assert_eq!(own.participant_db_at(1).as_deref(), Some("ledger"));
    }

    /// After a network DR the config may still say the old migration id: a compose backend
    /// built for the old id is not reused for the running one (it would name and dump the
    /// old participant database; the compose e2e tests check the naming), one built for
    /// the same id is.
    #[test]
    fn a_compose_backend_is_rebuilt_when_the_running_migration_id_moves() {
        let text = "[repository]\npath = \"/var/backups/splice-dr\"\n\n[[node]]\nname = \"n\"\nbackend = \"compose\"\nmigration_id = 3\n\n[node.compose]\nproject = \"splice-validator\"\n";
        let cfg = crate::config::parse(text, Path::new("/etc/splice-dr/splice-dr.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let n = &cfg.nodes[0];
        let state = Path::new("/var/lib/splice-dr");
        let old = build(n, 3, state).unwrap();
        let prev = Some((from(n, 3, state), &old));
        let same = build_or_reuse(from(n, 3, state), prev).unwrap();
        assert!(Arc::ptr_eq(&old, &same), "same migration: reused");
        let running = build_or_reuse(from(n, 4, state), prev).unwrap();
        assert!(!Arc::ptr_eq(&old, &running), "another migration: rebuilt");
    }
}
