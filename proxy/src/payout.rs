//! The payout: its states, its record (with the bank session it has past `created`, as one
//! [`BankSession`] value rather than loose optional columns), and the events the app hears about.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::{AppClientId, PayoutId, PayoutLinkId};

/// Where a payout is. Transitions only move forward (see [`PayoutState::rank`]).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutState {
    /// Accepted from the app; nothing sent to the bank yet.
    Created,
    /// The bank session exists (`session/create` answered).
    SessionCreated,
    /// `session/start/payout` was (or is about to be) sent: it is never sent again unless
    /// `session/status` shows the bank did not get it.
    Started,
    /// The bank sent `ready_to_confirm`.
    AwaitingConfirmation,
    /// `session/confirm` was (or is about to be) sent.
    Confirming,
    /// `session/cancel` was (or is about to be) sent.
    Cancelling,
    /// The money went out.
    Succeeded,
    /// It did not (declined, refused, cancelled for a mismatch, …): see the failure code.
    Failed,
    /// Cancelled by the app, or its confirmation deadline passed.
    Cancelled,
    /// It went out, and the recipient's bank sent it back (`payment_refunded`, API.md §6): the
    /// money is back in the partner's balance. Reached only from `succeeded`.
    Returned,
}

impl PayoutState {
    /// Every state.
    pub const ALL: [Self; 10] = [
        Self::Created,
        Self::SessionCreated,
        Self::Started,
        Self::AwaitingConfirmation,
        Self::Confirming,
        Self::Cancelling,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Returned,
    ];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::SessionCreated => "session_created",
            Self::Started => "started",
            Self::AwaitingConfirmation => "awaiting_confirmation",
            Self::Confirming => "confirming",
            Self::Cancelling => "cancelling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Returned => "returned",
        }
    }

    /// Parses [`PayoutState::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Progress order: a payout may only move to a state of higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Created => 0,
            Self::SessionCreated => 1,
            Self::Started => 2,
            Self::AwaitingConfirmation => 3,
            Self::Confirming | Self::Cancelling => 4,
            Self::Succeeded | Self::Failed | Self::Cancelled => 9,
            Self::Returned => 10,
        }
    }

    /// Whether a payout in this state has a bank session: every state but `created` and the two
    /// a payout may end in before its session was created (`failed`, `cancelled`). The store
    /// reads a row in such a state without one as corrupt, so the engine never meets it.
    pub fn has_session(self) -> bool {
        !matches!(self, Self::Created | Self::Failed | Self::Cancelled)
    }

    /// Final: the engine no longer drives it. Only a bank return leaves one (`succeeded` to
    /// `returned`).
    pub fn is_final(self) -> bool {
        self.rank() >= 9
    }
}

impl fmt::Display for PayoutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decides a payout waiting for confirmation.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmMode {
    /// The proxy confirms when the bank's session matches the payout, else cancels.
    Auto,
    /// The app confirms or cancels (`payout.awaiting_confirmation`), before the deadline.
    Manual,
}

impl ConfirmMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
        }
    }

    /// Parses [`ConfirmMode::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// Declares a struct that opens with the fields fixed when a payout is created: all of
/// [`PayoutRequest`], and the start of every [`Payout`]. One list, so the two cannot drift apart
/// ([`Payout::created`] moves each field across).
macro_rules! with_request_fields {
    ($(#[$attr:meta])* pub struct $name:ident { $($rest:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            /// `pay_…`.
            pub id: PayoutId,
            /// The tenant whose token pays out.
            pub tenant: String,
            /// The app client that asked.
            pub client_id: AppClientId,
            /// The app's `Idempotency-Key`.
            pub idempotency_key: String,
            /// SHA-256 of the canonical request: same key + other body is a conflict.
            pub request_hash: [u8; 32],
            /// The vault token.
            pub card_token: String,
            /// Minor units.
            pub amount: i64,
            /// ISO 4217, as the app sent it.
            pub currency: String,
            /// The recipient's full name (the bank requires it for Russian cards).
            pub recipient_name: String,
            /// The app's metadata, JSON text.
            pub metadata: Option<String>,
            /// Who confirms.
            pub confirm_mode: ConfirmMode,
            $($rest)*
        }
    };
}

with_request_fields! {
/// A payout as stored. Never holds a card number: the token, and at most the last four digits.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Payout {
    /// Where it is.
    pub state: PayoutState,
    /// The bank session and what is learned with it: present in every state that
    /// [`PayoutState::has_session`], and possibly in `failed` or `cancelled`.
    pub bank: Option<BankSession>,
    /// Last four digits, learned at detokenize time.
    pub card_last4: Option<String>,
    /// Why it failed (the bank's code, or ours).
    pub failure_code: Option<String>,
    /// A fixed description of the failure.
    pub failure_message: Option<String>,
    /// Set when the proxy cannot finish the payout by itself and a person must look.
    pub attention: Option<String>,
    /// When the engine should try this payout again (Unix microseconds).
    pub next_attempt_at: i64,
    /// Failed attempts at the current step (vault or bank unavailable).
    pub attempts: u32,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds.
    pub updated_at: i64,
    /// Optimistic-concurrency version, bumped by every save and every claim: the fence a bank
    /// call's preceding save checks.
    pub version: i64,
    /// The replica that holds the payout until `next_attempt_at` (it claimed or last saved it).
    pub lease_owner: Option<String>,
    /// `start/payout` re-sends after the bank showed no payout in the session.
    pub start_sends: u32,
}
}

