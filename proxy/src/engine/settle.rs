//! After the start: reading the session when an outcome is unknown and sending the next call
//! ([`transition::next_call`]), confirming (auto mode, after checking the session still shows
//! this payout) or cancelling, and applying what any session says, from a call's answer, a
//! status read or a webhook ([`transition::verdict`]).

use super::*;

/// What the session read before a confirm says.
pub(super) enum Check {
    /// Waiting, and it is this payout: confirm.
    Matches,
    /// Waiting, but for another amount, currency or card: cancel.
    Mismatch,
    /// Not waiting (any more): apply what it says.
    Other(Box<Session>),
}

impl Engine {
    /// Started / confirming / cancelling: read the status, then act on what it says.
    pub(super) async fn reconcile(&self, p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        let session = match self.inner.bank.status(s.as_str()).await {
            Ok(s) => s,
            Err(e) => return self.retry_later(p, &e.to_string()).await,
        };
        let assessment = assess(&session, p.id.as_str(), p.bank_payout_id());
        match next_call(&p, &assessment, self.inner.settings.max_start_resends) {
            NextCall::ResendStart => {
                let mut p = p;
                p.start_sends += 1;
                // `start` saves `started` again (the fence) before it sends.
                self.start(p, s).await
            }
            NextCall::GiveUpStart => self.give_up_start(p, s).await,
            NextCall::Confirm => {
                let p = self.fence(p).await?;
                self.send_confirm(p, s).await
            }
            NextCall::Cancel => {
                let p = self.fence(p).await?;
                self.send_cancel(p, s).await
            }
            NextCall::Wait => {
                let mut p = p;
                p.attention = None;
                self.check_later(p).await
            }
            NextCall::Apply => self.apply(p, &session).await,
        }
    }

    /// Awaiting confirmation: auto mode checks and confirms or cancels; manual mode waits for
    /// the app until the deadline.
    pub(super) async fn decide(&self, mut p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        match p.confirm_mode {
            ConfirmMode::Manual => {
                let deadline = p.bank.as_ref().and_then(|b| b.confirm_deadline);
                if deadline.is_some_and(|d| now_micros() >= d) {
                    p.set_cancel_reason(CancelReason::ConfirmationDeadline);
                    p.failure_message =
                        Some("the app did not confirm before the deadline".to_owned());
                    return self.begin_cancel(p, s).await;
                }
                Ok(false)
            }
            ConfirmMode::Auto => match self.check_session(&p, s).await {
                Ok(Check::Matches) => {
                    p.state = PayoutState::Confirming;
                    self.wait_for_bank(&mut p);
                    let p = self.save(&p, Vec::new()).await?;
                    self.send_confirm(p, s).await
                }
                Ok(Check::Mismatch) => self.cancel_mismatch(p, s).await,
                Ok(Check::Other(session)) => self.apply(p, &session).await,
                Err(why) => self.retry_later(p, &why).await,
            },
        }
    }

    /// Reads the session before a confirm: auto and manual mode alike confirm only a session
    /// that still waits and shows this payout's amount, currency and card.
    pub(super) async fn check_session(&self, p: &Payout, s: &SessionId) -> Result<Check, String> {
        let session = self
            .inner
            .bank
            .status(s.as_str())
            .await
            .map_err(|e| e.to_string())?;
        Ok(match assess(&session, p.id.as_str(), p.bank_payout_id()) {
            Assessment::AwaitingConfirmation { .. } if matches_payout(p, &session) => {
                Check::Matches
            }
            Assessment::AwaitingConfirmation { .. } => Check::Mismatch,
            _ => Check::Other(Box::new(session)),
        })
    }

    pub(super) async fn cancel_mismatch(
        &self,
        mut p: Payout,
        s: &SessionId,
    ) -> Result<bool, StoreError> {
        tracing::error!(payout = %p.id, "the bank's session does not match the payout; cancelling");
        p.set_cancel_reason(CancelReason::ConfirmationMismatch);
        p.failure_message = Some(
            "the bank's session did not match the payout (amount, currency or card)".to_owned(),
        );
        self.begin_cancel(p, s).await
    }

    async fn begin_cancel(&self, mut p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        p.state = PayoutState::Cancelling;
        self.wait_for_bank(&mut p);
        let p = self.save(&p, Vec::new()).await?;
        self.send_cancel(p, s).await
    }

    /// The start was re-sent `max_start_resends` times and the bank still shows no payout:
    /// cancel the session so that a start still in flight cannot pay, and flag the payout. It
    /// stays unfinished (reconciled, slowly) until the bank shows a payout or a person resolves
    /// it: failing it would invite the app to pay again.
    pub(super) async fn give_up_start(
        &self,
        mut p: Payout,
        s: &SessionId,
    ) -> Result<bool, StoreError> {
        tracing::error!(payout = %p.id, sends = p.start_sends, "the bank never showed the payout's start; cancelling the session and flagging the payout");
        p.set_cancel_reason(CancelReason::StartUnconfirmed);
        p.failure_message = Some(
            "the bank never showed the payout after repeated starts; the session was cancelled"
                .to_owned(),
        );
        p.attention = Some(START_ATTENTION.to_owned());
        self.begin_cancel(p, s).await
    }

