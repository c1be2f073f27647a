//! The payout engine: drives each payout through the Bank 131 session, one persisted step at a
//! time.
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
//! And one rule keeps replicas from racing each other: a payout is driven only by
//! the replica holding its lease (`lease_owner` until `next_attempt_at`, taken by a claim or a
//! save), and every state-changing bank call follows a save that checks the row's version, which
//! every claim and save bumps. A replica whose read is older than someone else's claim cannot
//! send. The lease (`payouts.stuck_after_ms`) outlasts a bank call (checked at load).
//!
//! The card number is fetched from the vault when the payout is created (or, for a payout the
//! reconciler resumes, right before its session is created), lives as a `Pan` in memory only
//! until the start request is written (through the payout's insert and `session/create`), and is
//! dropped (zeroized) with it; if the payout cannot start now it is dropped and fetched again.
//!
//! A payout past `created` carries its bank session ([`Payout::bank`], a [`BankSession`]; the
//! store reads a row in such a state without one as corrupt). The calls that need the session
//! take its [`SessionId`] as an argument, taken from the payout once, where a step begins
//! ([`Engine::step`], the app's decisions), so none can be made without it.
//!
//! The parts: this file holds the [`Engine`], its bookkeeping (saves, leases, the next look)
//! and the step each state takes; the decisions are pure and tested alone ([`assess`]: a bank
//! session read against the payout; `transition`: the state machine's tables); the I/O is in
//! `start` (up to the start), `settle` (after it) and `app` (the app's confirm and cancel).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

// The bank's request types qualified (`bank131::PayoutRequest`), beside the proxy's own
// `Payout`.
use crate::bank131::{self, Bank131Client, Bank131Error, ErrorClass, Session};
use crate::config::{PayoutSettings, backoff};
use crate::ids::{AppClientId, PayoutId};
use crate::payout::{BankSession, CancelReason, ConfirmMode, Payout, PayoutState, SessionId};
use crate::store::{ProxyStore, StoreError};
use crate::vault_client::{VaultClient, VaultError};
use crate::view::event_for;

mod app;
mod assess;
mod settle;
mod start;
mod transition;

pub use app::{ActionError, AppDecision};

use assess::matches_payout;
pub use assess::{Assessment, assess, bank_error_code};
use transition::{NextCall, START_ATTENTION, Verdict, next_call, verdict};

/// Lock stripes: payouts hashing to the same stripe are driven one at a time in this process.
const STRIPES: usize = 64;

const PAID_AFTER_CLOSE: &str = "the bank reports this payout paid after it was closed as failed or cancelled (the app was told it was not paid): reconcile with Bank 131 and the app";

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

    /// The bookkeeping of a payout about to wait on the bank: changed now, looked at again after
    /// `stuck_after_ms` (a lost answer or webhook), which is also the lease a replica holds on it
    /// for one bank call.
    fn wait_for_bank(&self, p: &mut Payout) {
        p.touch(now_micros(), millis(self.inner.settings.stuck_after_ms));
    }

    /// The fence before a state-changing bank call: takes the lease for one call's length.
    async fn fence(&self, mut p: Payout) -> Result<Payout, StoreError> {
        self.wait_for_bank(&mut p);
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

    async fn lock(&self, id: &PayoutId) -> MutexGuard<'_, ()> {
        let stripe = id.as_str().bytes().fold(0usize, |h, b| {
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
    pub async fn drive(&self, id: &PayoutId) -> Result<(), StoreError> {
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
        // Past `session/create`, every step needs the bank session: taken once, here.
        match (p.state, p.bank.as_ref().map(|b| b.id.clone())) {
            (PayoutState::Created, _) => self.create_session(p).await,
            (PayoutState::SessionCreated, Some(s)) => self.start(p, &s).await,
            (PayoutState::Started | PayoutState::Confirming | PayoutState::Cancelling, Some(s)) => {
                self.reconcile(p, &s).await
            }
            (PayoutState::AwaitingConfirmation, Some(s)) => self.decide(p, &s).await,
            (
                PayoutState::Succeeded
                | PayoutState::Failed
                | PayoutState::Cancelled
                | PayoutState::Returned,
                _,
            ) => Ok(false),
            // Cannot happen: these states have a session (`PayoutState::has_session`), the
            // store reads a row in one that names none as corrupt, and the engine gives a
            // payout its session as it leaves `created`. Nothing is sent.
            (
                PayoutState::SessionCreated
                | PayoutState::Started
                | PayoutState::Confirming
                | PayoutState::Cancelling
                | PayoutState::AwaitingConfirmation,
                None,
            ) => Ok(false),
        }
    }

    async fn save_state(&self, mut p: Payout, state: PayoutState) -> Result<bool, StoreError> {
        let now = now_micros();
        p.state = state;
        p.touch(now, 0);
        self.save_with_events(&p, now).await?;
        Ok(true)
    }

    async fn fail(&self, mut p: Payout, code: &str, message: &str) -> Result<bool, StoreError> {
        p.failure_code = Some(code.to_owned());
        p.failure_message = Some(message.to_owned());
        p.attention = None;
        self.save_state(p, PayoutState::Failed).await.map(|_| false)
    }

    /// Nothing went wrong, the payout waits on the bank (a start in progress, a flag for a
    /// person): look again after `stuck_after_ms`, with `session/status`.
    async fn check_later(&self, mut p: Payout) -> Result<bool, StoreError> {
        self.wait_for_bank(&mut p);
        self.save(&p, Vec::new()).await?;
        Ok(false)
    }

    /// After the start, the bank's answer is unknown (`why`): try again later with
    /// `session/status` first, backing off; past the attempt limit, flag the payout for a person
    /// and keep checking, slowly.
    async fn retry_later(&self, mut p: Payout, why: &str) -> Result<bool, StoreError> {
        let s = &self.inner.settings;
        p.attempts += 1;
        tracing::warn!(payout = %p.id, state = %p.state, attempt = p.attempts, reason = why, "bank outcome unknown; will reconcile");
        if p.attempts >= s.max_attempts && p.attention.is_none() {
            p.attention = Some(
                "the bank's answer is unknown after repeated attempts; reconciling".to_owned(),
            );
        }
        let delay = backoff(s.retry_initial_ms, s.retry_max_ms, p.attempts);
        p.touch(now_micros(), micros(delay));
        self.save(&p, Vec::new()).await?;
        Ok(false)
    }
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
