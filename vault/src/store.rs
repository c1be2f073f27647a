//! Persistence: one trait, one backend per database (SQLite, PostgreSQL).
//!
//! Methods are single statements or single transactions. Where an audit event must commit
//! with the change it records (tokenize, delete, client changes), the method takes the draft
//! and the audit key and writes both in one transaction, so there is never a change without its
//! event. Every append first checks that the stored chain still holds the head this store
//! remembers ([`crate::audit::ChainHead`]). The trait is object-safe through `async-trait` so
//! the service can hold `Arc<dyn Store>` and pick the backend from config.

use std::fmt;

use async_trait::async_trait;
use shared::Brand;

use crate::audit::{AuditDraft, AuditEvent, HeadMismatch, Link};
use crate::auth::ClientRecord;
use crate::collect::{CollectId, CollectSession};
use crate::crypto::{AuditKey, ClientKey, KeyPurpose, KeyState, RowMac, Sealed, WrappedKey};
use crate::token::{ClientId, Token};

mod postgres;
mod rows;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// Card facts kept in clear beside the ciphertext: at most BIN and last four.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CardMeta {
    /// First six digits.
    pub bin: String,
    /// Last four digits.
    pub last4: String,
    /// Brand from the BIN.
    pub brand: Brand,
    /// Number of digits.
    pub pan_length: u8,
    /// Expiry month, 1–12, when given.
    pub exp_month: Option<u8>,
    /// Expiry year (four digits), when given.
    pub exp_year: Option<u16>,
}

/// A token row.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TokenRecord {
    /// The token.
    pub token: Token,
    /// Owner tenant.
    pub tenant: String,
    /// Keyed per-tenant fingerprint of the PAN.
    pub fingerprint: [u8; 32],
    /// Version of the fingerprint key.
    pub fingerprint_key_version: u32,
    /// Not stored: the card's fingerprints under older fingerprint key versions still held
    /// (empty but while the rewrap job re-fingerprints rows after a rotation), so tokenize finds
    /// a token fingerprinted before the rotation.
    pub earlier_fingerprints: Vec<[u8; 32]>,
    /// Clear metadata.
    pub card: CardMeta,
    /// The sealed PAN.
    pub sealed: Sealed,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds; after it the token no longer exists for any caller.
    pub expires_at: Option<i64>,
}

/// What a store operation returns: its value, or why storage failed.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

shared::store_error::store_error! {
    /// Storage failures.
    pub enum StoreError {
        /// A read-only open found no database file (a reading command never creates one).
        #[error("no vault database at {}", path.display())]
        Missing {
            /// Where the database was looked for.
            path: std::path::PathBuf,
        },
        /// The stored audit chain no longer holds what this store wrote: cut or rolled back.
        #[error("{mismatch}")]
        Chain {
            /// How the stored chain differs from the head this store remembers.
            mismatch: HeadMismatch,
        },
    }
}

impl From<HeadMismatch> for StoreError {
    fn from(mismatch: HeadMismatch) -> Self {
        Self::Chain { mismatch }
    }
}

/// A revocation: the row as it was read and checked (`old_mac`), and its new MAC with
/// `revoked_at` set. The store revokes only a row that still carries `old_mac`.
#[derive(Clone, Debug)]
pub struct ClientRevocation {
    /// The client.
    pub id: ClientId,
    /// When.
    pub revoked_at: i64,
    /// The MAC the row has now.
    pub old_mac: RowMac,
    /// The MAC of the revoked row.
    pub new_mac: RowMac,
}

/// A token's PAN sealed again under the active data key (the rewrap job).
#[derive(Clone, Debug)]
pub struct Resealed {
    /// The token.
    pub token: Token,
    /// The version it was read under: the row changes only if it still is.
    pub from_version: u32,
    /// The new ciphertext.
    pub sealed: Sealed,
}

/// A token re-fingerprinted under a newer fingerprint key version by the rewrap job.
#[derive(Clone, Debug)]
pub struct Refingerprinted {
    /// The token.
    pub token: Token,
    /// Its tenant.
    pub tenant: String,
    /// The version it was read under: the row changes only if it still is.
    pub from_version: u32,
    /// The card's fingerprint under the new version.
    pub fingerprint: [u8; 32],
    /// A fingerprint under the new version that no card has, for a token whose card already
    /// has another token under the new version (made by a replica that had not yet read the
    /// rotation): it keeps opening, and the card's lookups find the other.
    pub unmatched: [u8; 32],
    /// The new version.
    pub version: u32,
}

