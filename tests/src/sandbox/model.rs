//! Sessions and payouts as the sandbox keeps them, and how they are rendered in each API
//! spelling (API.md §4).
//!
//! No card number is kept: when a request is parsed the number is reduced to [`CardFacts`]
//! (masked fields, fingerprint and the magic outcome it selects) and dropped.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::sandbox::config::ApiVersion;
use crate::sandbox::error::{ApiError, Decline};

/// Now as RFC 3339 UTC with six fractional digits and `Z`, as the bank writes times.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Every status, action and brand name the sandbox sets. A session read back from the state
/// directory maps its names onto these, so the model keeps its `&'static str` fields.
const NAMES: &[&str] = &[
    "created",
    "in_progress",
    "accepted",
    "cancelled",
    "error",
    "pending",
    "succeeded",
    "failed",
    "confirm",
    "mir",
    "visa",
    "mastercard",
    "unknown",
];

/// A name from [`NAMES`]. The alias matters: serde's derive takes a field spelled `&str` as
/// borrowed from the input (and would demand input that lives forever), an alias it does not.
type Name = &'static str;

fn known_name(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
    let s = String::deserialize(d)?;
    known_name(&s)
        .ok_or_else(|| serde::de::Error::custom("a status or brand the sandbox never sets"))
}

fn optional_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Name>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => known_name(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("a next action the sandbox never sets")),
    }
}

/// What the sandbox keeps about a card: never more than BIN and last four.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) struct CardFacts {
    #[serde(deserialize_with = "name")]
    pub(crate) brand: Name,
    pub(crate) bin: String,
    pub(crate) last4: String,
    /// hex(SHA-256(project id + number)): a per-project fingerprint.
    pub(crate) card_id: String,
    /// The outcome the number selects by itself (Luhn failure or a magic ending).
    pub(crate) decline: Option<Decline>,
}

impl CardFacts {
    /// `digits` must already be 14–19 ASCII digits.
    pub(crate) fn from_number(project: &str, digits: &str) -> Self {
        let brand = match digits.as_bytes().first() {
            Some(b'2') => "mir",
            Some(b'4') => "visa",
            Some(b'5') => "mastercard",
            _ => "unknown",
        };
        let mut hash = Sha256::new();
        hash.update(project.as_bytes());
        hash.update(digits.as_bytes());
        let last4 = digits.get(digits.len().saturating_sub(4)..).unwrap_or("");
        let decline = if !shared::pan::luhn_valid(digits.as_bytes()) {
            Some(Decline::CardNumber)
        } else {
            match last4 {
                "0002" => Some(Decline::IssuerDeclined),
                "0051" => Some(Decline::InsufficientWallet),
                "0054" => Some(Decline::CardExpired),
                "0061" => Some(Decline::AmountLimit),
                _ => None,
            }
        };
        Self {
            brand,
            bin: digits.get(..6).unwrap_or("").to_owned(),
            last4: last4.to_owned(),
            card_id: hex::encode(hash.finalize()),
            decline,
        }
    }

    fn render(&self) -> Value {
        json!({"type": "card", "card": {
            "brand": self.brand, "last4": self.last4, "bin": self.bin, "card_id": self.card_id,
        }})
    }
}

/// An amount as sent: minor units, currency in the client's case.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) struct Amount {
    pub(crate) amount: i64,
    pub(crate) currency: String,
}

impl Amount {
    pub(crate) fn render(&self) -> Value {
        json!({"amount": self.amount, "currency": self.currency})
    }
}

/// The optional payout fields of create/start/init; start's override create's.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct Fields {
    pub(crate) amount: Option<Amount>,
    pub(crate) card: Option<CardFacts>,
    pub(crate) participant_details: Option<Value>,
    pub(crate) customer: Option<Value>,
    pub(crate) metadata: Option<Value>,
}

impl Fields {
    pub(crate) fn merged(&self, newer: Self) -> Self {
        Self {
            amount: newer.amount.or_else(|| self.amount.clone()),
            card: newer.card.or_else(|| self.card.clone()),
            participant_details: newer
                .participant_details
                .or_else(|| self.participant_details.clone()),
            customer: newer.customer.or_else(|| self.customer.clone()),
            metadata: newer.metadata.or_else(|| self.metadata.clone()),
        }
    }

    /// The recipient's name as the magic inputs see it: `full_name`, else first + last.
    pub(crate) fn recipient_name(&self) -> Option<String> {
        let recipient = self.participant_details.as_ref()?.get("recipient")?;
        let text = |k: &str| recipient.get(k).and_then(Value::as_str).map(str::trim);
        match (text("full_name"), text("first_name"), text("last_name")) {
            (Some(full), _, _) if !full.is_empty() => Some(full.to_owned()),
            (_, Some(first), Some(last)) if !first.is_empty() && !last.is_empty() => {
                Some(format!("{first} {last}"))
            }
            _ => None,
        }
    }
}

