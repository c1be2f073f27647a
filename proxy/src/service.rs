//! The proxy's operations, as the app API and the bank's webhook route call them: only this
//! layer touches the engine and the store. The HTTP handlers parse and check the request, call
//! one method here, and render what it returns (mirroring `vault::service::Vault`).
//!
//! Authorization is decided here too: every app operation takes the calling client and checks
//! its scope and its tenant, so no route can forget to. (Long because every operation of both
//! routes' callers is here with its check, so that the handlers stay thin.)

use std::sync::Arc;

use serde_json::Value;
use shared::ids::ApiKey;

use crate::auth::{ClientRecord, Scope};
use crate::bank131::{SignatureVerifier, Webhook, WebhookError, verify_and_parse};
pub use crate::engine::AppDecision;
use crate::engine::{ActionError, Engine, now_micros};
use crate::http::health::{DependencyCheck, Findings};
use crate::ids::{AppClientId, PayoutId, PayoutLinkId};
use crate::link::{LinkFingerprint, PAYOUT_KEY_PREFIX, PayoutLink};
use crate::links::{LinkError, Links, NewLink};
use crate::payout::{
    ConfirmMode, OutboxEvent, Payout, PayoutRequest, PayoutState, RequestFingerprint,
};
use crate::store::{BankEvent, EventFilter, Inserted, PayoutFilter, StoreError};
use crate::vault_client::VaultError;

/// Why an operation was refused. The HTTP layer maps each to a fixed status, code and message.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client lacks this scope.
    #[error("the client lacks the scope {0}")]
    MissingScope(&'static str),
    /// No such payout for this client (another tenant's or another app's alike).
    #[error("no such payout")]
    NotFound,
    /// The idempotency key was used before with another request.
    #[error("the idempotency key was used with another request")]
    IdempotencyConflict,
    /// The vault holds no such card token for the client's tenant.
    #[error("card token not found")]
    CardTokenNotFound,
    /// The card could not be fetched: the vault setting or the vault.
    #[error("vault: {0}")]
    Vault(VaultError),
    /// No such payout link for this client (another tenant's or another app's alike).
    #[error("no such payout link")]
    LinkNotFound,
    /// The vault did not open a payout link's collect session: its setting or the vault.
    #[error("vault: {0}")]
    CollectVault(VaultError),
    /// A payout link row that fails its tag: written or changed outside the proxy.
    #[error("a payout link row fails its tag")]
    ForgedLink,
    /// No such event for this app.
    #[error("no such event")]
    EventNotFound,
    /// A redelivery for an app without a webhook URL.
    #[error("the app has no webhook URL")]
    NoWebhookUrl,
    /// A confirm or cancel refused.
    #[error(transparent)]
    Action(ActionError),
    /// A bank webhook without a valid signature.
    #[error("invalid webhook signature")]
    InvalidSignature,
    /// A correctly signed bank webhook that cannot be read (recorded as `malformed`).
    #[error("unreadable bank webhook")]
    MalformedWebhook,
    /// No randomness for an id.
    #[error("no randomness for an id")]
    NoRandomness,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A payout request that passed the edge's checks.
#[derive(Debug)]
pub struct NewPayout {
    /// The vault token (`tok_…`).
    pub card_token: String,
    /// Minor units, positive.
    pub amount: i64,
    /// An ISO 4217 code, in the case the app sent.
    pub currency: String,
    /// The recipient's name, trimmed.
    pub recipient_name: String,
    /// The app's metadata, at most 4 KiB and with no card number.
    pub metadata: Option<Value>,
    /// Who confirms.
    pub confirm: ConfirmMode,
}

/// What a create came to.
#[derive(Debug)]
pub enum Created<T = Payout> {
    /// A new payout (being driven), or link.
    New(T),
    /// The payout (or link) an earlier identical request made.
    Replayed(T),
}

/// A payout link as its reader may see it: the link, and its URL (the secret in the fragment)
/// when the reader is the app that made it and the link is open.
#[derive(Debug)]
pub struct ShownLink {
    /// The link.
    pub link: PayoutLink,
    /// Its URL, for the app that made it, while open.
    pub url: Option<shared::secret::SecretString>,
}

/// What an app asks to do, for the scope it needs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Operation {
    /// Create, confirm or cancel a payout; redeliver an event (`payouts:write`).
    WritePayouts,
    /// Read payouts (`payouts:read`, or `payouts:read_tenant` for the tenant's).
    ReadPayouts,
    /// Read its own webhook events (`payouts:read`).
    ReadEvents,
}