/// How many tokens use each key version: `(version, tokens)`, oldest version first.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct KeyUse {
    /// Per data key version (`tokens.key_version`).
    pub data: Vec<(u32, u64)>,
    /// Per fingerprint key version (`tokens.fingerprint_key_version`).
    pub fingerprint: Vec<(u32, u64)>,
}

/// What the vault stores. See the module docs for the transaction rules.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Every stored (wrapped) key.
    async fn wrapped_keys(&self) -> Result<Vec<WrappedKey>>;

    /// Stores the first key set and its audit event. [`StoreError::Duplicate`] if any key of
    /// the same purpose and version exists (another process initialised the vault first).
    async fn insert_keys(
        &self,
        keys: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()>;

    /// Stores `new` unless a live token for the same tenant and fingerprint exists, in which
    /// case that one is returned unchanged (an expired one is replaced). Writes the audit event
    /// (its `token` set to the token returned) in the same transaction.
    async fn tokenize(
        &self,
        new: TokenRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<TokenRecord>;

    /// The live (unexpired at `now`) token of `tenant`. A token of another tenant is `None`,
    /// exactly like a missing one.
    async fn token(&self, tenant: &str, token: &Token, now: i64) -> Result<Option<TokenRecord>>;

    /// Deletes the live token of `tenant` and writes the audit event in the same transaction,
    /// with its outcome set to `not_found` when there was nothing to delete. Returns whether a
    /// row was deleted.
    async fn delete_token(
        &self,
        tenant: &str,
        token: &Token,
        now: i64,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool>;

    /// Deletes tokens expired at `now`; when any were, writes one `token.expire` event with the
    /// count. Returns the count.
    async fn delete_expired(&self, now: i64, audit: &AuditKey) -> Result<u64>;

    /// Moves one key version from `from` to `to` (only if it is still in `from`: two operators
    /// retiring at once retire once), with its audit event (outcome `not_found` when nothing
    /// moved). Returns whether it moved.
    async fn set_key_state(
        &self,
        purpose: KeyPurpose,
        version: u32,
        from: KeyState,
        to: KeyState,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool>;

    /// Up to `limit` tokens sealed under data key version `version` whose token sorts after
    /// `after`, in token order (whatever their tenant or expiry): the rewrap job's next batch.
    async fn tokens_sealed_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>>;

    /// Up to `limit` tokens fingerprinted under fingerprint key version `version` whose token
    /// sorts after `after`, in token order: the re-fingerprint pass's next batch.
    async fn tokens_fingerprinted_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>>;

    /// Moves each token to its fingerprint under the new version, if it is still under
    /// `from_version` and the new version is active (else it is left), in one transaction with
    /// the audit event. Returns how many moved.
    async fn refingerprint_tokens(
        &self,
        moved: Vec<Refingerprinted>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64>;

    /// Replaces each token's ciphertext with its resealed one, only while the row is still
    /// sealed under the version it was read with (a replica that got there first wins), with
    /// one audit event for the batch. Returns how many rows changed.
    async fn reseal_tokens(
        &self,
        resealed: Vec<Resealed>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64>;

    /// Destroys a decrypt-only key version: its wrapped key is wiped and its state set to
    /// `destroyed`, only when no token is sealed under it (or, with `shred`, regardless: those
    /// tokens never open again). Audited; returns whether it was destroyed.
    async fn destroy_key(
        &self,
        purpose: KeyPurpose,
        version: u32,
        shred: bool,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool>;

    /// Adds `n` to a key version's seal count (not audited: a counter, written every second).
    async fn add_seals(&self, purpose: KeyPurpose, version: u32, n: u64) -> Result<()>;

    /// How many tokens each data key version seals, and each fingerprint key version keys.
    async fn tokens_per_key_version(&self) -> Result<KeyUse>;

    /// Deletes collect sessions that expired before `before`; when any did, writes one
    /// `collect.expire` event with the count. Returns the count.
    async fn delete_expired_collect_sessions(&self, before: i64, audit: &AuditKey) -> Result<u64>;

    /// Stores a new client and its audit event.
    async fn insert_client(
        &self,
        client: ClientRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()>;

    /// The client whose API key hashes to `key_hash`, revoked or not.
    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>>;

    /// The client with this id, revoked or not.
    async fn client_by_id(&self, id: &ClientId) -> Result<Option<ClientRecord>>;

    /// Every client, oldest first.
    async fn clients(&self) -> Result<Vec<ClientRecord>>;

    /// Revokes a client whose row is still unrevoked and carries `revocation.old_mac`, and
    /// writes the audit event (outcome `not_found` otherwise). Returns whether one was revoked.
    async fn revoke_client(
        &self,
        revocation: ClientRevocation,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool>;

    /// Stores a new key version (a rotation) only while `witness`, a stored key row read with
    /// the keys this version was wrapped beside, still holds the wrapped form it was read with:
    /// a master-key rotation committed meanwhile changed it, and a version wrapped under the
    /// old master key must not land beside keys under the new one. [`StoreError::Duplicate`]
    /// when the version exists or the witness changed.
    async fn add_key_version(
        &self,
        key: WrappedKey,
        witness: WrappedKey,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()>;

    /// Upgrade of an older database: stores a new purpose's key and gives the MAC-less client
    /// rows their MACs, with the audit event, in one transaction.
    async fn add_key_and_seal_clients(
        &self,
        key: WrappedKey,
        macs: Vec<(ClientId, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()>;

    /// Stores a new collect session and its audit event.
    async fn insert_collect_session(
        &self,
        session: CollectSession,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()>;

    /// The collect session with this id, whatever its tenant (the caller checks tenant and MAC).
    async fn collect_session(&self, id: &CollectId) -> Result<Option<CollectSession>>;

    /// Completes a session with a card, in one transaction: claims `session` (as read and
    /// checked) only while its row still has no completion, is unexpired at `new.created_at`
    /// and still carries the MAC it was read with; tokenizes `new` as [`Store::tokenize`] does;
    /// records the token (and the name typed, if any) on the session, sealed again with `key` so
    /// the completion is authenticated too; and writes the audit event (its `token` set; its
    /// actor must be the session id). Returns the completed session, or `None` when it was no
    /// longer open, or when the audit log already holds a granted `collect.submit` by the
    /// session (its row was rolled back to before its completion): then nothing is written.
    async fn complete_collect_session(
        &self,
        session: CollectSession,
        new: TokenRecord,
        cardholder_name: Option<String>,
        key: &ClientKey,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<Option<CollectSession>>;

    /// Appends one audit event, durably, before returning.
    async fn append_audit(&self, audit: &AuditKey, draft: AuditDraft) -> Result<()>;

    /// Master-key rotation: replaces the wrapped form of every key that has material with
    /// `to`'s, in one audited transaction, and only if each row still holds `from`'s wrapped
    /// form and no other key row with material exists (a version added meanwhile under the old
    /// master key would be left behind). `false`, with nothing changed, otherwise.
    async fn rewrap_keys(
        &self,
        from: Vec<WrappedKey>,
        to: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool>;

    /// Up to `limit` collect sessions whose id sorts after `after`, in id order (whatever their
    /// state): the client-key rewrap's next batch.
    async fn collect_sessions_after(
        &self,
        after: Option<CollectId>,
        limit: u32,
    ) -> Result<Vec<CollectSession>>;

    /// After a client key rotation: replaces each row's MAC (client rows, then collect
    /// sessions) with the new one, only while the row still holds the old, in one transaction
    /// with the audit event. Returns how many rows changed.
    async fn remac_rows(
        &self,
        clients: Vec<(ClientId, RowMac, RowMac)>,
        sessions: Vec<(CollectId, RowMac, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64>;

    /// Appends `draft` unless the chain already holds a granted event of its action with its
    /// `request_id` (checked and appended under the audit lock, so of two at once one wins).
    /// Returns whether it was appended.
    async fn append_audit_once(&self, audit: &AuditKey, draft: AuditDraft) -> Result<bool>;

    /// Up to `limit` events with `seq > after`, in order.
    async fn audit_events(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>>;

    /// Reads the stored chain head and remembers it as the head this store must keep finding
    /// (called once, at open). Returns it.
    async fn adopt_head(&self) -> Result<Option<Link>>;

    /// The newest head this store has written or adopted.
    fn known_head(&self) -> Option<Link>;

    /// The stored MAC of audit event `seq`.
    async fn audit_mac_at(&self, seq: u64) -> Result<Option<[u8; 32]>>;

    /// `(seq, client id)` of the granted `client.revoke` events after `after`, in order
    /// (unverified: the chain's MACs are checked by `audit verify`; here an attacker could
    /// only remove one).
    async fn revocations_after(&self, after: u64) -> Result<Vec<(u64, String)>>;

    /// True when there are no tokens, clients or audit events (a new database).
    async fn is_empty(&self) -> Result<bool>;

    /// Readiness: the stored chain still holds this store's head, and an audit event could be
    /// written now (a probe row is inserted and rolled back).
    async fn check_ready(&self) -> Result<()>;
}
