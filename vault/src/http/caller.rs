//! The authenticated API client of a request, and its scope and rate checks.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use super::{AppState, RequestId};
use crate::audit::Action;
use crate::auth::{ClientRecord, Scope};
use crate::limits::{FailureReason, Operation};
use crate::service::{AuthOutcome, Context};
use crate::token::Token;

/// A request's authenticated client. Extracting it checks the `Authorization: Bearer` key and
/// the client row's MAC; anything else is 401 (429 once the source address has failed too
/// often). A revoked client's use is audited one by one; missing, unknown and tampered keys are
/// tallied per reason and address and audited once per interval, so an anonymous flood costs no
/// durable write per request.
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
        let key = shared::http::presented_key(&parts.headers);
        let outcome = state.vault.authenticate(key.as_ref()).await?;
        let peer = state.limits.trusted_proxies.source(
            shared::server::peer_addr(parts).map(|a| a.ip()),
            &parts.headers,
        );
        let (reason, named) = match outcome {
            AuthOutcome::Client(client) => {
                // A key bound to a client certificate works only over a connection that
                // presented it: a copy of the key alone is refused.
                let presented = shared::server::peer_certificate(parts).map(|c| c.sha256);
                let unbound_reader = state.limits.production
                    && client.cert_sha256.is_none()
                    && client.scopes.contains(Scope::TokensDetokenize);
                if unbound_reader {
                    (None, Some(Named::UnboundReader(client)))
                } else if client.accepts_certificate(presented.as_ref()) {
                    return Ok(Self {
                        context: Context::client(&client, request_id),
                        client,
                    });
                } else {
                    (None, Some(Named::WithoutCertificate(client, presented)))
                }
            }
            AuthOutcome::Revoked(client) => (None, Some(Named::Revoked(client))),
            AuthOutcome::Missing => (Some(FailureReason::MissingKey), None),
            AuthOutcome::Unknown => (Some(FailureReason::UnknownKey), None),
            AuthOutcome::Tampered(_) => (Some(FailureReason::TamperedClient), None),
        };
        // The address's budget first: within it a refused real client's use is audited on its
        // own; past it, it is only counted like the rest, so no flood costs a write per request.
        match state.limiter.note_failure(reason, peer) {
            Ok(()) => {
                match named {
                    Some(Named::Revoked(client)) => {
                        state.vault.record_revoked_use(&client, request_id).await?;
                    }
                    Some(Named::UnboundReader(client)) => {
                        state
                            .vault
                            .record_unbound_reader(&client, request_id)
                            .await?;
                    }
                    Some(Named::WithoutCertificate(client, presented)) => {
                        state
                            .vault
                            .record_unbound_use(&client, presented.as_ref(), request_id)
                            .await?;
                    }
                    None => state.metrics.auth_failure_aggregated(),
                }
                Err(ApiError::Unauthorized)
            }
            Err(wait) => {
                if let Some(Named::Revoked(client) | Named::WithoutCertificate(client, _)) = &named
                {
                    state
                        .limiter
                        .count_client(Operation::Unauthenticated, client);
                }
                state.metrics.auth_failure_aggregated();
                state.metrics.rate_limited(Operation::Unauthenticated);
                Err(ApiError::rate_limited(wait))
            }
        }
    }
}

/// A real client whose key was refused: each such use is audited (within the address's budget).
enum Named {
    Revoked(ClientRecord),
    /// With the certificate presented instead, if any.
    WithoutCertificate(ClientRecord, Option<[u8; 32]>),
    /// In production mode, a card reader bound to no certificate.
    UnboundReader(ClientRecord),
}

impl Caller {
    /// Passes when the client holds `scope` (else records the denial and answers 403) and is
    /// within the rate limit of the operation (else 429, counted for the interval's event).
    ///
    /// # Errors
    ///
    /// [`ApiError::Forbidden`], [`ApiError::RateLimited`], or the audit failure.
    pub async fn require(
        &self,
        state: &AppState,
        scope: Scope,
        action: Action,
        token: Option<&Token>,
    ) -> Result<(), ApiError> {
        let operation = match scope {
            Scope::TokensCreate | Scope::CollectCreate => Some(Operation::Tokenize),
            Scope::TokensRead => Some(Operation::Read),
            Scope::TokensDetokenize => Some(Operation::Detokenize),
            Scope::TokensDelete | Scope::TokensReadBin => None,
        };
        self.require_within(state, scope, action, token, operation)
            .await
    }

    /// As [`Caller::require`], charging `operation`'s rate limit (if any) instead of the
    /// scope's: reading a collect session needs `collect:create` but costs a read.
    ///
    /// # Errors
    ///
    /// As [`Caller::require`].
    pub async fn require_within(
        &self,
        state: &AppState,
        scope: Scope,
        action: Action,
        token: Option<&Token>,
        operation: Option<Operation>,
    ) -> Result<(), ApiError> {
        if !self.client.scopes.contains(scope) {
            return Err(state
                .vault
                .deny(&self.context, action, token, scope)
                .await
                .into());
        }
        let Some(operation) = operation else {
            return Ok(());
        };
        state
            .limiter
            .check_client(operation, &self.client)
            .map_err(|wait| {
                state.metrics.rate_limited(operation);
                ApiError::rate_limited(wait)
            })
    }
}
