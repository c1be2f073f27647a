//! The HTTP edge's error: a fixed status, a stable code and a fixed message per variant.
//!
//! `ApiError` is `Copy` and holds only `&'static str`, so no runtime data, and so no card
//! number, can reach a response body through it.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::PanError;
use shared::error_body::ErrorBody;
use shared::http::Common;

use crate::service::{Refusal, VaultError};

/// Every error the API answers with.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ApiError {
    /// 503: the audit event could not be written, so nothing was done.
    AuditUnavailable,
    /// 400: the card's expiry date has passed (a collect form submission).
    CardExpired,
    /// 403: the API key lacks this scope (named in `param`).
    Forbidden(&'static str),
    /// 500: something failed inside; details are in the log.
    Internal,
    /// 500: a stored ciphertext failed its integrity check.
    Integrity,
    /// 400: the body is valid JSON of the wrong shape or value.
    InvalidRequest(&'static str),
    /// 400: this field (one of the route's own names, in `param`) breaks this rule.
    InvalidParam(&'static str, &'static str),
    /// 400: the `pan` field is not a card number.
    InvalidPan(&'static str),
    /// 400: the body is not JSON.
    MalformedJson,
    /// 405.
    MethodNotAllowed,
    /// 404: no such token (missing, expired, deleted, another tenant's: all alike).
    NotFound,
    /// 404: no such collect session (missing, another tenant's, forged: all alike).
    NoSession,
    /// 401: the client secret is not this collect session's.
    InvalidSecret,
    /// 403: a card form submission from a page or frame the session does not allow.
    OriginNotAllowed,
    /// 409: the collect session already holds a card.
    SessionCompleted,
    /// 410: the collect session's lifetime is over.
    SessionExpired,
    /// 503: the vault cannot serve (readiness).
    NotReady,
    /// 503: too many writes are waiting; retry shortly.
    Overloaded,
    /// 503: this vault could not load the newest keys, so it makes no new tokens.
    KeysBehind,
    /// 429: a rate limit; retry after this many seconds.
    RateLimited {
        /// Whole seconds to wait (at least 1), also sent as `Retry-After`.
        retry_after: u32,
    },
    /// 413.
    PayloadTooLarge,
    /// 404: no such route.
    RouteNotFound,
    /// 400: CVV, track data or a PIN was sent.
    SensitiveData,
    /// 503: the request took longer than the configured timeout.
    Timeout,
    /// 401: no valid API key.
    Unauthorized,
    /// 415: not `application/json`.
    UnsupportedMediaType,
}

impl ApiError {
    /// Status, code and message.
    pub fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so the request was refused",
            ),
            Self::CardExpired => (
                StatusCode::BAD_REQUEST,
                "card_expired",
                "the card's expiry date has passed: check exp_month and exp_year, or use another card",
            ),
            Self::NoSession => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such collect session",
            ),
            Self::InvalidSecret => (
                StatusCode::UNAUTHORIZED,
                "invalid_secret",
                "client_secret is not this collect session's: use the client_secret returned when the session was created",
            ),
            Self::OriginNotAllowed => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "card forms are accepted only from the vault's own page, framed by one of the session's allowed_origins",
            ),
            Self::SessionCompleted => (
                StatusCode::CONFLICT,
                "session_completed",
                "this collect session already holds a card; create a new session for another",
            ),
            Self::SessionExpired => (
                StatusCode::GONE,
                "session_expired",
                "this collect session has expired; create a new session",
            ),
            Self::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key does not have the scope this operation needs (named in error.param); create a client with it",
            ),
            Self::Internal => Common::Internal.parts(),
            Self::Integrity => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "integrity_error",
                "the stored card data failed its integrity check",
            ),
            Self::InvalidRequest(message) | Self::InvalidParam(_, message) => {
                (StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            Self::InvalidPan(message) => (StatusCode::BAD_REQUEST, "invalid_pan", message),
            Self::MalformedJson => Common::MalformedJson.parts(),
            Self::MethodNotAllowed => Common::MethodNotAllowed.parts(),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such token"),
            Self::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the vault is not ready",
            ),
            Self::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the vault is shedding load; retry shortly",
            ),
            Self::KeysBehind => (
                StatusCode::SERVICE_UNAVAILABLE,
                "keys_behind",
                "this vault replica could not load the newest keys and makes no new tokens; retry (another replica may answer)",
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry after the number of seconds in Retry-After",
            ),
            Self::PayloadTooLarge => Common::PayloadTooLarge.parts(),
            Self::RouteNotFound => Common::RouteNotFound.parts(),
            Self::SensitiveData => (
                StatusCode::BAD_REQUEST,
                "sensitive_data_rejected",
                "CVV, track data and PINs are never accepted",
            ),
            Self::Timeout => Common::Timeout.parts(),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required (Authorization: Bearer <key>)",
            ),
            Self::UnsupportedMediaType => Common::UnsupportedMediaType.parts(),
        }
    }

    /// A 429 telling the caller to wait `wait` (rounded up to whole seconds, at least 1).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::RateLimited {
            retry_after: u32::try_from(secs.max(1)).unwrap_or(u32::MAX),
        }
    }

    /// The message for a PAN parse failure.
    pub fn from_pan(e: PanError) -> Self {
        Self::InvalidPan(match e {
            PanError::InvalidCharacter => PAN_CHARACTERS,
            PanError::Length => PAN_LENGTH,
            PanError::Luhn => PAN_LUHN,
        })
    }
}

