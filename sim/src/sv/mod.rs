//! The simulated SV side: the network's memory of every participant id ever used and of each
//! party's balance. It is what makes re-onboarding meaningful: a fresh node that imports an
//! old identities dump gets the old party's balance back, and a reused participant id is
//! refused.

mod client;
mod server;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::SvClient;

use crate::config::SvConfig;
use crate::db::{Pg, Schema};
use crate::error::SimError;

/// `POST /sv/participants` body: a validator announcing the participant id it runs under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The participant id (not the uid).
    pub participant_id: String,
    /// The validator operator party hosted by the participant.
    pub party_id: String,
    /// Identifies one node installation (one participant DB): restarts of the same node
    /// re-register with the same instance and are accepted; another node is refused.
    pub node_instance: String,
    /// The migration id the participant runs under. A network migration moves the same
    /// participant (same id, same party) into a new participant database, hence a new
    /// instance: that is accepted when the migration id is higher than the registered one.
    #[serde(default)]
    pub migration_id: i64,
}

/// One participant id known to the SV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The participant id.
    pub participant_id: String,
    /// Its party.
    pub party_id: String,
    /// When it was first registered (RFC 3339).
    pub registered_at: String,
}

/// A party's balance as the SV holds it; quantities are decimal strings (10 decimals).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvBalance {
    /// The party.
    pub party_id: String,
    /// Current round.
    pub round: i64,
    /// Unlocked amulet.
    pub effective_unlocked_qty: String,
    /// Locked amulet.
    pub effective_locked_qty: String,
    /// Holding fees.
    pub total_holding_fees: String,
}

/// `POST /sv/parties/{party}/balance` body; absent fields keep their value (new parties: 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBalanceRequest {
    /// Unlocked amulet, a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_unlocked_qty: Option<String>,
    /// Locked amulet, a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_locked_qty: Option<String>,
    /// Holding fees, a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_holding_fees: Option<String>,
    /// Round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<i64>,
}

/// Entry point of the simulated SV.
pub struct Sv;

impl Sv {
    /// Creates the SV database and schema if missing, binds, and serves until shut down.
    pub async fn start(config: SvConfig) -> Result<RunningSv, SimError> {
        let pg = Pg::parse(&config.pg_url)?;
        pg.ensure_schema(&config.sv_db, Schema::Sv).await?;
        let token = CancellationToken::new();
        let router = server::router(server::SvState {
            pg,
            db: config.sv_db.clone(),
        });
        let (addr, task) = crate::http::serve(config.listen, router, token.clone()).await?;
        tracing::info!(%addr, db = %config.sv_db, "simulated SV listening");
        Ok(RunningSv { addr, token, task })
    }
}

/// A running SV. Dropping it does not stop it; call [`RunningSv::shutdown`].
pub struct RunningSv {
    addr: SocketAddr,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningSv {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value to pass as a validator's `sv_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (in-flight requests finish) and waits for the server to end.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server ends (after a shutdown from elsewhere).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// The token that stops this server.
    pub fn cancel_token(&self) -> CancellationToken {
        self.token.clone()
    }
}
