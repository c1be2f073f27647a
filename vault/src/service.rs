//! The vault's operations, composed from keys and store: what every caller (HTTP routes, the
//! command line, the sweeper) goes through.
//!
//! The rule that matters most lives here: a plaintext PAN leaves [`Vault::detokenize`] only
//! after its audit event is durably written; if that write fails, the PAN is dropped (and
//! zeroized) and the caller gets [`VaultError::AuditUnavailable`] (or
//! [`VaultError::Overloaded`] when the write was refused because too many were waiting).
//!
//! This file holds the card operations (tokenize, read, detokenize, delete); the submodules add
//! to [`Vault`] opening it on a store (`open`), its clients (`clients`) and the audit trail's
//! operations (`audit_trail`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::Pan;

use crate::audit::checkpoint::{self, Checkpoint, CheckpointError};
use crate::audit::{
    Action, AuditDraft, AuditEvent, BrokenLink, ClientHistory, Disagreement, Expectations, Link,
    Outcome, Verifier,
};
use crate::auth::{ClientRecord, Scope, Scopes, validate_label};
use crate::clock::now_micros;
use crate::crypto::{CryptoError, KeyProvider, KeyPurpose, Keyring};
use crate::limits::Report;
use crate::store::{CardMeta, ClientRevocation, Store, StoreError, TokenRecord};
use crate::token::{ApiKey, ClientId, Token};

mod audit_trail;
mod clients;
mod collect;
mod custody;
mod keys;
mod open;

use clients::VerifiedClients;
pub use collect::{NewSession, OpenedSession, Refusal, Submission};
pub use custody::{OPERATOR_KEY_PREFIX, Operation, Operator, OperatorAdded, OperatorKey, Proposal};
pub use keys::{KeyGauges, KeyStatus, Rewrapped, rotation_due};

/// Domain failures. The HTTP layer maps each to a fixed status, code and message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No such live token for this tenant (or not a token at all).
    #[error("token not found")]
    NotFound,
    /// The caller lacks the scope.
    #[error("missing scope {0}")]
    Forbidden(&'static str),
    /// A stored ciphertext failed its integrity check.
    #[error("stored ciphertext failed its integrity check")]
    Integrity,
    /// The audit event could not be written, so the operation was refused.
    #[error("audit log unavailable")]
    AuditUnavailable(#[source] StoreError),
    /// An operator-supplied value was refused (fixed message).
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// No collect session has this id (or its row is forged).
    #[error("collect session not found")]
    NoSession,
    /// A collect session refused a card submission.
    #[error("collect submission refused: {}", .0.as_str())]
    SessionRefused(Refusal),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Keys failed (wrong master key, RNG failure).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Too many writes are waiting: the request was refused at once.
    #[error("too many writes are waiting for the database")]
    Overloaded,
    /// The database holds tokens, clients or audit events but no keys. Making new keys would
    /// leave every stored card unreadable and every audit event unverifiable, so nothing is made.
    #[error(
        "the database holds tokens, clients or audit events but no keys: it is damaged or its keys were deleted; restore it from a backup (new keys would make every stored card unreadable)"
    )]
    KeysMissing,
    /// A reading command found a database without keys: there is nothing to read yet.
    #[error("the database has no vault keys yet (no vault has run on it)")]
    NoKeys,
    /// A database without keys met a master key rebuilt from typed-in shares, which never
    /// makes keys.
    #[error(
        "the database has no keys, and a vault on Shamir shares makes them only at `vault init --provider shamir`: if this vault had keys they were deleted; restore the database from a backup"
    )]
    NoKeysForShares,
    /// The stored keys hold a newer data or fingerprint version than this vault could load:
    /// a token made now would carry the old version (a second token for a card, or a seal
    /// under a key being retired).
    #[error(
        "this vault could not load the newest stored keys, so it makes no new tokens: see the \"reloading the stored keys failed\" lines in its log"
    )]
    KeysBehind,
    /// The database was made by an older vault and lacks a key this one needs.
    #[error(
        "this database was made by an older vault and has no client key: run `vault upgrade` once (it MACs the existing client rows; check `vault clients list` afterwards)"
    )]
    NeedsUpgrade,
    /// A client row failed its MAC: it was written or edited outside the vault.
    #[error(
        "client {0} failed its integrity check (written or edited outside the vault): investigate before acting on it"
    )]
    ClientTampered(ClientId),
    /// The checkpoint file names a link the stored chain does not hold.
    #[error(
        "audit checkpoint: the chain does not hold event {0} as the checkpoint file recorded it (events were cut off or the database was replaced); run `vault audit verify`, and move the checkpoint file aside only once you know why"
    )]
    CheckpointMismatch(u64),
    /// The database is empty but the checkpoint file records a chain.
    #[error(
        "audit checkpoint: the database is empty, but the checkpoint file records an audit chain: the database was replaced or wiped; restore it from a backup, and move the checkpoint file aside only once you know why"
    )]
    CheckpointsWithoutChain,
    /// The checkpoint file is unreadable, malformed or forged.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Production mode refuses what this vault found (what and why, for the operator).
    #[error("{0}")]
    ProductionRefused(String),
    /// Dual control refused a step, or cannot run (what and why, for the operator).
    #[error("dual control: {0}")]
    DualControl(String),
    /// `upgrade` found something the audit chain does not vouch for.
    #[error("upgrade refused: {0}")]
    UpgradeRefused(String),
}

