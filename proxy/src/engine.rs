//! The payout engine: drives each payout through the Bank 131 session, one persisted step at a
//! time (DESIGN §5).
//!
//! Two rules keep a payout exactly-once:
//!
//! 1. Every state is saved *before* the bank call that leaves it. `started` is saved before
//!    `session/start/payout` is sent, `confirming` before `session/confirm`, `cancelling` before
//!    `session/cancel`.
//! 2. A payout found in one of those states (after a crash, a timeout, a lost answer) is never
//!    sent the call again blindly: `session/status` is read first ([`assess`]), and the call is
//!    repeated only when the bank shows it never took effect, and then with the same idempotency
//!    key: a session may hold several payouts (API.md §14.1), so a start still being processed
//!    must be refused as a duplicate, not paid again. Re-sends are capped; past the cap the
//!    session is cancelled and the payout left for a person.
//!
//! And one rule keeps replicas from racing each other (DESIGN §5): a payout is driven only by
//! the replica holding its lease (`lease_owner` until `next_attempt_at`, taken by a claim or a
//! save), and every state-changing bank call follows a save that checks the row's version, which
//! every claim and save bumps. A replica whose read is older than someone else's claim cannot
//! send. The lease (`payouts.stuck_after_ms`) outlasts a bank call (checked at load).
//!
//! The card number is fetched from the vault when the payout is created (or, for a payout the
//! reconciler resumes, right before its session is created), lives as a `Pan` in memory only
//! until the start request is written (through the payout's insert and `session/create`), and is
//! dropped (zeroized) with it; if the payout cannot start now it is dropped and fetched again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use crate::bank131::{
    Amount, Bank131Client, Bank131Error, CreateSession, ErrorClass, Participant,
    ParticipantDetails, PayoutRequest, Session,
};
use crate::config::{PayoutSettings, backoff};
use crate::payout::{CancelReason, ConfirmMode, Payout, PayoutState};
use crate::store::{ProxyStore, StoreError};
use crate::vault_client::{VaultClient, VaultError};
use crate::view::event_for;

mod assess;

use assess::matches_payout;
pub use assess::{Assessment, assess, bank_error_code};

/// Lock stripes: payouts hashing to the same stripe are driven one at a time in this process.
const STRIPES: usize = 64;

const PAID_AFTER_CLOSE: &str = "the bank reports this payout paid after it was closed as failed or cancelled (the app was told it was not paid): reconcile with Bank 131 and the app";
const START_ATTENTION: &str = "the bank never showed this payout's start after repeated sends; the session was cancelled: check with Bank 131 and close it with `proxy payouts resolve`";

/// The namespace of the idempotency keys sent to the bank (UUID v5 of a stable string): the bank
/// documents no key format (API.md §14.10), and a UUID is the one every API takes.
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3f0c_6a1e_8d2b_4c57_9e41_b131_0000_0131);

/// The idempotency key for `what` (`create:0`, `start`, `confirm:2`) of payout `id`: the same
/// every time, in every replica.
pub fn bank_key(id: &str, what: &str) -> String {
    uuid::Uuid::new_v5(&KEY_NAMESPACE, format!("{id}:{what}").as_bytes()).to_string()
}