/// The bank's id of a payout's session, `ps_…`. The engine's calls that need a session take
/// one of these, so none can be made for a payout without one.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SessionId(String);

impl SessionId {
    /// The bank's id as it answered `session/create` (or as stored).
    pub fn new(id: String) -> Self {
        Self(id)
    }

    /// The bank's id, `ps_…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What exists only once a payout's bank session was created: the session, and what the bank
/// reports within it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BankSession {
    /// The session, `ps_…`.
    pub id: SessionId,
    /// `po_…` once the bank reports the payout.
    pub payout_id: Option<String>,
    /// Manual mode: when the proxy cancels a payout still waiting (Unix microseconds), set when
    /// the bank asks for the confirmation.
    pub confirm_deadline: Option<i64>,
}

impl BankSession {
    /// A session just created: nothing reported in it yet.
    pub fn new(id: SessionId) -> Self {
        Self {
            id,
            payout_id: None,
            confirm_deadline: None,
        }
    }
}

/// Why the proxy cancels a bank session. Recorded in the payout's `failure_code` before the
/// cancel is sent, because the state the payout ends in depends on it (and a crash may come
/// between the two).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CancelReason {
    /// The app cancelled (`POST /v1/payouts/{id}/cancel`): ends `cancelled`.
    ByApp,
    /// A manual payout was not decided in time: ends `cancelled`.
    ConfirmationDeadline,
    /// The bank's payout was not ours (amount, currency or card): ends `failed`.
    ConfirmationMismatch,
    /// The start was re-sent as often as allowed and the bank never showed it: a person decides.
    StartUnconfirmed,
}

impl CancelReason {
    const ALL: [Self; 4] = [
        Self::ByApp,
        Self::ConfirmationDeadline,
        Self::ConfirmationMismatch,
        Self::StartUnconfirmed,
    ];

    /// The code kept in `failure_code` (and shown to the app).
    pub const fn code(self) -> &'static str {
        match self {
            Self::ByApp => "cancelled_by_app",
            Self::ConfirmationDeadline => "confirmation_deadline",
            Self::ConfirmationMismatch => "confirmation_mismatch",
            Self::StartUnconfirmed => "start_unconfirmed",
        }
    }
}

with_request_fields! {
/// What an app asked for: the part of a payout fixed when it is created.
#[derive(Clone, Debug)]
pub struct PayoutRequest {}
}

impl Payout {
    /// The bookkeeping of every change: changed `now`, next looked at `after` microseconds
    /// later (0: at once).
    pub fn touch(&mut self, now: i64, after: i64) {
        self.updated_at = now;
        self.next_attempt_at = now.saturating_add(after);
    }

    /// A new payout for `request` at `now` (Unix microseconds): `created`, due at once, nothing
    /// from the bank yet, held by no replica.
    pub fn created(request: PayoutRequest, now: i64) -> Self {
        Self {
            id: request.id,
            tenant: request.tenant,
            client_id: request.client_id,
            idempotency_key: request.idempotency_key,
            request_hash: request.request_hash,
            card_token: request.card_token,
            amount: request.amount,
            currency: request.currency,
            recipient_name: request.recipient_name,
            metadata: request.metadata,
            confirm_mode: request.confirm_mode,
            state: PayoutState::Created,
            bank: None,
            card_last4: None,
            failure_code: None,
            failure_message: None,
            attention: None,
            next_attempt_at: now,
            attempts: 0,
            created_at: now,
            updated_at: now,
            version: 0,
            lease_owner: None,
            start_sends: 0,
        }
    }

    /// The bank's id of this payout, `po_…`, once the bank reported it.
    pub fn bank_payout_id(&self) -> Option<&str> {
        self.bank.as_ref()?.payout_id.as_deref()
    }

    /// Why the proxy is cancelling (or cancelled) this payout's session, if it did.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        let code = self.failure_code.as_deref()?;
        CancelReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Records why the session is being cancelled, before the cancel is sent.
    pub fn set_cancel_reason(&mut self, reason: CancelReason) {
        self.failure_code = Some(reason.code().to_owned());
    }

    /// Moves forward to `next` (a no-op check for callers: false if that would go backwards or
    /// leave a final state).
    pub fn can_move_to(&self, next: PayoutState) -> bool {
        let returned = self.state == PayoutState::Succeeded && next == PayoutState::Returned;
        (returned || !self.state.is_final()) && next.rank() > self.state.rank()
    }

