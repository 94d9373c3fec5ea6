//! Users: the public validator-user call and the admin onboard / list / offboard calls.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Shared;
use crate::http::ApiError;
use crate::identity;
use crate::store::Onboarded;

pub(super) async fn validator_user(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let (party, featured) = s.store.validator_party().await?.ok_or_else(|| {
        ApiError::internal("validator is not initialized (no party in the validator database)")
    })?;
    Ok(Json(json!({
        "party_id": party,
        "user_name": s.validator_user,
        "featured": featured,
    })))
}

pub(super) async fn list(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    s.admin(&headers)?;
    let users = s.store.list_users().await?;
    Ok(Json(json!({ "usernames": users })))
}

/// `OnboardUserRequest` (validator-internal.yaml).
#[derive(Deserialize)]
pub(super) struct OnboardUserRequest {
    name: String,
    party_id: Option<String>,
}

/// A Canton party hint from a user name: keep `[A-Za-z0-9_-]`, replace the rest.
fn party_hint(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) async fn onboard(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<OnboardUserRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    s.admin(&headers)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = req.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    let party = match req.party_id.filter(|p| !p.trim().is_empty()) {
        Some(p) => p,
        None => {
            let fp = s
                .info
                .participant_uid
                .split_once("::")
                .map_or("", |(_, f)| f);
            identity::unique_id(&party_hint(name), fp)
        }
    };
    match s.store.onboard_user(name, &party).await? {
        Onboarded::Party(p) => {
            tracing::info!(user = name, party = %p, "onboarded user");
            Ok(Json(json!({ "party_id": p })))
        }
        Onboarded::Conflict(existing) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("user {name} is already onboarded with party {existing}"),
        )),
    }
}

#[derive(Deserialize)]
pub(super) struct OffboardQuery {
    username: Option<String>,
}

pub(super) async fn offboard(
    State(s): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<OffboardQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    s.admin(&headers)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = q
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing query parameter username"))?;
    if s.store.offboard_user(&name).await? {
        tracing::info!(user = %name, "offboarded user");
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(format!("user {name} not found")))
    }
}
