//! The vault's operations, composed from keys and store: what every caller (HTTP routes, the
//! command line, the sweeper) goes through.
//!
//! The rule that matters most lives here: a plaintext PAN leaves [`Vault::detokenize`] only
//! after its audit event is durably written; if that write fails, the PAN is dropped (and
//! zeroized) and the caller gets [`VaultError::AuditUnavailable`] (or
//! [`VaultError::Overloaded`] when the write was refused because too many were waiting).

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
    keys: Arc<Keyring>,
    verified: Arc<VerifiedClients>,
}

/// Client rows whose MAC this process has checked, as they were: a row read again field for
/// field the same needs no second HMAC (a row changed in any field is checked afresh, so the
/// cache never vouches for a row the vault did not write). Bounded: cleared when full.
///
/// Also the clients known to be revoked (from the audit log at start-up, and every revoked row
/// seen since): a MAC proves the vault wrote a row once, not that it is the latest version, so
/// a row restored from before its revocation would verify. Those ids stay refused.
#[derive(Debug, Default)]
struct VerifiedClients {
    rows: parking_lot::RwLock<std::collections::HashMap<ClientId, ClientRecord>>,
    revoked: parking_lot::RwLock<std::collections::HashSet<ClientId>>,
    /// The last `client.revoke` event read from the audit log.
    revocations_read: std::sync::atomic::AtomicU64,
}

/// Most rows [`VerifiedClients`] keeps.
const VERIFIED_CLIENTS: usize = 10_000;

impl VerifiedClients {
    /// Remembers revocations (ids that do not parse are ignored).
    fn revoked<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut revoked = self.revoked.write();
        revoked.extend(ids.into_iter().filter_map(ClientId::parse));
    }

    /// Whether an authentic row that says "active" belongs to a client known to be revoked.
    fn revocation_undone(&self, client: &ClientRecord) -> bool {
        if client.revoked_at.is_some() {
            self.revoked(std::iter::once(client.id.as_str()));
            return false;
        }
        self.revoked.read().contains(&client.id)
    }

    fn is_authentic(&self, keys: &Keyring, client: &ClientRecord) -> bool {
        if self
            .rows
            .read()
            .get(&client.id)
            .is_some_and(|known| known.same_row(client))
        {
            return true;
        }
        if !client.is_authentic(keys.client()) {
            return false;
        }
        let mut rows = self.rows.write();
        if rows.len() >= VERIFIED_CLIENTS {
            rows.clear();
        }
        rows.insert(client.id.clone(), client.clone());
        true
    }
}

/// Longest accepted detokenize purpose.
pub const MAX_PURPOSE_LEN: usize = 128;

impl Vault {
    /// Opens the vault: unwraps the stored keys with the master key or, on a new database
    /// (no tokens, clients or audit events), generates and stores them. Remembers the stored
    /// audit head, which the chain must keep holding.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongMasterKey`] when the master key is not this database's;
    /// [`VaultError::KeysMissing`] when the database has content but no keys;
    /// [`VaultError::NeedsUpgrade`] for a database an older vault made.
    pub async fn open(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Self, VaultError> {
        let master = provider.master_key()?;
        let wrapped = store.wrapped_keys().await?;
        let keys = if wrapped.is_empty() {
            if !store.is_empty().await? {
                return Err(VaultError::KeysMissing);
            }
            let (ring, wrapped) = Keyring::generate(&master, now_micros())?;
            let mut draft = AuditDraft::new("system", Action::KeysCreate, Outcome::Granted);
            draft.detail = Some("data v1, fingerprint v1, audit v1, client v1".to_owned());
            match store.insert_keys(wrapped, ring.audit(), draft).await {
                Ok(()) => ring,
                // Another process initialised the database at the same moment: use its keys.
                Err(StoreError::Duplicate) => unwrap_keys(&master, &store.wrapped_keys().await?)?,
                Err(e) => return Err(e.into()),
            }
        } else {
            unwrap_keys(&master, &wrapped)?
        };
        store.adopt_head().await?;
        let vault = Self {
            store,
            keys: Arc::new(keys),
            verified: Arc::default(),
        };
        vault.read_revocations().await?;
        Ok(vault)
    }

    /// Reads the revocations the audit log gained since the last call, so that a revoked
    /// client's row restored from before its revocation is refused (start-up reads them all; the
    /// server then every second, which also covers revocations by the command line or other
    /// replicas).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn read_revocations(&self) -> Result<(), VaultError> {
        use std::sync::atomic::Ordering;
        let after = self.verified.revocations_read.load(Ordering::Acquire);
        let new = self.store.revocations_after(after).await?;
        if let Some((last, _)) = new.last() {
            self.verified
                .revocations_read
                .fetch_max(*last, Ordering::AcqRel);
        }
        self.verified.revoked(new.iter().map(|(_, id)| id.as_str()));
        Ok(())
    }