/// How an API key fared. Only [`AuthOutcome::Client`] authenticates.
#[derive(Debug)]
pub enum AuthOutcome {
    /// A live client whose row verifies.
    Client(ClientRecord),
    /// No key was presented.
    Missing,
    /// No client has this key.
    Unknown,
    /// The key's client was revoked.
    Revoked(ClientRecord),
    /// The key's client row does not verify: written or edited outside the vault.
    Tampered(ClientRecord),
}

/// Who is acting, for whom, in which request.
#[derive(Clone, Debug)]
pub struct Context {
    /// Client id, or `cli` / `system`.
    pub actor: String,
    /// The tenant acted in.
    pub tenant: String,
    /// The vault-generated request id.
    pub request_id: Option<String>,
}

impl Context {
    /// The context of an authenticated API client.
    pub fn client(client: &ClientRecord, request_id: Option<String>) -> Self {
        Self {
            actor: client.id.as_str().to_owned(),
            tenant: client.tenant.clone(),
            request_id,
        }
    }

    fn draft(&self, action: Action, outcome: Outcome, token: Option<&Token>) -> AuditDraft {
        AuditDraft {
            actor: self.actor.clone(),
            tenant: Some(self.tenant.clone()),
            action,
            token: token.map(|t| t.as_str().to_owned()),
            purpose: None,
            outcome,
            request_id: self.request_id.clone(),
            detail: None,
        }
    }
}

/// A tokenize request, already parsed.
#[derive(Debug)]
pub struct NewCard {
    /// The card number.
    pub pan: Pan,
    /// Expiry month and year, when given (both or neither).
    pub expiry: Option<(u8, u16)>,
    /// Lifetime; `None` keeps the token until deleted.
    pub ttl_seconds: Option<u64>,
}

/// A tokenize result.
#[derive(Debug)]
pub struct Tokenized {
    /// The token row (metadata only is ever shown).
    pub record: TokenRecord,
    /// False when the card already had a live token in this tenant, which was returned.
    pub created: bool,
}

/// The vault: keys plus store.
#[derive(Debug, Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    /// The unwrapped keys, swapped whole when a key is rotated or retired (here or by another
    /// replica: [`Vault::reload_keys`]).
    keys: Arc<arc_swap::ArcSwap<Keyring>>,
    /// Kept to unwrap key versions added while the vault runs. It wraps keys and nothing else.
    master: Arc<crate::crypto::MasterKey>,
    verified: Arc<VerifiedClients>,
    /// When a detokenize last re-read the keys for a version it lacked (Unix microseconds).
    reloaded_on_miss: Arc<std::sync::atomic::AtomicI64>,
    /// Tokens this process has rewrapped (for `/metrics`).
    rewrapped: Arc<std::sync::atomic::AtomicU64>,
    /// Seals made since the last flush, per data key version ([`Vault::flush_seals`]).
    seals: Arc<parking_lot::Mutex<std::collections::BTreeMap<u32, u64>>>,
    /// Set while the stored keys hold a newer data or fingerprint version than this vault
    /// could load ([`Vault::reload_keys`]): it makes no new tokens then and is not ready.
    keys_behind: Arc<std::sync::atomic::AtomicBool>,
}

/// Longest accepted detokenize purpose.
pub const MAX_PURPOSE_LEN: usize = 128;

