//! Collect sessions as operations: the platform opens one and reads it back; the cardholder's
//! browser submits a card through it, once.
//!
//! A submission is checked in an order that gives nothing away to whoever lacks the secret:
//! the session must exist and carry a MAC that holds (a forged or edited row is "no such
//! session"), then the secret must match, and only then are the parent origin and the session's
//! state told apart. Every refusal of an existing session is audited under its tenant, with
//! the session id as the actor; unknown ids are only tallied by the HTTP layer (an anonymous
//! flood costs no write per request).

use crate::audit::{Action, Outcome};
use crate::clock::now_micros;
use crate::collect::{
    CollectId, CollectSession, DEFAULT_TTL_SECONDS, Origin, SECRET_PREFIX, SessionState,
};
use crate::crypto::{CryptoError, RowMac};
use crate::token::{ApiKey, ClientId};

use super::{Context, NewCard, Vault, VaultError, audited};

/// A session the platform asks for, already validated by the HTTP layer.
#[derive(Debug)]
pub struct NewSession {
    /// Origins allowed to frame the form (none: the form works only standalone).
    pub allowed_origins: Vec<Origin>,
    /// Lifetime; `None` is [`DEFAULT_TTL_SECONDS`].
    pub ttl_seconds: Option<u64>,
    /// The platform's own JSON object, returned as given.
    pub metadata: Option<String>,
    /// Whether the form asks for the cardholder's name.
    pub name_required: bool,
}

/// A new session and its client secret, which is shown once and kept only as a hash.
#[derive(Debug)]
pub struct OpenedSession {
    /// The session as stored.
    pub session: CollectSession,
    /// The client secret for the platform's page.
    pub secret: ApiKey,
}

/// A card submitted through a session's form, parsed.
#[derive(Debug)]
pub struct Submission {
    /// The session named in the path (`None` when the text was not a session id).
    pub id: Option<CollectId>,
    /// The client secret the page holds.
    pub secret: ApiKey,
    /// The window that framed the form, as the form's script saw it (`None` when standalone).
    pub parent_origin: Option<String>,
    /// The card.
    pub card: NewCard,
    /// The name typed, when the form asked for one.
    pub cardholder_name: Option<String>,
    /// The vault-made request id.
    pub request_id: Option<String>,
}

/// Why an existing session refused a submission.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Refusal {
    /// The client secret is not this session's.
    WrongSecret,
    /// The form was framed by an origin the session does not allow.
    OriginNotAllowed,
    /// The session already holds a card.
    Completed,
    /// The session's lifetime is over.
    Expired,
    /// The session asks for the cardholder's name and none came.
    NameRequired,
}

impl Refusal {
    /// The audit detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongSecret => "wrong client secret",
            Self::OriginNotAllowed => "parent origin not allowed",
            Self::Completed => "session already completed",
            Self::Expired => "session expired",
            Self::NameRequired => "cardholder name required",
        }
    }
}

/// Whether a submission came the way the session allows: a framed session's form must name the
/// parent that handed it the secret, and that parent must be one of its origins; a standalone
/// session's form runs in no frame, so names none. (A framed session's secret opened as a
/// top-level page, where nothing vouches for who is looking, is refused.)
fn framed_as_allowed(session: &CollectSession, parent_origin: Option<&str>) -> bool {
    match parent_origin {
        None => session.allowed_origins.is_empty(),
        Some(parent) => session.allowed_origins.iter().any(|a| a.as_str() == parent),
    }
}

