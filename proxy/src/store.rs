//! Persistence: one trait, with a SQLite and a PostgreSQL backend.
//!
//! The rule that makes payouts crash-safe lives in [`ProxyStore::save`]: a payout's new state
//! and the app events it produces are written in one transaction, guarded by the payout's
//! version, so two writers never both move the same payout and no state change is ever without
//! its event. The trait is object-safe (`async-trait`) so the service holds `Arc<dyn ProxyStore>`.

use std::fmt;

use async_trait::async_trait;

use crate::auth::ClientRecord;
use crate::ids::{AppClientId, PayoutId, PayoutLinkId};
use crate::link::PayoutLink;
use crate::payout::{OutboxEvent, Payout, PayoutState};

/// The schema migrations in order, for one backend (`"postgres"` or `"sqlite"`): both backends
/// have the same steps under the same names, each in its own dialect.
macro_rules! migrations {
    ($backend:literal) => {
        &[
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0001_init.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0002_leases.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0003_returned.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0004_bank_event_digest.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0005_operations.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/0006_payout_links.sql"
            )),
        ]
    };
}

mod postgres;
mod rows;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What a store operation returns: its value, or why storage failed.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

shared::store_error::store_error! {
    /// Storage failures.
    pub enum StoreError {
        /// The payout changed since it was read (another writer moved it).
        #[error("the payout changed concurrently")]
        Conflict,
    }
}

/// What a replica's reconciler claims: up to `limit` payouts due at `due`, leased to `owner`
/// until `lease_until` (Unix microseconds). Named fields, since the two times are both `i64`.
/// The link poller claims open payout links with the same shape.
#[derive(Clone, Copy, Debug)]
pub struct PayoutClaim<'a> {
    /// Payouts whose `next_attempt_at` is at or before this are due.
    pub due: i64,
    /// The claim's lease ends here: the payouts' new `next_attempt_at`.
    pub lease_until: i64,
    /// The claiming replica.
    pub owner: &'a str,
    /// At most this many.
    pub limit: u32,
}

/// The result of inserting a payout (or a payout link) under an idempotency key.
#[derive(Debug)]
pub enum Inserted<T = Payout> {
    /// A new one.
    New(T),
    /// The one already made with this client's key (compare request hashes).
    Existing(T),
}

/// A verified bank webhook as kept.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BankEvent {
    /// The payout, when one matched.
    pub payout_id: Option<PayoutId>,
    /// The bank session.
    pub bank_session_id: String,
    /// The webhook type.
    pub kind: String,
    /// The body (digit runs of 13+ redacted).
    pub body: String,
    /// Unix microseconds.
    pub received_at: i64,
}

impl BankEvent {
    /// SHA-256 of the payout, session, kind and body: the identity that dedupes replays (the
    /// same body about the same payout), never two payouts' records.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.payout_id.as_ref().map_or("", |id| id.as_str()),
            &self.bank_session_id,
            &self.kind,
            &self.body,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }
}

/// Which events [`ProxyStore::list_events`] returns.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this payout's.
    pub payout_id: Option<String>,
    /// Only this payout link's.
    pub payout_link_id: Option<String>,
    /// Only this type (`payout.succeeded`, …).
    pub event_type: Option<String>,
    /// Older than this event.
    pub after: Option<String>,
}

/// Which payouts [`ProxyStore::list_payouts`] returns, beside the tenant.
#[derive(Clone, Debug, Default)]
pub struct PayoutFilter {
    /// Only this client's.
    pub client_id: Option<String>,
    /// Only in this state.
    pub state: Option<PayoutState>,
    /// Older than this payout (the cursor).
    pub after: Option<String>,
}

