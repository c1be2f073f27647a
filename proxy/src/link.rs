//! Payout links: a payout to a card the platform does not have yet. The proxy opens a standalone
//! collect session at the vault and hands the app a link to it; the recipient enters the card on
//! the vault's own page; the proxy sees the session completed and pays the amount to the new
//! token, once.
//!
//! This module is the link as a value: its states, its record, the canonical bytes its row tag
//! covers, and the request it was made from (hashed for idempotency). Opening, polling and paying
//! are [`crate::links`]'; storing is [`crate::store`]'s.
//!
//! A link row decides where money goes (the amount, the currency, the recipient, the session
//! whose card is paid), so the database is not trusted with it: every field fixed at creation is
//! covered by a tag under a key the database does not hold ([`PayoutLink::tag_bytes`],
//! [`crate::secrets::WrapKey::row_tag`]), and a row whose tag fails is neither polled nor paid.
//! The session's client secret is kept sealed, bound to the link ([`PayoutLink::secret_aad`]).

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::{AppClientId, CollectSessionId, PayoutId, PayoutLinkId};

/// Shortest link life, in seconds (the vault's own floor for a session).
pub const MIN_EXPIRES_IN: u64 = 1;
/// Longest link life: 7 days (the vault's ceiling for a standalone session).
pub const MAX_EXPIRES_IN: u64 = 7 * 24 * 3600;
/// Link life when the app does not say: a day.
pub const DEFAULT_EXPIRES_IN: u64 = 24 * 3600;

/// What every `Idempotency-Key` of a payout made from a link starts with. Reserved: an app's own
/// key may not start so, so no app request can take a link's payout key first.
pub const PAYOUT_KEY_PREFIX: &str = "payout_link:";

/// The idempotency key of the one payout link `id` makes: the same in every replica and after
/// every restart, so the payouts table's unique key makes a second payout impossible.
pub fn payout_key(id: &PayoutLinkId) -> String {
    format!("{PAYOUT_KEY_PREFIX}{id}")
}

/// Where a link is. `open` moves once, to `completed` or `expired`, never back.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LinkState {
    /// Waiting for the recipient's card.
    Open,
    /// The card came in, and the link's payout exists.
    Completed,
    /// The vault's session expired without a card.
    Expired,
}

impl LinkState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Open, Self::Completed, Self::Expired];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }

    /// Parses [`LinkState::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a completed link learned: its payout and the card facts the app may see (never a BIN).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LinkCompletion {
    /// The payout made to the card.
    pub payout_id: PayoutId,
    /// Last four digits.
    pub last4: String,
    /// `visa`, `mir`, … (`shared::Brand` names).
    pub brand: String,
    /// Unix microseconds.
    pub at: i64,
}

/// A payout link as stored. No `PartialEq`: it holds the sealed secret and the row tag, which
/// are compared only in constant time (`shared::ct`); compare [`PayoutLink::tag_bytes`] instead.
#[derive(Clone, Debug)]
pub struct PayoutLink {
    /// `pl_…`.
    pub id: PayoutLinkId,
    /// The tenant whose vault session collects the card (the creating app's).
    pub tenant: String,
    /// The app client that asked, which the payout belongs to.
    pub client_id: AppClientId,
    /// The app's `Idempotency-Key`.
    pub idempotency_key: String,
    /// SHA-256 of the canonical request ([`LinkFingerprint`]).
    pub request_hash: [u8; 32],
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// The recipient's full name, if the app gave one; else the name the cardholder enters.
    pub recipient_name: Option<String>,
    /// The app's metadata, JSON text (given to the payout too).
    pub metadata: Option<String>,
    /// The vault's collect session.
    pub session: CollectSessionId,
    /// The session's page, as the vault answered (no secret in it).
    pub session_url: String,
    /// The session's client secret, sealed under the proxy's key and bound to this link.
    pub sealed_secret: String,
    /// When the vault's session expires (Unix microseconds).
    pub expires_at: i64,
    /// Unix microseconds.
    pub created_at: i64,
    /// HMAC-SHA-256 of [`PayoutLink::tag_bytes`] under the proxy's row key.
    pub tag: [u8; 32],
    /// Where it is.
    pub state: LinkState,
    /// Set exactly when `state` is `completed`.
    pub completion: Option<LinkCompletion>,
    /// When the session is read next (Unix microseconds); a claim's lease until then.
    pub next_poll_at: i64,
    /// The replica that claimed it last.
    pub lease_owner: Option<String>,
    /// Unix microseconds.
    pub updated_at: i64,
    /// Bumped by every claim and every change.
    pub version: i64,
}

