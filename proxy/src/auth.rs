//! App clients: API keys (stored hashed), scopes, a tenant, and where their webhooks go.

use std::fmt;

use zeroize::Zeroizing;

/// One permission an app key can hold.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Scope {
    /// Create, confirm and cancel payouts.
    PayoutsWrite,
    /// Read payouts.
    PayoutsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 2] = [Self::PayoutsWrite, Self::PayoutsRead];

    /// `payouts:write` or `payouts:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayoutsWrite => "payouts:write",
            Self::PayoutsRead => "payouts:read",
        }
    }
}

/// A set of scopes.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses `a,b`.
    ///
    /// # Errors
    ///
    /// An empty list or an unknown name (fixed message).
    pub fn parse(list: &str) -> Result<Self, &'static str> {
        let mut scopes = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .ok_or("unknown scope (expected payouts:write, payouts:read)")?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required");
        }
        scopes.sort();
        Ok(Self(scopes))
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// The secret an app verifies our webhooks with (HMAC-SHA-256). Shown once at creation.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// A fresh `whsec_…` secret (256 random bits).
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate() -> Result<Self, shared::ids::RandomFailed> {
        shared::ids::ApiKey::generate("whsec_").map(|k| Self(Zeroizing::new(k.expose().to_owned())))
    }

    /// From storage.
    pub fn from_stored(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret { .. }")
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.0.as_bytes(), other.0.as_bytes()).into()
    }
}

impl Eq for WebhookSecret {}

/// A stored app client.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientRecord {
    /// `app_…`.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The tenant whose tokens it may pay out to.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the API key.
    pub key_hash: [u8; 32],
    /// Where its webhooks go, if anywhere.
    pub webhook_url: Option<String>,
    /// Signs its webhooks. Kept in clear: it must be usable to sign (it guards no card data).
    pub webhook_secret: WebhookSecret,
    /// Unix microseconds.
    pub created_at: i64,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// The prefix of proxy API keys.
pub const API_KEY_PREFIX: &str = "pk_";
/// The prefix of app client ids.
pub const CLIENT_ID_PREFIX: &str = "app_";