/// Where a session is in the lifecycle (finer than its public status).
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) enum Phase {
    Created,
    /// Started; `ready_to_confirm` comes next, unless `silent` (`NO_CONFIRM`).
    Preparing {
        silent: bool,
    },
    AwaitingConfirm,
    /// The decision is made; `payment_finished` comes next.
    Executing(Decision),
    Finished,
}

#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) enum Decision {
    Confirmed,
    Automatic,
    Cancelled,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Refund {
    pub(crate) id: String,
    pub(crate) at: String,
    pub(crate) amount: Amount,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Payout {
    pub(crate) id: String,
    #[serde(deserialize_with = "name")]
    pub(crate) status: Name,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
    pub(crate) card: CardFacts,
    pub(crate) amount: Amount,
    pub(crate) fields: Fields,
    pub(crate) transaction_info: Option<(String, String)>,
    pub(crate) error: Option<ApiError>,
    pub(crate) refunds: Vec<Refund>,
}

impl Payout {
    fn render(&self, version: ApiVersion) -> Value {
        let mut p = Map::new();
        p.insert("id".into(), self.id.clone().into());
        p.insert("status".into(), self.status.into());
        p.insert("created_at".into(), self.created_at.clone().into());
        if let Some(at) = &self.finished_at {
            p.insert("finished_at".into(), at.clone().into());
        }
        if let Some(c) = &self.fields.customer {
            p.insert("customer".into(), c.clone());
        }
        p.insert(version.destination_key().into(), self.card.render());
        p.insert("amount_details".into(), self.amount.render());
        if let Some(d) = &self.fields.participant_details {
            p.insert("participant_details".into(), d.clone());
        }
        if let Some((rrn, auth_code)) = &self.transaction_info {
            p.insert(
                "transaction_info".into(),
                json!({"rrn": rrn, "auth_code": auth_code}),
            );
        }
        if !self.refunds.is_empty() {
            let refunds = self.refunds.iter().map(|r| {
                json!({"id": r.id, "status": "accepted", "created_at": r.at,
                       "finished_at": r.at, "amount_details": r.amount.render()})
            });
            p.insert("refunds".into(), refunds.collect());
        }
        if let Some(m) = &self.fields.metadata {
            p.insert("metadata".into(), m.clone());
        }
        if let Some(e) = &self.error {
            p.insert("error".into(), e.body());
        }
        Value::Object(p)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) project: String,
    #[serde(deserialize_with = "name")]
    pub(crate) status: Name,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) finished_at: Option<String>,
    #[serde(deserialize_with = "optional_name")]
    pub(crate) next_action: Option<Name>,
    pub(crate) phase: Phase,
    /// Bumped on every phase change, so a timer armed for an older phase does nothing.
    pub(crate) epoch: u64,
    pub(crate) fields: Fields,
    pub(crate) payout: Option<Payout>,
    /// `SLOW_BANK`: answers about this session come late.
    pub(crate) slow: bool,
}

impl Session {
    pub(crate) fn new(id: String, project: &str, fields: Fields) -> Self {
        let at = now();
        Self {
            id,
            project: project.to_owned(),
            status: "created",
            created_at: at.clone(),
            updated_at: at,
            finished_at: None,
            next_action: None,
            phase: Phase::Created,
            epoch: 0,
            fields,
            payout: None,
            slow: false,
        }
    }

    pub(crate) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
        self.updated_at = now();
    }

    /// The session object in the given spelling.
    pub(crate) fn render(&self, version: ApiVersion) -> Value {
        let mut s = Map::new();
        s.insert("id".into(), self.id.clone().into());
        s.insert("status".into(), self.status.into());
        s.insert("created_at".into(), self.created_at.clone().into());
        s.insert("updated_at".into(), self.updated_at.clone().into());
        if let Some(at) = &self.finished_at {
            s.insert("finished_at".into(), at.clone().into());
        }
        if let Some(action) = self.next_action {
            s.insert("next_action".into(), action.into());
        }
        if let Some(p) = &self.payout {
            s.insert(version.payouts_key().into(), json!([p.render(version)]));
        }
        Value::Object(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_facts() {
        let c = CardFacts::from_number("p", "4242424242424242");
        assert_eq!(
            (c.brand, c.bin.as_str(), c.last4.as_str()),
            ("visa", "424242", "4242")
        );
        assert_eq!(c.card_id.len(), 64);
        assert_eq!(c.decline, None);
        assert_ne!(
            c.card_id,
            CardFacts::from_number("q", "4242424242424242").card_id
        );
        let bad = CardFacts::from_number("p", "4242424242424241");
        assert_eq!(bad.decline, Some(Decline::CardNumber));
        assert_eq!(CardFacts::from_number("p", "2200000000000004").brand, "mir");
        assert_eq!(
            CardFacts::from_number("p", "378282246310005").brand,
            "unknown"
        );
    }

    #[test]
    fn time_format() {
        let t = now();
        assert_eq!(t.len(), "2020-06-08T11:00:03.567464Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }
}