impl Vault {
    /// Opens a collect session for the context's tenant, audited as `collect.create`.
    ///
    /// # Errors
    ///
    /// RNG, storage or audit failure.
    pub async fn create_collect_session(
        &self,
        ctx: &Context,
        created_by: &ClientId,
        new: NewSession,
    ) -> Result<OpenedSession, VaultError> {
        let secret = ApiKey::generate(SECRET_PREFIX).map_err(|_| CryptoError::Random)?;
        let now = now_micros();
        let ttl = new.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        let mut session = CollectSession {
            id: CollectId::generate().map_err(CryptoError::from)?,
            tenant: ctx.tenant.clone(),
            created_by: created_by.clone(),
            secret_hash: secret.hash(),
            allowed_origins: new.allowed_origins,
            name_required: new.name_required,
            metadata: new.metadata,
            created_at: now,
            expires_at: now.saturating_add(
                i64::try_from(ttl)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000_000),
            ),
            completion: None,
            mac: RowMac([0; 32]),
        };
        session.seal(self.keys().client());
        let mut draft = ctx.draft(Action::CollectCreate, Outcome::Granted, None);
        draft.detail = Some(format!("session {}", session.id));
        self.store
            .insert_collect_session(session.clone(), self.keys().audit(), draft)
            .await
            .map_err(audited)?;
        Ok(OpenedSession { session, secret })
    }

    /// The session with this id if `reader` opened it (in the context's tenant), audited as
    /// `collect.read` when it names a token or there is none. Only the opener reads it back:
    /// another client of the tenant holding `collect:create` (the proxy's key, say) must not
    /// learn the tokens and names of sessions it did not open. Once the opener is revoked (its
    /// key rotated), its sessions pass to the tenant's other `collect:create` clients: a card
    /// typed into a link opened under the old key must still reach the payout.
    ///
    /// # Errors
    ///
    /// [`VaultError::NoSession`] for no such session, another client's or tenant's, or a
    /// forged row.
    pub async fn read_collect_session(
        &self,
        ctx: &Context,
        reader: &ClientId,
        id: Option<CollectId>,
    ) -> Result<CollectSession, VaultError> {
        let mut found = match &id {
            Some(id) => self.authentic_session(id).await?,
            None => None,
        }
        .filter(|s| s.tenant == ctx.tenant);
        if let Some(s) = &found
            && s.created_by != *reader
        {
            // Revocations by the command line or another replica are read now, not at the next
            // poll, so a rotation takes effect for this read.
            self.read_revocations().await?;
            if !self.verified.is_revoked(&s.created_by) {
                found = None;
            }
        }
        let token = found.as_ref().and_then(|s| s.completion.as_ref());
        // A read that names no token (the session is still open, or expired without a card)
        // reveals nothing about any card and is not audited: the proxy polls every open payout
        // link, and a week-long link would otherwise cost an audit row every few seconds. Reads
        // that name a token, and reads of no such session, are.
        if found.is_some() && token.is_none() {
            return found.ok_or(VaultError::NoSession);
        }
        let mut draft = ctx.draft(
            Action::CollectRead,
            if found.is_some() {
                Outcome::Granted
            } else {
                Outcome::NotFound
            },
            token.map(|c| &c.token),
        );
        draft.detail = id.as_ref().map(|id| format!("session {id}"));
        self.audit(draft).await?;
        found.ok_or(VaultError::NoSession)
    }

    /// The session a form page is for, whatever its state; `None` for no such session or a
    /// forged row. Nothing is audited: the page holds no card data and reveals no token.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn collect_page(
        &self,
        id: Option<CollectId>,
    ) -> Result<Option<CollectSession>, VaultError> {
        match id {
            Some(id) => self.authentic_session(&id).await,
            None => Ok(None),
        }
    }

    /// Tokenizes a card submitted through a session's form and completes the session, in one
    /// transaction with its audit event.
    ///
    /// # Errors
    ///
    /// [`VaultError::NoSession`] (not audited: the caller tallies it),
    /// [`VaultError::SessionRefused`] (audited), storage or audit failure.
    ///
    /// `may_audit` is asked once per refusal of an existing session whether it may be audited on
    /// its own (it takes one of the session's slots); when it says no, nothing is written and
    /// the caller counts the refusal.
    pub async fn submit_collect(
        &self,
        submit: Submission,
        may_audit: &(dyn Fn() -> bool + Sync),
    ) -> Result<CollectSession, VaultError> {
        let Some(id) = &submit.id else {
            return Err(VaultError::NoSession);
        };
        let Some(session) = self.authentic_session(id).await? else {
            return Err(VaultError::NoSession);
        };
        let ctx = Context {
            actor: session.id.as_str().to_owned(),
            tenant: session.tenant.clone(),
            request_id: submit.request_id.clone(),
        };
        let now = now_micros();
        let refusal = if !shared::ct::bytes_eq(&submit.secret.hash(), &session.secret_hash) {
            Some(Refusal::WrongSecret)
        } else if !framed_as_allowed(&session, submit.parent_origin.as_deref()) {
            Some(Refusal::OriginNotAllowed)
        } else {
            match session.state(now) {
                SessionState::Completed => Some(Refusal::Completed),
                SessionState::Expired => Some(Refusal::Expired),
                SessionState::Open if session.name_required && submit.cardholder_name.is_none() => {
                    Some(Refusal::NameRequired)
                }
                SessionState::Open => None,
            }
        };
        if let Some(refusal) = refusal {
            return Err(self.refuse(&ctx, refusal, may_audit()).await);
        }
        let record = self.new_token(&session.tenant, &submit.card, now)?;
        let draft = ctx.draft(Action::CollectSubmit, Outcome::Granted, None);
        let completed = self
            .store
            .complete_collect_session(
                session,
                record,
                submit.cardholder_name,
                self.keys().client(),
                self.keys().audit(),
                draft,
            )
            .await
            .map_err(audited)?;
        match completed {
            Some(session) => Ok(session),
            // Another submission completed it (or it expired, or its row changed) between the
            // read and the claim: tell which from the row as it now is.
            None => {
                let refusal = match self.authentic_session(id).await?.map(|s| s.state(now)) {
                    Some(SessionState::Expired) => Refusal::Expired,
                    Some(SessionState::Open) => {
                        // Still open, yet the claim refused it: the audit log holds a card
                        // accepted for it, so its row was put back to before its completion.
                        tracing::error!(
                            session = %id,
                            "a completed collect session's row was rolled back to open (restored or edited outside the vault); it takes no second card"
                        );
                        Refusal::Completed
                    }
                    _ => Refusal::Completed,
                };
                Err(self.refuse(&ctx, refusal, may_audit()).await)
            }
        }
    }

    /// Records a refused submission of an existing session (unless `audited` is false: the
    /// caller counts it), and answers it.
    async fn refuse(&self, ctx: &Context, refusal: Refusal, audited: bool) -> VaultError {
        if !audited {
            return VaultError::SessionRefused(refusal);
        }
        let mut draft = ctx.draft(Action::CollectSubmit, Outcome::Denied, None);
        draft.detail = Some(refusal.as_str().to_owned());
        match self.audit(draft).await {
            Ok(()) => VaultError::SessionRefused(refusal),
            Err(e) => e,
        }
    }

    /// The session with this id if its row's MAC holds; a row that fails is logged and treated
    /// as absent, so a session written or edited outside the vault takes no card.
    async fn authentic_session(
        &self,
        id: &CollectId,
    ) -> Result<Option<CollectSession>, VaultError> {
        let Some(session) = self.store.collect_session(id).await? else {
            return Ok(None);
        };
        if session.is_authentic(self.keys().client()) {
            Ok(Some(session))
        } else {
            tracing::error!(
                session = %session.id,
                "a collect session row failed its integrity check (written or edited outside the vault); it is refused"
            );
            Ok(None)
        }
    }
}
