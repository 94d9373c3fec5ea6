//! `readyz` / `livez`: readiness reflects the real state of both databases, so dropping a
//! table or a database makes the node unhealthy, as a broken real node would be.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::db::Schema;
use crate::http::ApiError;

pub(super) async fn readyz(State(s): State<Shared>) -> Response {
    let faults = s.faults.get();
    if faults.dead || faults.unhealthy {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated fault: node is unhealthy",
        )
        .into_response();
    }
    let pg = s.store.pg();
    let (v, p) = tokio::join!(
        pg.check_health(&s.store.validator_db, Schema::Validator),
        pg.check_health(&s.store.participant_db, Schema::Participant)
    );
    let problems: Vec<String> = [v, p].into_iter().filter_map(Result::err).collect();
    if problems.is_empty() {
        StatusCode::OK.into_response()
    } else {
        tracing::info!(problems = ?problems, "not ready");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, problems.join("; ")).into_response()
    }
}

pub(super) async fn livez(State(s): State<Shared>) -> Response {
    if s.faults.get().dead {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated fault: node is dead",
        )
        .into_response();
    }
    StatusCode::OK.into_response()
}
