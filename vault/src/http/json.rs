//! The vault's JSON body extractor: reads the body under the size limit and decodes it with
//! `shared::json`, which never echoes input; every failure becomes a fixed [`ApiError`].

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use shared::json::DecodeError;

use super::AppState;
use super::error::{ApiError, PAN_NOT_STRING};

/// A decoded JSON body.
#[derive(Debug)]
pub(crate) struct ValidJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !shared::json::is_json_content_type(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(req.into_body(), state.limits.body_limit_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let decoded = decode(&bytes);
        shared::json::wipe(bytes);
        decoded.map(Self)
    }
}

/// The fields of the vault's request bodies: the name (`error.param`), the rule a wrong value
/// breaks, and what a missing one needs. A decode error names only these: a field the vault does
/// not know is input, never echoed.
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "pan",
        PAN_NOT_STRING,
        "pan must be the card number, as a JSON string",
    ),
    (
        "exp_month",
        "exp_month must be a whole number from 1 to 12",
        "exp_month must be a whole number from 1 to 12",
    ),
    (
        "exp_year",
        "exp_year must be a four-digit year from 2000 to 2099",
        "exp_year must be a four-digit year from 2000 to 2099",
    ),
    (
        "ttl_seconds",
        "ttl_seconds must be a positive whole number of seconds, at most the configured maximum",
        "ttl_seconds must be a positive whole number of seconds",
    ),
    (
        "allowed_origins",
        "allowed_origins must be a list of origins, such as [\"https://shop.example\"]",
        "allowed_origins must be a list of origins",
    ),
    (
        "metadata",
        "metadata must be a JSON object",
        "metadata must be a JSON object",
    ),
    (
        "require_cardholder_name",
        "require_cardholder_name must be true or false",
        "require_cardholder_name must be true or false",
    ),
    (
        "client_secret",
        "client_secret must be the session's client secret, as a string",
        "client_secret is required: the client secret returned when the session was created",
    ),
    (
        "cardholder_name",
        "cardholder_name must be a string",
        "cardholder_name must be a string",
    ),
    (
        "parent_origin",
        "parent_origin must be a string",
        "parent_origin must be a string",
    ),
    (
        "purpose",
        "purpose must be a string of 1-128 printable ASCII characters",
        "purpose must say why the card number is needed (1-128 printable ASCII characters; it is recorded in the audit log)",
    ),
];

/// Decodes a body, mapping every failure to a fixed error naming the field where it can.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    shared::json::decode_at(bytes).map_err(|(e, path)| {
        let field = path.and_then(|p| {
            FIELDS
                .iter()
                .find(|(name, _, _)| *name == p.as_str())
                .copied()
        });
        match (e, field) {
            (DecodeError::Malformed, _) => ApiError::MalformedJson,
            (DecodeError::SensitiveData, _) => ApiError::SensitiveData,
            (DecodeError::MissingField, Some((name, _, missing))) => {
                ApiError::InvalidParam(name, missing)
            }
            (DecodeError::Invalid, Some((name, invalid, _))) => {
                ApiError::InvalidParam(name, invalid)
            }
            (e, _) => ApiError::InvalidRequest(e.whole_body_rule()),
        }
    })
}
