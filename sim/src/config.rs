//! Validated configuration of a simulated validator and of a simulated SV. The CLI (`cli.rs`)
//! builds these; tests build them directly with [`SimConfig::new`] and adjust fields.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::faults::Faults;

/// The audience the real validator expects when auth is disabled (compose default).
pub const DEFAULT_AUDIENCE: &str = "https://validator.example.com";
/// The HS256 secret the real validator accepts when auth is disabled.
pub const DEFAULT_AUTH_SECRET: &str = "unsafe";
/// Where the real validator reads its migration dump from.
pub const DEFAULT_DUMP_PATH: &str = "/domain-upgrade-dump/domain_migration_dump.json";
/// Default party hint of the simulated validator operator.
pub const DEFAULT_PARTY_HINT: &str = "splice-sim-validator";
/// Default ledger API user of the validator operator.
pub const DEFAULT_VALIDATOR_USER: &str = "administrator";
/// Default synchronizer id reported in data snapshots.
pub const DEFAULT_DOMAIN_ID: &str =
    "global-domain::12209d3bd1c3b8e6a5b1e3a51a3c1e0a4d8f8d6f0f6e1d5b1b9e0e6f9b4c3d2a1f00";
/// Default retention: data older than this is "pruned" (the 400 rule of data-snapshot).
pub const DEFAULT_PRUNING_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How the HS256 tokens of admin and wallet calls are checked.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The shared HS256 secret.
    pub secret: Vec<u8>,
    /// The audience a token's `aud` claim must contain.
    pub audience: String,
}

impl Default for AuthConfig {
    /// The real validator's "auth disabled" mode: secret `unsafe`, the compose audience.
    fn default() -> Self {
        AuthConfig {
            secret: DEFAULT_AUTH_SECRET.as_bytes().to_vec(),
            audience: DEFAULT_AUDIENCE.to_string(),
        }
    }
}

/// How the node initializes its participant when the participant DB is fresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// A brand-new node: identities are generated (from `identity_seed` when given).
    #[default]
    Fresh,
    /// `-M`: import identities, users and ACS from a DomainMigrationDump file.
    Migrating {
        /// The dump file (`/domain-upgrade-dump/domain_migration_dump.json` on a real node).
        dump_path: PathBuf,
    },
    /// `-i FILE -P ID`: re-onboarding from a NodeIdentitiesDump under a new participant id.
    IdentitiesDump {
        /// The identities dump file.
        path: PathBuf,
    },
}

/// Everything a simulated validator needs. Build with [`SimConfig::new`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address of the validator API (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Postgres URL of any database on the server (used to create the node's databases).
    pub pg_url: String,
    /// The migration id the node is configured with.
    pub migration_id: i64,
    /// Name of the validator app database.
    pub validator_db: String,
    /// Name of the participant database; `None` means `participant-<migration_id>`.
    pub participant_db: Option<String>,
    /// Party hint of the validator operator party.
    pub party_hint: String,
    /// Ledger API user of the validator operator (the `sub` admin tokens must carry).
    pub validator_user: String,
    /// Participant id; `None` means the stored one, or the party hint on a fresh node.
    pub participant_id: Option<String>,
    /// Seed for the generated identity keys; `None` means random.
    pub identity_seed: Option<String>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Base URL of a simulated SV to register with and read balances from.
    pub sv_url: Option<String>,
    /// Also run a simulated SV in this process, on this address (used when `sv_url` is None).
    pub sv_listen: Option<SocketAddr>,
    /// Database of the in-process SV.
    pub sv_db: String,
    /// How long a starting node retries an unreachable SV before failing.
    pub sv_patience: Duration,
    /// How the participant is initialized.
    pub start_mode: StartMode,
    /// Synchronizer id reported in data snapshots.
    pub domain_id: String,
    /// Data older than `now - retention` counts as pruned, unless a fault moves the horizon.
    pub pruning_retention: Duration,
    /// Local wallet balance seeded for the validator party (used when there is no SV).
    pub initial_balance: String,
    /// Faults active from the start.
    pub faults: Faults,
}

impl SimConfig {
    /// A configuration with the real validator's defaults (auth disabled mode, migration 0).
    pub fn new(listen: SocketAddr, pg_url: impl Into<String>) -> Self {
        SimConfig {
            listen,
            pg_url: pg_url.into(),
            migration_id: 0,
            validator_db: "validator".to_string(),
            participant_db: None,
            party_hint: DEFAULT_PARTY_HINT.to_string(),
            validator_user: DEFAULT_VALIDATOR_USER.to_string(),
            participant_id: None,
            identity_seed: None,
            auth: AuthConfig::default(),
            sv_url: None,
            sv_listen: None,
            sv_db: "sv".to_string(),
            sv_patience: Duration::from_secs(10),
            start_mode: StartMode::Fresh,
            domain_id: DEFAULT_DOMAIN_ID.to_string(),
            pruning_retention: DEFAULT_PRUNING_RETENTION,
            initial_balance: "0".to_string(),
            faults: Faults::default(),
        }
    }

    /// The participant database name in effect (compose naming: `participant-<id>`).
    pub fn participant_db_name(&self) -> String {
        self.participant_db
            .clone()
            .unwrap_or_else(|| format!("participant-{}", self.migration_id))
    }
}

/// Everything a simulated SV needs.
#[derive(Clone, Debug)]
pub struct SvConfig {
    /// Address of the SV API (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Postgres URL of any database on the server.
    pub pg_url: String,
    /// Name of the SV database.
    pub sv_db: String,
}

impl SvConfig {
    /// An SV on `listen` keeping its state in database `sv`.
    pub fn new(listen: SocketAddr, pg_url: impl Into<String>) -> Self {
        SvConfig {
            listen,
            pg_url: pg_url.into(),
            sv_db: "sv".to_string(),
        }
    }
}
