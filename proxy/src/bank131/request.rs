//! Request bodies (API.md §3). The card number travels only in [`PayoutRequest`], as a
//! [`Pan`]; the body bytes that carry it are built once, in a zeroizing buffer, signed, and sent.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use shared::Pan;
use zeroize::Zeroizing;

use super::config::ApiVersion;
use super::models::{Amount, Customer, ParticipantDetails};

/// `session/create` (API.md §3.1): everything optional; the card goes in `start/payout`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CreateSession {
    /// The amount, if known now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_details: Option<Amount>,
    /// Participants, if known now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_details: Option<ParticipantDetails>,
    /// Your user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    /// Anything; echoed in responses and webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A card payout: the body of `session/start/payout` (with a session id) or
/// `session/init/payout` (without).
#[derive(Debug)]
pub struct PayoutRequest<'a> {
    /// The card number.
    pub card: &'a Pan,
    /// Amount in minor units; must be positive.
    pub amount: Amount,
    /// `recipient.full_name` is mandatory for Russian cards.
    pub participant_details: ParticipantDetails,
    /// Your user.
    pub customer: Option<Customer>,
    /// Anything; echoed back.
    pub metadata: Option<Value>,
}

impl PayoutRequest<'_> {
    /// Client-side checks the SDK also makes (API.md §6), with fixed messages.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.amount.amount <= 0 {
            return Err("amount must be greater than zero");
        }
        if self.amount.currency.trim().is_empty() {
            return Err("currency is required");
        }
        let named = self
            .participant_details
            .recipient
            .as_ref()
            .and_then(|r| r.full_name.as_deref())
            .is_some_and(|n| !n.trim().is_empty());
        if !named {
            return Err("recipient.full_name is required");
        }
        Ok(())
    }

    /// The body bytes, in a zeroizing buffer. Sized up front so serde_json's writer does not
    /// reallocate, which would leave un-zeroized copies of the card number behind.
    pub(crate) fn body(
        &self,
        version: ApiVersion,
        session_id: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        let mut buf = Zeroizing::new(Vec::with_capacity(16 * 1024));
        serde_json::to_writer(
            &mut *buf,
            &PayoutBody {
                version,
                session_id,
                request: self,
            },
        )?;
        Ok(buf)
    }
}

struct PayoutBody<'a> {
    version: ApiVersion,
    session_id: Option<&'a str>,
    request: &'a PayoutRequest<'a>,
}

impl Serialize for PayoutBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.request;
        let mut map = s.serialize_map(None)?;
        if let Some(id) = self.session_id {
            map.serialize_entry("session_id", id)?;
        }
        map.serialize_entry("amount_details", &r.amount)?;
        if let Some(customer) = &r.customer {
            map.serialize_entry("customer", customer)?;
        }
        if let Some(metadata) = &r.metadata {
            map.serialize_entry("metadata", metadata)?;
        }
        map.serialize_entry(
            self.version.destination_field(),
            &CardDestination {
                kind: "card",
                card: CardObject {
                    kind: "bank_card",
                    bank_card: BankCard { number: r.card },
                },
            },
        )?;
        map.serialize_entry("participant_details", &r.participant_details)?;
        map.end()
    }
}

#[derive(Serialize)]
struct CardDestination<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    card: CardObject<'a>,
}

#[derive(Serialize)]
struct CardObject<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    bank_card: BankCard<'a>,
}

#[derive(Serialize)]
struct BankCard<'a> {
    #[serde(serialize_with = "expose_pan")]
    number: &'a Pan,
}

/// The one place the proxy writes a card number out: the bank request body.
fn expose_pan<S: Serializer>(pan: &&Pan, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(pan.expose())
}

/// `{"session_id": …}` for confirm, cancel and status.
#[derive(Debug, Serialize)]
pub(crate) struct SessionIdBody<'a> {
    pub(crate) session_id: &'a str,
}

/// `{"request_datetime": "2024-04-10T19:53:00+00:00"}` (PHP `DATE_ATOM`).
#[derive(Debug, Serialize)]
pub(crate) struct WalletBalanceBody {
    pub(crate) request_datetime: String,
}

impl WalletBalanceBody {
    pub(crate) fn now() -> Self {
        let utc = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Self {
            request_datetime: utc.trim_end_matches('Z').to_owned() + "+00:00",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank131::models::Participant;

    fn request(pan: &Pan) -> PayoutRequest<'_> {
        PayoutRequest {
            card: pan,
            amount: Amount {
                amount: 10000,
                currency: "rub".to_owned(),
            },
            participant_details: ParticipantDetails {
                recipient: Some(Participant::full_name("Ivanov Ivan")),
                sender: None,
            },
            customer: Some(Customer {
                reference: "user123".to_owned(),
            }),
            metadata: Some(Value::String("good".to_owned())),
        }
    }

    #[test]
    fn v2_body_matches_the_documented_shape() {
        let pan = Pan::parse("4242424242424242").unwrap();
        let body = request(&pan).body(ApiVersion::V2, Some("ps_3230")).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"session_id":"ps_3230","amount_details":{"amount":10000,"currency":"rub"},"customer":{"reference":"user123"},"metadata":"good","payout_details":{"type":"card","card":{"type":"bank_card","bank_card":{"number":"4242424242424242"}}},"participant_details":{"recipient":{"full_name":"Ivanov Ivan"}}}"#
        );
    }

    #[test]
    fn v1_body_uses_payment_method_and_init_has_no_session() {
        let pan = Pan::parse("4242424242424242").unwrap();
        let body: Value =
            serde_json::from_slice(&request(&pan).body(ApiVersion::V1, None).unwrap()).unwrap();
        assert!(body.get("session_id").is_none());
        assert!(body.get("payout_details").is_none());
        assert_eq!(
            body["payment_method"]["card"]["bank_card"]["number"],
            "4242424242424242"
        );
    }

    #[test]
    fn validation() {
        let pan = Pan::parse("4242424242424242").unwrap();
        let mut r = request(&pan);
        assert!(r.validate().is_ok());
        r.amount.amount = 0;
        assert!(r.validate().is_err());
        r.amount.amount = 1;
        r.participant_details.recipient = None;
        assert!(r.validate().is_err());
        assert!(!format!("{r:?}").contains("4242424242424242"));
    }

    #[test]
    fn wallet_time_is_date_atom() {
        let t = WalletBalanceBody::now().request_datetime;
        assert!(t.ends_with("+00:00") && t.len() == 25, "{t}");
    }
}