/// What the proxy stores.
#[async_trait]
pub trait ProxyStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts a payout unless the same client already used its idempotency key.
    async fn insert_payout(&self, payout: Payout) -> Result<Inserted>;

    /// A payout by id.
    async fn payout(&self, id: &PayoutId) -> Result<Option<Payout>>;

    /// The payout a client made with an idempotency key.
    async fn payout_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<Payout>>;

    /// The payout of a bank session.
    async fn payout_by_session(&self, session_id: &str) -> Result<Option<Payout>>;

    /// A tenant's payouts that pass `filter`, newest first, at most `limit`.
    async fn list_payouts(
        &self,
        tenant: &str,
        filter: PayoutFilter,
        limit: u32,
    ) -> Result<Vec<Payout>>;

    /// Writes `payout` (all mutable fields) if its stored version is still `payout.version`,
    /// with `events` in the same transaction. Returns the payout with its new version.
    /// [`StoreError::Conflict`] when someone else saved first.
    async fn save(&self, payout: &Payout, events: Vec<OutboxEvent>) -> Result<Payout>;

    /// Claims up to `claim.limit` payouts not in a final state whose `next_attempt_at` is at or before
    /// `due`, oldest first, for `owner` until `lease_until`: their `next_attempt_at` moves there,
    /// `lease_owner` becomes `owner` and `version` is bumped, so another replica asking meanwhile
    /// does not get them (PostgreSQL: `FOR UPDATE SKIP LOCKED`) and a replica still holding an
    /// older read cannot save over the claim. Returns them as claimed.
    async fn claim_due_payouts(&self, claim: PayoutClaim<'_>) -> Result<Vec<Payout>>;

    /// Keeps a verified bank webhook, once: false when the same kind and body were kept before
    /// (a replay or a re-delivery), and nothing is written.
    async fn record_bank_event(&self, event: BankEvent) -> Result<bool>;

    /// A payout's bank webhooks, in arrival order.
    async fn bank_events(&self, payout_id: &PayoutId) -> Result<Vec<BankEvent>>;

    /// Claims up to `limit` undelivered, unabandoned app events due at `now`, oldest first, by
    /// moving their `next_attempt_at` to `lease_until` (one replica delivers an event at a time).
    async fn claim_due_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>>;

    /// How many app events are neither delivered nor abandoned (read-only; claims nothing).
    async fn undelivered_events(&self) -> Result<u64>;

    /// Records a delivery attempt: delivered, or failed with when to try next (or abandoned).
    async fn update_event(&self, event: &OutboxEvent) -> Result<()>;

    /// One client's events, newest first after the cursor (an event id), of one payout and one
    /// type when given.
    async fn list_events(
        &self,
        client_id: &AppClientId,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>>;

    /// Sends a client's event again as if new (attempts reset, due now, delivered or abandoned
    /// cleared). `None` if the client has no such event.
    async fn redeliver_event(
        &self,
        client_id: &AppClientId,
        id: &str,
        now: i64,
    ) -> Result<Option<OutboxEvent>>;

    /// Stores a new client.
    async fn insert_client(&self, client: ClientRecord) -> Result<()>;

    /// The client holding the key with this hash, revoked or not.
    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>>;

    /// A client by id.
    async fn client(&self, id: &AppClientId) -> Result<Option<ClientRecord>>;

    /// Every client, oldest first.
    async fn clients(&self) -> Result<Vec<ClientRecord>>;

    /// Replaces a client's stored webhook secret (wrapping one an older version kept in clear).
    async fn set_webhook_secret(
        &self,
        id: &AppClientId,
        stored: &crate::auth::WebhookSecret,
    ) -> Result<()>;

    /// Revokes a client; false when there is no such unrevoked client.
    async fn revoke_client(&self, id: &AppClientId, now: i64) -> Result<bool>;

    /// Gives an active client a new API key hash; the old key keeps working until
    /// `previous_until` (Unix microseconds) when given, else stops at once. False if there is no
    /// such active client.
    async fn rotate_client_key(
        &self,
        id: &AppClientId,
        key_hash: [u8; 32],
        previous_until: Option<i64>,
    ) -> Result<bool>;

    /// Sets (or with `None` removes) an active client's webhook URL. False if there is no such
    /// active client.
    async fn set_webhook_url(&self, id: &AppClientId, url: Option<&str>) -> Result<bool>;

    /// Succeeds when the database accepts writes.
    async fn check_writable(&self) -> Result<()>;

    /// Inserts a payout link unless the same client already used its idempotency key.
    async fn insert_link(&self, link: PayoutLink) -> Result<Inserted<PayoutLink>>;

    /// A payout link by id.
    async fn link(&self, id: &PayoutLinkId) -> Result<Option<PayoutLink>>;

    /// The payout link a client made with an idempotency key.
    async fn link_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<PayoutLink>>;

    /// Claims up to `claim.limit` open links whose `next_poll_at` is at or before `due`, oldest
    /// first, for `owner` until `lease_until` (their new `next_poll_at`; version bumped), so
    /// another replica asking meanwhile does not get them (PostgreSQL: `FOR UPDATE SKIP
    /// LOCKED`). Returns them as claimed.
    async fn claim_due_links(&self, claim: PayoutClaim<'_>) -> Result<Vec<PayoutLink>>;

    /// Closes an open link as `link` says (`completed`, with its completion), in one
    /// transaction with the payout it pays (`payout`, inserted; `None` when it exists already)
    /// and the app event (`event`, which names that payout). [`StoreError::Conflict`], and
    /// nothing written, when the link is no longer open (another replica closed it) or the
    /// payout's idempotency key is taken: read again.
    async fn complete_link(
        &self,
        link: &PayoutLink,
        payout: Option<Payout>,
        event: OutboxEvent,
    ) -> Result<()>;

    /// Closes an open link as `expired`, with its app event; false (nothing written) when it
    /// is no longer open.
    async fn expire_link(&self, link: &PayoutLink, event: OutboxEvent) -> Result<bool>;
}
