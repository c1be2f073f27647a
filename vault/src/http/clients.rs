//! `GET /v1/clients/me`: who the presented key is. For a caller (the proxy, at start and in its
//! readiness check) to verify its own configuration: the right tenant, the right scopes, before
//! the first payout finds out. Any valid key may ask about itself; it learns nothing it was not
//! given at creation, and no other client.

use axum::Json;
use axum::response::{IntoResponse, Response};

use super::caller::Caller;
use super::error::ApiError;

/// `GET /v1/clients/me`.
pub(crate) async fn me(caller: Caller) -> Result<Response, ApiError> {
    let c = &caller.client;
    Ok(Json(serde_json::json!({
        "id": c.id.as_str(),
        "name": c.name,
        "tenant": c.tenant,
        "scopes": c.scopes.to_string().split(',').collect::<Vec<_>>(),
    }))
    .into_response())
}