    /// Opens an existing vault for reading (a store opened read-only): never makes keys.
    ///
    /// # Errors
    ///
    /// As [`Vault::open`], and [`VaultError::NoKeys`] for a database without keys.
    pub async fn open_existing(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Self, VaultError> {
        let master = provider.master_key()?;
        let wrapped = store.wrapped_keys().await?;
        if wrapped.is_empty() {
            return Err(if store.is_empty().await? {
                VaultError::NoKeys
            } else {
                VaultError::KeysMissing
            });
        }
        let keys = unwrap_keys(&master, &wrapped)?;
        store.adopt_head().await?;
        Ok(Self {
            store,
            keys: Arc::new(keys),
            verified: Arc::default(),
        })
    }

    /// Brings a database an older vault made up to date: adds the client key and MACs every
    /// client row that has none (trusting the rows as they are now: check them first).
    /// Returns how many rows were sealed, or `None` when there was nothing to do.
    ///
    /// # Errors
    ///
    /// A wrong master key, or storage failure.
    pub async fn upgrade(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Option<usize>, VaultError> {
        let master = provider.master_key()?;
        let mut wrapped = store.wrapped_keys().await?;
        if wrapped.is_empty() {
            return Err(VaultError::NoKeys);
        }
        if wrapped.iter().any(|w| w.purpose == KeyPurpose::Client) {
            Keyring::open(&master, &wrapped)?;
            return Ok(None);
        }
        let client_key = Keyring::generate_one(&master, KeyPurpose::Client, now_micros())?;
        wrapped.push(client_key.clone());
        let ring = Keyring::open(&master, &wrapped)?;
        store.adopt_head().await?;
        // Sealing trusts the rows: only those the verified audit chain vouches for are sealed,
        // so a row slipped into the database (with the client key deleted to force an upgrade)
        // is not.
        let mut history = ClientHistory::default();
        let verdict = walk_chain(
            store.as_ref(),
            ring.audit(),
            &Expectations::default(),
            &mut history,
        )
        .await?;
        if let Err(broken) = verdict {
            return Err(VaultError::UpgradeRefused(format!(
                "{broken}; run `vault audit verify` and restore the database from a backup"
            )));
        }
        if history.client_key_made() {
            return Err(VaultError::UpgradeRefused(
                "the audit log shows this database already had a client key, which is gone: someone deleted it; restore the database from a backup".to_owned(),
            ));
        }
        let mut macs = Vec::new();
        for mut client in store.clients().await? {
            if client.mac.is_none() {
                if let Some(wrong) = history.check(&client) {
                    return Err(VaultError::UpgradeRefused(format!(
                        "{wrong}; nothing was changed"
                    )));
                }
                client.seal(ring.client());
                if let Some(mac) = client.mac {
                    macs.push((client.id.clone(), mac));
                }
            }
        }
        let sealed = macs.len();
        let mut draft = AuditDraft::new("cli", Action::KeysCreate, Outcome::Granted);
        draft.detail = Some(format!("client v1 (upgrade); {sealed} client rows sealed"));
        store
            .add_key_and_seal_clients(client_key, macs, ring.audit(), draft)
            .await
            .map_err(audited)?;
        Ok(Some(sealed))
    }

    /// Tokenizes a card for the context's tenant.
    ///
    /// # Errors
    ///
    /// Storage or RNG failure.
    pub async fn tokenize(&self, ctx: &Context, card: NewCard) -> Result<Tokenized, VaultError> {
        let token = Token::generate()?;
        let now = now_micros();
        let ttl_micros = card.ttl_seconds.map(|s| {
            i64::try_from(s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000)
        });
        let record = TokenRecord {
            fingerprint: self.keys.fingerprint().fingerprint(&ctx.tenant, &card.pan),
            fingerprint_key_version: self.keys.fingerprint().version(),
            card: CardMeta {
                bin: card.pan.bin().to_owned(),
                last4: card.pan.last4().to_owned(),
                brand: card.pan.brand(),
                pan_length: u8::try_from(card.pan.len()).unwrap_or(u8::MAX),
                exp_month: card.expiry.map(|(m, _)| m),
                exp_year: card.expiry.map(|(_, y)| y),
            },
            sealed: self.keys.seal_pan(&card.pan, token.as_str(), &ctx.tenant)?,
            tenant: ctx.tenant.clone(),
            created_at: now,
            expires_at: ttl_micros.map(|ttl| now.saturating_add(ttl)),
            token,
        };
        let new_token = record.token.clone();
        let draft = ctx.draft(Action::TokenCreate, Outcome::Granted, None);
        // The row and its audit event commit together or not at all: a failed commit is a
        // failed audit write (fail closed, 503), whichever half the database refused.
        let record = self
            .store
            .tokenize(record, self.keys.audit(), draft)
            .await
            .map_err(audited)?;
        Ok(Tokenized {
            created: record.token == new_token,
            record,
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
        let pan = match self
            .keys
            .open_pan(&record.sealed, record.token.as_str(), &record.tenant)
        {
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
                .delete_token(&ctx.tenant, t, now_micros(), self.keys.audit(), draft)
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

    /// Looks up the client holding `key` and checks its row's MAC. Writes nothing: the caller
    /// decides what a failure costs (a revoked client's use is audited one by one with
    /// [`Vault::record_revoked_use`]; anonymous failures are tallied, [`Vault::record_refusals`]).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn authenticate(&self, key: Option<&ApiKey>) -> Result<AuthOutcome, VaultError> {
        let Some(key) = key else {
            return Ok(AuthOutcome::Missing);
        };
        let Some(client) = self.store.client_by_key_hash(key.hash()).await? else {
            return Ok(AuthOutcome::Unknown);
        };
        if !self.verified.is_authentic(&self.keys, &client) {
            tracing::error!(
                client = %client.id,
                "a client row failed its integrity check (written or edited outside the vault); its key is refused"
            );
            return Ok(AuthOutcome::Tampered(client));
        }
        if self.verified.revocation_undone(&client) {
            tracing::error!(
                client = %client.id,
                "a revoked client's row says active (restored from before the revocation); its key is refused"
            );
            return Ok(AuthOutcome::Tampered(client));
        }
        Ok(if client.revoked_at.is_some() {
            AuthOutcome::Revoked(client)
        } else {
            AuthOutcome::Client(client)
        })
    }

    /// Audits one use of a revoked client's key (each is worth an event: the key leaked or a
    /// deployment still holds it).
    ///
    /// # Errors
    ///
    /// The audit write failed.
    pub async fn record_revoked_use(
        &self,
        client: &ClientRecord,
        request_id: Option<String>,
    ) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new(client.id.as_str(), Action::AuthFail, Outcome::Denied);
        draft.tenant = Some(client.tenant.clone());
        draft.request_id = request_id;
        draft.detail = Some("revoked API key".to_owned());
        self.audit(draft).await
    }

    /// Writes one interval's refusals: one `rate.limited` event per limited client and one
    /// `auth.fail` event per reason and source address, each with its count. Returns what could
    /// not be written (the caller keeps it for the next report rather than losing it).
    pub async fn record_refusals(&self, report: Report, interval: Duration) -> Report {
        let secs = interval.as_secs().max(1);
        let mut unwritten = Report::default();
        for (client, refusals) in report.clients {
            let counts: Vec<String> = refusals
                .counts
                .iter()
                .map(|(op, n)| format!("{}={n}", op.as_str()))
                .collect();
            let mut draft = AuditDraft::new(client.as_str(), Action::RateLimited, Outcome::Denied);
            draft.tenant = Some(refusals.tenant.clone());
            draft.detail = Some(format!(
                "refused by rate limits within {secs} s: {}",
                counts.join(" ")
            ));
            if let Err(e) = self.audit(draft).await {
                tracing::warn!(error = %e, "a rate-limit event could not be written; kept for the next report");
                unwritten.clients.insert(client, refusals);
            }
        }
        for ((reason, addr), count) in report.failures {
            let from = addr.map_or_else(|| "other addresses".to_owned(), |a| a.to_string());
            let mut draft = AuditDraft::new("anonymous", Action::AuthFail, Outcome::Denied);
            draft.detail = Some(format!(
                "{}: {count} requests from {from} within {secs} s",
                reason.as_str()
            ));
            if let Err(e) = self.audit(draft).await {
                tracing::warn!(error = %e, "an authentication-failure event could not be written; kept for the next report");
                unwritten.failures.insert((reason, addr), count);
            }
        }
        unwritten
    }

    /// Creates an API client; the key is returned once and stored only as a hash.
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] for a bad name or tenant.
    pub async fn create_client(
        &self,
        name: &str,
        tenant: &str,
        scopes: Scopes,
    ) -> Result<(ClientRecord, ApiKey), VaultError> {
        validate_label(name).map_err(VaultError::Invalid)?;
        validate_label(tenant).map_err(VaultError::Invalid)?;
        let key =
            ApiKey::generate(crate::token::API_KEY_PREFIX).map_err(|_| CryptoError::Random)?;
        let mut client = ClientRecord {
            id: ClientId::generate()?,
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            scopes,
            key_hash: key.hash(),
            created_at: now_micros(),
            revoked_at: None,
            mac: None,
        };
        client.seal(self.keys.client());
        let mut draft = AuditDraft::new("cli", Action::ClientCreate, Outcome::Granted);
        draft.tenant = Some(client.tenant.clone());
        draft.detail = Some(format!(
            "{} name={} scopes={}",
            client.id, client.name, client.scopes
        ));
        self.store
            .insert_client(client.clone(), self.keys.audit(), draft)
            .await
            .map_err(audited)?;
        Ok((client, key))
    }

    /// Whether a client row's MAC holds (for listing; authentication checks it itself).
    pub fn is_authentic(&self, client: &ClientRecord) -> bool {
        client.is_authentic(self.keys.client())
    }

    /// Every client.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, VaultError> {
        Ok(self.store.clients().await?)
    }

    /// Revokes a client; its key stops working at once. The row must verify: a row edited
    /// outside the vault is not acted on blindly.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`] when there is no such unrevoked client;
    /// [`VaultError::ClientTampered`] when its row fails its MAC.
    pub async fn revoke_client(&self, id: &ClientId) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new("cli", Action::ClientRevoke, Outcome::Granted);
        draft.detail = Some(id.to_string());
        let current = self.store.client_by_id(id).await?;
        let (old_mac, revoked_at) = match &current {
            Some(c) if !c.is_authentic(self.keys.client()) => {
                draft.outcome = Outcome::Error;
                draft.detail = Some(format!("{id}: client row failed its integrity check"));
                self.audit(draft).await?;
                return Err(VaultError::ClientTampered(id.clone()));
            }
            Some(c) if c.revoked_at.is_none() => (c.mac, now_micros()),
            _ => (None, 0),
        };
        let (Some(current), Some(old_mac)) = (current, old_mac) else {
            draft.outcome = Outcome::NotFound;
            self.audit(draft).await?;
            return Err(VaultError::NotFound);
        };
        let mut revoked = current;
        revoked.revoked_at = Some(revoked_at);
        revoked.seal(self.keys.client());
        let Some(new_mac) = revoked.mac else {
            return Err(VaultError::Invalid("client could not be sealed"));
        };
        let revocation = ClientRevocation {
            id: id.clone(),
            revoked_at,
            old_mac,
            new_mac,
        };
        let done = self
            .store
            .revoke_client(revocation, self.keys.audit(), draft)
            .await
            .map_err(audited)?;
        if done {
            self.verified.revoked(std::iter::once(id.as_str()));
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }

    /// Walks the whole audit chain, checking every link and that the chain holds each
    /// `expected` link (from `--expect` and checkpoint files).
    ///
    /// # Errors
    ///
    /// Storage failure (outer); the inner result is the verdict.
    pub async fn verify_audit(
        &self,
        expected: &Expectations,
    ) -> Result<Result<Verifier, BrokenLink>, VaultError> {
        let mut history = ClientHistory::default();
        walk_chain(
            self.store.as_ref(),
            self.keys.audit(),
            expected,
            &mut history,
        )
        .await
    }

    /// [`Vault::verify_audit`], then every client row against what the verified chain says
    /// about it (created as it is; not revoked if it is active).
    ///
    /// # Errors
    ///
    /// Storage failure (outer); the inner result is the verdict and the rows in disagreement.
    pub async fn verify_audit_and_clients(
        &self,
        expected: &Expectations,
    ) -> Result<Result<(Verifier, Vec<Disagreement>), BrokenLink>, VaultError> {
        let mut history = ClientHistory::default();
        let verdict = walk_chain(
            self.store.as_ref(),
            self.keys.audit(),
            expected,
            &mut history,
        )
        .await?;
        let Ok(verifier) = verdict else {
            return Ok(verdict.map(|v| (v, Vec::new())));
        };
        let clients = self.store.clients().await?;
        let disagreements = clients.iter().filter_map(|c| history.check(c)).collect();
        Ok(Ok((verifier, disagreements)))
    }

    /// The checkpoints in `path`, authenticated with this vault's audit key.
    ///
    /// # Errors
    ///
    /// An unreadable file, a malformed or forged line.
    pub fn read_checkpoints(&self, path: &Path) -> Result<Vec<Checkpoint>, VaultError> {
        Ok(checkpoint::read_file(path, self.keys.audit())?)
    }

    /// Refuses to go on when the newest checkpoint in `path` is not in the stored chain
    /// (events cut off the end, or an older database restored). Start-up calls this.
    ///
    /// # Errors
    ///
    /// [`VaultError::CheckpointMismatch`], or a bad checkpoint file.
    pub async fn check_latest_checkpoint(&self, path: &Path) -> Result<(), VaultError> {
        let Some(last) = self.read_checkpoints(path)?.pop() else {
            return Ok(());
        };
        match self.store.audit_mac_at(last.link.seq).await? {
            Some(mac) if last.link.has_mac(&mac) => Ok(()),
            _ => Err(VaultError::CheckpointMismatch(last.link.seq)),
        }
    }

    /// Appends a checkpoint of the head this vault last wrote or read to `path`, unless it is
    /// `previous` (nothing new). Returns the link checkpointed.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_checkpoint(
        &self,
        path: &Path,
        previous: Option<Link>,
    ) -> Result<Option<Link>, VaultError> {
        let Some(head) = self.store.known_head() else {
            return Ok(previous);
        };
        if previous == Some(head) {
            return Ok(previous);
        }
        Checkpoint {
            link: head,
            at: now_micros(),
        }
        .append_to(path, self.keys.audit())?;
        Ok(Some(head))
    }

    /// Up to `limit` audit events after sequence number `after`, oldest first.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn audit_events(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        Ok(self.store.audit_events(after, limit).await?)
    }

    /// Deletes expired tokens (the sweeper calls this).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn sweep(&self) -> Result<u64, VaultError> {
        self.store
            .delete_expired(now_micros(), self.keys.audit())
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

    async fn audit(&self, draft: AuditDraft) -> Result<(), VaultError> {
        self.store
            .append_audit(self.keys.audit(), draft)
            .await
            .map_err(audited)
    }
}

/// Walks the chain from the first event, checking every link and every expected link, and
/// feeds the verified events to `history`.
async fn walk_chain(
    store: &dyn Store,
    key: &crate::crypto::AuditKey,
    expected: &Expectations,
    history: &mut ClientHistory,
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
            history.observe(event);
        }
    }
}

/// Unwraps the stored keys; a database without a client key was made by an older vault.
fn unwrap_keys(
    master: &crate::crypto::MasterKey,
    wrapped: &[crate::crypto::WrappedKey],
) -> Result<Keyring, VaultError> {
    match Keyring::open(master, wrapped) {
        Err(CryptoError::MissingKey(KeyPurpose::Client)) => Err(VaultError::NeedsUpgrade),
        other => Ok(other?),
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
