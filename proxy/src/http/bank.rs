//! `POST /webhooks/bank131`: the bank's webhooks, handed as raw bytes to
//! `service::Proxy::receive_bank_webhook` (which checks the signature before parsing). 200 for
//! anything correctly signed, also what we do not know (the bank would otherwise retry forever);
//! 401 for a bad signature, 400 for a signed body that cannot be read.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::error::ApiError;

/// `POST /webhooks/bank131`.
pub(crate) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let signature = headers.get("x-partner-sign").and_then(|v| v.to_str().ok());
    state.proxy.receive_bank_webhook(&body, signature).await?;
    Ok(StatusCode::OK)
}
