//! What the bank sends back: sessions, payouts, amounts, errors (API.md §4).
//!
//! Every model ignores unknown fields (the bank adds fields without notice, SG10), accepts both
//! the v1 and v2 spellings (`payments`/`payout_list`, `payment_method`/`payout_details`), also
//! both in one object, and keeps status, type and next-action values in enums with an `Unknown`
//! catch-all. Types are read as loosely as the bank's SDK reads them ([`lenient`]): an optional
//! field that does not fit is dropped, not fatal. Card data is
//! modelled masked only (brand, last4, BIN, card id): a full number the bank should never send
//! would have no field to land in.
//!
//! Long because it is the bank's whole vocabulary (sessions, payouts, amounts, errors, webhooks
//! in both spellings) in one place; issue 13 trims it to what the proxy reads.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::bank131::lenient;

/// Declares a string enum whose unknown values are kept, not rejected.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Eq, Hash, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value this client does not know.
            Unknown(String),
        }

        impl $name {
            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // `null` or a number is an unknown value, not an unreadable session.
                let s = crate::bank131::lenient::string(d)?;
                Ok(Self::from(s.as_str()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A session's status (API.md §4.2).
    SessionStatus {
        /// Waiting to be started or cancelled.
        Created = "created",
        /// Processing.
        InProgress = "in_progress",
        /// Completed successfully.
        Accepted = "accepted",
        /// Cancelled.
        Cancelled = "cancelled",
        /// Unexpected error, result unknown: **not final**.
        Error = "error",
    }
);

string_enum!(
    /// A payout's status (API.md §4.3).
    PayoutStatus {
        /// Being processed.
        InProgress = "in_progress",
        /// Waiting for `session/confirm` or `session/cancel`.
        Pending = "pending",
        /// Done.
        Succeeded = "succeeded",
        /// Did not go through.
        Failed = "failed",
    }
);

string_enum!(
    /// What the bank waits for (API.md §4.2).
    NextAction {
        /// Call `session/confirm` or `session/cancel`.
        Confirm = "confirm",
        /// Call `session/capture` or `session/cancel` (acquiring).
        Capture = "capture",
    }
);

string_enum!(
    /// A refund's status (API.md §4.3).
    RefundStatus {
        /// Done.
        Accepted = "accepted",
        /// Processing.
        InProgress = "in_progress",
        /// Refused.
        Declined = "declined",
        /// Unexpected error.
        Error = "error",
    }
);

string_enum!(
    /// A webhook's `type` (API.md §8.1).
    WebhookType {
        /// The bank waits for confirm or cancel.
        ReadyToConfirm = "ready_to_confirm",
        /// Final statuses inside.
        PaymentFinished = "payment_finished",
        /// A payout or payment was returned.
        PaymentRefunded = "payment_refunded",
        /// The user must act (acquiring 3DS).
        ActionRequired = "action_required",
        /// Hold/capture flow (acquiring).
        ReadyToCapture = "ready_to_capture",
    }
);

/// `{"amount": <minor units>, "currency": "rub"}`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Amount {
    /// Minor units (kopecks): 100 rubles is 10000. Must be positive. Read from an integer, an
    /// integral float or a numeric string (the SDK coerces types), never rounded.
    #[serde(deserialize_with = "lenient::minor_units")]
    pub amount: i64,
    /// ISO 4217, case-insensitive (`rub`, `RUB`).
    #[serde(deserialize_with = "lenient::string")]
    pub currency: String,
}

impl Amount {
    /// True when both amounts are the same money: equal minor units, currency compared
    /// case-insensitively.
    pub fn same_money(&self, other: &Self) -> bool {
        self.amount == other.amount && self.currency.eq_ignore_ascii_case(&other.currency)
    }
}

/// The bank's error object (API.md §4.1). Key logic on `code` only.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct BankErrorBody {
    /// Stable code, e.g. `session_wrong_state` (empty when the bank sent `null`).
    #[serde(default, deserialize_with = "lenient::string")]
    pub code: String,
    /// Human text; may vary for one code.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub description: Option<String>,
    /// Anti-fraud rejection details.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub reject_reasons: Option<Vec<Value>>,
}

/// A session (API.md §4.2).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Session {
    /// `ps_…` (opaque).
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: SessionStatus,
    /// RFC 3339.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub updated_at: Option<String>,
    /// RFC 3339, when final.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub finished_at: Option<String>,
    /// Payouts, v2 spelling.
    #[serde(default, deserialize_with = "lenient::list")]
    pub payout_list: Option<Vec<Payout>>,
    /// Payouts, v1 spelling. An object may carry both (the SDK keeps both and reads
    /// `payout_list ?? payments`): see [`Session::payouts`].
    #[serde(default, deserialize_with = "lenient::list")]
    pub payments: Option<Vec<Payout>>,
    /// Acquiring payments, v2 spelling; not modelled.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub payment_list: Option<Vec<Value>>,
    /// Acquiring payments, v1 spelling; not modelled.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub acquiring_payments: Option<Vec<Value>>,
    /// What the bank waits for.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub next_action: Option<NextAction>,
    /// Set when the session failed.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub error: Option<BankErrorBody>,
}

