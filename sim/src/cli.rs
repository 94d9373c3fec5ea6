//! Command line: `splice-sim --listen ADDR --pg-url URL [...]` runs a validator (optionally
//! with an in-process SV); `splice-sim sv --listen ADDR --pg-url URL` runs only an SV;
//! `splice-sim participant` runs the participant's gRPC health service (the participant
//! stand-in of the compose tests), configured like the real participant container.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::config::{
    AuthConfig, SimConfig, StartMode, SvConfig, DEFAULT_AUDIENCE, DEFAULT_AUTH_SECRET,
    DEFAULT_DOMAIN_ID, DEFAULT_DUMP_PATH, DEFAULT_PARTY_HINT, DEFAULT_VALIDATOR_USER,
};
use crate::error::SimError;
use crate::faults::Faults;
use crate::participant::ParticipantConfig;

/// A simulated Splice validator node (admin API, health, users, identities, data snapshots,
/// SV-held balances) on real Postgres, for tests and demos that break it on purpose.
#[derive(Debug, Parser)]
#[command(
    name = "splice-sim",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Run something other than a validator.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Validator options (when no subcommand is given).
    #[command(flatten)]
    pub validator: ValidatorArgs,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `splice_sim=debug`.
    #[arg(long, global = true, env = "SPLICE_SIM_LOG", default_value = "info")]
    pub log: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the simulated SV side (balances, participant-id registry).
    Sv(SvArgs),
    /// Run the participant's gRPC health service (`grpc.health.v1.Health/Check`): SERVING
    /// while its database answers. Reads the environment the real compose.yaml gives the
    /// participant container.
    Participant(ParticipantArgs),
}

/// Options of the participant stand-in: the `CANTON_PARTICIPANT_POSTGRES_*` variables of the
/// real bundle's `participant` service.
#[derive(Debug, Args)]
pub struct ParticipantArgs {
    /// Address of the gRPC health service (the participant's health port is 5061).
    #[arg(long, default_value = "0.0.0.0:5061")]
    pub listen: SocketAddr,
    /// Postgres host.
    #[arg(long, env = "CANTON_PARTICIPANT_POSTGRES_SERVER")]
    pub db_server: String,
    /// Postgres port.
    #[arg(long, env = "CANTON_PARTICIPANT_POSTGRES_PORT", default_value_t = 5432)]
    pub db_port: u16,
    /// Postgres user.
    #[arg(long, env = "CANTON_PARTICIPANT_POSTGRES_USER")]
    pub db_user: String,
    /// Postgres password (give it through the environment, not the command line).
    #[arg(
        long,
        env = "CANTON_PARTICIPANT_POSTGRES_PASSWORD",
        hide_env_values = true
    )]
    pub db_password: String,
    /// The participant database (`participant-<migration id>`).
    #[arg(long, env = "CANTON_PARTICIPANT_POSTGRES_DB")]
    pub db_name: String,
}

impl ParticipantArgs {
    /// The participant stand-in's configuration.
    pub fn into_config(self) -> ParticipantConfig {
        ParticipantConfig {
            listen: self.listen,
            db_server: self.db_server,
            db_port: self.db_port,
            db_user: self.db_user,
            db_password: self.db_password,
            db_name: self.db_name,
        }
    }
}

/// Options of the simulated SV.
#[derive(Debug, Args)]
pub struct SvArgs {
    /// Address of the SV API, e.g. 127.0.0.1:5014 (port 0 picks one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Postgres URL of any database on the server; the SV creates its own database.
    #[arg(long, env = "SPLICE_SIM_PG_URL", hide_env_values = true)]
    pub pg_url: String,
    /// Name of the SV database.
    #[arg(long, default_value = "sv")]
    pub sv_db: String,
}

/// Options of the simulated validator.
#[derive(Debug, Args)]
pub struct ValidatorArgs {
    /// Address of the validator API, served under /api/validator (port 0 picks one).
    #[arg(long, required = true)]
    pub listen: Option<SocketAddr>,
    /// Postgres URL of any database on the server; the node creates its own databases.
    #[arg(
        long,
        env = "SPLICE_SIM_PG_URL",
        hide_env_values = true,
        required = true
    )]
    pub pg_url: Option<String>,
    /// Migration id the node is configured with (selects the participant DB).
    #[arg(long, default_value_t = 0)]
    pub migration_id: i64,
    /// Name of the validator app database.
    #[arg(long, default_value = "validator")]
    pub validator_db: String,
    /// Name of the participant database [default: participant-<migration-id>].
    #[arg(long)]
    pub participant_db: Option<String>,
    /// Party hint of the validator operator party (`<hint>::<fingerprint>`).
    #[arg(long, default_value = DEFAULT_PARTY_HINT)]
    pub party_hint: String,
    /// Ledger API user of the validator operator (the `sub` admin tokens must carry).
    #[arg(long, default_value = DEFAULT_VALIDATOR_USER)]
    pub validator_user: String,
    /// Participant id [default: the stored one, or the party hint on a fresh node].
    /// Required with --identities-dump: a NEW id, never used before.
    #[arg(long)]
    pub participant_id: Option<String>,
    /// Seed of the generated identity keys (same seed, same keys) [default: random].
    #[arg(long)]
    pub identity_seed: Option<String>,
    /// File holding the HS256 secret of admin/wallet tokens [default: the no-auth secret `unsafe`].
    #[arg(long)]
    pub auth_secret_file: Option<PathBuf>,
    /// Audience tokens must carry in `aud`.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
    /// URL of a simulated SV to register the participant id with and read balances from.
    #[arg(long)]
    pub sv_url: Option<String>,
    /// Also run a simulated SV in this process on this address (used unless --sv-url is given).
    #[arg(long)]
    pub sv_listen: Option<SocketAddr>,
    /// Database of the in-process SV.
    #[arg(long, default_value = "sv")]
    pub sv_db: String,
    /// Migrating start (-M): import the domain migration dump at --dump-path into the fresh
    /// participant; refuse to start when it is missing or for another migration id.
    #[arg(long, conflicts_with = "identities_dump")]
    pub migrating: bool,
    /// Where the migration dump is read from with --migrating.
    #[arg(long, default_value = DEFAULT_DUMP_PATH)]
    pub dump_path: PathBuf,
    /// Re-onboarding start (-i FILE -P ID): import this NodeIdentitiesDump into the fresh
    /// participant under the new --participant-id.
    #[arg(long, requires = "participant_id")]
    pub identities_dump: Option<PathBuf>,
    /// Synchronizer id reported in data snapshots.
    #[arg(long, default_value = DEFAULT_DOMAIN_ID)]
    pub domain_id: String,
    /// Data older than now minus this many seconds counts as pruned (data-snapshot 400).
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    pub pruning_retention_secs: u64,
    /// Local wallet balance seeded for the validator party (used when there is no SV).
    #[arg(long, default_value = "0")]
    pub initial_balance: String,
    /// Fault: readyz answers 503 from the start.
    #[arg(long)]
    pub unhealthy: bool,
    /// Fault: the participant lags this many seconds (data-snapshot 429 for later timestamps).
    #[arg(long, default_value_t = 0)]
    pub lag_secs: u64,
    /// Fault: absolute pruning horizon, RFC 3339 (data-snapshot 400 for earlier timestamps).
    #[arg(long)]
    pub pruning_horizon: Option<DateTime<Utc>>,
    /// Fault: the identities endpoint answers 404.
    #[arg(long)]
    pub identities_404: bool,
    /// Fault: delay every validator API call by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

