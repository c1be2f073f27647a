//! Up to the start: the card fetched from the vault (before the bank sees a session, so a
//! token the vault does not hold fails the payout without an orphan session), the bank session
//! created, `started` saved (rule 1) and the start sent with the card, which is then dropped.
//! Before the start nothing can have been paid, so a failure here is retried and then fails the
//! payout ([`Engine::retry_or_fail`]).

use super::*;

impl Engine {
    /// The card behind a new payout's token, fetched by `POST /v1/payouts` before the payout
    /// is kept (audited with the payout's id as purpose), for [`Engine::drive_new`].
    ///
    /// # Errors
    ///
    /// See [`VaultError`].
    pub async fn fetch_card_for(&self, p: &Payout) -> Result<shared::Pan, VaultError> {
        self.inner
            .vault
            .detokenize(&p.tenant, &p.card_token, &format!("payout:{}", p.id))
            .await
    }

    /// Drives a payout just created with the card already fetched for it: the session is
    /// created and the start sent with that card (no second vault call), then as
    /// [`Engine::drive`]. The card is dropped (zeroized) if the payout moved meanwhile.
    ///
    /// # Errors
    ///
    /// As [`Engine::drive`].
    pub async fn drive_new(&self, id: &PayoutId, pan: shared::Pan) -> Result<(), StoreError> {
        let more = {
            let _guard = self.lock(id).await;
            match self.inner.store.payout(id).await? {
                Some(p)
                    if p.state == PayoutState::Created
                        && !self.held_elsewhere(&p, now_micros()) =>
                {
                    match self.create_session_with(p, pan).await {
                        Ok(more) => more,
                        // Someone else moved it: read again.
                        Err(StoreError::Conflict) => true,
                        Err(e) => return Err(e),
                    }
                }
                _ => true,
            }
        };
        // Only when there is a next step now: a payout waiting on the bank is not asked about
        // at once (that would be a `session/status` call per payout).
        if more { self.drive(id).await } else { Ok(()) }
    }

    /// Created: the card is fetched first, so that a token the vault does not hold for this
    /// tenant fails the payout before the bank sees a session (no orphan sessions in the bank
    /// project); then the session is created and the start sent with that card at once.
    pub(super) async fn create_session(&self, p: Payout) -> Result<bool, StoreError> {
        let pan = match self.fetch_card(p.clone()).await {
            Ok(pan) => pan,
            Err(outcome) => return outcome,
        };
        self.create_session_with(p, pan).await
    }

    async fn create_session_with(
        &self,
        mut p: Payout,
        pan: shared::Pan,
    ) -> Result<bool, StoreError> {
        let request = bank131::CreateSession {
            metadata: Some(serde_json::json!({ "payout_id": p.id })),
            ..bank131::CreateSession::default()
        };
        // A fresh key per attempt: a session whose creation answer was lost is an orphan the
        // bank never pays from, so creating another is safe.
        let key = bank_key(p.id.as_str(), &format!("create:{}", p.attempts));
        match self.inner.bank.create_session(&request, Some(&key)).await {
            Ok(session) => {
                let s = SessionId::new(session.id);
                p.bank = Some(BankSession::new(s.clone()));
                p.attempts = 0;
                p.state = PayoutState::SessionCreated;
                p.touch(now_micros(), 0);
                let p = self.save(&p, Vec::new()).await?;
                self.start_with(p, &s, pan).await
            }
            Err(e) if e.class() == ErrorClass::Permanent => {
                self.fail(p, &bank_code(&e), "the bank refused the session")
                    .await
            }
            Err(e) => {
                self.retry_or_fail(p, &e.to_string(), "bank_unavailable")
                    .await
            }
        }
    }

    /// The card behind the payout's token, or what the payout comes to without it.
    async fn fetch_card(&self, p: Payout) -> Result<shared::Pan, Result<bool, StoreError>> {
        match self
            .inner
            .vault
            .detokenize(&p.tenant, &p.card_token, &format!("payout:{}", p.id))
            .await
        {
            Ok(pan) => Ok(pan),
            Err(VaultError::TokenNotFound) => Err(self
                .fail(
                    p,
                    "card_token_not_found",
                    "the card token is not in the vault for this tenant",
                )
                .await),
            Err(VaultError::NoKeyForTenant) => Err(self
                .fail(
                    p,
                    "tenant_not_configured",
                    "the proxy has no vault key for this tenant",
                )
                .await),
            // Configuration, not an outage: retrying cannot help, and nothing reached the bank.
            Err(VaultError::Refused(status)) => {
                let (code, message) = if status == 401 {
                    (
                        "vault_key_unauthorized",
                        "the vault does not know the proxy's key for this tenant (vault.api_keys)",
                    )
                } else {
                    (
                        "vault_key_forbidden",
                        "the proxy's vault key for this tenant may not detokenize (it needs tokens:detokenize in this tenant; see vault.api_keys)",
                    )
                };
                Err(self.fail(p, code, message).await)
            }
            // No answer at all is told apart from an answer of "not now": the first is most
            // often a wrong `vault.url`.
            Err(e @ VaultError::Unreachable) => Err(self
                .retry_or_fail(p, &e.to_string(), "vault_unreachable")
                .await),
            Err(e) => Err(self
                .retry_or_fail(p, &e.to_string(), "vault_unavailable")
                .await),
        }
    }

