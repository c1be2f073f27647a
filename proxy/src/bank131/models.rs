//! What the bank sends back: sessions, payouts, amounts, errors (API.md §4).
//!
//! Every model ignores unknown fields (the bank adds fields without notice, SG10), accepts both
//! the v1 and v2 spellings (`payments`/`payout_list`, `payment_method`/`payout_details`), also
//! both in one object, and keeps status, type and next-action values in enums with an `Unknown`
//! catch-all. Types are read as loosely as the bank's SDK reads them ([`lenient`]): an optional
//! field that does not fit is dropped, not fatal. Card data is
//! modelled masked only (brand, last4): a full number the bank should never send would have no
//! field to land in.
//!
//! Only what the proxy reads is modelled; everything else the bank sends is ignored by serde,
//! and the two fields it reports without deciding on stay as the bank's JSON.

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
}

/// A session (API.md §4.2): what the proxy decides on. Timestamps and acquiring payments are
/// not read, so not modelled.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Session {
    /// `ps_…` (opaque).
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: SessionStatus,
    /// Payouts, v2 spelling.
    #[serde(default, deserialize_with = "lenient::list")]
    pub payout_list: Option<Vec<Payout>>,
    /// Payouts, v1 spelling. An object may carry both (the SDK keeps both and reads
    /// `payout_list ?? payments`): see [`Session::payouts`].
    #[serde(default, deserialize_with = "lenient::list")]
    pub payments: Option<Vec<Payout>>,
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

/// A payout (API.md §4.3): the fields the proxy matches and decides on, typed; two it reports
/// but never decides on, as the bank sent them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Payout {
    /// `po_…` (opaque).
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: PayoutStatus,
    /// Masked destination, v2 spelling.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub payout_details: Option<MaskedDestination>,
    /// Masked destination, v1 spelling; see [`Payout::destination`].
    #[serde(default, deserialize_with = "lenient::optional")]
    pub payment_method: Option<MaskedDestination>,
    /// The amount, matched against ours before an automatic confirm.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amount_details: Option<Amount>,
    /// Returns of this payout: accepted ones covering the amount make it `returned`.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub refunds: Option<Vec<Refund>>,
    /// Echo of our metadata, which names our payout id.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub metadata: Option<Value>,
    /// Set when failed.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub error: Option<BankErrorBody>,
    /// RFC 3339, when final. Reported, not decided on.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub finished_at: Option<String>,
    /// Network references (`rrn`, `auth_code`, …), kept as the bank's JSON. Reported, not
    /// decided on.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub transaction_info: Option<Value>,
}

impl Payout {
    /// The masked destination, whichever spelling carried it (`payout_details` first).
    pub fn destination(&self) -> Option<&MaskedDestination> {
        self.payout_details
            .as_ref()
            .or(self.payment_method.as_ref())
    }

    /// The masked card, if the bank echoed one.
    pub fn card(&self) -> Option<&MaskedCard> {
        self.destination()?.card.as_ref()
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

/// A card as the bank echoes it: what the proxy matches (last4) and reports (brand). BIN and
/// card id are not read, so have no field.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct MaskedCard {
    /// `visa`, `mir`, …
    #[serde(default, deserialize_with = "lenient::optional")]
    pub brand: Option<String>,
    /// Last four digits.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub last4: Option<String>,
}

/// A return of a payout: its state and how much it returned.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Refund {
    /// `rf_…`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// Status.
    pub status: RefundStatus,
    /// The amount returned.
    #[serde(default, deserialize_with = "lenient::optional")]
    pub amount_details: Option<Amount>,
}

/// `{"reference"}` (API.md §4.7), as the proxy may send it.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Customer {
    /// Your id for the user.
    pub reference: String,
}

/// `{"sender"?, "recipient"?}` (API.md §4.6).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct ParticipantDetails {
    /// The sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Participant>,
    /// The recipient: for Russian cards `full_name` is mandatory (passport name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Participant>,
}

/// A participant, as the proxy sends one: by full name (API.md §4.6 lists many more fields;
/// the proxy sets none of them).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Participant {
    /// The passport name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
}

impl Participant {
    /// A recipient known by full name, as Russian card payouts require.
    pub fn full_name(name: impl Into<String>) -> Self {
        Self {
            full_name: Some(name.into()),
        }
    }
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