impl PayoutLink {
    /// The canonical bytes the row tag covers: every field fixed at creation (what decides where
    /// the money goes and where the recipient is sent), each length-prefixed, in a fixed order.
    /// What changes later (state, completion, leases) is not covered: a forged change can only
    /// stop a link (a second payout is impossible by its key), never redirect one.
    pub fn tag_bytes(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
            match bytes {
                None => out.push(0),
                Some(b) => {
                    out.push(1);
                    out.extend_from_slice(
                        &u64::try_from(b.len()).unwrap_or(u64::MAX).to_be_bytes(),
                    );
                    out.extend_from_slice(b);
                }
            }
        }
        let amount = self.amount.to_be_bytes();
        let expires_at = self.expires_at.to_be_bytes();
        let created_at = self.created_at.to_be_bytes();
        let mut out = Vec::with_capacity(512);
        for bytes in [
            Some(b"payout_link v1".as_slice()),
            Some(self.id.as_str().as_bytes()),
            Some(self.tenant.as_bytes()),
            Some(self.client_id.as_str().as_bytes()),
            Some(self.idempotency_key.as_bytes()),
            Some(&self.request_hash[..]),
            Some(&amount[..]),
            Some(self.currency.as_bytes()),
            self.recipient_name.as_deref().map(str::as_bytes),
            self.metadata.as_deref().map(str::as_bytes),
            Some(self.session.as_str().as_bytes()),
            Some(self.session_url.as_bytes()),
            Some(self.sealed_secret.as_bytes()),
            Some(&expires_at[..]),
            Some(&created_at[..]),
        ] {
            field(&mut out, bytes);
        }
        out
    }

    /// What the sealed client secret is bound to (its AAD): this link, and nothing an app
    /// client id could be.
    pub fn secret_aad(id: &PayoutLinkId) -> String {
        format!("payout_link:{id}")
    }

    /// The link's app event for its current state: `payout_link.completed` or
    /// `payout_link.expired`; none while open.
    pub fn event_type(&self) -> Option<&'static str> {
        match self.state {
            LinkState::Open => None,
            LinkState::Completed => Some("payout_link.completed"),
            LinkState::Expired => Some("payout_link.expired"),
        }
    }
}

/// The canonical request a link was made from, hashed for idempotency: the same key and body
/// again is the same link; the same key with another body is a conflict.
#[derive(Debug, Serialize)]
pub struct LinkFingerprint<'a> {
    /// Minor units.
    pub amount: i64,
    /// Currency, lowercased.
    pub currency: String,
    /// Recipient, if given.
    pub recipient_full_name: Option<&'a str>,
    /// Metadata (serde_json sorts object keys, so key order does not matter).
    pub metadata: Option<&'a serde_json::Value>,
    /// Seconds, the default filled in (an omitted `expires_in` and the default are one request).
    pub expires_in: u64,
}