    /// Session created (after a restart, or a retry), or a start to re-send: fetch the card and
    /// start.
    pub(super) async fn start(&self, p: Payout, s: &SessionId) -> Result<bool, StoreError> {
        if p.state == PayoutState::Started {
            // A re-send: the first start may still be processed at the bank, so a vault that
            // now refuses or fails must not fail the payout (the app would pay again).
            return match self
                .inner
                .vault
                .detokenize(&p.tenant, &p.card_token, &format!("payout:{}", p.id))
                .await
            {
                Ok(pan) => self.start_with(p, s, pan).await,
                Err(VaultError::TokenNotFound | VaultError::NoKeyForTenant) => {
                    self.give_up_start(p, s).await
                }
                Err(e) => self.retry_later(p, &e.to_string()).await,
            };
        }
        let pan = match self.fetch_card(p.clone()).await {
            Ok(pan) => pan,
            Err(outcome) => return outcome,
        };
        self.start_with(p, s, pan).await
    }

    async fn start_with(
        &self,
        mut p: Payout,
        session: &SessionId,
        pan: shared::Pan,
    ) -> Result<bool, StoreError> {
        // Rule 1: `started` (with the last four digits, which may be kept) is saved before the
        // start call, fencing it.
        p.card_last4 = Some(pan.last4().to_owned());
        p.state = PayoutState::Started;
        self.wait_for_bank(&mut p);
        let p = self.save(&p, Vec::new()).await?;
        self.send_start(p, session, pan).await
    }

    async fn send_start(
        &self,
        p: Payout,
        session: &SessionId,
        pan: shared::Pan,
    ) -> Result<bool, StoreError> {
        let request = bank131::PayoutRequest {
            card: &pan,
            amount: bank131::Amount {
                amount: p.amount,
                currency: p.currency.clone(),
            },
            participant_details: bank131::ParticipantDetails {
                sender: None,
                recipient: Some(bank131::Participant::full_name(p.recipient_name.clone())),
            },
            customer: None,
            metadata: Some(serde_json::json!({ "payout_id": p.id })),
        };
        // One key for every send of this payout's start (rule 2).
        let key = bank_key(p.id.as_str(), "start");
        let result = self
            .inner
            .bank
            .start_payout(session.as_str(), &request, Some(&key))
            .await;
        drop(request);
        drop(pan);
        match result {
            Ok(session) => self.apply(p, &session).await,
            Err(e) if e.class() == ErrorClass::Permanent => {
                self.fail(p, &bank_code(&e), "the bank refused the payout")
                    .await
            }
            // Outcome unknown: rule 2, read the status on the next drive.
            Err(e) => self.retry_later(p, &e.to_string()).await,
        }
    }

    /// Before the start: retry with backoff, then fail (nothing was sent, so failing is safe).
    async fn retry_or_fail(
        &self,
        mut p: Payout,
        why: &str,
        code: &str,
    ) -> Result<bool, StoreError> {
        p.attempts += 1;
        if p.attempts >= self.inner.settings.max_attempts {
            let message = match code {
                "vault_unreachable" => {
                    "gave up after repeated failures: the vault could not be reached (check vault.url and that the vault is running)"
                }
                "vault_unavailable" => {
                    "gave up after repeated failures: the vault answered that it could not serve (see the vault's log)"
                }
                "bank_unavailable" => {
                    "gave up after repeated failures: Bank 131 could not be reached or could not serve; nothing was started"
                }
                _ => "gave up after repeated failures",
            };
            return self.fail(p, code, message).await;
        }
        tracing::warn!(payout = %p.id, attempt = p.attempts, reason = why, "will retry");
        let s = &self.inner.settings;
        let delay = backoff(s.retry_initial_ms, s.retry_max_ms, p.attempts);
        p.touch(now_micros(), micros(delay));
        self.save(&p, Vec::new()).await?;
        Ok(false)
    }
}
