//! The JSON error body both services answer with: `{"error":{"code","message"}}`.
//!
//! Codes are stable, machine-readable strings; messages are fixed text chosen by the service.
//! Neither ever contains request input, so no card number can come back in an error. `param`,
//! when present, names where in the request the problem is (Stripe's shape) (a JSON path of identifier keys, see
//! [`crate::json::FieldPath`]), never what it held.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorDetail<'a>,
}

/// The code and message of an [`ErrorBody`].
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ErrorDetail<'a> {
    /// Stable code, e.g. `not_found`.
    pub code: Cow<'a, str>,
    /// Fixed human-readable text.
    pub message: Cow<'a, str>,
    /// Where in the request, e.g. `amount` or `metadata.card.cvv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<Cow<'a, str>>,
}

impl ErrorBody<'static> {
    /// A body from a static code and message (the only kind a service should build).
    pub fn fixed(code: &'static str, message: &'static str) -> Self {
        Self {
            error: ErrorDetail {
                code: Cow::Borrowed(code),
                message: Cow::Borrowed(message),
                param: None,
            },
        }
    }

    /// As [`ErrorBody::fixed`], naming the parameter at fault (a fixed name such as `amount`).
    pub fn at_param(code: &'static str, message: &'static str, param: &'static str) -> Self {
        let mut body = Self::fixed(code, message);
        body.error.param = Some(Cow::Borrowed(param));
        body
    }

    /// As [`ErrorBody::fixed`], naming the field at fault.
    pub fn at_field(
        code: &'static str,
        message: &'static str,
        field: &crate::json::FieldPath,
    ) -> Self {
        let mut body = Self::fixed(code, message);
        body.error.param = Some(Cow::Owned(field.as_str().to_owned()));
        body
    }
}