    /// The app event for entering the current state, if the app hears about it.
    pub fn event_type(&self) -> Option<&'static str> {
        match self.state {
            PayoutState::AwaitingConfirmation if self.confirm_mode == ConfirmMode::Manual => {
                Some("payout.awaiting_confirmation")
            }
            PayoutState::Succeeded => Some("payout.succeeded"),
            PayoutState::Failed => Some("payout.failed"),
            PayoutState::Cancelled => Some("payout.cancelled"),
            PayoutState::Returned => Some("payout.returned"),
            _ => None,
        }
    }
}

/// The canonical request a payout was made from, hashed for idempotency.
#[derive(Debug, Serialize)]
pub struct RequestFingerprint<'a> {
    /// Token.
    pub card_token: &'a str,
    /// Minor units.
    pub amount: i64,
    /// Currency, lowercased.
    pub currency: String,
    /// Recipient.
    pub recipient_full_name: &'a str,
    /// Metadata (serde_json sorts object keys, so key order does not matter).
    pub metadata: Option<&'a serde_json::Value>,
    /// Mode.
    pub confirm: ConfirmMode,
}

impl RequestFingerprint<'_> {
    /// SHA-256 of the canonical JSON.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(serde_json::to_vec(self).unwrap_or_default()).into()
    }
}

/// A row of the outbox: an app webhook to deliver, written with the state change it reports.
/// It is about a payout, a payout link, or both (a link's completion names its payout): at
/// least one is set (the store reads a row with neither as corrupt).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct OutboxEvent {
    /// `evt_…`.
    pub id: String,
    /// The payout.
    pub payout_id: Option<PayoutId>,
    /// The payout link.
    pub payout_link_id: Option<PayoutLinkId>,
    /// The app client to tell.
    pub client_id: AppClientId,
    /// `payout.succeeded`, …
    pub event_type: String,
    /// The exact JSON body to send.
    pub payload: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt (Unix microseconds).
    pub next_attempt_at: i64,
    /// Set once a 2xx came back.
    pub delivered_at: Option<i64>,
    /// Set when retries were exhausted.
    pub abandoned_at: Option<i64>,
    /// The last failure, fixed text plus status.
    pub last_error: Option<String>,
    /// Unix microseconds.
    pub created_at: i64,
}

impl OutboxEvent {
    /// What the event is about, for delivering one subject's events in order: its payout (a
    /// link's completion goes out before its payout's own events), else its link.
    pub fn subject(&self) -> &str {
        match (&self.payout_id, &self.payout_link_id) {
            (Some(p), _) => p.as_str(),
            (None, Some(l)) => l.as_str(),
            (None, None) => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        let at = |state| Payout { state, ..sample() };
        for a in PayoutState::ALL {
            assert_eq!(PayoutState::from_name(a.as_str()), Some(a));
            for b in PayoutState::ALL {
                let allowed = at(a).can_move_to(b);
                if a.is_final() {
                    // Out of a final state only one way: a bank return of a success.
                    let want = a == PayoutState::Succeeded && b == PayoutState::Returned;
                    assert_eq!(allowed, want, "{a} -> {b}");
                } else {
                    assert_eq!(allowed, b.rank() > a.rank(), "{a} -> {b}");
                }
            }
        }
        assert!(PayoutState::Confirming.rank() > PayoutState::AwaitingConfirmation.rank());
        assert!(PayoutState::Succeeded.rank() > PayoutState::Confirming.rank());
    }

    fn sample() -> Payout {
        Payout::created(
            PayoutRequest {
                id: PayoutId::generate().unwrap(),
                tenant: "t".into(),
                client_id: AppClientId::generate().unwrap(),
                idempotency_key: "k".into(),
                request_hash: [0; 32],
                card_token: "tok_1".into(),
                amount: 1,
                currency: "rub".into(),
                recipient_name: "A B".into(),
                metadata: None,
                confirm_mode: ConfirmMode::Auto,
            },
            0,
        )
    }

    #[test]
    fn a_cancel_reason_reads_back_and_a_bank_code_is_none() {
        let mut p = sample();
        assert_eq!(p.cancel_reason(), None);
        for r in CancelReason::ALL {
            p.set_cancel_reason(r);
            assert_eq!(p.cancel_reason(), Some(r));
        }
        p.failure_code = Some("declined_by_issuer_bank".to_owned());
        assert_eq!(p.cancel_reason(), None);
    }

    #[test]
    fn request_hash_ignores_metadata_key_order_and_currency_case() {
        let m1 = serde_json::json!({"a": 1, "b": 2});
        let m2: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        let f = |m, cur: &str| {
            RequestFingerprint {
                card_token: "tok_x",
                amount: 100,
                currency: cur.to_ascii_lowercase(),
                recipient_full_name: "A B",
                metadata: m,
                confirm: ConfirmMode::Auto,
            }
            .hash()
        };
        assert_eq!(f(Some(&m1), "RUB"), f(Some(&m2), "rub"));
        assert_ne!(f(Some(&m1), "rub"), f(None, "rub"));
    }
}
