//! The vault's operations, composed from keys and store: what every caller (HTTP routes, the
//! command line, the sweeper) goes through.
//!
//! The rule that matters most lives here: a plaintext PAN leaves [`Vault::detokenize`] only
//! after its audit event is durably written; if that write fails, the PAN is dropped (and
//! zeroized) and the caller gets [`VaultError::AuditUnavailable`].

use std::sync::Arc;

use shared::Pan;

use crate::audit::{Action, AuditDraft, AuditEvent, BrokenLink, Outcome, Verifier};
use crate::auth::{ClientRecord, Scope, Scopes, validate_label};
use crate::clock::now_micros;
use crate::crypto::{CryptoError, KeyProvider, Keyring};
use crate::store::{CardMeta, Store, StoreError, TokenRecord};
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
}

/// Longest accepted detokenize purpose.
pub const MAX_PURPOSE_LEN: usize = 128;

impl Vault {
    /// Opens the vault: unwraps the stored keys with the master key, or, on a new database,
    /// generates and stores them.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongMasterKey`] when the master key is not this database's.
    pub async fn open(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Self, VaultError> {
        let master = provider.master_key()?;
        let wrapped = store.wrapped_keys().await?;
        let keys = if wrapped.is_empty() {
            let (ring, wrapped) = Keyring::generate(&master, now_micros())?;
            let mut draft = AuditDraft::new("system", Action::KeysCreate, Outcome::Granted);
            draft.detail = Some("data v1, fingerprint v1, audit v1".to_owned());
            match store.insert_keys(wrapped, ring.audit(), draft).await {
                Ok(()) => ring,
                // Another process initialised the database at the same moment: use its keys.
                Err(StoreError::Duplicate) => {
                    Keyring::unwrap(&master, &store.wrapped_keys().await?)?
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            Keyring::unwrap(&master, &wrapped)?
        };
        Ok(Self {
            store,
            keys: Arc::new(keys),
        })
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
        let record = self
            .store
            .tokenize(record, self.keys.audit(), draft)
            .await?;
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
            Some(t) => {
                self.store
                    .delete_token(&ctx.tenant, t, now_micros(), self.keys.audit(), draft)
                    .await?
            }
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

    /// Looks up the client holding `key`; records a failed authentication when there is none
    /// or it is revoked.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn authenticate(
        &self,
        key: Option<&ApiKey>,
        request_id: Option<String>,
    ) -> Result<Option<ClientRecord>, VaultError> {
        let client = match key {
            Some(key) => self.store.client_by_key_hash(key.hash()).await?,
            None => None,
        };
        let reason = match &client {
            Some(c) if c.revoked_at.is_none() => return Ok(client),
            Some(_) => "revoked API key",
            None if key.is_some() => "unknown API key",
            None => "missing API key",
        };
        let mut draft = AuditDraft::new("anonymous", Action::AuthFail, Outcome::Denied);
        draft.request_id = request_id;
        draft.detail = Some(reason.to_owned());
        if let Some(c) = &client {
            draft.actor = c.id.as_str().to_owned();
            draft.tenant = Some(c.tenant.clone());
        }
        self.audit(draft).await?;
        Ok(None)
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
        let client = ClientRecord {
            id: ClientId::generate()?,
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            scopes,
            key_hash: key.hash(),
            created_at: now_micros(),
            revoked_at: None,
        };
        let mut draft = AuditDraft::new("cli", Action::ClientCreate, Outcome::Granted);
        draft.tenant = Some(client.tenant.clone());
        draft.detail = Some(format!(
            "{} name={} scopes={}",
            client.id, client.name, client.scopes
        ));
        self.store
            .insert_client(client.clone(), self.keys.audit(), draft)
            .await?;
        Ok((client, key))
    }

    /// Every client.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, VaultError> {
        Ok(self.store.clients().await?)
    }

    /// Revokes a client; its key stops working at once.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`] when there is no such unrevoked client.
    pub async fn revoke_client(&self, id: &ClientId) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new("cli", Action::ClientRevoke, Outcome::Granted);
        draft.detail = Some(id.to_string());
        let revoked = self
            .store
            .revoke_client(id, now_micros(), self.keys.audit(), draft)
            .await?;
        if revoked {
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }

    /// Walks the whole audit chain.
    ///
    /// # Errors
    ///
    /// Storage failure (outer); the inner result is the verdict.
    pub async fn verify_audit(&self) -> Result<Result<Verifier, BrokenLink>, VaultError> {
        let mut verifier = Verifier::new(self.keys.audit().clone());
        loop {
            let page = self.store.audit_events(verifier.checked(), 1000).await?;
            if page.is_empty() {
                return Ok(Ok(verifier));
            }
            for event in &page {
                if let Err(broken) = verifier.check(event) {
                    return Ok(Err(broken));
                }
            }
        }
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
        Ok(self
            .store
            .delete_expired(now_micros(), self.keys.audit())
            .await?)
    }

    /// Succeeds when the database accepts writes, so audit events can be written.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn ready(&self) -> Result<(), VaultError> {
        Ok(self.store.check_writable().await?)
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
            .map_err(VaultError::AuditUnavailable)
    }
}
