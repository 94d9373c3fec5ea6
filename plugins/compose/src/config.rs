//! `[node.compose]`: where the Splice docker-compose bundle of one node lives and how it
//! is named. Every default is the Splice bundle's own name, so a stock deployment needs
//! only `project` (and `bundle` for flows that restart with new flags).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings of one compose-deployed validator node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeConfig {
    /// Compose project name (label `com.docker.compose.project`): `splice-validator` in
    /// current bundles, `compose` in older docs.
    #[serde(default = "default_project")]
    pub project: String,
    /// Service names (label `com.docker.compose.service`).
    #[serde(default)]
    pub services: ServiceNames,
    /// Volume names; when absent they are read from the containers' mounts, which avoids
    /// the runbook's project-prefix mistakes.
    #[serde(default)]
    pub volumes: VolumeNames,
    /// Postgres superuser of the bundle (`SPLICE_DB_USER`).
    #[serde(default = "default_db_user")]
    pub db_user: String,
    /// File holding the Postgres password. When absent, the postgres container's own
    /// `POSTGRES_PASSWORD` is used (read through the engine API, never logged).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Validator app database.
    #[serde(default = "default_validator_db")]
    pub validator_db: String,
    /// Participant database [default: `participant-<migration_id>`].
    #[serde(default)]
    pub participant_db: Option<String>,
    /// Docker engine address (`unix:///var/run/docker.sock`, `tcp://…`) [default:
    /// `DOCKER_HOST`, else the local socket].
    #[serde(default)]
    pub docker_host: Option<String>,
    /// Host and port the daemon reaches the postgres container's SQL port at [default: the
    /// container's address on its compose network, port 5432]. Set it when the daemon
    /// cannot route to container addresses (e.g. the port is published instead).
    #[serde(default)]
    pub db_address: Option<String>,
    /// `pg_dump` compression level for the custom-format dumps (0–9).
    #[serde(default = "splice_dr_pg_toolkit::dump::default_compress")]
    pub compress: u32,
    /// Seconds `docker stop` waits before killing a container.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: u32,
    /// The release bundle's directory and start parameters, for flows that restart the
    /// node with new settings (`start.sh -m … -M`, `-i … -P …`).
    #[serde(default)]
    pub bundle: Option<BundleConfig>,
    /// Where the validator's `readyz` and the participant's gRPC health are asked.
    #[serde(default)]
    pub readiness: ReadinessConfig,
}

/// `[node.compose.readiness]`: where the applications are asked whether they are ready.
/// The real bundle gives `validator` and `participant` no healthcheck, so a running
/// container is never taken for a ready one; the defaults reach both on the compose
/// network, which the daemon can route to when it runs on the Docker host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessConfig {
    /// The validator's readiness URL (`http://` only) [default: the validator container's
    /// address on its compose network, `http://IP:5003/api/validator/readyz`]. Through the
    /// bundle's nginx: `http://wallet.localhost/api/validator/readyz` (`.localhost` names
    /// are reached on the loopback, sent as the Host header).
    #[serde(default)]
    pub validator_url: Option<String>,
    /// `host:port` of the participant's gRPC health service [default: the participant
    /// container's address, port 5061]. Unused when the participant image has its own
    /// healthcheck: then that decides.
    #[serde(default)]
    pub participant_address: Option<String>,
}

impl ReadinessConfig {
    /// Refuses a URL or address that could never be asked, when the config loads.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.validator_url {
            crate::probe::http_target(url).map_err(|e| format!("`readiness.validator_url` {e}"))?;
        }
        if let Some(addr) = &self.participant_address {
            crate::probe::check_address(addr)
                .map_err(|e| format!("`readiness.participant_address` {e}"))?;
        }
        Ok(())
    }
}

/// Compose service names of the node's parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNames {
    /// The Postgres service.
    #[serde(default = "default_postgres_service")]
    pub postgres: String,
    /// The validator app service.
    #[serde(default = "default_validator_service")]
    pub validator: String,
    /// The participant service.
    #[serde(default = "default_participant_service")]
    pub participant: String,
}

impl Default for ServiceNames {
    fn default() -> Self {
        ServiceNames {
            postgres: default_postgres_service(),
            validator: default_validator_service(),
            participant: default_participant_service(),
        }
    }
}

/// Explicit Docker volume names (full names, with the project prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeNames {
    /// The Postgres data volume [default: the one mounted at `/var/lib/postgresql/data`].
    #[serde(default)]
    pub postgres: Option<String>,
    /// The migration-dump volume [default: the one mounted at `/domain-upgrade-dump`].
    #[serde(default)]
    pub dump: Option<String>,
}

/// The Splice release bundle's compose directory and the parameters of `start.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// Directory holding `start.sh`, `stop.sh` and `compose.yaml`.
    pub dir: PathBuf,
    /// `-s`: sponsor SV URL.
    pub sponsor_sv: String,
    /// `-o`: onboarding secret (may be empty once onboarded).
    #[serde(default)]
    pub onboarding_secret: String,
    /// `-p`: party hint.
    pub party_hint: String,
    /// `-P`: participant id; flows that re-onboard replace it and every later start must
    /// pass the new one.
    #[serde(default)]
    pub participant_id: Option<String>,
    /// `-a`: start with authentication enabled.
    #[serde(default)]
    pub auth: bool,
    /// Further flags passed verbatim (e.g. `["-c", "https://scan…"]`).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_project() -> String {
    "splice-validator".into()
}
fn default_db_user() -> String {
    "cnadmin".into()
}
fn default_validator_db() -> String {
    "validator".into()
}
fn default_postgres_service() -> String {
    "postgres-splice".into()
}
fn default_validator_service() -> String {
    "validator".into()
}
fn default_participant_service() -> String {
    "participant".into()
}
fn default_stop_timeout() -> u32 {
    30
}

impl ComposeConfig {
    /// The participant database at `migration_id`: `participant_db`, else the bundle's
    /// `participant-${MIGRATION_ID}`.
    pub fn participant_db(&self, migration_id: u64) -> String {
        self.participant_db
            .clone()
            .unwrap_or_else(|| format!("participant-{migration_id}"))
    }

    /// The participant ids the bundle's start parameters name: `-P` when set, and the
    /// party hint (`-p`), from which the validator derives its id when `-P` is not set.
    pub fn configured_participant_ids(&self) -> Vec<String> {
        self.bundle
            .as_ref()
            .map(|b| {
                b.participant_id
                    .iter()
                    .chain(std::iter::once(&b.party_hint))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The config with every default, for tests and examples.
    pub fn with_project(project: &str) -> Self {
        ComposeConfig {
            project: project.into(),
            services: ServiceNames::default(),
            volumes: VolumeNames::default(),
            db_user: default_db_user(),
            password_file: None,
            validator_db: default_validator_db(),
            participant_db: None,
            docker_host: None,
            db_address: None,
            compress: splice_dr_pg_toolkit::dump::default_compress(),
            stop_timeout: default_stop_timeout(),
            bundle: None,
            readiness: ReadinessConfig::default(),
        }
    }
}