/// The engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ProxyStore>,
    bank: Bank131Client,
    vault: VaultClient,
    settings: PayoutSettings,
    confirm_deadline: Duration,
    locks: Vec<Mutex<()>>,
    /// Signalled after a save that wrote app events, so the deliverer sends them at once.
    outbox: Arc<tokio::sync::Notify>,
    /// This replica, as `lease_owner`: unique per process, so a restarted replica also waits out
    /// the leases of its previous run (whose calls may still be in flight at the bank).
    owner: String,
}

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
#[non_exhaustive]
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
    /// An engine over these parts.
    pub fn new(
        store: Arc<dyn ProxyStore>,
        bank: Bank131Client,
        vault: VaultClient,
        settings: PayoutSettings,
    ) -> Self {
        let confirm_deadline = Duration::from_secs(settings.confirm_deadline_seconds);
        Self {
            inner: Arc::new(Inner {
                store,
                bank,
                vault,
                settings,
                confirm_deadline,
                locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                outbox: Arc::default(),
                owner: shared::ids::unique_id("rep_"),
            }),
        }
    }

    /// This replica's lease-owner name.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Whether another replica holds `p`'s lease now.
    fn held_elsewhere(&self, p: &Payout, now: i64) -> bool {
        p.next_attempt_at > now
            && p.lease_owner
                .as_deref()
                .is_some_and(|o| o != self.inner.owner)
    }

    /// Saves `p` as this replica's (it takes the lease until `p.next_attempt_at`), checking the
    /// version: [`StoreError::Conflict`] if anyone claimed or saved it since it was read.
    async fn save(
        &self,
        p: &Payout,
        events: Vec<crate::payout::OutboxEvent>,
    ) -> Result<Payout, StoreError> {
        let mut p = p.clone();
        p.lease_owner = Some(self.inner.owner.clone());
        self.inner.store.save(&p, events).await
    }

    /// The fence before a state-changing bank call: takes the lease for one call's length.
    async fn fence(&self, mut p: Payout) -> Result<Payout, StoreError> {
        p.updated_at = now_micros();
        p.next_attempt_at = p.updated_at + millis(self.inner.settings.stuck_after_ms);
        self.save(&p, Vec::new()).await
    }

    /// How long a reconciler claim on a payout lasts.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.inner.settings.stuck_after_ms.max(1_000))
    }

    /// Notified whenever this engine has written app events (see [`Deliverer::wake_on`]).
    ///
    /// [`Deliverer::wake_on`]: crate::outbox::Deliverer::wake_on
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.inner.outbox)
    }

    /// Saves `p` with the app events its state calls for, and tells the deliverer.
    async fn save_with_events(&self, p: &Payout, now: i64) -> Result<Payout, StoreError> {
        let events: Vec<_> = event_for(p, now).into_iter().collect();
        let wrote_events = !events.is_empty();
        let saved = self.save(p, events).await?;
        if wrote_events {
            self.inner.outbox.notify_one();
        }
        Ok(saved)
    }

    /// The vault client.
    pub fn vault(&self) -> &VaultClient {
        &self.inner.vault
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ProxyStore> {
        &self.inner.store
    }

    async fn lock(&self, id: &str) -> MutexGuard<'_, ()> {
        let stripe = id.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % STRIPES;
        match self.inner.locks.get(stripe) {
            Some(lock) => lock.lock().await,
            None => self.inner.locks[0].lock().await,
        }
    }

    /// Drives a payout as far as it can go now; returns when it waits on the bank, the app, or
    /// a retry time.
    ///
    /// # Errors
    ///
    /// Storage failure (the payout is then driven again by the reconciler).
    pub async fn drive(&self, id: &str) -> Result<(), StoreError> {
        let _guard = self.lock(id).await;
        for _ in 0..16 {
            let Some(p) = self.inner.store.payout(id).await? else {
                return Ok(());
            };
            if p.state.is_final() || self.held_elsewhere(&p, now_micros()) {
                return Ok(());
            }
            match self.step(p).await {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                // Someone else moved it; read again.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One step. `Ok(true)`: the payout moved and may move again at once.
    async fn step(&self, p: Payout) -> Result<bool, StoreError> {
        match p.state {
            PayoutState::Created => self.create_session(p).await,
            PayoutState::SessionCreated => self.start(p).await,
            PayoutState::Started | PayoutState::Confirming | PayoutState::Cancelling => {
                self.reconcile(p).await
            }
            PayoutState::AwaitingConfirmation => self.decide(p).await,
            PayoutState::Succeeded
            | PayoutState::Failed
            | PayoutState::Cancelled
            | PayoutState::Returned => Ok(false),
        }
    }

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
    pub async fn drive_new(&self, id: &str, pan: shared::Pan) -> Result<(), StoreError> {
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
    async fn create_session(&self, p: Payout) -> Result<bool, StoreError> {
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
        let request = CreateSession {
            metadata: Some(serde_json::json!({ "payout_id": p.id })),
            ..CreateSession::default()
        };
        // A fresh key per attempt: a session whose creation answer was lost is an orphan the
        // bank never pays from, so creating another is safe.
        let key = bank_key(&p.id, &format!("create:{}", p.attempts));
        match self.inner.bank.create_session(&request, Some(&key)).await {
            Ok(session) => {
                p.bank_session_id = Some(session.id.clone());
                p.attempts = 0;
                p.state = PayoutState::SessionCreated;
                p.updated_at = now_micros();
                p.next_attempt_at = now_micros();
                let p = self.save(&p, Vec::new()).await?;
                self.start_with(p, &session.id, pan).await
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
    async fn start(&self, p: Payout) -> Result<bool, StoreError> {
        let Some(session_id) = p.bank_session_id.clone() else {
            return self.fail(p, "internal_error", "no bank session").await;
        };
        if p.state == PayoutState::Started {
            // A re-send: the first start may still be processed at the bank, so a vault that
            // now refuses or fails must not fail the payout (the app would pay again).
            return match self
                .inner
                .vault
                .detokenize(&p.tenant, &p.card_token, &format!("payout:{}", p.id))
                .await
            {
                Ok(pan) => self.start_with(p, &session_id, pan).await,
                Err(VaultError::TokenNotFound | VaultError::NoKeyForTenant) => {
                    self.give_up_start(p).await
                }
                Err(e) => self.reschedule(p, &e.to_string()).await,
            };
        }
        let pan = match self.fetch_card(p.clone()).await {
            Ok(pan) => pan,
            Err(outcome) => return outcome,
        };
        self.start_with(p, &session_id, pan).await
    }

    async fn start_with(
        &self,
        mut p: Payout,
        session_id: &str,
        pan: shared::Pan,
    ) -> Result<bool, StoreError> {
        // Rule 1: `started` (with the last four digits, which may be kept) is saved before the
        // start call, fencing it.
        p.card_last4 = Some(pan.last4().to_owned());
        p.state = PayoutState::Started;
        p.next_attempt_at = now_micros() + millis(self.inner.settings.stuck_after_ms);
        p.updated_at = now_micros();
        let p = self.save(&p, Vec::new()).await?;
        self.send_start(p, session_id, pan).await
    }

    async fn send_start(
        &self,
        p: Payout,
        session_id: &str,
        pan: shared::Pan,
    ) -> Result<bool, StoreError> {
        let request = PayoutRequest {
            card: &pan,
            amount: Amount {
                amount: p.amount,
                currency: p.currency.clone(),
            },
            participant_details: ParticipantDetails {
                sender: None,
                recipient: Some(Participant::full_name(p.recipient_name.clone())),
            },
            customer: None,
            metadata: Some(serde_json::json!({ "payout_id": p.id })),
        };
        // One key for every send of this payout's start (rule 2).
        let key = bank_key(&p.id, "start");
        let result = self
            .inner
            .bank
            .start_payout(session_id, &request, Some(&key))
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
            Err(e) => self.reschedule(p, &e.to_string()).await,
        }
    }

    /// Started / confirming / cancelling: read the status, then act on what it says.
    async fn reconcile(&self, p: Payout) -> Result<bool, StoreError> {
        let Some(session_id) = p.bank_session_id.clone() else {
            return self.fail(p, "internal_error", "no bank session").await;
        };
        let session = match self.inner.bank.status(&session_id).await {
            Ok(s) => s,
            Err(e) => return self.reschedule(p, &e.to_string()).await,
        };
        match (
            p.state,
            assess(&session, &p.id, p.bank_payout_id.as_deref()),
        ) {
            // The bank shows no payout: the start never arrived, or is still being processed.
            // Sent again with the same key (a duplicate is refused, not paid), a few times.
            (PayoutState::Started, Assessment::NotStarted) => {
                let mut p = p;
                if p.start_sends >= self.inner.settings.max_start_resends {
                    return self.give_up_start(p).await;
                }
                p.start_sends += 1;
                // `start` saves `started` again (the fence) before it sends.
                self.start(p).await
            }
            (PayoutState::Confirming, Assessment::AwaitingConfirmation { .. }) => {
                let p = self.fence(p).await?;
                self.send_confirm(p).await
            }
            (
                PayoutState::Cancelling,
                Assessment::AwaitingConfirmation { .. } | Assessment::NotStarted,
            ) => {
                let p = self.fence(p).await?;
                self.send_cancel(p).await
            }
            (_, Assessment::InProgress { .. }) => {
                let mut p = p;
                p.attention = None;
                self.reschedule(p, "").await
            }
            _ => self.apply(p, &session).await,
        }
    }

    /// Awaiting confirmation: auto mode checks and confirms or cancels; manual mode waits for
    /// the app until the deadline.
    async fn decide(&self, mut p: Payout) -> Result<bool, StoreError> {
        match p.confirm_mode {
            ConfirmMode::Manual => {
                if p.confirm_deadline.is_some_and(|d| now_micros() >= d) {
                    p.set_cancel_reason(CancelReason::ConfirmationDeadline);
                    p.failure_message =
                        Some("the app did not confirm before the deadline".to_owned());
                    return self.begin_cancel(p).await;
                }
                Ok(false)
            }
            ConfirmMode::Auto => match self.check_session(&p).await {
                Ok(Check::Matches) => {
                    p.state = PayoutState::Confirming;
                    p.updated_at = now_micros();
                    p.next_attempt_at = now_micros() + millis(self.inner.settings.stuck_after_ms);
                    let p = self.save(&p, Vec::new()).await?;
                    self.send_confirm(p).await
                }
                Ok(Check::Mismatch) => self.cancel_mismatch(p).await,
                Ok(Check::Other(session)) => self.apply(p, &session).await,
                Err(why) => self.reschedule(p, &why).await,
            },
        }
    }

    /// Reads the session before a confirm: auto and manual mode alike confirm only a session
    /// that still waits and shows this payout's amount, currency and card.
    async fn check_session(&self, p: &Payout) -> Result<Check, String> {
        let session_id = p.bank_session_id.as_deref().ok_or("no bank session")?;
        let session = self
            .inner
            .bank
            .status(session_id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match assess(&session, &p.id, p.bank_payout_id.as_deref()) {
            Assessment::AwaitingConfirmation { .. } if matches_payout(p, &session) => {
                Check::Matches
            }
            Assessment::AwaitingConfirmation { .. } => Check::Mismatch,
            _ => Check::Other(Box::new(session)),
        })
    }

    async fn cancel_mismatch(&self, mut p: Payout) -> Result<bool, StoreError> {
        tracing::error!(payout = %p.id, "the bank's session does not match the payout; cancelling");
        p.set_cancel_reason(CancelReason::ConfirmationMismatch);
        p.failure_message = Some(
            "the bank's session did not match the payout (amount, currency or card)".to_owned(),
        );
        self.begin_cancel(p).await
    }

    async fn begin_cancel(&self, mut p: Payout) -> Result<bool, StoreError> {
        p.state = PayoutState::Cancelling;
        p.updated_at = now_micros();
        p.next_attempt_at = now_micros() + millis(self.inner.settings.stuck_after_ms);
        let p = self.save(&p, Vec::new()).await?;
        self.send_cancel(p).await
    }

    /// The start was re-sent `max_start_resends` times and the bank still shows no payout:
    /// cancel the session so that a start still in flight cannot pay, and flag the payout. It
    /// stays unfinished (reconciled, slowly) until the bank shows a payout or a person resolves
    /// it: failing it would invite the app to pay again.
    async fn give_up_start(&self, mut p: Payout) -> Result<bool, StoreError> {
        tracing::error!(payout = %p.id, sends = p.start_sends, "the bank never showed the payout's start; cancelling the session and flagging the payout");
        p.set_cancel_reason(CancelReason::StartUnconfirmed);
        p.failure_message = Some(
            "the bank never showed the payout after repeated starts; the session was cancelled"
                .to_owned(),
        );
        p.attention = Some(START_ATTENTION.to_owned());
        self.begin_cancel(p).await
    }

    async fn send_confirm(&self, p: Payout) -> Result<bool, StoreError> {
        let Some(session_id) = p.bank_session_id.clone() else {
            return self.fail(p, "internal_error", "no bank session").await;
        };
        let key = bank_key(&p.id, &format!("confirm:{}", p.attempts));
        match self.inner.bank.confirm(&session_id, Some(&key)).await {
            Ok(session) => self.apply(p, &session).await,
            Err(e) => self.reschedule(p, &e.to_string()).await,
        }
    }

    async fn send_cancel(&self, p: Payout) -> Result<bool, StoreError> {
        let Some(session_id) = p.bank_session_id.clone() else {
            return self.fail(p, "internal_error", "no bank session").await;
        };
        let key = bank_key(&p.id, &format!("cancel:{}", p.attempts));
        match self.inner.bank.cancel(&session_id, Some(&key)).await {
            Ok(session) => self.apply(p, &session).await,
            Err(e) => self.reschedule(p, &e.to_string()).await,
        }
    }

    /// Applies what a bank session says, moving only forward. Used for call answers, status
    /// reads and webhooks alike.
    ///
    /// # Errors
    ///
    /// Storage failure or a concurrent change ([`StoreError::Conflict`]).
    pub async fn apply(&self, mut p: Payout, session: &Session) -> Result<bool, StoreError> {
        let assessment = assess(session, &p.id, p.bank_payout_id.as_deref());
        let (next, bank_payout_id) = match &assessment {
            Assessment::NotStarted => return Ok(false),
            Assessment::InProgress { bank_payout_id } => {
                (PayoutState::Started, Some(bank_payout_id))
            }
            Assessment::AwaitingConfirmation { bank_payout_id } => {
                (PayoutState::AwaitingConfirmation, Some(bank_payout_id))
            }
            Assessment::Succeeded { bank_payout_id } => {
                (PayoutState::Succeeded, Some(bank_payout_id))
            }
            Assessment::Returned { bank_payout_id } => {
                if p.can_move_to(PayoutState::Succeeded) {
                    // A return seen before the success (a missed webhook): the app hears both,
                    // in order.
                    p.bank_payout_id = Some(bank_payout_id.clone());
                    p.attention = None;
                    p.attempts = 0;
                    let now = now_micros();
                    p.state = PayoutState::Succeeded;
                    p.updated_at = now;
                    p.next_attempt_at = now;
                    p = self.save_with_events(&p, now).await?;
                }
                (PayoutState::Returned, Some(bank_payout_id))
            }
            Assessment::Failed {
                bank_payout_id,
                code,
            } => {
                if bank_payout_id.is_none()
                    && p.state == PayoutState::Cancelling
                    && p.cancel_reason() == Some(CancelReason::StartUnconfirmed)
                {
                    // Gave up on the start: a cancelled, empty session is what we asked for, not
                    // proof that nothing was paid. A person closes it.
                    p.attention = Some(START_ATTENTION.to_owned());
                    return self.reschedule(p, "").await;
                }
                let next = match p.cancel_reason() {
                    Some(CancelReason::ByApp | CancelReason::ConfirmationDeadline)
                        if p.state == PayoutState::Cancelling =>
                    {
                        PayoutState::Cancelled
                    }
                    Some(CancelReason::ConfirmationMismatch)
                        if p.state == PayoutState::Cancelling =>
                    {
                        PayoutState::Failed
                    }
                    _ => {
                        p.failure_code = Some(code.clone());
                        p.failure_message = Some("the bank did not pay out".to_owned());
                        PayoutState::Failed
                    }
                };
                (next, bank_payout_id.as_ref())
            }
            Assessment::Unclear(why) => {
                p.attention = Some((*why).to_owned());
                return self.reschedule(p, why).await;
            }
        };
        if let Some(id) = bank_payout_id {
            p.bank_payout_id = Some(id.clone());
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
        p.updated_at = now;
        p.next_attempt_at = match next {
            PayoutState::AwaitingConfirmation if p.confirm_mode == ConfirmMode::Manual => {
                let deadline = now
                    + i64::try_from(self.inner.confirm_deadline.as_micros()).unwrap_or(i64::MAX);
                p.confirm_deadline = Some(deadline);
                deadline
            }
            PayoutState::AwaitingConfirmation => now,
            _ => now + millis(self.inner.settings.stuck_after_ms),
        };
        self.save_with_events(&p, now).await?;
        Ok(next == PayoutState::AwaitingConfirmation && p.confirm_mode == ConfirmMode::Auto)
    }

    /// Applies a bank webhook's session to its payout under the payout's lock. Returns whether
    /// the payout should be driven on (auto mode now awaiting confirmation).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn apply_webhook(&self, id: &str, session: &Session) -> Result<bool, StoreError> {
        let _guard = self.lock(id).await;
        for _ in 0..3 {
            let Some(p) = self.inner.store.payout(id).await? else {
                return Ok(false);
            };
            // A cancel asked for while the bank was still processing the start is sent when
            // the bank asks for the confirmation: drive on to send it now.
            let cancel_now = p.state == PayoutState::Cancelling
                && matches!(
                    assess(session, &p.id, p.bank_payout_id.as_deref()),
                    Assessment::AwaitingConfirmation { .. }
                );
            match self.apply(p, session).await {
                Err(StoreError::Conflict) => continue,
                other => return other.map(|moved| moved || cancel_now),
            }
        }
        Ok(false)
    }

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
        client_id: &str,
        id: &str,
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
                    .filter(|p| p.tenant == tenant && p.client_id == client_id)
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
        p.updated_at = now_micros();
        p.next_attempt_at = now_micros() + millis(self.inner.settings.stuck_after_ms);
        // The same check as auto mode: the session must still show this payout.
        match self.check_session(&p).await {
            Ok(Check::Matches) => {
                p.state = PayoutState::Confirming;
                let p = self.save(&p, Vec::new()).await?;
                self.send_confirm(p).await?;
                Ok(())
            }
            Ok(Check::Mismatch) => {
                self.cancel_mismatch(p).await?;
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
        let was = p.state;
        p.state = PayoutState::Cancelling;
        p.updated_at = now_micros();
        p.next_attempt_at = now_micros() + millis(self.inner.settings.stuck_after_ms);
        let p = self.save(&p, Vec::new()).await?;
        if was == PayoutState::Started {
            // The bank may still be processing the start: read where it is and act on that.
            self.reconcile(p).await?;
        } else {
            self.send_cancel(p).await?;
        }
        Ok(())
    }

    async fn save_state(&self, mut p: Payout, state: PayoutState) -> Result<bool, StoreError> {
        let now = now_micros();
        p.state = state;
        p.updated_at = now;
        p.next_attempt_at = now;
        self.save_with_events(&p, now).await?;
        Ok(true)
    }

    async fn fail(&self, mut p: Payout, code: &str, message: &str) -> Result<bool, StoreError> {
        p.failure_code = Some(code.to_owned());
        p.failure_message = Some(message.to_owned());
        p.attention = None;
        self.save_state(p, PayoutState::Failed).await.map(|_| false)
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
        p.next_attempt_at =
            now_micros() + micros(backoff(s.retry_initial_ms, s.retry_max_ms, p.attempts));
        p.updated_at = now_micros();
        self.save(&p, Vec::new()).await?;
        Ok(false)
    }

    /// After the start: try again later (with `session/status` first); past the attempt limit,
    /// flag the payout for a person and keep checking, slowly.
    async fn reschedule(&self, mut p: Payout, why: &str) -> Result<bool, StoreError> {
        let s = &self.inner.settings;
        if !why.is_empty() {
            p.attempts += 1;
            tracing::warn!(payout = %p.id, state = %p.state, attempt = p.attempts, reason = why, "bank outcome unknown; will reconcile");
            if p.attempts >= s.max_attempts && p.attention.is_none() {
                p.attention = Some(
                    "the bank's answer is unknown after repeated attempts; reconciling".to_owned(),
                );
            }
        }
        let delay = if why.is_empty() {
            Duration::from_millis(s.stuck_after_ms)
        } else {
            backoff(s.retry_initial_ms, s.retry_max_ms, p.attempts)
        };
        p.next_attempt_at = now_micros() + micros(delay);
        p.updated_at = now_micros();
        self.save(&p, Vec::new()).await?;
        Ok(false)
    }
}

/// What the session read before a confirm says.
enum Check {
    /// Waiting, and it is this payout: confirm.
    Matches,
    /// Waiting, but for another amount, currency or card: cancel.
    Mismatch,
    /// Not waiting (any more): apply what it says.
    Other(Box<Session>),
}

fn bank_code(e: &Bank131Error) -> String {
    bank_error_code(e.code().unwrap_or_default(), "bank_error")
}

/// Now, Unix microseconds.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn millis(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