impl Session {
    /// The payouts, whichever spelling carried them (`payout_list` first, as the SDK reads).
    pub fn payouts(&self) -> &[Payout] {
        self.payout_list
            .as_deref()
            .or(self.payments.as_deref())
            .unwrap_or_default()
    }
}

/// A payout (API.md §4.3).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Payout {
    /// `po_…` (opaque).
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: PayoutStatus,
    /// RFC 3339.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub created_at: Option<String>,
    /// RFC 3339, when final.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub finished_at: Option<String>,
    /// Echo of the customer.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub customer: Option<Customer>,
    /// Masked destination, v2 spelling.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub payout_details: Option<MaskedDestination>,
    /// Masked destination, v1 spelling; see [`Payout::destination`].
    #[serde(default, deserialize_with = "lenient::optional")]
    pub payment_method: Option<MaskedDestination>,
    /// The amount.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amount_details: Option<Amount>,
    /// Fee information, when enabled.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amounts: Option<Value>,
    /// Echo of the participants.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub participant_details: Option<ParticipantDetails>,
    /// Self-employed receipts; not modelled.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub fiscalization_details: Option<Value>,
    /// Network references.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub transaction_info: Option<TransactionInfo>,
    /// Returns of this payout.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub refunds: Option<Vec<Refund>>,
    /// Echo of the metadata.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub metadata: Option<Value>,
    /// Set when failed.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub error: Option<BankErrorBody>,
}

impl Payout {
    /// The masked destination, whichever spelling carried it (`payout_details` first).
    pub fn destination(&self) -> Option<&MaskedDestination> {
        self.payout_details
            .as_ref()
            .or(self.payment_method.as_ref())
    }

    /// The `payout_id` we put in the payout's metadata, if the bank echoed it.
    pub fn our_payout_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.get("payout_id")?.as_str()
    }
}

/// A destination as the bank echoes it: masked.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct MaskedDestination {
    /// `card`, `bank_account`, …
    #[serde(rename = "type", default, deserialize_with = "lenient::string")]
    pub kind: String,
    /// For cards.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub card: Option<MaskedCard>,
}

/// A card as the bank echoes it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct MaskedCard {
    /// `visa`, `mir`, …
    #[serde(default, deserialize_with = "lenient::optional")]
    pub brand: Option<String>,
    /// Last four digits.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub last4: Option<String>,
    /// First six digits.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub bin: Option<String>,
    /// Per-project card fingerprint.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub card_id: Option<String>,
    /// Issuing country.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub country_iso3: Option<String>,
}

/// Network references of a payout.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[allow(missing_docs, reason = "field names are the bank's")]
pub struct TransactionInfo {
    #[serde(default, deserialize_with = "lenient::optional")]
    pub rrn: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub arn: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub auth_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub fp_message_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub external_subscription_token: Option<String>,
    #[serde(default, deserialize_with = "lenient::optional")]
    pub bank_account_ru_token: Option<String>,
}

/// A return of a payout.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Refund {
    /// `rf_…`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: RefundStatus,
    /// RFC 3339.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub finished_at: Option<String>,
    /// The amount returned.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amount_details: Option<Amount>,
    /// Echo.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub metadata: Option<Value>,
    /// Chargeback flag.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub is_chargeback: Option<bool>,
    /// Fees.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amounts: Option<Value>,
    /// References.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub transaction_info: Option<TransactionInfo>,
}

/// `{"reference", "contacts"?}` (API.md §4.7).
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct Customer {
    /// Your id for the user (empty when the bank echoes `null`).
    #[serde(default, deserialize_with = "lenient::string")]
    pub reference: String,
    /// Contacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<CustomerContact>>,
}

/// A customer contact.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct CustomerContact {
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// `{"sender"?, "recipient"?}` (API.md §4.6).
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct ParticipantDetails {
    /// The sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Participant>,
    /// The recipient: for Russian cards `full_name` is mandatory (passport name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Participant>,
}

/// A participant: every field the bank lists, all optional (API.md §4.6).
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[allow(missing_docs, reason = "field names are the bank's (API.md §4.6)")]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_incorporation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift_bic_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_document: Option<IdentityDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beneficiary_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citizenship_country_iso_3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
}

impl Participant {
    /// A recipient known by full name, as Russian card payouts require.
    pub fn full_name(name: impl Into<String>) -> Self {
        Self {
            full_name: Some(name.into()),
            ..Self::default()
        }
    }
}

/// An identity document; dates as `Y-m-d`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[allow(missing_docs, reason = "field names are the bank's (API.md §4.6)")]
pub struct IdentityDocument {
    pub id_type: String,
    pub id_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_expiration_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<String>,
}

/// A wallet in `wallet/balance` (API.md §3.7).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct Wallet {
    /// Wallet id.
    pub id: String,
    /// Balance, minor units.
    pub amount_details: Amount,
}

/// The response envelope: `status`, then whichever payload the call returns.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<BankErrorBody>,
    #[serde(default)]
    pub(crate) session: Option<Session>,
    #[serde(default)]
    pub(crate) wallets: Option<Vec<Wallet>>,
}
