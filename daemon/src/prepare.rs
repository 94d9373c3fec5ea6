//! Everything a config implies, built in one place before anything running changes.
//!
//! Start-up, reloads and `splice-dr check` all go through [`prepare`]: a config `check`
//! accepts is one the daemon starts with, and a reload whose config fails anywhere (flows,
//! rules script, a node's backend, off-site repositories, the keyring) is dropped whole,
//! leaving the service and the autopilot exactly as they were. Installing the result is
//! [`crate::service::Service::commit`], which cannot fail.
// Config errors (ConfigError) are rare and cold; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

use crate::autopilot::{AutomationPlan, Autopilot};
use crate::config::keys;
use crate::config::{Config, ConfigError};
use crate::flows::runner::NodeRuntime;
use crate::journal::Retention;
use crate::script::{FlowCatalog, NodeFacts, ScriptError};
use splice_dr_repo::offsite::Offsite;
use splice_dr_repo::trust::Keyring;
use splice_dr_repo::{RepoError, Repository};

/// The pieces of a config the service runs with (flows, nodes, repositories, keys).
pub struct Core {
    /// The config itself, in force once committed.
    pub config: Config,
    /// The compiled flows.
    pub catalog: FlowCatalog,
    /// Every node's backend and facts.
    pub nodes: BTreeMap<String, NodeRuntime>,
    /// The off-site repositories.
    pub offsite: Offsite,
    /// The keys that sign and judge manifests.
    pub keyring: Keyring,
    /// `[journal]` retention.
    pub journal_retention: Retention,
}

/// Everything a config implies, built but not installed.
pub struct Prepared {
    /// What the service runs with.
    pub core: Core,
    /// What the autopilot runs with (rules, rules script, schedules, retention).
    pub automation: AutomationPlan,
}

