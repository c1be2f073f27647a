//! The app's decisions on its payouts (`POST /v1/payouts/{id}/confirm` and `…/cancel`): a
//! confirm only of a session that still shows this payout, a cancel at any point before the
//! confirm; both under the payout's lock and the store's version check, so a decision racing
//! the reconciler or another replica is decided on what the payout became.

use super::settle::Check;
use super::*;

/// An app's decision on a manual payout.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AppDecision {
    /// `POST /v1/payouts/{id}/confirm`.
    Confirm,
    /// `POST /v1/payouts/{id}/cancel`.
    Cancel,
}

/// Errors of app-initiated actions.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such payout.
    #[error("no such payout")]
    NotFound,
    /// The payout is not waiting for a manual decision (yet).
    #[error("the payout is not awaiting confirmation")]
    WrongState,
    /// A confirm of a payout created with `confirm: auto`.
    #[error("the payout is confirmed by the proxy")]
    NotManual,
    /// The request contradicts what already happened (cancel after confirm, confirm after
    /// cancel).
    #[error("{0}")]
    Contradicts(&'static str),
    /// The bank's session no longer matches the payout: it is being cancelled, not confirmed.
    #[error("the bank's session does not match the payout")]
    Mismatch,
    /// The bank's session could not be read before confirming; nothing was sent.
    #[error("the bank could not be reached")]
    BankUnavailable,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// The app's decision on a payout it created: a confirm (see `confirm_decision`) or a cancel
    /// before it is confirmed (see `cancel_decision`).
    ///
    /// # Errors
    ///
    /// [`ActionError::NotFound`] (also another app's payout), [`ActionError::WrongState`],
    /// [`ActionError::NotManual`], [`ActionError::Contradicts`] (a cancel after a confirm, a
    /// confirm after a cancel), [`ActionError::Mismatch`], [`ActionError::BankUnavailable`],
    /// storage.
    pub async fn decide_by_app(
        &self,
        tenant: &str,
        client_id: &AppClientId,
        id: &PayoutId,
        decision: AppDecision,
    ) -> Result<Payout, ActionError> {
        {
            let _guard = self.lock(id).await;
            // Another replica may save the payout between our read and our save (its version
            // check refuses ours): read again and decide on what it became.
            let mut tries = 0;
            loop {
                let p = self
                    .inner
                    .store
                    .payout(id)
                    .await?
                    .filter(|p| p.tenant == tenant && p.client_id == *client_id)
                    .ok_or(ActionError::NotFound)?;
                let outcome = match decision {
                    AppDecision::Confirm => self.confirm_decision(p).await,
                    AppDecision::Cancel => self.cancel_decision(p).await,
                };
                match outcome {
                    Err(ActionError::Store(StoreError::Conflict)) if tries < 3 => tries += 1,
                    Err(e) => return Err(e),
                    Ok(()) => break,
                }
            }
        }
        self.inner
            .store
            .payout(id)
            .await?
            .ok_or(ActionError::NotFound)
    }

    /// The app's confirm. Repeating one that took effect is answered with the payout as it is.
    async fn confirm_decision(&self, mut p: Payout) -> Result<(), ActionError> {
        if p.confirm_mode != ConfirmMode::Manual {
            return Err(ActionError::NotManual);
        }
        match p.state {
            PayoutState::AwaitingConfirmation => {}
            PayoutState::Confirming | PayoutState::Succeeded | PayoutState::Returned => {
                return Ok(());
            }
            PayoutState::Created | PayoutState::SessionCreated | PayoutState::Started => {
                return Err(ActionError::WrongState);
            }
            PayoutState::Cancelling | PayoutState::Cancelled | PayoutState::Failed => {
                return Err(ActionError::Contradicts(
                    "the payout was cancelled or failed; it cannot be confirmed",
                ));
            }
        }
        self.wait_for_bank(&mut p);
        // Cannot be missing: a payout awaiting confirmation has a session (the store reads one
        // without as corrupt). Nothing is sent without it.
        let Some(s) = p.bank.as_ref().map(|b| b.id.clone()) else {
            tracing::warn!(payout = %p.id, "confirm: the payout names no bank session; nothing sent");
            return Err(ActionError::BankUnavailable);
        };
        // The same check as auto mode: the session must still show this payout.
        match self.check_session(&p, &s).await {
            Ok(Check::Matches) => {
                p.state = PayoutState::Confirming;
                let p = self.save(&p, Vec::new()).await?;
                self.send_confirm(p, &s).await?;
                Ok(())
            }
            Ok(Check::Mismatch) => {
                self.cancel_mismatch(p, &s).await?;
                Err(ActionError::Mismatch)
            }
            Ok(Check::Other(session)) => {
                self.apply(p, &session).await?;
                Err(ActionError::WrongState)
            }
            Err(why) => {
                tracing::warn!(payout = %p.id, reason = %why, "confirm: the bank's session could not be read; nothing sent");
                Err(ActionError::BankUnavailable)
            }
        }
    }

    /// The app's cancel, in either confirm mode, at any point before the confirm: nothing sent
    /// yet ends it at once; a session with no payout waiting is cancelled now; a start the bank
    /// is still processing is cancelled when the bank asks for the confirmation (the bank
    /// refuses a cancel before that, and never pays without a confirm). Repeating a cancel, or
    /// cancelling a payout that already ended unpaid, answers the payout as it is.
    async fn cancel_decision(&self, mut p: Payout) -> Result<(), ActionError> {
        match p.state {
            PayoutState::Cancelling | PayoutState::Cancelled | PayoutState::Failed => {
                return Ok(());
            }
            PayoutState::Confirming | PayoutState::Succeeded | PayoutState::Returned => {
                return Err(ActionError::Contradicts(
                    "the payout was confirmed; it can no longer be cancelled",
                ));
            }
            PayoutState::Created
            | PayoutState::SessionCreated
            | PayoutState::Started
            | PayoutState::AwaitingConfirmation => {}
        }
        p.set_cancel_reason(CancelReason::ByApp);
        p.failure_message = Some("cancelled by the app".to_owned());
        // A flag a person must see (several payouts in the session, …) stays until the bank's
        // answer settles it.
        if p.state == PayoutState::Created {
            // Nothing reached the bank; a drive racing this one finds the payout final.
            self.save_state(p, PayoutState::Cancelled).await?;
            return Ok(());
        }
        // Past `created` a payout has its session (the store reads one without as corrupt):
        // without it nothing could be cancelled at the bank, and nothing is saved or sent.
        let Some(s) = p.bank.as_ref().map(|b| b.id.clone()) else {
            tracing::warn!(payout = %p.id, "cancel: the payout names no bank session; nothing sent");
            return Err(ActionError::BankUnavailable);
        };
        let was = p.state;
        p.state = PayoutState::Cancelling;
        self.wait_for_bank(&mut p);
        let p = self.save(&p, Vec::new()).await?;
        if was == PayoutState::Started {
            // The bank may still be processing the start: read where it is and act on that.
            self.reconcile(p, &s).await?;
        } else {
            self.send_cancel(p, &s).await?;
        }
        Ok(())
    }
}
