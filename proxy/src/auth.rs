//! App clients: API keys (stored hashed), scopes, a tenant, and where their webhooks go.

use std::fmt;

use shared::secret::{ExposeSecret, SecretString, secret};

use crate::ids::AppClientId;

/// One permission an app key can hold.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Scope {
    /// Create, confirm and cancel payouts.
    PayoutsWrite,
    /// Read the payouts this app created.
    PayoutsRead,
    /// Read (not create, confirm or cancel) every payout of the app's tenant, whichever app
    /// created it: for a back office, granted explicitly.
    PayoutsReadTenant,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 3] = [
        Self::PayoutsWrite,
        Self::PayoutsRead,
        Self::PayoutsReadTenant,
    ];

    /// `payouts:write`, `payouts:read` or `payouts:read_tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayoutsWrite => "payouts:write",
            Self::PayoutsRead => "payouts:read",
            Self::PayoutsReadTenant => "payouts:read_tenant",
        }
    }
}

impl shared::scopes::ScopeName for Scope {
    const EVERY: &'static [Self] = &Self::ALL;
    const UNKNOWN: &'static str =
        "unknown scope (expected payouts:write, payouts:read, payouts:read_tenant)";
    fn as_str(self) -> &'static str {
        Self::as_str(self)
    }
}

/// A set of scopes.
pub type Scopes = shared::scopes::ScopeSet<Scope>;

/// The secret an app verifies our webhooks with (HMAC-SHA-256). Shown once at creation.
#[derive(Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    /// A fresh `whsec_…` secret (256 random bits).
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate() -> Result<Self, shared::ids::RandomFailed> {
        shared::ids::ApiKey::generate("whsec_").map(|k| Self(SecretString::from(k.expose())))
    }

    /// From storage.
    pub fn from_stored(text: String) -> Self {
        Self(secret(text))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret { .. }")
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.expose().as_bytes(), other.expose().as_bytes()).into()
    }
}

impl Eq for WebhookSecret {}

/// A stored app client.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientRecord {
    /// `app_…`.
    pub id: AppClientId,
    /// A name for people.
    pub name: String,
    /// The tenant whose tokens it may pay out to.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the API key (compared in constant time).
    pub key_hash: shared::ct::Tag32,
    /// Where its webhooks go, if anywhere.
    pub webhook_url: Option<String>,
    /// Signs its webhooks. Kept in clear: it must be usable to sign (it guards no card data).
    pub webhook_secret: WebhookSecret,
    /// Unix microseconds.
    pub created_at: i64,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
    /// The key before the last rotation, while it still works.
    pub previous_key: Option<PreviousKey>,
}

/// A rotated-out API key that keeps working until `expires_at` (Unix microseconds).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PreviousKey {
    /// SHA-256 of the old key.
    pub hash: shared::ct::Tag32,
    /// When it stops working.
    pub expires_at: i64,
}

impl ClientRecord {
    /// Whether `key_hash` (of a presented key) opens this client at `now`: its key, or the
    /// previous one until that expires. Compared in constant time.
    pub fn accepts(&self, key_hash: &[u8; 32], now: i64) -> bool {
        if self.revoked_at.is_some() {
            return false;
        }
        let current = shared::ct::bytes_eq(self.key_hash.as_slice(), key_hash);
        let previous = self.previous_key.is_some_and(|p| {
            p.expires_at > now && shared::ct::bytes_eq(p.hash.as_slice(), key_hash)
        });
        current | previous
    }
}

/// The prefix of proxy API keys.
pub const API_KEY_PREFIX: &str = "pk_";

/// Why a client could not be created (fixed messages).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewClientError {
    /// A name, tenant or URL was refused.
    #[error("{0}")]
    Invalid(&'static str),
    /// The OS random generator failed.
    #[error(transparent)]
    Random(#[from] shared::ids::RandomFailed),
}

/// A new client, with the API key and webhook secret to show once.
#[derive(Debug)]
pub struct NewClient {
    /// The record to store.
    pub record: ClientRecord,
    /// The API key (only its hash is in the record).
    pub api_key: shared::ids::ApiKey,
}

impl NewClient {
    /// Validates and makes a client (not yet stored).
    ///
    /// # Errors
    ///
    /// [`NewClientError`].
    pub fn make(
        name: &str,
        tenant: &str,
        scopes: Scopes,
        webhook_url: Option<String>,
        now: i64,
    ) -> Result<Self, NewClientError> {
        for label in [name, tenant] {
            let ok = !label.is_empty()
                && label.len() <= 64
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && !shared::scan::has_digit_run(label.as_bytes(), 13);
            if !ok {
                return Err(NewClientError::Invalid(
                    "name and tenant must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
                ));
            }
        }
        if webhook_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(NewClientError::Invalid(
                "the webhook URL must be an http:// or https:// URL",
            ));
        }
        let api_key = shared::ids::ApiKey::generate(API_KEY_PREFIX)?;
        Ok(Self {
            record: ClientRecord {
                id: AppClientId::generate()?,
                name: name.to_owned(),
                tenant: tenant.to_owned(),
                scopes,
                key_hash: shared::ct::Tag32(api_key.hash()),
                webhook_url,
                webhook_secret: WebhookSecret::generate()?,
                created_at: now,
                revoked_at: None,
                previous_key: None,
            },
            api_key,
        })
    }
}