/// The proxy's operations. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Proxy {
    engine: Engine,
    links: Links,
    bank_verifier: Arc<SignatureVerifier>,
    dependencies: Arc<DependencyCheck>,
}

impl Proxy {
    /// The operations over `engine` and `links`, checking the bank's webhooks with
    /// `bank_verifier` and reporting readiness from `dependencies`.
    pub fn new(
        engine: Engine,
        links: Links,
        bank_verifier: Arc<SignatureVerifier>,
        dependencies: Arc<DependencyCheck>,
    ) -> Self {
        Self {
            engine,
            links,
            bank_verifier,
            dependencies,
        }
    }

    /// The client a presented API key belongs to, if it is live (a rotated-out key only within
    /// its grace period).
    ///
    /// # Errors
    ///
    /// Storage.
    pub async fn authenticate(&self, key: &ApiKey) -> Result<Option<ClientRecord>, StoreError> {
        let hash = key.hash();
        let client = self.engine.store().client_by_key_hash(hash).await?;
        Ok(client.filter(|c| c.accepts(&hash, now_micros())))
    }

    /// Whether `client` may do `op` at all. Every operation below checks it again; the edge
    /// calls it first, so a client that may not gets 403 before its input is looked at.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], naming the scope.
    pub fn permits(&self, client: &ClientRecord, op: Operation) -> Result<(), ServiceError> {
        match op {
            Operation::WritePayouts => require(client, Scope::PayoutsWrite),
            Operation::ReadPayouts => readable_by(client).map(drop),
            Operation::ReadEvents => require(client, Scope::PayoutsRead),
        }
    }