impl Vault {
    /// Tokenizes a card for the context's tenant.
    ///
    /// # Errors
    ///
    /// Storage or RNG failure.
    pub async fn tokenize(&self, ctx: &Context, card: NewCard) -> Result<Tokenized, VaultError> {
        let record = self.new_token(&ctx.tenant, &card, now_micros())?;
        let new_token = record.token.clone();
        let draft = ctx.draft(Action::TokenCreate, Outcome::Granted, None);
        // The row and its audit event commit together or not at all: a failed commit is a
        // failed audit write (fail closed, 503), whichever half the database refused.
        let record = self
            .store
            .tokenize(record, self.keys().audit(), draft)
            .await
            .map_err(audited)?;
        Ok(Tokenized {
            created: record.token == new_token,
            record,
        })
    }

    /// A new token row for `card` in `tenant`: the PAN sealed, its fingerprint and metadata.
    fn new_token(&self, tenant: &str, card: &NewCard, now: i64) -> Result<TokenRecord, VaultError> {
        if self.keys_behind() {
            return Err(VaultError::KeysBehind);
        }
        let token = Token::generate().map_err(CryptoError::from)?;
        let ttl_micros = card.ttl_seconds.map(|s| {
            i64::try_from(s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000)
        });
        // One keyring for the whole record: one load on the hot path, and the fingerprint and
        // the seal from the same keys.
        let keys = self.keys();
        Ok(TokenRecord {
            fingerprint: keys.fingerprint().fingerprint(tenant, &card.pan),
            fingerprint_key_version: keys.fingerprint().version(),
            earlier_fingerprints: keys
                .earlier_fingerprints()
                .iter()
                .map(|k| k.fingerprint(tenant, &card.pan))
                .collect(),
            card: CardMeta {
                bin: card.pan.bin().to_owned(),
                last4: card.pan.last4().to_owned(),
                brand: card.pan.brand(),
                pan_length: u8::try_from(card.pan.len()).unwrap_or(u8::MAX),
                exp_month: card.expiry.map(|(m, _)| m),
                exp_year: card.expiry.map(|(_, y)| y),
            },
            sealed: self.seal(&keys, &card.pan, token.as_str(), tenant)?,
            tenant: tenant.to_owned(),
            created_at: now,
            expires_at: ttl_micros.map(|ttl| now.saturating_add(ttl)),
            token,
        })
    }

    /// Reads a token's metadata. `token` is `None` when the caller's text was not a token.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`] for a missing, expired or other tenant's token.
    pub async fn read(
        &self,
        ctx: &Context,
        token: Option<Token>,
    ) -> Result<TokenRecord, VaultError> {
        let found = self.find(ctx, token.as_ref()).await?;
        let outcome = if found.is_some() {
            Outcome::Granted
        } else {
            Outcome::NotFound
        };
        self.audit(ctx.draft(Action::TokenRead, outcome, token.as_ref()))
            .await?;
        found.ok_or(VaultError::NotFound)
    }

    /// Returns the PAN behind a token, after writing the audit event durably.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`], [`VaultError::Integrity`] for a ciphertext that fails
    /// authentication, [`VaultError::AuditUnavailable`] when the audit write fails (the PAN is
    /// then never returned).
    pub async fn detokenize(
        &self,
        ctx: &Context,
        token: Option<Token>,
        purpose: &str,
    ) -> Result<Pan, VaultError> {
        let mut draft = ctx.draft(Action::TokenDetokenize, Outcome::Granted, token.as_ref());
        draft.purpose = Some(purpose.to_owned());
        let Some(record) = self.find(ctx, token.as_ref()).await? else {
            draft.outcome = Outcome::NotFound;
            self.audit(draft).await?;
            return Err(VaultError::NotFound);
        };
        let mut keys = self.keys();
        if !keys.holds_data_version(record.sealed.key_version) && self.may_reload_on_miss() {
            // Rotated (and the row rewrapped) by another replica or the command line since this
            // vault last re-read its keys: read them now rather than fail a good token. At most
            // every 100 ms, so detokenizing a token whose key was destroyed cannot turn each
            // request into a read of the keys table.
            if let Err(e) = self.reload_keys().await {
                tracing::warn!(error = %e, "reloading the stored keys failed");
            }
            keys = self.keys();
        }
        let pan = match keys.open_pan(&record.sealed, record.token.as_str(), &record.tenant) {
            Ok(pan) => pan,
            Err(e) => {
                tracing::error!(error = %e, token = %record.token, "sealed PAN failed to open");
                draft.outcome = Outcome::Error;
                draft.detail = Some("integrity check failed".to_owned());
                self.audit(draft).await?;
                return Err(VaultError::Integrity);
            }
        };
        // Fail closed: no durable audit event, no PAN.
        self.audit(draft).await?;
        Ok(pan)
    }

