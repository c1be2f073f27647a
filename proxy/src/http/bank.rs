//! `POST /webhooks/bank131`: the bank's webhooks.
//!
//! The signature is checked over the raw bytes before anything is parsed. Anything correctly
//! signed gets 200, also unknown types and sessions we do not know (the bank would otherwise
//! retry forever); anything else gets 401 or 400 and changes nothing. Application is idempotent
//! and order-proof: states only move forward. A payout's webhooks are kept once per distinct
//! body (a replay adds nothing); those about sessions we do not know are not kept at all.

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
        Err(WebhookError::Malformed) => {
            // Signed by the bank but unreadable: keep the body that broke it (redacted), so an
            // operator can see what the bank sent, and say 400 so the bank retries it.
            tracing::error!("a signed bank webhook could not be read; recorded as `malformed`");
            let session_id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("session")?.get("id")?.as_str().map(str::to_owned))
                .filter(|id| looks_like_session_id(id))
                .unwrap_or_default();
            let payout = match session_id.as_str() {
                "" => None,
                id => state.engine.store().payout_by_session(id).await?,
            };
            state
                .engine
                .store()
                .record_bank_event(BankEvent {
                    payout_id: payout.map(|p| p.id),
                    bank_session_id: session_id,
                    kind: "malformed".to_owned(),
                    body: shared::scan::redact_digit_runs(&String::from_utf8_lossy(&body)),
                    received_at: now_micros(),
                })
                .await?;
            return Err(ApiError::MalformedWebhook);
        }
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
    let Some(payout) = payout else {
        // Nothing is kept for a session that is not ours: a body we have no use for is only
        // risk (and a replayed one would be a way to fill the database).
        tracing::info!(kind, "bank webhook for an unknown session ignored");
        return Ok(StatusCode::OK.into_response());
    };
    // Kept for the payout's history, once per distinct body; digit runs that could be a card
    // number are redacted first.
    let new = store
        .record_bank_event(BankEvent {
            payout_id: Some(payout.id.clone()),
            bank_session_id: session.id.clone(),
            kind: kind.to_owned(),
            body: shared::scan::redact_digit_runs(&String::from_utf8_lossy(&body)),
            received_at: now_micros(),
        })
        .await?;
    if !new {
        tracing::info!(kind, payout = %payout.id, "bank webhook seen before (a replay or re-delivery); applied again, not kept again");
    }
    tracing::info!(kind, payout = %payout.id, "bank webhook");
    if !matches!(
        kind,
        "ready_to_confirm" | "payment_finished" | "payment_refunded"
    ) {
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

/// A bank session id as the bank writes them (`ps_` and a few dozen safe characters): anything
/// else from an unreadable body is not kept as an id.
fn looks_like_session_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with("ps_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
