//! `splice-sim`: a simulated Splice validator node for tests and demos that break it on
//! purpose. Its state lives in real Postgres databases (`validator`, `participant-<id>`), so
//! backing up, dropping or restoring those databases really changes what it serves. A
//! simulated SV side keeps balances and the participant ids ever used, so re-onboarding and
//! participant-id reuse behave as on the real network.
//!
//! In-process use (tests):
//!
//! ```no_run
//! # async fn demo() -> Result<(), splice_sim::SimError> {
//! use splice_sim::{Sim, SimConfig, Sv, SvConfig};
//! let pg = "postgresql://splice_dr_test:splice_dr_test@127.0.0.1:5432/postgres";
//! let sv = Sv::start(SvConfig::new("127.0.0.1:0".parse().unwrap(), pg)).await?;
//! let mut cfg = SimConfig::new("127.0.0.1:0".parse().unwrap(), pg);
//! cfg.sv_url = Some(sv.url());
//! let node = Sim::start(cfg).await?;
//! let _api = node.api_url(); // http://127.0.0.1:PORT/api/validator
//! let _token = node.admin_token();
//! node.shutdown().await;
//! sv.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
mod error;
pub mod faults;
mod http;
pub mod identity;
pub mod participant;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod sv;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{AuthConfig, SimConfig, StartMode, SvConfig};
pub use error::SimError;
pub use faults::{FaultHandle, Faults, FaultsPatch};
pub use participant::{Participant, ParticipantConfig, RunningParticipant};
pub use startup::NodeInfo;
pub use sv::{RunningSv, Sv};

use crate::api::AppState;
use crate::db::Pg;
use crate::store::NodeStore;
use crate::sv::SvClient;

/// Entry point of the simulated validator.
pub struct Sim;

impl Sim {
    /// Creates/opens the node's databases, runs the start mode's checks and imports,
    /// registers with the SV (starting the in-process one when `sv_listen` is set), then
    /// binds and serves. Fails (without serving) exactly where the real validator refuses
    /// to start.
    pub async fn start(cfg: SimConfig) -> Result<RunningSim, SimError> {
        let pg = Pg::parse(&cfg.pg_url)?;
        let local_sv = match cfg.sv_listen {
            Some(listen) => Some(
                Sv::start(SvConfig {
                    listen,
                    pg_url: cfg.pg_url.clone(),
                    sv_db: cfg.sv_db.clone(),
                })
                .await?,
            ),
            None => None,
        };
        match Self::start_validator(&cfg, pg, local_sv.as_ref()).await {
            Ok((addr, info, faults, token, task)) => Ok(RunningSim {
                addr,
                info,
                faults,
                token,
                task,
                sv: local_sv,
                auth: cfg.auth.clone(),
                validator_user: cfg.validator_user.clone(),
            }),
            Err(e) => {
                if let Some(sv) = local_sv {
                    sv.shutdown().await;
                }
                Err(e)
            }
        }
    }

    async fn start_validator(
        cfg: &SimConfig,
        pg: Pg,
        local_sv: Option<&RunningSv>,
    ) -> Result<
        (
            SocketAddr,
            NodeInfo,
            FaultHandle,
            CancellationToken,
            JoinHandle<()>,
        ),
        SimError,
    > {
        let sv_url = cfg.sv_url.clone().or_else(|| local_sv.map(RunningSv::url));
        let sv = sv_url.as_deref().map(SvClient::new).transpose()?;
        let store = NodeStore::new(pg, cfg.validator_db.clone(), cfg.participant_db_name());
        let info = startup::initialize(cfg, &store, sv.as_ref()).await?;
        let faults = FaultHandle::new(cfg.faults.clone());
        let state = Arc::new(AppState {
            store,
            faults: faults.clone(),
            verifier: auth::Verifier::new(cfg.auth.secret.clone(), cfg.auth.audience.clone()),
            validator_user: cfg.validator_user.clone(),
            sv,
            migration_id: cfg.migration_id,
            domain_id: cfg.domain_id.clone(),
            pruning_retention: cfg.pruning_retention,
            info: info.clone(),
        });
        let token = CancellationToken::new();
        let (addr, task) = http::serve(cfg.listen, api::router(state), token.clone()).await?;
        tracing::info!(%addr, "simulated validator listening on http://{addr}/api/validator");
        Ok((addr, info, faults, token, task))
    }
}

/// A running simulated validator (and its in-process SV, if any).
pub struct RunningSim {
    addr: SocketAddr,
    info: NodeInfo,
    faults: FaultHandle,
    token: CancellationToken,
    task: JoinHandle<()>,
    sv: Option<RunningSv>,
    auth: AuthConfig,
    validator_user: String,
}

impl RunningSim {
    /// The bound address of the validator API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/api/validator`, the base of the Splice endpoints.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/validator", self.addr)
    }

    /// What the node is (party, participant id, migration id, databases).
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The live fault knobs (same effect as `POST /sim/faults`).
    pub fn faults(&self) -> &FaultHandle {
        &self.faults
    }

    /// The in-process SV, when started with `sv_listen`.
    pub fn sv(&self) -> Option<&RunningSv> {
        self.sv.as_ref()
    }

    /// A valid admin token: HS256 with the configured secret, `sub` = the validator user,
    /// `aud` = the configured audience, no `exp` (the real no-auth token's shape).
    pub fn admin_token(&self) -> String {
        self.token_for(&self.validator_user)
    }

    /// A valid token for any ledger API user (e.g. a wallet user).
    pub fn token_for(&self, user: &str) -> String {
        auth::mint_hs256(
            &self.auth.secret,
            &serde_json::json!({
                "sub": user,
                "aud": self.auth.audience,
                "iat": chrono::Utc::now().timestamp(),
            }),
        )
    }

    /// The token that stops this node (e.g. for a signal handler).
    pub fn cancel_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops serving, waits for in-flight calls, then stops the in-process SV.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
        if let Some(sv) = self.sv {
            sv.shutdown().await;
        }
    }

    /// Waits until the server ends (after [`RunningSim::cancel_token`] was cancelled), then
    /// stops the in-process SV.
    pub async fn wait(self) {
        let _ = self.task.await;
        if let Some(sv) = self.sv {
            sv.shutdown().await;
        }
    }
}

/// Installs rustls' ring provider once. In a workspace build reqwest's features are
/// unified with the daemon's (`rustls-no-provider`), and a client then needs a
/// process-wide provider before it is built.
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
