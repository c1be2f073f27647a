//! Persistence: one trait, one backend per database.
//!
//! Methods are single statements or single transactions. Where an audit event must commit
//! with the change it records (tokenize, delete, client changes), the method takes the draft
//! and the audit key and writes both in one transaction, so there is never a change without its
//! event. The trait is object-safe through `async-trait` so the service can hold
//! `Arc<dyn Store>` and pick the backend from config; PostgreSQL is a later backend behind the
//! same trait.

use std::fmt;

use async_trait::async_trait;
use shared::Brand;

use crate::audit::{AuditDraft, AuditEvent};
use crate::auth::ClientRecord;
use crate::crypto::{AuditKey, Sealed, WrappedKey};
use crate::token::{ClientId, Token};

mod postgres;
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
    /// Clear metadata.
    pub card: CardMeta,
    /// The sealed PAN.
    pub sealed: Sealed,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds; after it the token no longer exists for any caller.
    pub expires_at: Option<i64>,
}

/// Storage failures. Messages name tables and constraints, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique constraint refused the write.
    #[error("duplicate row")]
    Duplicate,
    /// A stored row does not decode (corruption or a manual edit).
    #[error("stored row is corrupt: {0}")]
    Corrupt(&'static str),
    /// The database failed.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The blocking task running the query died.
    #[error("storage task failed")]
    Task,
}

/// What the vault stores. See the module docs for the transaction rules.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Every stored (wrapped) key.
    async fn wrapped_keys(&self) -> Result<Vec<WrappedKey>, StoreError>;

    /// Stores the first key set and its audit event. [`StoreError::Duplicate`] if any key of
    /// the same purpose and version exists (another process initialised the vault first).
    async fn insert_keys(
        &self,
        keys: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<(), StoreError>;

    /// Stores `new` unless a live token for the same tenant and fingerprint exists, in which
    /// case that one is returned unchanged (an expired one is replaced). Writes the audit event
    /// (its `token` set to the token returned) in the same transaction.
    async fn tokenize(
        &self,
        new: TokenRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<TokenRecord, StoreError>;

    /// The live (unexpired at `now`) token of `tenant`. A token of another tenant is `None`,
    /// exactly like a missing one.
    async fn token(
        &self,
        tenant: &str,
        token: &Token,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;

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
    ) -> Result<bool, StoreError>;

    /// Deletes tokens expired at `now`; when any were, writes one `token.expire` event with the
    /// count. Returns the count.
    async fn delete_expired(&self, now: i64, audit: &AuditKey) -> Result<u64, StoreError>;

    /// Stores a new client and its audit event.
    async fn insert_client(
        &self,
        client: ClientRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<(), StoreError>;

    /// The client whose API key hashes to `key_hash`, revoked or not.
    async fn client_by_key_hash(
        &self,
        key_hash: [u8; 32],
    ) -> Result<Option<ClientRecord>, StoreError>;

    /// Every client, oldest first.
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;

    /// Revokes a client and writes the audit event (outcome `not_found` when there was no such
    /// unrevoked client). Returns whether one was revoked.
    async fn revoke_client(
        &self,
        id: &ClientId,
        now: i64,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool, StoreError>;

    /// Appends one audit event, durably, before returning.
    async fn append_audit(&self, audit: &AuditKey, draft: AuditDraft) -> Result<(), StoreError>;

    /// Up to `limit` events with `seq > after`, in order.
    async fn audit_events(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// Succeeds when the database accepts writes (readiness).
    async fn check_writable(&self) -> Result<(), StoreError>;
}