    /// Deletes a token: its ciphertext is destroyed; the audit trail stays.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`].
    pub async fn delete(&self, ctx: &Context, token: Option<Token>) -> Result<(), VaultError> {
        let draft = ctx.draft(Action::TokenDelete, Outcome::Granted, token.as_ref());
        let deleted = match &token {
            Some(t) => self
                .store
                .delete_token(&ctx.tenant, t, now_micros(), self.keys().audit(), draft)
                .await
                .map_err(audited)?,
            None => {
                self.audit(AuditDraft {
                    outcome: Outcome::NotFound,
                    ..draft
                })
                .await?;
                false
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }

    /// Refuses an operation for a missing scope, recording the denial.
    ///
    /// # Errors
    ///
    /// Always [`VaultError::Forbidden`] (or the audit failure).
    pub async fn deny(
        &self,
        ctx: &Context,
        action: Action,
        token: Option<&Token>,
        scope: Scope,
    ) -> VaultError {
        let mut draft = ctx.draft(action, Outcome::Denied, token);
        draft.detail = Some(format!("missing scope {}", scope.as_str()));
        if let Err(e) = self.audit(draft).await {
            return e;
        }
        VaultError::Forbidden(scope.as_str())
    }

    /// Deletes expired tokens (the sweeper calls this).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn sweep(&self) -> Result<u64, VaultError> {
        self.store
            .delete_expired(now_micros(), self.keys().audit())
            .await
            .map_err(audited)
    }

    /// Deletes collect sessions that expired more than `retention` ago (the sweeper calls this).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn sweep_collect_sessions(&self, retention: Duration) -> Result<u64, VaultError> {
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        self.store
            .delete_expired_collect_sessions(
                now_micros().saturating_sub(retention),
                self.keys().audit(),
            )
            .await
            .map_err(audited)
    }

    /// Succeeds when an audit event could be written now and the stored chain still holds what
    /// this vault wrote.
    ///
    /// # Errors
    ///
    /// Storage failure, or the chain check.
    pub async fn ready(&self) -> Result<(), VaultError> {
        if self.keys_behind() {
            return Err(VaultError::KeysBehind);
        }
        self.store.check_ready().await.map_err(audited)
    }

    async fn find(
        &self,
        ctx: &Context,
        token: Option<&Token>,
    ) -> Result<Option<TokenRecord>, VaultError> {
        match token {
            Some(t) => Ok(self.store.token(&ctx.tenant, t, now_micros()).await?),
            None => Ok(None),
        }
    }

    /// Audits an operator's action on the running vault (unseal, seal).
    ///
    /// # Errors
    ///
    /// Storage failure, or the chain check.
    pub async fn record_operator(
        &self,
        action: Action,
        detail: Option<String>,
    ) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new("operator", action, Outcome::Granted);
        draft.detail = detail;
        self.audit(draft).await
    }

    async fn audit(&self, draft: AuditDraft) -> Result<(), VaultError> {
        self.store
            .append_audit(self.keys().audit(), draft)
            .await
            .map_err(audited)
    }
}

/// Walks the chain from the first event, checking every link and every expected link, and
/// feeds the verified events to `observe`.
async fn walk_chain(
    store: &dyn Store,
    key: &crate::crypto::AuditKey,
    expected: &Expectations,
    observe: &mut (dyn FnMut(&AuditEvent) + Send),
) -> Result<Result<Verifier, BrokenLink>, VaultError> {
    let mut verifier = Verifier::new(key.clone());
    loop {
        let page = store.audit_events(verifier.checked(), 1000).await?;
        if page.is_empty() {
            return Ok(expected.finish(verifier.checked()).map(|()| verifier));
        }
        for event in &page {
            if let Err(broken) = verifier.check(event).and_then(|()| expected.check(event)) {
                return Ok(Err(broken));
            }
            observe(event);
        }
    }
}

/// The error of a write that carries an audit event: shedding stays shedding, a refused row
/// stays what it is, and anything else means the event could not be written (fail closed, 503).
fn audited(e: StoreError) -> VaultError {
    match e {
        StoreError::Overloaded => VaultError::Overloaded,
        StoreError::Duplicate | StoreError::Corrupt(_) => VaultError::Store(e),
        other => VaultError::AuditUnavailable(other),
    }
}
