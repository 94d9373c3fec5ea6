//! `GET v0/admin/participant/identities`: the NodeIdentitiesDump read from the participant DB.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::Shared;
use crate::http::ApiError;
use crate::identity::NodeIdentitiesDump;
use crate::store::NodeStore;

pub(super) async fn dump(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<NodeIdentitiesDump>, ApiError> {
    s.admin(&headers)?;
    if s.faults.get().identities_404 {
        // The real failure mode: the endpoint answers 404 for days and backups break silently.
        return Err(ApiError::not_found(
            "The requested resource could not be found.",
        ));
    }
    let client = s.store.participant().await?;
    match NodeStore::identity(&client).await? {
        Some(id) => Ok(Json(id.dump)),
        None => Err(ApiError::internal(
            "participant has no identity (not initialized)",
        )),
    }
}