    /// `POST /v1/payouts`: a request seen before is answered as it was (without asking the
    /// vault again); otherwise the card is fetched now, once, so that a token the vault does not
    /// hold for this tenant is refused before anything is kept or sent, and the card goes
    /// straight to the session's start.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::IdempotencyConflict`],
    /// [`ServiceError::CardTokenNotFound`], [`ServiceError::Vault`], storage.
    pub async fn create_payout(
        &self,
        client: &ClientRecord,
        idempotency_key: String,
        req: NewPayout,
    ) -> Result<Created, ServiceError> {
        self.permits(client, Operation::WritePayouts)?;
        let request_hash = RequestFingerprint {
            card_token: &req.card_token,
            amount: req.amount,
            currency: req.currency.to_ascii_lowercase(),
            recipient_full_name: &req.recipient_name,
            metadata: req.metadata.as_ref(),
            confirm: req.confirm,
        }
        .hash();
        let store = self.engine.store();
        if let Some(p) = store
            .payout_by_idempotency_key(&client.id, &idempotency_key)
            .await?
        {
            return replayed(p, &request_hash);
        }
        let payout = self.new_payout(client, idempotency_key, request_hash, req)?;
        let pan = match self.engine.fetch_card_for(&payout).await {
            Ok(pan) => pan,
            Err(VaultError::TokenNotFound) => {
                // Kept nowhere else: a run of these from one app is someone probing for tokens.
                tracing::info!(client = %payout.client_id, "a payout was refused: card token not found");
                return Err(ServiceError::CardTokenNotFound);
            }
            Err(e) => {
                tracing::warn!(error = %e, "a payout was refused: the card could not be fetched");
                return Err(ServiceError::Vault(e));
            }
        };
        match store.insert_payout(payout).await? {
            Inserted::New(p) => {
                let engine = self.engine.clone();
                let id = p.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.drive_new(&id, pan).await {
                        tracing::warn!(payout = %id, error = %e, "drive failed; the reconciler will resume it");
                    }
                });
                Ok(Created::New(p))
            }
            // The same key at the same moment from another request: its payout, ours never made.
            Inserted::Existing(p) => {
                drop(pan);
                replayed(p, &request_hash)
            }
        }
    }

    fn new_payout(
        &self,
        client: &ClientRecord,
        idempotency_key: String,
        request_hash: [u8; 32],
        req: NewPayout,
    ) -> Result<Payout, ServiceError> {
        payout_for(
            &self.engine,
            (&client.tenant, &client.id),
            idempotency_key,
            request_hash,
            req,
        )
    }

    /// `POST /v1/payout_links`: a request seen before is answered as it was; otherwise the
    /// vault opens the link's collect session now, and the link is kept only once it has one.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::IdempotencyConflict`],
    /// [`ServiceError::CollectVault`], [`ServiceError::ForgedLink`], storage.
    pub async fn create_payout_link(
        &self,
        client: &ClientRecord,
        idempotency_key: String,
        req: NewLink,
    ) -> Result<Created<ShownLink>, ServiceError> {
        self.permits(client, Operation::WritePayouts)?;
        let request_hash = LinkFingerprint {
            amount: req.amount,
            currency: req.currency.to_ascii_lowercase(),
            recipient_full_name: req.recipient_name.as_deref(),
            metadata: req.metadata.as_ref(),
            expires_in: req.expires_in,
        }
        .hash();
        let store = self.engine.store();
        if let Some(link) = store
            .link_by_idempotency_key(&client.id, &idempotency_key)
            .await?
        {
            return self.replayed_link(link, &request_hash);
        }
        let link = match self
            .links
            .open(client, idempotency_key, request_hash, req)
            .await
        {
            Ok(link) => link,
            Err(LinkError::Vault(e)) => {
                tracing::warn!(error = %e, "a payout link was refused: the vault did not open its session");
                return Err(ServiceError::CollectVault(e));
            }
            Err(LinkError::NoRandomness) => return Err(ServiceError::NoRandomness),
        };
        match store.insert_link(link).await? {
            Inserted::New(link) => Ok(Created::New(self.shown(link, Some(&client.id))?)),
            // The same key at the same moment from another request: its link; the session
            // opened for ours is never handed out and expires unused.
            Inserted::Existing(link) => self.replayed_link(link, &request_hash),
        }
    }

    /// `GET /v1/payout_links/{id}`: a link the client may read (its own, or with
    /// `payouts:read_tenant` its tenant's); anything else is [`ServiceError::LinkNotFound`]
    /// exactly as a link that does not exist. Its URL only to the app that made it.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::LinkNotFound`],
    /// [`ServiceError::ForgedLink`], storage.
    pub async fn payout_link(
        &self,
        client: &ClientRecord,
        id: &PayoutLinkId,
    ) -> Result<ShownLink, ServiceError> {
        let only = readable_by(client)?;
        let link = self
            .engine
            .store()
            .link(id)
            .await?
            .filter(|l| l.tenant == client.tenant && only.is_none_or(|c| l.client_id.as_str() == c))
            .ok_or(ServiceError::LinkNotFound)?;
        self.shown(link, Some(&client.id))
    }

    /// The link an idempotency key made, when the request is the same one.
    fn replayed_link(
        &self,
        link: PayoutLink,
        request_hash: &[u8; 32],
    ) -> Result<Created<ShownLink>, ServiceError> {
        if !shared::ct::bytes_eq(&link.request_hash, request_hash) {
            return Err(ServiceError::IdempotencyConflict);
        }
        let reader = link.client_id.clone();
        Ok(Created::Replayed(self.shown(link, Some(&reader))?))
    }

    /// `link` as `reader` may see it, once its row proves authentic.
    fn shown(
        &self,
        link: PayoutLink,
        reader: Option<&AppClientId>,
    ) -> Result<ShownLink, ServiceError> {
        if !self.links.authentic(&link) {
            tracing::error!(link = %link.id, "a payout link row fails its tag (written or changed outside the proxy); not shown");
            return Err(ServiceError::ForgedLink);
        }
        let url = if reader == Some(&link.client_id) {
            self.links.url(&link)
        } else {
            None
        };
        Ok(ShownLink { link, url })
    }

    /// `GET /v1/payouts/{id}`: a payout the client may read (its own, or with
    /// `payouts:read_tenant` its tenant's); anything else is [`ServiceError::NotFound`] exactly
    /// as a payout that does not exist.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::NotFound`], storage.
    pub async fn payout(
        &self,
        client: &ClientRecord,
        id: &PayoutId,
    ) -> Result<Payout, ServiceError> {
        let only = readable_by(client)?;
        self.engine
            .store()
            .payout(id)
            .await?
            .filter(|p| p.tenant == client.tenant && only.is_none_or(|c| p.client_id.as_str() == c))
            .ok_or(ServiceError::NotFound)
    }

    /// `GET /v1/payouts`: one page of the payouts the client may read, newest first.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], storage.
    pub async fn payouts(
        &self,
        client: &ClientRecord,
        status: Option<PayoutState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Payout>, ServiceError> {
        let only = readable_by(client)?;
        Ok(self
            .engine
            .store()
            .list_payouts(
                &client.tenant,
                PayoutFilter {
                    client_id: only.map(str::to_owned),
                    state: status,
                    after: after.map(str::to_owned),
                },
                limit,
            )
            .await?)
    }

    /// Confirm or cancel: only the app that created a payout decides it.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::Action`].
    pub async fn decide(
        &self,
        client: &ClientRecord,
        id: &PayoutId,
        decision: AppDecision,
    ) -> Result<Payout, ServiceError> {
        self.permits(client, Operation::WritePayouts)?;
        self.engine
            .decide_by_app(&client.tenant, &client.id, id, decision)
            .await
            .map_err(ServiceError::Action)
    }

    /// `GET /v1/events`: one page of the client's own webhook events, newest first.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], storage.
    pub async fn events(
        &self,
        client: &ClientRecord,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, ServiceError> {
        self.permits(client, Operation::ReadEvents)?;
        Ok(self
            .engine
            .store()
            .list_events(&client.id, filter, limit)
            .await?)
    }

    /// `POST /v1/events/{id}/redeliver`: the event is due again now, with fresh attempts.
    ///
    /// # Errors
    ///
    /// [`ServiceError::MissingScope`], [`ServiceError::NoWebhookUrl`],
    /// [`ServiceError::EventNotFound`], storage.
    pub async fn redeliver(
        &self,
        client: &ClientRecord,
        id: &str,
    ) -> Result<OutboxEvent, ServiceError> {
        self.permits(client, Operation::WritePayouts)?;
        if client.webhook_url.is_none() {
            return Err(ServiceError::NoWebhookUrl);
        }
        let event = self
            .engine
            .store()
            .redeliver_event(&client.id, id, now_micros())
            .await?
            .ok_or(ServiceError::EventNotFound)?;
        self.engine.outbox_signal().notify_one();
        Ok(event)
    }

    /// A bank webhook, its signature checked over the raw bytes before anything is parsed.
    /// Anything correctly signed is taken (`Ok`), also unknown types and sessions we do not know
    /// (the bank would otherwise retry forever); anything else changes nothing. Application is
    /// idempotent and order-proof: states only move forward. A payout's webhooks are kept once
    /// per distinct body (a replay adds nothing); those about sessions we do not know are not
    /// kept at all.
    ///
    /// # Errors
    ///
    /// [`ServiceError::InvalidSignature`], [`ServiceError::MalformedWebhook`], storage.
    pub async fn receive_bank_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(), ServiceError> {
        let hook = match verify_and_parse(&self.bank_verifier, body, signature) {
            Ok(hook) => hook,
            Err(WebhookError::Malformed) => {
                self.record_malformed(body).await?;
                return Err(ServiceError::MalformedWebhook);
            }
            Err(e) => {
                tracing::warn!(reason = %e, "bank webhook refused");
                return Err(ServiceError::InvalidSignature);
            }
        };
        let Some(session) = hook.session() else {
            return Ok(());
        };
        let store = self.engine.store();
        let kind = match &hook {
            Webhook::ReadyToConfirm { .. } => "ready_to_confirm",
            Webhook::PaymentFinished { .. } => "payment_finished",
            Webhook::PaymentRefunded { .. } => "payment_refunded",
            Webhook::ActionRequired { .. } => "action_required",
            _ => "unknown",
        };
        let Some(payout) = store.payout_by_session(&session.id).await? else {
            // Nothing is kept for a session that is not ours: a body we have no use for is only
            // risk (and a replayed one would be a way to fill the database).
            tracing::info!(kind, "bank webhook for an unknown session ignored");
            return Ok(());
        };
        // Kept for the payout's history, once per distinct body; digit runs that could be a
        // card number are redacted first.
        let new = store
            .record_bank_event(BankEvent {
                payout_id: Some(payout.id.clone()),
                bank_session_id: session.id.clone(),
                kind: kind.to_owned(),
                body: shared::scan::redact_digit_runs(&String::from_utf8_lossy(body)),
                received_at: now_micros(),
            })
            .await?;
        if !new {
            tracing::info!(kind, payout = %payout.id, "bank webhook seen before (a replay or re-delivery); applied again, not kept again");
        }
        tracing::info!(kind, payout = %payout.id, "bank webhook");
        if !matches!(
            kind,
            "ready_to_confirm" | "payment_finished" | "payment_refunded"
        ) {
            return Ok(());
        }
        // Applied under the payout's lock; a conflict means another path moved it: drive reads
        // the fresh state (and `session/status` if needed).
        if self.engine.apply_webhook(&payout.id, session).await? {
            let engine = self.engine.clone();
            let id = payout.id;
            tokio::spawn(async move {
                if let Err(e) = engine.drive(&id).await {
                    tracing::warn!(payout = %id, error = %e, "drive after webhook failed; the reconciler will resume it");
                }
            });
        }
        Ok(())
    }

    /// Signed by the bank but unreadable: the body that broke it is kept (redacted), so an
    /// operator can see what the bank sent; the bank is told 400, so it retries.
    async fn record_malformed(&self, body: &[u8]) -> Result<(), StoreError> {
        tracing::error!("a signed bank webhook could not be read; recorded as `malformed`");
        let session_id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("session")?.get("id")?.as_str().map(str::to_owned))
            .filter(|id| looks_like_session_id(id))
            .unwrap_or_default();
        let store = self.engine.store();
        let payout = match session_id.as_str() {
            "" => None,
            id => store.payout_by_session(id).await?,
        };
        store
            .record_bank_event(BankEvent {
                payout_id: payout.map(|p| p.id),
                bank_session_id: session_id,
                kind: "malformed".to_owned(),
                body: shared::scan::redact_digit_runs(&String::from_utf8_lossy(body)),
                received_at: now_micros(),
            })
            .await?;
        Ok(())
    }

    /// Readiness: the database accepts writes, then what the vault keys and the bank checks
    /// found (at most every [`DependencyCheck::EVERY`]).
    ///
    /// # Errors
    ///
    /// Storage: the database does not take writes.
    pub async fn readiness(&self) -> Result<Findings, StoreError> {
        self.engine.store().check_writable().await?;
        Ok(self.dependencies.findings().await)
    }
}

