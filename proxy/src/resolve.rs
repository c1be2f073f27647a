//! `proxy payouts resolve`: a person closes a payout the engine cannot finish by itself (a bank
//! session in `error`, a start the bank never showed), once they have the bank's answer.
//!
//! It is the one way a payout reaches a final state without the bank saying so, so it leaves a
//! trail: the operator, the reason and the state it left are kept in the payout's history (its
//! bank events, kind `operator_resolved`), logged on the `proxy::audit` target, and the app
//! hears the outcome as it would from the bank (`payout.succeeded` / `payout.failed`). Only a
//! payout whose start may have reached the bank, and that the engine has flagged for a person
//! (`needs_attention`), can be resolved: before that the engine is still finishing it, and a
//! late bank success after a resolve to failed is flagged again, never dropped.

use crate::ids::PayoutId;
use crate::payout::{Payout, PayoutState};
use crate::store::{BankEvent, ProxyStore, StoreError};
use crate::view::event_for;

/// What the operator learned from the bank.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum Resolution {
    /// The bank paid it.
    Succeeded,
    /// The bank did not pay it.
    Failed,
}

/// Why a payout was not resolved. Messages name the fix and never echo input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No such payout.
    #[error("no such payout")]
    NotFound,
    /// Already final.
    #[error("the payout is already {0}; nothing to resolve")]
    Final(PayoutState),
    /// The proxy has not flagged it: it is still finishing it.
    #[error(
        "the payout is {0} and not flagged for a person (needs_attention is empty): the proxy is still finishing it with the bank; resolve only what it flagged"
    )]
    NotFlagged(PayoutState),
    /// Never started at the bank.
    #[error(
        "the payout is {0}: its start was never sent to the bank, so the engine finishes it by itself"
    )]
    NotStarted(PayoutState),
    /// The reason is empty, too long, has control characters or a card number.
    #[error("--reason: {0}")]
    Reason(&'static str),
    /// `--operator` is empty or odd.
    #[error("--operator: {0}")]
    Operator(&'static str),
    /// The running proxy kept changing it; try again.
    #[error("the payout changed while being resolved; run the command again")]
    Busy,
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The failure code of a payout an operator closed as failed.
pub const RESOLVED_FAILED: &str = "resolved_failed_by_operator";

/// Resolves payout `id` as `resolution`, recording who and why.
///
/// # Errors
///
/// [`ResolveError`].
pub async fn resolve(
    store: &dyn ProxyStore,
    id: &str,
    resolution: Resolution,
    operator: &str,
    reason: &str,
    now: i64,
) -> Result<Payout, ResolveError> {
    check_text(reason, 500).map_err(ResolveError::Reason)?;
    check_text(operator, 100).map_err(ResolveError::Operator)?;
    // Not a payout id (a typo, a card number pasted by mistake): no such payout, not echoed.
    let id = PayoutId::parse(id).ok_or(ResolveError::NotFound)?;
    // A running proxy may save the payout meanwhile: re-read and retry on a version conflict.
    for _ in 0..5 {
        let mut p = store.payout(&id).await?.ok_or(ResolveError::NotFound)?;
        if p.state.is_final() {
            return Err(ResolveError::Final(p.state));
        }
        if matches!(p.state, PayoutState::Created | PayoutState::SessionCreated) {
            return Err(ResolveError::NotStarted(p.state));
        }
        // A payout the engine has not given up on may have a bank call in flight: closing it
        // under that call could hide a payment.
        if p.attention.is_none() {
            return Err(ResolveError::NotFlagged(p.state));
        }
        let previous = p.state;
        p.state = match resolution {
            Resolution::Succeeded => PayoutState::Succeeded,
            Resolution::Failed => PayoutState::Failed,
        };
        if resolution == Resolution::Failed {
            p.failure_code = Some(RESOLVED_FAILED.to_owned());
            p.failure_message = Some("closed as failed by an operator".to_owned());
        } else {
            p.failure_code = None;
            p.failure_message = None;
        }
        p.attention = None;
        p.updated_at = now;
        p.next_attempt_at = now;
        p.lease_owner = None;
        let events: Vec<_> = event_for(&p, now).into_iter().collect();
        match store.save(&p, events).await {
            Ok(saved) => {
                let record = serde_json::json!({
                    "operator": operator,
                    "reason": reason,
                    "resolved_as": saved.state.as_str(),
                    "previous_state": previous.as_str(),
                });
                let kept = store
                    .record_bank_event(BankEvent {
                        payout_id: Some(saved.id.clone()),
                        bank_session_id: saved
                            .bank
                            .as_ref()
                            .map(|b| b.id.as_str().to_owned())
                            .unwrap_or_default(),
                        kind: "operator_resolved".to_owned(),
                        body: record.to_string(),
                        received_at: now,
                    })
                    .await?;
                if !kept {
                    tracing::error!(payout = %saved.id, "the resolve record was not kept (a duplicate)");
                }
                tracing::warn!(
                    target: "proxy::audit",
                    payout = %saved.id,
                    operator,
                    previous = %previous,
                    resolved_as = %saved.state,
                    "payout resolved by an operator"
                );
                return Ok(saved);
            }
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ResolveError::Busy)
}

/// Free text kept in the payout's history: printable, bounded, and never a card number.
fn check_text(text: &str, max: usize) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        return Err("required: say who decided and why (e.g. a Bank 131 ticket number)");
    }
    if text.chars().count() > max {
        return Err("too long");
    }
    if text.chars().any(char::is_control) {
        return Err("control characters are not allowed");
    }
    if !shared::scan::find_pans(text.as_bytes()).is_empty() {
        return Err("looks like it contains a card number; never write card numbers here");
    }
    Ok(())
}