/// Fixed PAN messages, answered from the decoded `pan` field (`tokens::PanField`).
pub(crate) const PAN_CHARACTERS: &str =
    "pan may contain only ASCII digits, with single spaces or dashes between them";
pub(crate) const PAN_LENGTH: &str = "pan must have 13 to 19 digits";
pub(crate) const PAN_LUHN: &str = "pan fails the Luhn check";
pub(crate) const PAN_NOT_STRING: &str = "pan must be a JSON string";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = match self {
            Self::Forbidden(param) | Self::InvalidParam(param, _) => {
                ErrorBody::at_param(code, message, param)
            }
            Self::InvalidPan(_) => ErrorBody::at_param(code, message, "pan"),
            Self::CardExpired => ErrorBody::at_param(code, message, "exp_month"),
            Self::InvalidSecret => ErrorBody::at_param(code, message, "client_secret"),
            _ => ErrorBody::fixed(code, message),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response.extensions_mut().insert(self);
        response
    }
}

shared::edge_error!(ApiError);

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::NotFound => Self::NotFound,
            VaultError::NoSession => Self::NoSession,
            VaultError::SessionRefused(refusal) => match refusal {
                Refusal::WrongSecret => Self::InvalidSecret,
                Refusal::OriginNotAllowed => Self::OriginNotAllowed,
                Refusal::Completed => Self::SessionCompleted,
                Refusal::Expired => Self::SessionExpired,
                Refusal::NameRequired => Self::InvalidParam(
                    "cardholder_name",
                    "this form asks for the cardholder's name: send cardholder_name",
                ),
            },
            VaultError::Forbidden(scope) => Self::Forbidden(scope),
            VaultError::Integrity => Self::Integrity,
            VaultError::Invalid(message) => Self::InvalidRequest(message),
            VaultError::AuditUnavailable(source) => {
                tracing::error!(error = %source, cause = ?std::error::Error::source(&source), "audit write failed");
                Self::AuditUnavailable
            }
            VaultError::KeysBehind => {
                tracing::error!("refusing a new token: the newest stored keys did not load");
                Self::KeysBehind
            }
            VaultError::Overloaded => {
                tracing::warn!("shedding a request: the database writer's queue is full");
                Self::Overloaded
            }
            other => {
                tracing::error!(error = %other, cause = ?std::error::Error::source(&other), "request failed");
                Self::Internal
            }
        }
    }
}
