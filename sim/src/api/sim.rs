//! `/sim/...`: the simulator's own knobs (no auth: test plumbing, not part of Splice).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;

use super::Shared;
use crate::faults::{Faults, FaultsPatch};
use crate::http::ApiError;
use crate::startup::NodeInfo;

pub(super) async fn get_faults(State(s): State<Shared>) -> Json<Faults> {
    Json(s.faults.get())
}

pub(super) async fn patch_faults(
    State(s): State<Shared>,
    body: Result<Json<FaultsPatch>, JsonRejection>,
) -> Result<Json<Faults>, ApiError> {
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let faults = s.faults.apply(patch);
    tracing::info!(?faults, "faults changed");
    Ok(Json(faults))
}

pub(super) async fn clear_faults(State(s): State<Shared>) -> Json<Faults> {
    s.faults.set(Faults::default());
    tracing::info!("faults cleared");
    Json(Faults::default())
}

pub(super) async fn info(State(s): State<Shared>) -> Json<NodeInfo> {
    Json(s.info.clone())
}
