//! Payout links at work: opening one (a standalone collect session at the vault, its secret
//! sealed and its row tagged), showing its URL to the app that made it, and the poller that
//! reads each open link's session and, once the vault says it is completed, pays the amount to
//! the new token exactly once.
//!
//! Exactly once: the payout a link makes has an idempotency key derived from the link's id
//! ([`payout_key`]), unique per app in the payouts table, and it is inserted in the same
//! transaction that closes the link (only while it is still open) and writes the app's
//! `payout_link.completed` event. A crash before that commit leaves the link open and nothing
//! else; after it, the payout exists and the reconciler drives it like any other. Two replicas
//! polling one link (the poller's lease is one poll interval) close it once: the second
//! transaction finds the link closed or the key taken, and writes nothing.
//!
//! The vault is the only authority on a session: a link is completed only on the vault's word
//! that its session is, and expired only on its word that it expired (or, past the link's own
//! expiry, that it has no such session). A link row whose tag fails, or a session whose metadata
//! names another link, is never paid.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shared::json::{FieldPath, card_number_path};
use shared::secret::{ExposeSecret, SecretString};

use crate::auth::ClientRecord;
use crate::config::PayoutLinkSettings;
use crate::engine::{Engine, now_micros};
use crate::ids::{PayoutId, PayoutLinkId};
use crate::link::{LinkCompletion, LinkState, PayoutLink, payout_key};
use crate::payout::{ConfirmMode, RequestFingerprint};
use crate::secrets::WrapKey;
use crate::service::NewPayout;
use crate::store::{PayoutClaim, ProxyStore, StoreError};
use crate::vault_client::{CollectedCard, SessionState, VaultError};
use crate::view::link_event;

/// Links claimed per round; a full round is followed by another at once.
const BATCH: u32 = 50;

/// A link request that passed the edge's checks.
#[derive(Debug)]
pub struct NewLink {
    /// Minor units, positive.
    pub amount: i64,
    /// An ISO 4217 code, in the case the app sent.
    pub currency: String,
    /// The recipient's name, trimmed; `None`: the cardholder enters it on the page.
    pub recipient_name: Option<String>,
    /// The app's metadata, at most 4 KiB and with no card number.
    pub metadata: Option<Value>,
    /// Seconds, within [`crate::link::MIN_EXPIRES_IN`]..=[`crate::link::MAX_EXPIRES_IN`].
    pub expires_in: u64,
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The vault did not open the session.
    #[error("vault: {0}")]
    Vault(VaultError),
    /// No randomness for an id or a nonce.
    #[error("no randomness")]
    NoRandomness,
}

/// Payout links' operations and poller. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Links {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    secrets: Arc<WrapKey>,
    every: Duration,
}