/// A new payout of `owner` (tenant, app client) for `req` under `idempotency_key`, held by this
/// replica for a lease: what `POST /v1/payouts` keeps, and what a completed payout link pays.
///
/// # Errors
///
/// [`ServiceError::NoRandomness`].
pub(crate) fn payout_for(
    engine: &Engine,
    (tenant, client_id): (&str, &AppClientId),
    idempotency_key: String,
    request_hash: [u8; 32],
    req: NewPayout,
) -> Result<Payout, ServiceError> {
    let now = now_micros();
    let request = PayoutRequest {
        id: PayoutId::generate().map_err(|_| ServiceError::NoRandomness)?,
        tenant: tenant.to_owned(),
        client_id: client_id.clone(),
        idempotency_key,
        request_hash,
        card_token: req.card_token,
        amount: req.amount,
        // Stored as ISO 4217 writes it; compared case-insensitively with the bank's echo.
        currency: req.currency.to_ascii_uppercase(),
        recipient_name: req.recipient_name,
        metadata: req.metadata.map(|m| m.to_string()),
        confirm_mode: req.confirm,
    };
    Ok(Payout {
        // This replica drives it at once, holding the lease: another's reconciler does not
        // take it meanwhile (if this one dies, the lease runs out and another does).
        next_attempt_at: now + i64::try_from(engine.lease().as_micros()).unwrap_or(0),
        lease_owner: Some(engine.owner().to_owned()),
        ..Payout::created(request, now)
    })
}

