//! The vault's JSON body extractor: reads the body under the size limit and decodes it with
//! `shared::json`, which never echoes input; every failure becomes a fixed [`ApiError`].

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use shared::json::DecodeError;

use super::AppState;
use super::error::{ApiError, PAN_CHARACTERS, PAN_LENGTH, PAN_LUHN, PAN_NOT_STRING};

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

/// Decodes a body, mapping every failure to a fixed error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    shared::json::decode(
        bytes,
        &[PAN_CHARACTERS, PAN_LENGTH, PAN_LUHN, PAN_NOT_STRING],
    )
    .map_err(|e| match e {
        DecodeError::Malformed => ApiError::MalformedJson,
        DecodeError::SensitiveData => ApiError::SensitiveData,
        DecodeError::Known(message) => ApiError::InvalidPan(message),
        DecodeError::UnknownField => {
            ApiError::InvalidRequest("the request body has a field this route does not accept")
        }
        DecodeError::MissingField => {
            ApiError::InvalidRequest("the request body lacks a required field")
        }
        DecodeError::Invalid => {
            ApiError::InvalidRequest("a field of the request body has the wrong type or value")
        }
        DecodeError::TooDeep => ApiError::InvalidRequest(
            "the request body nests arrays and objects more than 32 levels deep",
        ),
    })
}