impl LinkFingerprint<'_> {
    /// SHA-256 of the canonical JSON.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(serde_json::to_vec(self).unwrap_or_default()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PayoutLink {
        PayoutLink {
            id: PayoutLinkId::generate().unwrap(),
            tenant: "acme".into(),
            client_id: AppClientId::generate().unwrap(),
            idempotency_key: "k".into(),
            request_hash: [3; 32],
            amount: 150_000,
            currency: "RUB".into(),
            recipient_name: Some("Ivanov Ivan".into()),
            metadata: Some(r#"{"order":"1"}"#.into()),
            session: CollectSessionId::parse("cs_0000000000000000000001").unwrap(),
            session_url: "https://vault.example/collect/cs_0000000000000000000001".into(),
            sealed_secret: "wsk1:AAAA".into(),
            expires_at: 2,
            created_at: 1,
            tag: [0; 32],
            state: LinkState::Open,
            completion: None,
            next_poll_at: 1,
            lease_owner: None,
            updated_at: 1,
            version: 0,
        }
    }

    #[test]
    fn the_tag_covers_every_field_fixed_at_creation_and_nothing_that_moves() {
        let link = sample();
        let bytes = link.tag_bytes();
        let changed: Vec<PayoutLink> = vec![
            PayoutLink {
                id: PayoutLinkId::generate().unwrap(),
                ..link.clone()
            },
            PayoutLink {
                tenant: "globex".into(),
                ..link.clone()
            },
            PayoutLink {
                client_id: AppClientId::generate().unwrap(),
                ..link.clone()
            },
            PayoutLink {
                idempotency_key: "k2".into(),
                ..link.clone()
            },
            PayoutLink {
                request_hash: [4; 32],
                ..link.clone()
            },
            PayoutLink {
                amount: 150_001,
                ..link.clone()
            },
            PayoutLink {
                currency: "USD".into(),
                ..link.clone()
            },
            PayoutLink {
                recipient_name: None,
                ..link.clone()
            },
            PayoutLink {
                recipient_name: Some("Ivanov Iva".into()),
                ..link.clone()
            },
            PayoutLink {
                metadata: None,
                ..link.clone()
            },
            PayoutLink {
                session: CollectSessionId::parse("cs_0000000000000000000002").unwrap(),
                ..link.clone()
            },
            PayoutLink {
                session_url: "https://evil.example/collect/cs_0000000000000000000001".into(),
                ..link.clone()
            },
            PayoutLink {
                sealed_secret: "wsk1:AAAB".into(),
                ..link.clone()
            },
            PayoutLink {
                expires_at: 3,
                ..link.clone()
            },
            PayoutLink {
                created_at: 0,
                ..link.clone()
            },
        ];
        for other in &changed {
            assert_ne!(other.tag_bytes(), bytes, "{other:?}");
        }
        // Fields run into each other only with their lengths: moving bytes across is a change.
        let shifted = PayoutLink {
            recipient_name: Some("Ivanov IvanRUB".into()),
            currency: String::new(),
            ..link.clone()
        };
        assert_ne!(shifted.tag_bytes(), bytes);
        let moved = PayoutLink {
            state: LinkState::Completed,
            completion: Some(LinkCompletion {
                payout_id: PayoutId::generate().unwrap(),
                last4: "4242".into(),
                brand: "visa".into(),
                at: 5,
            }),
            next_poll_at: 9,
            lease_owner: Some("rep_1".into()),
            updated_at: 9,
            version: 4,
            ..link
        };
        assert_eq!(moved.tag_bytes(), bytes);
    }

    #[test]
    fn states_read_back_and_only_closed_links_have_events() {
        for s in LinkState::ALL {
            assert_eq!(LinkState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(LinkState::from_name("paid"), None);
        let mut link = sample();
        assert_eq!(link.event_type(), None);
        link.state = LinkState::Expired;
        assert_eq!(link.event_type(), Some("payout_link.expired"));
        link.state = LinkState::Completed;
        assert_eq!(link.event_type(), Some("payout_link.completed"));
    }

    #[test]
    fn the_request_hash_fills_the_default_and_ignores_key_order_and_case() {
        let m1 = serde_json::json!({"a": 1, "b": 2});
        let m2: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        let f = |m, cur: &str, name, secs| {
            LinkFingerprint {
                amount: 100,
                currency: cur.to_ascii_lowercase(),
                recipient_full_name: name,
                metadata: m,
                expires_in: secs,
            }
            .hash()
        };
        let base = f(Some(&m1), "RUB", Some("A B"), DEFAULT_EXPIRES_IN);
        assert_eq!(base, f(Some(&m2), "rub", Some("A B"), DEFAULT_EXPIRES_IN));
        assert_ne!(base, f(Some(&m1), "rub", None, DEFAULT_EXPIRES_IN));
        assert_ne!(base, f(Some(&m1), "rub", Some("A B"), 60));
        assert_eq!(
            payout_key(&PayoutLinkId::parse("pl_0000000000000000000001").unwrap()),
            "payout_link:pl_0000000000000000000001"
        );
    }
}