/// Why a config cannot be put in force.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// Flow scripts failed to compile.
    #[error("flow scripts do not compile:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Scripts(Vec<ScriptError>),
    /// A backend could not be created.
    #[error("node `{node}`: {error}")]
    Backend {
        /// Node name.
        node: String,
        /// The backend's error.
        error: splice_dr_plugin_api::BackendError,
    },
    /// The validator API client could not be built.
    #[error("node `{node}`: [node.validator]: {error}")]
    Validator {
        /// Node name.
        node: String,
        /// What is wrong.
        error: String,
    },
    /// The rules script.
    #[error(transparent)]
    Rules(#[from] ConfigError),
    /// A rule or schedule names a flow that does not exist.
    #[error("{0}")]
    Flows(String),
    /// Off-site repositories or the keyring.
    #[error(transparent)]
    Repository(#[from] RepoError),
}

/// The nodes in force and the config they were built from: a reload keeps the backend of
/// every node whose settings did not change (a plugin keeps its instance).
pub type Previous<'a> = (&'a Config, &'a BTreeMap<String, NodeRuntime>);

/// What the build is for.
#[derive(Clone, Copy)]
pub enum Purpose<'a> {
    /// Starting the daemon or the in-process CLI: a missing signing key is generated.
    Start,
    /// Reloading the daemon's config, with what runs now.
    Reload(Previous<'a>),
    /// `splice-dr check`: everything is built, nothing is written (no key generated).
    Check,
}

/// Builds everything `config` implies without changing any running state.
pub fn prepare(config: Config, purpose: Purpose<'_>) -> Result<Prepared, PrepareError> {
    let catalog = load_catalog(&config)?;
    let previous = match purpose {
        Purpose::Reload(previous) => Some(previous),
        Purpose::Start | Purpose::Check => None,
    };
    let nodes = rebuild_nodes(&config, previous)?;
    let automation = Autopilot::prepare(&config)?;
    crate::config::check_flows(&config, |f| catalog.get(f).is_some())
        .map_err(PrepareError::Flows)?;
    let offsite = Offsite::from_config(&config.repository.offsite)?;
    let keyring = keyring(&config, !matches!(purpose, Purpose::Check))?;
    let journal_retention = Retention {
        keep_runs: config.journal.keep_runs,
        keep_for: config.journal.keep_for,
    };
    Ok(Prepared {
        core: Core {
            config,
            catalog,
            nodes,
            offsite,
            keyring,
            journal_retention,
        },
        automation,
    })
}

/// Builds every node's runtime (backend + facts) from config; after a reload, nodes whose
/// backend settings did not change keep their backend (and a plugin its instance) from
/// `previous`.
pub fn rebuild_nodes(
    config: &Config,
    previous: Option<Previous<'_>>,
) -> Result<BTreeMap<String, NodeRuntime>, PrepareError> {
    let mut nodes = BTreeMap::new();
    for node in &config.nodes {
        let state_dir = config.daemon.state_dir.as_path();
        let running = crate::flows::runner::running_migration_id(state_dir, node);
        let old = previous.and_then(|(cfg, runtimes)| {
            let old_node = cfg.nodes.iter().find(|n| n.name == node.name)?;
            let rt = runtimes.get(&node.name)?;
            let from = crate::backends::BuiltFrom {
                node: old_node,
                migration_id: rt.migration_id,
                state_dir: cfg.daemon.state_dir.as_path(),
            };
            Some((from, &rt.backend))
        });
        let now = crate::backends::BuiltFrom {
            node,
            migration_id: running,
            state_dir,
        };
        let backend =
            crate::backends::build_or_reuse(now, old).map_err(|error| PrepareError::Backend {
                node: node.name.clone(),
                error,
            })?;
        let validator = match &node.validator {
            Some(v) => Some(Arc::new(
                crate::validator::ValidatorClient::from_config(v).map_err(|e| {
                    PrepareError::Validator {
                        node: node.name.clone(),
                        error: e.to_string(),
                    }
                })?,
            )),
            None => None,
        };
        let facts = NodeFacts {
            name: node.name.clone(),
            migration_id: node.migration_id,
            max_age: config.repository.max_age,
            identities_recipients: config.repository.identities_recipients.clone(),
            state_dir: config.daemon.state_dir.clone(),
            configured_participant_ids: node.configured_participant_ids(),
            node_url: node
                .validator
                .as_ref()
                .and_then(|v| v.address_for_other_hosts()),
            drill_checks: node.drill_checks.clone(),
            participant_db: node.participant_db_at(running),
            backup_kind: node.backup_kind,
        };
        nodes.insert(
            node.name.clone(),
            NodeRuntime {
                facts,
                backend,
                validator,
                config: Arc::new(node.clone()),
                migration_id: running,
            },
        );
    }
    Ok(nodes)
}

/// Compiles the flows in force for a config.
pub fn load_catalog(config: &Config) -> Result<FlowCatalog, PrepareError> {
    FlowCatalog::load(config.daemon.scripts_dir.as_deref()).map_err(PrepareError::Scripts)
}

/// This site's keyring as `config` sets it; a missing signing key is generated when
/// `generate_missing` (starting, reloading), not for `splice-dr check`, which writes nothing.
fn keyring(config: &Config, generate_missing: bool) -> Result<Keyring, RepoError> {
    let sources = keys::key_sources(config);
    let keyring = if generate_missing {
        Keyring::load(&sources)
    } else {
        Keyring::inspect(&sources)
    };
    keyring.map_err(|e| RepoError::Io {
        path: sources.signing_key.clone(),
        message: e.to_string(),
    })
}

/// Opens the configured repository with its off-site repositories and this site's
/// keyring (the signing key is generated on first use), for the CLI commands that work
/// on the repository without a daemon (`keys sign`, `identities export`).
pub fn open_repository(config: &Config) -> Result<Repository, RepoError> {
    let repo = Repository::open(&config.repository.path)?;
    repo.set_offsite(Offsite::from_config(&config.repository.offsite)?);
    repo.set_keyring(keyring(config, true)?);
    Ok(repo)
}
