//! `GET v0/wallet/balance`: the token user's balance; from the SV when one is configured
//! (so it survives the loss of the node), else from the participant DB.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::Shared;
use crate::http::ApiError;

pub(super) async fn balance(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = s.wallet_user(&headers)?;
    let party = if user == s.validator_user {
        s.store.validator_party().await?.map(|(p, _)| p)
    } else {
        s.store.user_party(&user).await?
    }
    .ok_or_else(|| ApiError::not_found(format!("user {user} is not onboarded")))?;
    let (round, unlocked, locked, fees) = match &s.sv {
        Some(sv) => {
            let b = sv.balance(&party).await.map_err(|e| {
                ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            })?;
            (
                b.round,
                b.effective_unlocked_qty,
                b.effective_locked_qty,
                b.total_holding_fees,
            )
        }
        None => {
            let b = s.store.local_balance(&party).await?;
            (b.round, b.unlocked, b.locked, b.fees)
        }
    };
    Ok(Json(json!({
        "round": round,
        "effective_unlocked_qty": unlocked,
        "effective_locked_qty": locked,
        "total_holding_fees": fees,
    })))
}
