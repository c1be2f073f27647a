//! A JSON body extractor that never echoes its input.
//!
//! serde's errors quote the offending value (`invalid type: string "4242…", expected u8`), and
//! axum's `Json` rejection puts that text in the response. This extractor reads the body under
//! the size limit, refuses card-security fields by name, decodes, and maps every failure to a
//! fixed [`ApiError`]. Decode errors are classified, never displayed or logged.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny};
use zeroize::Zeroize;

use super::AppState;
use super::error::{ApiError, PAN_CHARACTERS, PAN_LENGTH, PAN_LUHN, PAN_NOT_STRING};

/// A decoded JSON body.
#[derive(Debug)]
pub(crate) struct ValidJson<T>(pub(crate) T);

/// Top-level field names (lowercase, without `_` and `-`) that carry sensitive authentication
/// data: card verification codes, magnetic-stripe track data, PINs. Payouts need none of them,
/// so a body carrying any is refused outright (DESIGN §2.4).
const SENSITIVE_FIELDS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cid",
    "csc",
    "cav2",
    "cvn",
    "securitycode",
    "cardsecuritycode",
    "verificationcode",
    "cardverificationvalue",
    "track",
    "track1",
    "track2",
    "trackdata",
    "magstripe",
    "magneticstripe",
    "pin",
    "pinblock",
];

impl<T: DeserializeOwned> FromRequest<AppState> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body: Body = req.into_body();
        let bytes = axum::body::to_bytes(body, state.limits.body_limit_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let decoded = decode(&bytes);
        wipe(bytes);
        decoded.map(Self)
    }
}

/// Decodes a body, mapping every failure to a fixed error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Field names only: values are skipped, not kept.
    if let Ok(fields) = serde_json::from_slice::<HashMap<String, IgnoredAny>>(bytes) {
        let sensitive = fields.keys().any(|name| {
            let normal: String = name
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .flat_map(char::to_lowercase)
                .collect();
            SENSITIVE_FIELDS.contains(&normal.as_str())
        });
        if sensitive {
            return Err(ApiError::SensitiveData);
        }
    }
    serde_json::from_slice(bytes).map_err(|e| classify(&e))
}

fn classify(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => ApiError::MalformedJson,
        Category::Data => {
            // The message may quote the input: it is only compared with our own fixed texts,
            // never shown or logged.
            let mut message = e.to_string();
            let known = [PAN_CHARACTERS, PAN_LENGTH, PAN_LUHN, PAN_NOT_STRING]
                .into_iter()
                .find(|known| message.starts_with(known));
            let error = if let Some(known) = known {
                ApiError::InvalidPan(known)
            } else if message.starts_with("unknown field") {
                ApiError::InvalidRequest("the request body has a field this route does not accept")
            } else if message.starts_with("missing field") {
                ApiError::InvalidRequest("the request body lacks a required field")
            } else {
                ApiError::InvalidRequest("a field of the request body has the wrong type or value")
            };
            message.zeroize();
            error
        }
    }
}

/// Best effort: overwrite the body buffer when no one else holds it.
fn wipe(bytes: Bytes) {
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.as_mut().zeroize();
    }
}
