//! API clients as the vault stores them: scopes, tenant, key hash, and a MAC under the client key
//! so that a row edited or slipped into the database is refused; and the check on the labels
//! operators choose. Authenticating a request is `http::caller`'s.

use serde::Serialize;

use crate::crypto::{ClientKey, RowMac};
use crate::token::ClientId;

/// One permission an API key can hold.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
pub enum Scope {
    /// `POST /v1/tokens`.
    #[serde(rename = "tokens:create")]
    TokensCreate,
    /// `GET /v1/tokens/{token}`.
    #[serde(rename = "tokens:read")]
    TokensRead,
    /// `POST /v1/tokens/{token}/detokenize`: plaintext access. Only the payout proxy's client
    /// should ever hold it.
    #[serde(rename = "tokens:detokenize")]
    TokensDetokenize,
    /// `DELETE /v1/tokens/{token}`.
    #[serde(rename = "tokens:delete")]
    TokensDelete,
    /// Not a route of its own: lets token views (read and tokenize answers) show the card's BIN
    /// and length. Without it a client sees last four, brand and expiry only, since BIN and
    /// length shrink the space a tokenize oracle must search (docs/ARCHITECTURE.md §9.1).
    #[serde(rename = "tokens:read_bin")]
    TokensReadBin,
    /// `POST /v1/collect_sessions` and `GET /v1/collect_sessions/{id}`: opening the vault's
    /// card form for a cardholder and reading how it ended (token, last four, brand).
    #[serde(rename = "collect:create")]
    CollectCreate,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 6] = [
        Self::TokensCreate,
        Self::TokensRead,
        Self::TokensDetokenize,
        Self::TokensDelete,
        Self::TokensReadBin,
        Self::CollectCreate,
    ];

    /// The scope's name, e.g. `tokens:create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokensCreate => "tokens:create",
            Self::TokensRead => "tokens:read",
            Self::TokensDetokenize => "tokens:detokenize",
            Self::TokensDelete => "tokens:delete",
            Self::TokensReadBin => "tokens:read_bin",
            Self::CollectCreate => "collect:create",
        }
    }

    /// Parses a scope name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl shared::scopes::ScopeName for Scope {
    const EVERY: &'static [Self] = &Self::ALL;
    const UNKNOWN: &'static str = "unknown scope (expected tokens:create, tokens:read, tokens:read_bin, tokens:detokenize, tokens:delete, collect:create)";
    fn as_str(self) -> &'static str {
        Self::as_str(self)
    }
}

/// A set of scopes.
pub type Scopes = shared::scopes::ScopeSet<Scope>;

/// A stored API client. The key itself is never stored, only its hash. Every row carries a MAC
/// under the vault's client key ([`ClientRecord::encode`] is what it covers), so a row the vault
/// did not write, or edited behind its back, authenticates nothing.
#[derive(Clone, Debug)]
pub struct ClientRecord {
    /// `cli_…`.
    pub id: ClientId,
    /// Operator-chosen name.
    pub name: String,
    /// The tenant whose tokens this client works with.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the API key.
    pub key_hash: [u8; 32],
    /// Unix microseconds.
    pub created_at: i64,
    /// Set once revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<i64>,
    /// The row's MAC; `None` only for rows an older vault wrote (they authenticate nothing).
    pub mac: Option<RowMac>,
    /// SHA-256 of the TLS client certificate the key is bound to: its requests must come over
    /// a connection that presented that certificate (mutual TLS), or the key is refused.
    pub cert_sha256: Option<[u8; 32]>,
}

impl ClientRecord {
    /// The canonical bytes the row MAC covers: every field but the MAC, length-prefixed, in a
    /// fixed order, so no two rows encode alike.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        let scopes = self.scopes.to_string();
        for field in [
            self.id.as_str().as_bytes(),
            self.name.as_bytes(),
            self.tenant.as_bytes(),
            scopes.as_bytes(),
            &self.key_hash[..],
        ] {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.created_at.to_be_bytes());
        match self.revoked_at {
            None => out.push(0),
            Some(at) => {
                out.push(1);
                out.extend_from_slice(&at.to_be_bytes());
            }
        }
        // Only when bound, so the rows written before certificate binding existed keep their
        // MACs; the fields before are length-prefixed or fixed, so no two rows encode alike.
        if let Some(hash) = &self.cert_sha256 {
            out.push(2);
            out.extend_from_slice(hash);
        }
        out
    }

    /// Whether `other` is this row, field for field (key hash and MAC compared in constant
    /// time).
    pub fn same_row(&self, other: &Self) -> bool {
        let mac = match (&self.mac, &other.mac) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        };
        mac && self.id == other.id
            && self.name == other.name
            && self.tenant == other.tenant
            && self.scopes == other.scopes
            && shared::ct::bytes_eq(&self.key_hash, &other.key_hash)
            && self.created_at == other.created_at
            && self.revoked_at == other.revoked_at
            && self.cert_sha256 == other.cert_sha256
    }

    /// Whether a request over a connection that presented `presented` (a verified client
    /// certificate's SHA-256, or none) may use this client's key: always for an unbound client,
    /// else only with the bound certificate.
    pub fn accepts_certificate(&self, presented: Option<&[u8; 32]>) -> bool {
        match (&self.cert_sha256, presented) {
            (None, _) => true,
            (Some(bound), Some(given)) => shared::ct::bytes_eq(bound, given),
            (Some(_), None) => false,
        }
    }

    /// Sets the MAC for the row as it now is.
    pub fn seal(&mut self, key: &ClientKey) {
        self.mac = Some(key.mac(&self.encode()));
    }

    /// Whether the row's MAC holds (a row without one never does).
    pub fn is_authentic(&self, key: &ClientKey) -> bool {
        self.mac
            .as_ref()
            .is_some_and(|mac| key.verify(&self.encode(), mac))
    }
}

/// Checks an operator-chosen label (client name, tenant): 1–64 characters of `[A-Za-z0-9._-]`,
/// so it can never carry a card number's worth of digits with separators in logs either.
///
/// # Errors
///
/// A fixed message saying what is allowed.
pub fn validate_label(label: &str) -> Result<(), &'static str> {
    let ok_chars = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if label.is_empty() || label.len() > 64 || !ok_chars {
        return Err("must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'");
    }
    if shared::scan::has_digit_run(label.as_bytes(), 13) {
        return Err("must not contain 13 or more digits in a row");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scopes::parse("tokens:read, tokens:create,tokens:read").unwrap();
        assert_eq!(s.to_string(), "tokens:create,tokens:read");
        assert!(s.contains(Scope::TokensRead));
        assert!(!s.contains(Scope::TokensDetokenize));
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("tokens:everything").is_err());
    }

    #[test]
    fn labels() {
        assert!(validate_label("acme-payouts_1").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label("a b").is_err());
        assert!(validate_label("4242-4242-4242-4242").is_err());
        assert!(validate_label(&"x".repeat(65)).is_err());
    }
}
