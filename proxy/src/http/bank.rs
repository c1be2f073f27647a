//! `POST /webhooks/bank131`: the bank's webhooks.
//!
//! The signature is checked over the raw bytes before anything is parsed. Anything correctly
//! signed gets 200, also unknown types and sessions we do not know (the bank would otherwise
//! retry forever); anything else gets 401 or 400 and changes nothing. Application is idempotent
//! and order-proof: states only move forward.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::bank131::{WebhookError, verify_and_parse};
use crate::engine::now_micros;
use crate::store::BankEvent;

/// `POST /webhooks/bank131`.
pub(crate) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = headers.get("x-partner-sign").and_then(|v| v.to_str().ok());
    let hook = match verify_and_parse(&state.bank_verifier, &body, signature) {
        Ok(hook) => hook,
        Err(WebhookError::Malformed) => return Err(ApiError::MalformedWebhook),
        Err(e) => {
            tracing::warn!(reason = %e, "bank webhook refused");
            return Err(ApiError::InvalidSignature);
        }
    };
    let Some(session) = hook.session() else {
        return Ok(StatusCode::OK.into_response());
    };
    let store = state.engine.store();
    let payout = store.payout_by_session(&session.id).await?;
    let kind = match &hook {
        crate::bank131::Webhook::ReadyToConfirm { .. } => "ready_to_confirm",
        crate::bank131::Webhook::PaymentFinished { .. } => "payment_finished",
        crate::bank131::Webhook::PaymentRefunded { .. } => "payment_refunded",
        crate::bank131::Webhook::ActionRequired { .. } => "action_required",
        _ => "unknown",
    };
    // Kept for the payout's history; digit runs that could be a card number are redacted first.
    store
        .record_bank_event(BankEvent {
            payout_id: payout.as_ref().map(|p| p.id.clone()),
            bank_session_id: session.id.clone(),
            kind: kind.to_owned(),
            body: shared::scan::redact_digit_runs(&String::from_utf8_lossy(&body)),
            received_at: now_micros(),
        })
        .await?;
    let Some(payout) = payout else {
        tracing::info!(kind, "bank webhook for an unknown session ignored");
        return Ok(StatusCode::OK.into_response());
    };
    tracing::info!(kind, payout = %payout.id, "bank webhook");
    if !matches!(kind, "ready_to_confirm" | "payment_finished") {
        return Ok(StatusCode::OK.into_response());
    }
    let session = session.clone();
    let engine = state.engine.clone();
    let id = payout.id.clone();
    // Applied under the payout's lock; a conflict means another path moved it: drive reads the
    // fresh state (and `session/status` if needed).
    let moved = engine.apply_webhook(&id, &session).await?;
    if moved {
        tokio::spawn(async move {
            if let Err(e) = engine.drive(&id).await {
                tracing::warn!(payout = %id, error = %e, "drive after webhook failed; the reconciler will resume it");
            }
        });
    }
    Ok(StatusCode::OK.into_response())
}
