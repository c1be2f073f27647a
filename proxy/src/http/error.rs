//! The proxy's HTTP errors: fixed status, stable code, fixed message. What a variant carries is
//! chosen, never copied from the request: `&'static str` names, the vault's own error, and
//! field paths (`FieldPath`, the names of JSON fields, never their values), so no request value
//! (and no card number) can reach a response through them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error_body::ErrorBody;
use shared::http::Common;

/// Every error the proxy answers with.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ApiError {
    /// 403.
    Forbidden,
    /// 403: the key lacks this scope (named in `param`).
    MissingScope(&'static str),
    /// 409: same `Idempotency-Key`, different body.
    IdempotencyConflict,
    /// 400: no `Idempotency-Key` header, or a malformed one.
    IdempotencyKeyRequired,
    /// 503: the bank could not be reached to check the session before a confirm.
    BankUnavailable,
    /// 409: the bank's session no longer matches the payout; it is being cancelled.
    ConfirmationMismatch,
    /// 404: the payout's card token is not in the vault for this tenant (missing, expired,
    /// deleted and another tenant's alike).
    CardTokenNotFound,
    /// 404: no such event for this app.
    EventNotFound,
    /// 500.
    Internal,
    /// 400: the body has the wrong shape or values.
    InvalidRequest(&'static str),
    /// 400: this parameter (a JSON path or a query parameter) breaks this rule.
    InvalidParam(&'static str, &'static str),
    /// 400: the field at this path (names only) breaks this rule.
    InvalidField(shared::json::FieldPath, &'static str),
    /// 401: a bank webhook without a valid signature.
    InvalidSignature,
    /// 400: not JSON.
    MalformedJson,
    /// 400: a correctly signed bank webhook that cannot be read.
    MalformedWebhook,
    /// 405.
    MethodNotAllowed,
    /// 404: no such payout for this tenant.
    NotFound,
    /// 404: no such payout link for this app (or tenant).
    LinkNotFound,
    /// 503: the vault did not open a payout link's collect session: the proxy's vault setting
    /// (a key without `collect:create`) or the vault. Nothing was created.
    CollectVault(crate::vault_client::VaultError),
    /// 503.
    NotReady,
    /// 409: a redelivery asked by an app that has no webhook URL.
    NoWebhookUrl,
    /// 409: the payout is not waiting for a manual decision (yet).
    NotAwaitingConfirmation,
    /// 409: a confirm of a payout the proxy confirms itself (`confirm: auto`).
    NotManual,
    /// 409: the request contradicts what already happened (cancel after confirm, confirm
    /// after cancel).
    PayoutStateConflict(&'static str),
    /// 503: too many writes are waiting for the database; retry shortly.
    Overloaded,
    /// 503: the proxy cannot check the card token: its vault setting is wrong or the vault is
    /// down. Nothing was created.
    Vault(crate::vault_client::VaultError),
    /// 413.
    PayloadTooLarge,
    /// 404.
    RouteNotFound,
    /// 400: CVV, track data or a PIN was sent.
    SensitiveData,
    /// 400: a card number or a sensitive field name at this place in the request.
    SensitiveField(shared::json::FieldPath),
    /// 503.
    Timeout,
    /// 401.
    Unauthorized,
    /// 415.
    UnsupportedMediaType,
}

impl ApiError {
    /// Status, code and message.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Forbidden => (
                S::FORBIDDEN,
                "forbidden",
                "this API key does not have the scope this operation needs",
            ),
            Self::MissingScope(_) => (
                S::FORBIDDEN,
                "forbidden",
                "this API key does not have the scope this operation needs (named in error.param); create a client with it",
            ),
            Self::IdempotencyConflict => (
                S::CONFLICT,
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request",
            ),
            Self::IdempotencyKeyRequired => (
                S::BAD_REQUEST,
                "idempotency_key_required",
                "an Idempotency-Key header of 1-255 printable ASCII characters is required",
            ),
            Self::BankUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "bank_unavailable",
                "Bank 131 could not be reached to check the session before confirming; nothing was sent, retry shortly",
            ),
            Self::ConfirmationMismatch => (
                S::CONFLICT,
                "confirmation_mismatch",
                "the bank's session does not show this payout's amount, currency and card; it is being cancelled, not confirmed",
            ),
            Self::CardTokenNotFound => (
                S::NOT_FOUND,
                "card_token_not_found",
                "no such card token in the vault for this tenant (tokenize the card first; see error.param)",
            ),
            Self::EventNotFound => (S::NOT_FOUND, "not_found", "no such event"),
            Self::NoWebhookUrl => (
                S::CONFLICT,
                "webhook_url_not_set",
                "this app has no webhook URL to deliver to; set one with `proxy clients update ID --webhook-url URL`",
            ),
            Self::Internal => Common::Internal.parts(),
            Self::InvalidRequest(message)
            | Self::InvalidParam(_, message)
            | Self::InvalidField(_, message) => (S::BAD_REQUEST, "invalid_request", *message),
            Self::InvalidSignature => (
                S::UNAUTHORIZED,
                "invalid_signature",
                "missing or invalid X-PARTNER-SIGN",
            ),
            Self::MalformedJson => Common::MalformedJson.parts(),
            Self::MalformedWebhook => (
                S::BAD_REQUEST,
                "malformed_webhook",
                "the webhook payload cannot be read",
            ),
            Self::MethodNotAllowed => Common::MethodNotAllowed.parts(),
            Self::NotFound => (S::NOT_FOUND, "not_found", "no such payout"),
            Self::LinkNotFound => (S::NOT_FOUND, "not_found", "no such payout link"),
            Self::CollectVault(e) => {
                use crate::vault_client::VaultError as V;
                let (code, message) = match e {
                    V::NoKeyForTenant => (
                        "tenant_not_configured",
                        "the proxy has no vault key for this app's tenant (vault.api_keys); no link was created",
                    ),
                    V::Refused(401) => (
                        "vault_key_unauthorized",
                        "the vault does not know the proxy's key for this tenant (vault.api_keys); no link was created",
                    ),
                    V::Refused(_) => (
                        "vault_key_forbidden",
                        "the proxy's vault key for this tenant lacks collect:create, which payout links need (vault.api_keys); no link was created",
                    ),
                    V::Unreachable => (
                        "vault_unreachable",
                        "the vault could not be reached to open the link's card form (vault.url); no link was created, retry with the same Idempotency-Key",
                    ),
                    V::Unavailable | V::BadResponse | V::TokenNotFound => (
                        "vault_unavailable",
                        "the vault could not open the link's card form now; no link was created, retry with the same Idempotency-Key",
                    ),
                };
                (S::SERVICE_UNAVAILABLE, code, message)
            }
            Self::NotReady => (
                S::SERVICE_UNAVAILABLE,
                "not_ready",
                "the proxy is not ready",
            ),
            Self::NotAwaitingConfirmation => (
                S::CONFLICT,
                "payout_not_awaiting_confirmation",
                "the bank has not asked to confirm this payout yet; confirm after payout.awaiting_confirmation",
            ),
            Self::NotManual => (
                S::CONFLICT,
                "payout_confirmed_automatically",
                "this payout was created with confirm: auto; the proxy confirms it, the app cannot",
            ),
            Self::PayoutStateConflict(message) => (S::CONFLICT, "payout_state_conflict", *message),
            Self::Overloaded => (
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "the proxy is shedding load; retry shortly",
            ),
            Self::PayloadTooLarge => Common::PayloadTooLarge.parts(),
            Self::Vault(e) => {
                use crate::vault_client::VaultError as V;
                let (code, message) = match e {
                    V::NoKeyForTenant => (
                        "tenant_not_configured",
                        "the proxy has no vault key for this app's tenant (vault.api_keys); nothing was created",
                    ),
                    V::Refused(401) => (
                        "vault_key_unauthorized",
                        "the vault does not know the proxy's key for this tenant (vault.api_keys); nothing was created",
                    ),
                    V::Refused(_) => (
                        "vault_key_forbidden",
                        "the proxy's vault key for this tenant lacks tokens:detokenize (vault.api_keys); nothing was created",
                    ),
                    V::Unreachable => (
                        "vault_unreachable",
                        "the vault could not be reached to check the card token (vault.url); nothing was created, retry with the same Idempotency-Key",
                    ),
                    V::Unavailable | V::BadResponse | V::TokenNotFound => (
                        "vault_unavailable",
                        "the vault could not check the card token now; nothing was created, retry with the same Idempotency-Key",
                    ),
                };
                (S::SERVICE_UNAVAILABLE, code, message)
            }
            Self::RouteNotFound => Common::RouteNotFound.parts(),
            Self::SensitiveData => (
                S::BAD_REQUEST,
                "sensitive_data_rejected",
                "card numbers, CVV, track data and PINs are never accepted by the proxy",
            ),
            Self::SensitiveField(_) => (
                S::BAD_REQUEST,
                "sensitive_data_rejected",
                "card numbers, CVV, track data and PINs are never accepted by the proxy: send the card as a vault token, and no card data in metadata (see error.param)",
            ),
            Self::Timeout => Common::Timeout.parts(),
            Self::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer <key>)",
            ),
            Self::UnsupportedMediaType => Common::UnsupportedMediaType.parts(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = match &self {
            Self::SensitiveField(field) | Self::InvalidField(field, _) => {
                ErrorBody::at_field(code, message, field)
            }
            Self::InvalidParam(param, _) | Self::MissingScope(param) => {
                ErrorBody::at_param(code, message, param)
            }
            Self::CardTokenNotFound => ErrorBody::at_param(code, message, "card_token"),
            _ => ErrorBody::fixed(code, message),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

shared::edge_error!(ApiError);

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::engine::ActionError as A;
        use crate::service::ServiceError as E;
        match e {
            E::MissingScope(scope) => Self::MissingScope(scope),
            E::NotFound | E::Action(A::NotFound) => Self::NotFound,
            E::IdempotencyConflict => Self::IdempotencyConflict,
            E::CardTokenNotFound => Self::CardTokenNotFound,
            E::Vault(e) => Self::Vault(e),
            E::LinkNotFound => Self::LinkNotFound,
            E::CollectVault(e) => Self::CollectVault(e),
            // Logged where it was found, with the link.
            E::ForgedLink => Self::Internal,
            E::EventNotFound => Self::EventNotFound,
            E::NoWebhookUrl => Self::NoWebhookUrl,
            E::Action(A::WrongState) => Self::NotAwaitingConfirmation,
            E::Action(A::NotManual) => Self::NotManual,
            E::Action(A::Contradicts(why)) => Self::PayoutStateConflict(why),
            E::Action(A::Mismatch) => Self::ConfirmationMismatch,
            E::Action(A::BankUnavailable) => Self::BankUnavailable,
            E::Action(A::Store(e)) | E::Store(e) => e.into(),
            E::InvalidSignature => Self::InvalidSignature,
            E::MalformedWebhook => Self::MalformedWebhook,
            E::NoRandomness => {
                tracing::error!("no randomness for an id");
                Self::Internal
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if matches!(e, crate::store::StoreError::Overloaded) {
            tracing::warn!("shedding a request: the database writer's queue is full");
            return Self::Overloaded;
        }
        tracing::error!(error = %e, "storage failed");
        Self::Internal
    }
}
