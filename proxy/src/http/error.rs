//! The proxy's HTTP errors: fixed status, stable code, fixed message. `Copy` and `&'static str`
//! only, so no request data (and no card number) can reach a response through them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::error_body::ErrorBody;

/// Every error the proxy answers with.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
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
    /// 500.
    Internal,
    /// 400: the body has the wrong shape or values.
    InvalidRequest(&'static str),
    /// 400: this parameter (a JSON path or a query parameter) breaks this rule.
    InvalidParam(&'static str, &'static str),
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
    /// 503.
    NotReady,
    /// 409: the payout is not waiting for a manual decision.
    NotAwaitingConfirmation,
    /// 503: too many writes are waiting for the database; retry shortly.
    Overloaded,
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
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "internal error"),
            Self::InvalidRequest(message) | Self::InvalidParam(_, message) => {
                (S::BAD_REQUEST, "invalid_request", *message)
            }
            Self::InvalidSignature => (
                S::UNAUTHORIZED,
                "invalid_signature",
                "missing or invalid X-PARTNER-SIGN",
            ),
            Self::MalformedJson => (
                S::BAD_REQUEST,
                "malformed_json",
                "the request body is not valid JSON",
            ),
            Self::MalformedWebhook => (
                S::BAD_REQUEST,
                "malformed_webhook",
                "the webhook payload cannot be read",
            ),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            ),
            Self::NotFound => (S::NOT_FOUND, "not_found", "no such payout"),
            Self::NotReady => (
                S::SERVICE_UNAVAILABLE,
                "not_ready",
                "the proxy is not ready",
            ),
            Self::NotAwaitingConfirmation => (
                S::CONFLICT,
                "payout_not_awaiting_confirmation",
                "the payout is not waiting for a confirm or cancel",
            ),
            Self::Overloaded => (
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "the proxy is shedding load; retry shortly",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            Self::RouteNotFound => (S::NOT_FOUND, "route_not_found", "no such route"),
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
            Self::Timeout => (
                S::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long",
            ),
            Self::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer <key>)",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be application/json",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = match &self {
            Self::SensitiveField(field) => ErrorBody::at_field(code, message, field),
            Self::InvalidParam(param, _) | Self::MissingScope(param) => {
                ErrorBody::at_param(code, message, param)
            }
            _ => ErrorBody::fixed(code, message),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(self);
        response
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