    pub(super) async fn send_confirm(&self, p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        let key = bank_key(p.id.as_str(), &format!("confirm:{}", p.attempts));
        match self.inner.bank.confirm(s.as_str(), Some(&key)).await {
            Ok(session) => self.apply(p, &session).await,
            Err(e) => self.retry_later(p, &e.to_string()).await,
        }
    }

    pub(super) async fn send_cancel(&self, p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        let key = bank_key(p.id.as_str(), &format!("cancel:{}", p.attempts));
        match self.inner.bank.cancel(s.as_str(), Some(&key)).await {
            Ok(session) => self.apply(p, &session).await,
            Err(e) => self.retry_later(p, &e.to_string()).await,
        }
    }

    /// Applies what a bank session says, moving only forward. Used for call answers, status
    /// reads and webhooks alike.
    ///
    /// # Errors
    ///
    /// Storage failure or a concurrent change ([`StoreError::Conflict`]).
    pub async fn apply(&self, mut p: Payout, session: &Session) -> Result<bool, StoreError> {
        let assessment = assess(session, p.id.as_str(), p.bank_payout_id());
        let (next, bank_payout_id, via_success, failure) = match verdict(&p, &assessment) {
            Verdict::Nothing => return Ok(false),
            Verdict::Hold { attention } => {
                p.attention = Some(attention.to_owned());
                return self.check_later(p).await;
            }
            Verdict::Unclear(why) => {
                p.attention = Some(why.to_owned());
                return self.retry_later(p, why).await;
            }
            Verdict::Move {
                to,
                bank_payout_id,
                via_success,
                failure,
            } => (to, bank_payout_id, via_success, failure),
        };
        // Every payout a session is applied to has one (the session was read by its id, or the
        // webhook found the payout by it). The bank's id is kept in it: without a session there
        // is nowhere to keep it, and the store would read a bank id with no session as corrupt.
        if let (Some(id), Some(bank)) = (bank_payout_id, p.bank.as_mut()) {
            bank.payout_id = Some(id.to_owned());
        }
        if via_success {
            let now = now_micros();
            p.state = PayoutState::Succeeded;
            p.attention = None;
            p.attempts = 0;
            p.touch(now, 0);
            p = self.save_with_events(&p, now).await?;
        }
        if let Some((code, message)) = failure {
            p.failure_code = Some(code.to_owned());
            p.failure_message = Some(message.to_owned());
        }
        if !p.can_move_to(next) {
            if matches!(p.state, PayoutState::Failed | PayoutState::Cancelled)
                && matches!(next, PayoutState::Succeeded | PayoutState::Returned)
                && p.attention.is_none()
            {
                // The bank paid a payout the app was told had not been: never silent.
                tracing::error!(payout = %p.id, state = %p.state, "the bank reports a payout paid that was closed as not paid");
                p.attention = Some(PAID_AFTER_CLOSE.to_owned());
                p.updated_at = now_micros();
                self.save(&p, Vec::new()).await?;
            }
            // Nothing new (a duplicate or late report); keep what we learned without moving.
            return Ok(false);
        }
        let now = now_micros();
        p.state = next;
        p.attention = None;
        p.attempts = 0;
        let after = match next {
            // Manual mode: the app has until the deadline; then the reconciler cancels.
            PayoutState::AwaitingConfirmation if p.confirm_mode == ConfirmMode::Manual => {
                let deadline = micros(self.inner.confirm_deadline);
                // A payout awaiting confirmation has a session (`PayoutState::has_session`).
                if let Some(bank) = p.bank.as_mut() {
                    bank.confirm_deadline = Some(now.saturating_add(deadline));
                }
                deadline
            }
            PayoutState::AwaitingConfirmation => 0,
            _ => millis(self.inner.settings.stuck_after_ms),
        };
        p.touch(now, after);
        self.save_with_events(&p, now).await?;
        Ok(next == PayoutState::AwaitingConfirmation && p.confirm_mode == ConfirmMode::Auto)
    }

    /// Applies a bank webhook's session to its payout under the payout's lock. Returns whether
    /// the payout should be driven on (auto mode now awaiting confirmation).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn apply_webhook(
        &self,
        id: &PayoutId,
        session: &Session,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock(id).await;
        for _ in 0..3 {
            let Some(p) = self.inner.store.payout(id).await? else {
                return Ok(false);
            };
            // A cancel asked for while the bank was still processing the start is sent when
            // the bank asks for the confirmation: drive on to send it now.
            let cancel_now = p.state == PayoutState::Cancelling
                && matches!(
                    assess(session, p.id.as_str(), p.bank_payout_id()),
                    Assessment::AwaitingConfirmation { .. }
                );
            match self.apply(p, session).await {
                Err(StoreError::Conflict) => continue,
                other => return other.map(|moved| moved || cancel_now),
            }
        }
        Ok(false)
    }
}