impl Links {
    /// Links over `engine` (its store, vault client and replica name), sealing and tagging
    /// with `secrets`, polled as `settings` say.
    pub fn new(engine: Engine, secrets: Arc<WrapKey>, settings: &PayoutLinkSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                secrets,
                every: Duration::from_millis(settings.poll_interval_ms.max(1)),
            }),
        }
    }

    fn store(&self) -> &Arc<dyn ProxyStore> {
        self.inner.engine.store()
    }

    fn interval_micros(&self) -> i64 {
        i64::try_from(self.inner.every.as_micros()).unwrap_or(i64::MAX / 4)
    }

    /// A new link for `client`, its session opened at the vault (not yet stored: the caller
    /// inserts it under its idempotency key).
    ///
    /// # Errors
    ///
    /// [`LinkError::Vault`] (nothing was kept; the same key may be sent again),
    /// [`LinkError::NoRandomness`].
    pub async fn open(
        &self,
        client: &ClientRecord,
        idempotency_key: String,
        request_hash: [u8; 32],
        req: NewLink,
    ) -> Result<PayoutLink, LinkError> {
        let id = PayoutLinkId::generate().map_err(|_| LinkError::NoRandomness)?;
        let session = self
            .inner
            .engine
            .vault()
            .create_collect_session(
                &client.tenant,
                &id,
                req.expires_in,
                req.recipient_name.is_none(),
            )
            .await
            .map_err(LinkError::Vault)?;
        let sealed_secret = self
            .inner
            .secrets
            .seal(
                session.client_secret.expose_secret(),
                &PayoutLink::secret_aad(&id),
            )
            .map_err(|_| LinkError::NoRandomness)?;
        let now = now_micros();
        let mut link = PayoutLink {
            id,
            tenant: client.tenant.clone(),
            client_id: client.id.clone(),
            idempotency_key,
            request_hash,
            amount: req.amount,
            currency: req.currency.to_ascii_uppercase(),
            recipient_name: req.recipient_name,
            metadata: req.metadata.map(|m| m.to_string()),
            session: session.id,
            session_url: session.url,
            sealed_secret,
            expires_at: session.expires_at,
            created_at: now,
            tag: [0; 32],
            state: LinkState::Open,
            completion: None,
            next_poll_at: now.saturating_add(self.interval_micros()),
            lease_owner: None,
            updated_at: now,
            version: 0,
        };
        link.tag = self.inner.secrets.row_tag(&link.tag_bytes());
        Ok(link)
    }

    /// Whether `link`'s row is as this proxy wrote it (its tag holds).
    pub fn authentic(&self, link: &PayoutLink) -> bool {
        self.inner
            .secrets
            .row_tag_matches(&link.tag_bytes(), &link.tag)
    }

    /// The link to hand the recipient while `link` is open: the vault's page with the client
    /// secret in the fragment (never a query string: a fragment reaches no server's log).
    pub fn url(&self, link: &PayoutLink) -> Option<SecretString> {
        if link.state != LinkState::Open {
            return None;
        }
        match self
            .inner
            .secrets
            .unseal(&link.sealed_secret, &PayoutLink::secret_aad(&link.id))
        {
            Ok(secret) => Some(shared::secret::secret(format!(
                "{}#secret={}",
                link.session_url,
                secret.as_str()
            ))),
            Err(e) => {
                tracing::error!(link = %link.id, error = %e, "a payout link's secret does not open");
                None
            }
        }
    }

    /// Polls open links until the process stops: every `payout_links.poll_interval_ms`, each
    /// link due is claimed for one interval and its session read.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.inner.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            loop {
                match self.poll_due().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "payout links could not be claimed");
                        break;
                    }
                }
            }
        }
    }

    /// One round: claims up to a batch of due links and reads each one's session. True when the
    /// batch was full (more may be due now).
    ///
    /// # Errors
    ///
    /// The claim failed.
    pub async fn poll_due(&self) -> Result<bool, StoreError> {
        let now = now_micros();
        let claim = PayoutClaim {
            due: now,
            lease_until: now.saturating_add(self.interval_micros()),
            owner: self.inner.engine.owner(),
            limit: BATCH,
        };
        let links = self.store().claim_due_links(claim).await?;
        let full = links.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
        for link in links {
            if let Err(e) = self.poll(link).await {
                // The rest of the round is read at the next poll, not hammered now.
                tracing::warn!(error = %e, "payout links: the vault could not be read; retrying at the next poll");
                return Ok(false);
            }
        }
        Ok(full)
    }

    /// Reads one link's session and acts on what the vault says.
    async fn poll(&self, link: PayoutLink) -> Result<(), VaultError> {
        if !self.authentic(&link) {
            tracing::error!(link = %link.id, "a payout link row fails its tag (written or changed outside the proxy): it is neither read nor paid");
            return Ok(());
        }
        let vault = self.inner.engine.vault();
        let Some(read) = vault.collect_session(&link.tenant, &link.session).await? else {
            if now_micros() >= link.expires_at {
                // Past its expiry the vault may have let the session go: nothing can be
                // submitted to it any more.
                self.expire(link).await;
            } else {
                tracing::warn!(link = %link.id, "the vault has no collect session for an open payout link");
            }
            return Ok(());
        };
        if read.payout_link.as_deref() != Some(link.id.as_str()) {
            tracing::error!(link = %link.id, "the vault's collect session names another payout link: it is not paid");
            return Ok(());
        }
        match read.state {
            SessionState::Open => {}
            SessionState::Expired => self.expire(link).await,
            SessionState::Completed(card) => self.complete(link, card).await,
        }
        Ok(())
    }

    /// The card came in: the link's one payout, the link closed and the app told, in one
    /// transaction; then the payout is driven as any new one.
    async fn complete(&self, link: PayoutLink, card: CollectedCard) {
        let engine = &self.inner.engine;
        let Some(name) = link
            .recipient_name
            .clone()
            .or_else(|| {
                card.cardholder_name
                    .as_deref()
                    .map(str::trim)
                    .map(str::to_owned)
            })
            .filter(|n| is_recipient_name(n))
        else {
            tracing::error!(link = %link.id, "a completed payout link has no usable recipient name; not paid");
            return;
        };
        let key = payout_key(&link.id);
        let metadata: Option<Value> = link
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        let request_hash = RequestFingerprint {
            card_token: &card.token,
            amount: link.amount,
            currency: link.currency.to_ascii_lowercase(),
            recipient_full_name: &name,
            metadata: metadata.as_ref(),
            confirm: ConfirmMode::Auto,
        }
        .hash();
        let store = self.store();
        let (payout, new) = match store.payout_by_idempotency_key(&link.client_id, &key).await {
            Ok(Some(p)) if shared::ct::bytes_eq(&p.request_hash, &request_hash) => (p, false),
            Ok(Some(p)) => {
                tracing::error!(link = %link.id, payout = %p.id, "a payout holds this payout link's key for another request; the link is not paid");
                return;
            }
            Ok(None) => {
                let req = NewPayout {
                    card_token: card.token,
                    amount: link.amount,
                    currency: link.currency.clone(),
                    recipient_name: name,
                    metadata,
                    confirm: ConfirmMode::Auto,
                };
                match crate::service::payout_for(
                    engine,
                    (&link.tenant, &link.client_id),
                    key,
                    request_hash,
                    req,
                ) {
                    Ok(p) => (p, true),
                    Err(e) => {
                        tracing::warn!(link = %link.id, error = %e, "a payout link's payout could not be made; retrying at the next poll");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(link = %link.id, error = %e, "storage failed; retrying at the next poll");
                return;
            }
        };
        let now = now_micros();
        let done = PayoutLink {
            state: LinkState::Completed,
            completion: Some(LinkCompletion {
                payout_id: payout.id.clone(),
                last4: card.last4,
                brand: card.brand,
                at: now,
            }),
            updated_at: now,
            ..link
        };
        let Some(event) = link_event(&done, now) else {
            tracing::warn!(link = %done.id, "no randomness for an event id; retrying at the next poll");
            return;
        };
        let id: PayoutId = payout.id.clone();
        match store
            .complete_link(&done, new.then_some(payout), event)
            .await
        {
            Ok(()) => {
                tracing::info!(link = %done.id, payout = %id, "payout link completed; paying out");
                engine.outbox_signal().notify_one();
                if new {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        if let Err(e) = engine.drive(&id).await {
                            tracing::warn!(payout = %id, error = %e, "drive failed; the reconciler will resume it");
                        }
                    });
                }
            }
            Err(StoreError::Conflict) => {
                tracing::info!(link = %done.id, "payout link closed elsewhere, or its payout's key is taken; read again at the next poll");
            }
            Err(e) => {
                tracing::warn!(link = %done.id, error = %e, "storage failed; retrying at the next poll");
            }
        }
    }

    /// The vault's session expired without a card: the link is closed and the app told.
    async fn expire(&self, link: PayoutLink) {
        let now = now_micros();
        let done = PayoutLink {
            state: LinkState::Expired,
            updated_at: now,
            ..link
        };
        let Some(event) = link_event(&done, now) else {
            tracing::warn!(link = %done.id, "no randomness for an event id; retrying at the next poll");
            return;
        };
        match self.store().expire_link(&done, event).await {
            Ok(true) => {
                tracing::info!(link = %done.id, "payout link expired");
                self.inner.engine.outbox_signal().notify_one();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(link = %done.id, error = %e, "storage failed; retrying at the next poll");
            }
        }
    }
}

/// A name the payout may carry as its recipient, by the rule of `recipient.full_name`: 1-256
/// printable characters, no card number.
fn is_recipient_name(name: &str) -> bool {
    let trimmed = name.trim();
    !trimmed.is_empty()
        && trimmed.chars().count() <= 256
        && !trimmed.chars().any(char::is_control)
        && card_number_path(&Value::from(trimmed), &FieldPath::root("name")).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_names_follow_the_payout_rule() {
        assert!(is_recipient_name("Ivanov Ivan"));
        assert!(is_recipient_name("ИВАН ПЕТРОВ"));
        for bad in ["", "  ", "a\u{7}b", "4242 4242 4242 4242", &"x".repeat(257)] {
            assert!(!is_recipient_name(bad), "{bad}");
        }
    }
}
