//! Collect sessions: how a cardholder's browser hands a card to the vault without the platform
//! ever touching it (PCI SAQ A). The platform's backend opens a session (`POST
//! /v1/collect_sessions`), the vault serves the card form itself (`GET /collect/{id}`), and the
//! form posts the card straight back to the vault with the session's client secret.
//!
//! This module is the session as a value: its id, its secret (only the hash is kept), the
//! origins allowed to frame the form, and the row MAC that makes a session written or edited
//! outside the vault refuse every submit. Serving and storing it are `http::collect`'s and
//! `store`'s.

use std::fmt;

use shared::Brand;

use crate::crypto::{ClientKey, RowMac};
use crate::store::TokenRecord;
use crate::token::{ClientId, Token};

shared::random_id_type!(
    /// A collect session id: `cs_` and 22 base62 characters (128 random bits, so ids cannot be
    /// enumerated).
    CollectId,
    "cs_"
);

/// The prefix of collect session client secrets (`css_` and 43 base64url characters, 256
/// random bits). The secret is handed to the platform's page once; the vault keeps its hash.
pub const SECRET_PREFIX: &str = "css_";

/// Longest life of a session framed by allowed origins.
pub const MAX_TTL_SECONDS: u64 = 3600;

/// Longest life of a standalone session (no allowed origins: a link sent to the cardholder, as
/// the proxy's payout links are), which waits for a person to open a message, not for a page
/// that is already open.
pub const MAX_LINK_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// Lifetime when the platform does not ask for one.
pub const DEFAULT_TTL_SECONDS: u64 = 900;
/// Most origins one session may allow to frame its form.
pub const MAX_ORIGINS: usize = 10;
/// Longest accepted metadata, serialized.
pub const MAX_METADATA_BYTES: usize = 2048;

/// An origin allowed to frame the form: `scheme://host[:port]`, lower case, nothing else.
/// `https` always; `http` only for loopback hosts (development), since a page served over plain
/// HTTP elsewhere could be altered in transit to frame the form and read the token.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin as a browser spells it in `event.origin` and the `Origin` header.
    ///
    /// # Errors
    ///
    /// A fixed message saying what an origin must look like.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const SHAPE: &str = "each allowed origin must be scheme://host[:port] with no path, e.g. https://shop.example (http only for localhost and 127.0.0.1)";
        let url = url::Url::parse(text).map_err(|_| SHAPE)?;
        let host = url.host_str().ok_or(SHAPE)?;
        // rust-url lets through host characters a browser never puts in an origin but a CSP
        // reads as syntax (`*` is a wildcard, `;` ends the directive, `,` separates policies):
        // `https://*` would let every site frame the form. Only DNS names and IP literals pass.
        let host_ok = match url.host() {
            Some(url::Host::Domain(name)) => is_dns_name(name),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
            None => false,
        };
        if !host_ok {
            return Err(SHAPE);
        }
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || url.path() != "/"
            || text.ends_with('/')
        {
            return Err(SHAPE);
        }
        let origin = url.origin().ascii_serialization();
        // The text must already be the browser's spelling: otherwise the comparison with
        // `event.origin` on the page would silently never match.
        if origin != text {
            return Err(
                "each allowed origin must be written as a browser writes it: lower case, no default port, no trailing slash",
            );
        }
        Ok(Self(origin))
    }

    /// The origin text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `host` is a DNS name as browsers serialize it: dot-separated labels of lower-case
/// letters, digits and inner hyphens (IDNs arrive here already in their `xn--` form).
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a session stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SessionState {
    /// Waiting for a card.
    Open,
    /// A card was submitted and tokenized.
    Completed,
    /// Past `expires_at` without a card.
    Expired,
}

impl SessionState {
    /// The name in API answers and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }
}

/// What a completed session produced: the token and the card facts the platform may see.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Completion {
    /// Unix microseconds.
    pub at: i64,
    /// The token the card was stored under.
    pub token: Token,
    /// Last four digits.
    pub last4: String,
    /// Brand.
    pub brand: Brand,
    /// The name typed into the form, when the session asked for one.
    pub cardholder_name: Option<String>,
}

