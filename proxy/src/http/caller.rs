//! The authenticated app client of a request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::ClientRecord;

/// A request's app client; extracting it checks `Authorization: Bearer <key>`.
#[derive(Debug)]
pub struct Caller(pub ClientRecord);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = shared::http::presented_key(&parts.headers);
        let Some(key) = key else {
            return Err(ApiError::Unauthorized);
        };
        match state.proxy.authenticate(&key).await? {
            Some(client) => Ok(Self(client)),
            None => {
                tracing::info!("app authentication failed");
                Err(ApiError::Unauthorized)
            }
        }
    }
}