/// Whether an app's `Idempotency-Key` is one the proxy keeps for itself (the payouts of payout
/// links): such a key from an app is refused, so it can never take a link's payout first.
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(PAYOUT_KEY_PREFIX)
}

/// Passes when the client holds `scope`.
fn require(client: &ClientRecord, scope: Scope) -> Result<(), ServiceError> {
    if client.scopes.contains(scope) {
        Ok(())
    } else {
        Err(ServiceError::MissingScope(scope.as_str()))
    }
}

/// Whose payouts a client may read: `None` for its whole tenant (`payouts:read_tenant`), else
/// its own.
fn readable_by(client: &ClientRecord) -> Result<Option<&str>, ServiceError> {
    if client.scopes.contains(Scope::PayoutsReadTenant) {
        return Ok(None);
    }
    require(client, Scope::PayoutsRead)?;
    Ok(Some(client.id.as_str()))
}

/// The payout an idempotency key made, when the request is the same one.
fn replayed(p: Payout, request_hash: &[u8; 32]) -> Result<Created, ServiceError> {
    if shared::ct::bytes_eq(&p.request_hash, request_hash) {
        Ok(Created::Replayed(p))
    } else {
        Err(ServiceError::IdempotencyConflict)
    }
}

/// A bank session id as the bank writes them (`ps_` and a few dozen safe characters): anything
/// else from an unreadable body is not kept as an id.
fn looks_like_session_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with("ps_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
