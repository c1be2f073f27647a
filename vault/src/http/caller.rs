//! The authenticated API client of a request.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::{AppState, RequestId};
use crate::audit::Action;
use crate::auth::{ClientRecord, Scope};
use crate::service::Context;
use crate::token::{ApiKey, Token};

/// A request's authenticated client. Extracting it checks the `Authorization: Bearer` key; a
/// missing, unknown or revoked key is recorded in the audit log and answered 401.
#[derive(Debug)]
pub struct Caller {
    /// The client.
    pub client: ClientRecord,
    /// Who acts for whom in this request.
    pub context: Context,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| ApiKey::presented(k.trim()));
        match state
            .vault
            .authenticate(key.as_ref(), request_id.clone())
            .await
        {
            Ok(Some(client)) => Ok(Self {
                context: Context::client(&client, request_id),
                client,
            }),
            Ok(None) => Err(ApiError::Unauthorized),
            Err(e) => Err(e.into()),
        }
    }
}

impl Caller {
    /// Passes when the client holds `scope`; otherwise records the denial and answers 403.
    ///
    /// # Errors
    ///
    /// [`ApiError::Forbidden`], or the audit failure.
    pub async fn require(
        &self,
        state: &AppState,
        scope: Scope,
        action: Action,
        token: Option<&Token>,
    ) -> Result<(), ApiError> {
        if self.client.scopes.contains(scope) {
            return Ok(());
        }
        Err(state
            .vault
            .deny(&self.context, action, token, scope)
            .await
            .into())
    }
}
