//! `GET v0/admin/domain/data-snapshot`: the DomainMigrationDump as of a timestamp, with the
//! real endpoint's 400 (pruned) / 429 (not caught up) rules driven by the fault knobs.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};

use super::Shared;
use crate::http::ApiError;
use crate::snapshot::{
    builtin_dars, check_timestamp, encode_acs, format_time, DataSnapshotResponse,
    DomainMigrationDump, ParticipantUsersData, SnapshotRefusal,
};
use crate::store::NodeStore;

pub(super) async fn data_snapshot(
    State(s): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<DataSnapshotResponse>, ApiError> {
    s.admin(&headers)?;
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let raw_ts = params
        .get("timestamp")
        .ok_or_else(|| ApiError::bad_request("missing query parameter timestamp"))?;
    let ts: DateTime<Utc> = DateTime::parse_from_rfc3339(raw_ts)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "invalid timestamp '{raw_ts}' (expected ISO-8601 UTC, e.g. 2026-01-01T00:00:00.000Z): {e}"
            ))
        })?
        .with_timezone(&Utc);
    let migration_id = match params.get("migration_id") {
        Some(m) => m
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid migration_id '{m}'")))?,
        None => s.migration_id + 1,
    };
    let force = match params.get("force").map(String::as_str) {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(ApiError::bad_request(format!("invalid force '{other}'"))),
    };

    let faults = s.faults.get();
    let now = Utc::now();
    let retention = chrono::Duration::from_std(s.pruning_retention)
        .unwrap_or_else(|_| chrono::Duration::days(30));
    let horizon = faults.pruning_horizon.unwrap_or(now - retention);
    let lag = chrono::Duration::seconds(i64::try_from(faults.lag_secs).unwrap_or(i64::MAX / 1000));
    let caught_up = now - lag;
    match check_timestamp(ts, horizon, caught_up) {
        Ok(()) => {}
        Err(SnapshotRefusal::Pruned(m)) => return Err(ApiError::bad_request(m)),
        Err(SnapshotRefusal::NotCaughtUp(m)) => {
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, m))
        }
    }

    let client = s.store.participant().await?;
    let identity = NodeStore::identity(&client)
        .await?
        .ok_or_else(|| ApiError::internal("participant has no identity (not initialized)"))?;
    let users = s.store.ledger_users().await?;
    let ts_text = format_time(ts);
    // The ACS as of the timestamp: contracts created later are not in it.
    let contracts = s
        .store
        .contracts()
        .await?
        .into_iter()
        .filter(|c| {
            DateTime::parse_from_rfc3339(&c.created_at)
                .map(|t| t.with_timezone(&Utc) <= ts)
                .unwrap_or(true)
        })
        .collect();
    tracing::info!(timestamp = %ts_text, migration_id, force, "produced a domain data snapshot");
    Ok(Json(DataSnapshotResponse {
        data_snapshot: DomainMigrationDump {
            participant: identity.dump,
            participant_users: ParticipantUsersData {
                identity_providers: Vec::new(),
                users,
            },
            acs_snapshot: encode_acs(contracts),
            acs_timestamp: ts_text,
            dars: builtin_dars(),
            migration_id,
            domain_id: s.domain_id.clone(),
            created_at: format_time(now),
        },
        migration_id,
    }))
}