/// A stored collect session.
#[derive(Clone, Debug)]
pub struct CollectSession {
    /// `cs_…`.
    pub id: CollectId,
    /// The tenant its card is tokenized under: the creating client's.
    pub tenant: String,
    /// The client that opened it.
    pub created_by: ClientId,
    /// SHA-256 of the client secret.
    pub secret_hash: [u8; 32],
    /// Origins allowed to frame the form and receive its token (empty: standalone only).
    pub allowed_origins: Vec<Origin>,
    /// Whether the form asks for the cardholder's name.
    pub name_required: bool,
    /// The platform's own JSON, returned as given (checked to hold no card data).
    pub metadata: Option<String>,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds; from then on the session takes no card.
    pub expires_at: i64,
    /// Set once a card was submitted.
    pub completion: Option<Completion>,
    /// MAC over every field fixed at creation (not the completion).
    pub mac: RowMac,
}

impl CollectSession {
    /// Its state at `now`.
    pub fn state(&self, now: i64) -> SessionState {
        if self.completion.is_some() {
            SessionState::Completed
        } else if now >= self.expires_at {
            SessionState::Expired
        } else {
            SessionState::Open
        }
    }

    /// The allowed origins as stored and as the form reads them: one space between each.
    pub fn origins_text(&self) -> String {
        join_origins(&self.allowed_origins)
    }

    /// The canonical bytes the row MAC covers: the fields fixed at creation, length-prefixed,
    /// in a fixed order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let origins = self.origins_text();
        for field in [
            self.id.as_str().as_bytes(),
            self.tenant.as_bytes(),
            self.created_by.as_str().as_bytes(),
            &self.secret_hash[..],
            origins.as_bytes(),
            self.metadata.as_deref().unwrap_or_default().as_bytes(),
        ] {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out.push(u8::from(self.name_required));
        out.push(u8::from(self.metadata.is_some()));
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        // The completion is covered too: a forged one could otherwise hand the platform another
        // card's token of the same tenant, and the payout would go to that card.
        if let Some(done) = &self.completion {
            out.push(1);
            out.extend_from_slice(&done.at.to_be_bytes());
            let name = done.cardholder_name.as_deref();
            out.push(u8::from(name.is_some()));
            for field in [
                done.token.as_str(),
                &done.last4,
                done.brand.as_str(),
                name.unwrap_or_default(),
            ] {
                let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
        } else {
            out.push(0);
        }
        out
    }

    /// Sets the MAC for the session as it now is.
    pub fn seal(&mut self, key: &ClientKey) {
        self.mac = key.session_mac(&self.encode());
    }

    /// Records the card the session was completed with and seals the row again.
    pub fn complete(
        &mut self,
        at: i64,
        record: &TokenRecord,
        cardholder_name: Option<String>,
        key: &ClientKey,
    ) {
        self.completion = Some(Completion {
            at,
            token: record.token.clone(),
            last4: record.card.last4.clone(),
            brand: record.card.brand,
            cardholder_name,
        });
        self.seal(key);
    }

    /// Whether the row's MAC holds.
    pub fn is_authentic(&self, key: &ClientKey) -> bool {
        key.verify_session(&self.encode(), &self.mac)
    }
}

/// Origins as stored: one space between each.
pub fn join_origins(origins: &[Origin]) -> String {
    origins
        .iter()
        .map(Origin::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Origins as stored, read back; `None` if any is not an origin (a row not written by the
/// vault).
pub fn split_origins(text: &str) -> Option<Vec<Origin>> {
    text.split(' ')
        .filter(|o| !o.is_empty())
        .map(|o| Origin::parse(o).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_taken_only_in_the_browsers_spelling() {
        for good in [
            "https://shop.example",
            "https://shop.example:8443",
            "http://127.0.0.1:4000",
            "http://localhost:3000",
            "http://[::1]:8080",
            "https://10.0.0.7",
            "https://xn--80ak6aa92e.example",
        ] {
            assert_eq!(Origin::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "shop.example",
            "http://shop.example",
            "https://shop.example/",
            "https://shop.example/pay",
            "https://shop.example?x=1",
            "https://SHOP.example",
            "https://shop.example:443",
            "https://user@shop.example",
            "javascript:alert(1)",
            "data:text/html,x",
            "*",
            "null",
            // Hosts rust-url accepts but a CSP would read as syntax.
            "https://*",
            "https://*.example",
            "https://a;b",
            "https://a,b",
            "https://a'b",
            "https://a{b}",
            "https://a!b",
            "https://a$b",
            "https://a..b",
            "https://-a.example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_origins_read_back() {
        let origins = vec![
            Origin::parse("https://a.example").unwrap(),
            Origin::parse("http://127.0.0.1:9").unwrap(),
        ];
        assert_eq!(split_origins(&join_origins(&origins)), Some(origins));
        assert_eq!(split_origins(""), Some(vec![]));
        assert_eq!(split_origins("https://a.example evil"), None);
    }
}
