//! HTTP handlers of the simulated SV (`/sv/...`), backed by its Postgres database.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_postgres::error::SqlState;

use super::{RegisterRequest, Registration, SetBalanceRequest, SvBalance};
use crate::db::{Pg, Schema};
use crate::http::{method_not_allowed_fallback, not_found_fallback, ApiError};
use crate::snapshot::format_time;

#[derive(Clone)]
pub(super) struct SvState {
    pub pg: Pg,
    pub db: String,
}

pub(super) fn router(state: SvState) -> Router {
    Router::new()
        .route("/sv/readyz", get(readyz))
        .route("/sv/participants", get(list_participants).post(register))
        .route(
            "/sv/parties/{party}/balance",
            get(get_balance).post(set_balance),
        )
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .with_state(state)
}

fn db_error(e: tokio_postgres::Error) -> ApiError {
    if e.code() == Some(&SqlState::INVALID_TEXT_REPRESENTATION) {
        return ApiError::bad_request(format!("invalid quantity: {e}"));
    }
    ApiError::internal(format!("SV database: {e}"))
}

async fn readyz(State(s): State<SvState>) -> impl IntoResponse {
    match s.pg.check_health(&s.db, Schema::Sv).await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

async fn list_participants(State(s): State<SvState>) -> Result<Json<serde_json::Value>, ApiError> {
    let client = s.pg.connect(&s.db).await?;
    let rows = client
        .query(
            "SELECT participant_id, party_id, registered_at FROM sv_participants ORDER BY registered_at, participant_id",
            &[],
        )
        .await
        .map_err(db_error)?;
    let list: Vec<Registration> = rows
        .iter()
        .map(|r| Registration {
            participant_id: r.get(0),
            party_id: r.get(1),
            registered_at: format_time(r.get(2)),
        })
        .collect();
    Ok(Json(json!({ "participants": list })))
}

async fn register(
    State(s): State<SvState>,
    body: Result<Json<RegisterRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if req.participant_id.is_empty() || req.party_id.is_empty() || req.node_instance.is_empty() {
        return Err(ApiError::bad_request(
            "participant_id, party_id and node_instance must not be empty",
        ));
    }
    let client = s.pg.connect(&s.db).await?;
    let inserted = client
        .query_opt(
            "INSERT INTO sv_participants (participant_id, party_id, node_instance, migration_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (participant_id) DO NOTHING RETURNING registered_at",
            &[&req.participant_id, &req.party_id, &req.node_instance, &req.migration_id],
        )
        .await
        .map_err(db_error)?;
    let new = inserted.is_some();
    if !new {
        let row = client
            .query_one(
                "SELECT party_id, node_instance, registered_at, migration_id FROM sv_participants WHERE participant_id = $1",
                &[&req.participant_id],
            )
            .await
            .map_err(db_error)?;
        let party: String = row.get(0);
        let instance: String = row.get(1);
        let registered_migration: i64 = row.get(3);
        let migrated = party == req.party_id
            && instance != req.node_instance
            && req.migration_id > registered_migration;
        if migrated {
            client
                .execute(
                    "UPDATE sv_participants SET node_instance = $2, migration_id = $3 WHERE participant_id = $1",
                    &[&req.participant_id, &req.node_instance, &req.migration_id],
                )
                .await
                .map_err(db_error)?;
            tracing::info!(participant_id = %req.participant_id, migration_id = req.migration_id, "participant migrated");
        } else if instance != req.node_instance || party != req.party_id {
            let at: chrono::DateTime<chrono::Utc> = row.get(2);
            tracing::warn!(participant_id = %req.participant_id, "refused a reused participant id");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "participant id '{}' was already used by another node (registered at {}); \
                     a re-onboarded validator needs a participant id never used before",
                    req.participant_id,
                    format_time(at)
                ),
            ));
        }
    } else {
        tracing::info!(participant_id = %req.participant_id, party = %req.party_id, "registered participant");
    }
    client
        .execute(
            "INSERT INTO sv_balances (party_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&req.party_id],
        )
        .await
        .map_err(db_error)?;
    Ok(Json(json!({
        "participant_id": req.participant_id,
        "party_id": req.party_id,
        "new": new,
    })))
}

const BALANCE_SELECT: &str =
    "SELECT round, effective_unlocked_qty::text, effective_locked_qty::text, \
     total_holding_fees::text FROM sv_balances WHERE party_id = $1";

async fn get_balance(
    State(s): State<SvState>,
    Path(party): Path<String>,
) -> Result<Json<SvBalance>, ApiError> {
    let client = s.pg.connect(&s.db).await?;
    let row = client
        .query_opt(BALANCE_SELECT, &[&party])
        .await
        .map_err(db_error)?;
    // A party the SV never saw simply holds nothing.
    Ok(Json(match row {
        Some(r) => SvBalance {
            party_id: party,
            round: r.get(0),
            effective_unlocked_qty: r.get(1),
            effective_locked_qty: r.get(2),
            total_holding_fees: r.get(3),
        },
        None => SvBalance {
            party_id: party,
            round: 0,
            effective_unlocked_qty: "0.0000000000".to_string(),
            effective_locked_qty: "0.0000000000".to_string(),
            total_holding_fees: "0.0000000000".to_string(),
        },
    }))
}

async fn set_balance(
    State(s): State<SvState>,
    Path(party): Path<String>,
    body: Result<Json<SetBalanceRequest>, JsonRejection>,
) -> Result<Json<SvBalance>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let client = s.pg.connect(&s.db).await?;
    client
        .execute(
            "INSERT INTO sv_balances AS b (party_id, effective_unlocked_qty, effective_locked_qty, total_holding_fees, round) \
             VALUES ($1, COALESCE($2::text::numeric, 0), COALESCE($3::text::numeric, 0), COALESCE($4::text::numeric, 0), COALESCE($5::bigint, 0)) \
             ON CONFLICT (party_id) DO UPDATE SET \
               effective_unlocked_qty = COALESCE($2::text::numeric, b.effective_unlocked_qty), \
               effective_locked_qty = COALESCE($3::text::numeric, b.effective_locked_qty), \
               total_holding_fees = COALESCE($4::text::numeric, b.total_holding_fees), \
               round = COALESCE($5::bigint, b.round)",
            &[
                &party,
                &req.effective_unlocked_qty,
                &req.effective_locked_qty,
                &req.total_holding_fees,
                &req.round,
            ],
        )
        .await
        .map_err(db_error)?;
    get_balance(State(s), Path(party)).await
}