impl SvArgs {
    /// The SV configuration.
    pub fn into_config(self) -> SvConfig {
        SvConfig {
            listen: self.listen,
            pg_url: self.pg_url,
            sv_db: self.sv_db,
        }
    }
}

impl ValidatorArgs {
    /// The validator configuration (reads the auth secret file).
    pub fn into_config(self) -> Result<SimConfig, SimError> {
        let listen = self
            .listen
            .ok_or_else(|| SimError::Config("--listen is required".into()))?;
        let pg_url = self
            .pg_url
            .ok_or_else(|| SimError::Config("--pg-url is required".into()))?;
        let secret = match &self.auth_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
                    path: path.clone(),
                    source,
                })?;
                let secret = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
                if secret.is_empty() {
                    return Err(SimError::Config(format!(
                        "auth secret file {} is empty",
                        path.display()
                    )));
                }
                secret
            }
            None => DEFAULT_AUTH_SECRET.as_bytes().to_vec(),
        };
        let start_mode = if self.migrating {
            StartMode::Migrating {
                dump_path: self.dump_path,
            }
        } else if let Some(path) = self.identities_dump {
            StartMode::IdentitiesDump { path }
        } else {
            StartMode::Fresh
        };
        let mut cfg = SimConfig::new(listen, pg_url);
        cfg.migration_id = self.migration_id;
        cfg.validator_db = self.validator_db;
        cfg.participant_db = self.participant_db;
        cfg.party_hint = self.party_hint;
        cfg.validator_user = self.validator_user;
        cfg.participant_id = self.participant_id;
        cfg.identity_seed = self.identity_seed;
        cfg.auth = AuthConfig {
            secret,
            audience: self.audience,
        };
        cfg.sv_url = self.sv_url;
        cfg.sv_listen = self.sv_listen;
        cfg.sv_db = self.sv_db;
        cfg.start_mode = start_mode;
        cfg.domain_id = self.domain_id;
        cfg.pruning_retention = Duration::from_secs(self.pruning_retention_secs);
        cfg.initial_balance = self.initial_balance;
        cfg.faults = Faults {
            unhealthy: self.unhealthy,
            dead: false,
            lag_secs: self.lag_secs,
            pruning_horizon: self.pruning_horizon,
            identities_404: self.identities_404,
            delay_ms: self.delay_ms,
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_validator_and_sv_forms() {
        let cli = Cli::try_parse_from([
            "splice-sim",
            "--listen",
            "127.0.0.1:0",
            "--pg-url",
            "postgresql://u:p@h/postgres",
            "--migration-id",
            "3",
        ])
        .unwrap();
        let cfg = cli.validator.into_config().unwrap();
        assert_eq!(cfg.participant_db_name(), "participant-3");
        assert_eq!(cfg.auth.secret, b"unsafe");

        let cli = Cli::try_parse_from([
            "splice-sim",
            "sv",
            "--listen",
            "127.0.0.1:0",
            "--pg-url",
            "postgresql://u:p@h/postgres",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Sv(_))));

        let cli = Cli::try_parse_from([
            "splice-sim",
            "participant",
            "--db-server",
            "postgres-splice",
            "--db-user",
            "cnadmin",
            "--db-password",
            "supersafe",
            "--db-name",
            "participant-0",
        ])
        .unwrap();
        let Some(Command::Participant(args)) = cli.command else {
            panic!("not the participant subcommand");
        };
        let cfg = args.into_config();
        assert_eq!(cfg.listen.port(), 5061);
        assert_eq!(cfg.db_port, 5432);
        assert!(!format!("{cfg:?}").contains("supersafe"));

        assert!(Cli::try_parse_from(["splice-sim", "--pg-url", "x"]).is_err());
        assert!(Cli::try_parse_from([
            "splice-sim",
            "--listen",
            "127.0.0.1:0",
            "--pg-url",
            "x",
            "--identities-dump",
            "f"
        ])
        .is_err());
    }
}
