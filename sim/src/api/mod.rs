//! The validator's HTTP API (`/api/validator/...`) plus the simulator's own knobs (`/sim/...`).
//! One module per endpoint family; shared state and the auth checks live here.

mod health;
mod identities;
mod sim;
mod snapshot;
mod users;
mod wallet;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{AuthError, Claims, Verifier};
use crate::faults::FaultHandle;
use crate::http::{method_not_allowed_fallback, not_found_fallback, ApiError};
use crate::startup::NodeInfo;
use crate::store::NodeStore;
use crate::sv::SvClient;

/// What every handler sees.
pub(crate) struct AppState {
    pub store: NodeStore,
    pub faults: FaultHandle,
    pub verifier: Verifier,
    pub validator_user: String,
    pub sv: Option<SvClient>,
    pub migration_id: i64,
    pub domain_id: String,
    pub pruning_retention: Duration,
    pub info: NodeInfo,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn verify(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.verifier
            .verify_header(header, Self::now())
            .map_err(auth_error)
    }

    /// Admin calls: a valid token whose `sub` is the validator operator user.
    pub fn admin(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        let claims = self.verify(headers)?;
        if claims.sub.as_deref() != Some(self.validator_user.as_str()) {
            return Err(auth_error(AuthError::WrongSubject(
                claims.sub.unwrap_or_default(),
            )));
        }
        Ok(claims)
    }

    /// Wallet calls: a valid token with a `sub` (which user it is is checked by the handler).
    pub fn wallet_user(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let claims = self.verify(headers)?;
        claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| auth_error(AuthError::WrongSubject(String::new())))
    }
}

fn auth_error(e: AuthError) -> ApiError {
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    ApiError::new(status, e.to_string())
}

/// Applies the `delay_ms` fault to every validator API call and logs the call.
async fn api_middleware(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let delay = s.faults.get().delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "api call");
    resp
}

pub(crate) fn router(state: Shared) -> Router {
    let validator = Router::new()
        .route("/readyz", get(health::readyz))
        .route("/livez", get(health::livez))
        .route("/v0/validator-user", get(users::validator_user))
        .route("/v0/admin/users", get(users::list).post(users::onboard))
        .route("/v0/admin/users/offboard", post(users::offboard))
        .route("/v0/admin/participant/identities", get(identities::dump))
        .route(
            "/v0/admin/domain/data-snapshot",
            get(snapshot::data_snapshot),
        )
        .route("/v0/wallet/balance", get(wallet::balance))
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api_middleware,
        ));
    Router::new()
        .nest("/api/validator", validator)
        .route(
            "/sim/faults",
            get(sim::get_faults)
                .post(sim::patch_faults)
                .delete(sim::clear_faults),
        )
        .route("/sim/info", get(sim::info))
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .with_state(state)
}
