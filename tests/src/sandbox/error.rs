//! Errors the emulated bank answers with, and the business errors a payout can end in.
//!
//! Descriptions are fixed strings: nothing a client sent is ever echoed back in an error.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

/// A `{"status":"error","error":{...}}` answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: &'static str,
    pub(crate) description: &'static str,
}

impl ApiError {
    pub(crate) const fn new(code: &'static str, description: &'static str) -> Self {
        Self { code, description }
    }

    pub(crate) const fn invalid(description: &'static str) -> Self {
        Self::new("invalid_request", description)
    }

    pub(crate) const fn wrong_state() -> Self {
        Self::new(
            "session_wrong_state",
            "Cannot perform a transaction in this status",
        )
    }

    pub(crate) const fn unknown_session() -> Self {
        Self::invalid("session not found")
    }

    pub(crate) const fn internal() -> Self {
        Self::new(
            "internal_error",
            "internal error, retry the operation later",
        )
    }

    /// The HTTP status: the defaults (our choice) of SANDBOX.md, unless the config overrides the code.
    pub(crate) fn status(&self, overrides: &BTreeMap<String, u16>) -> StatusCode {
        if let Some(s) = overrides
            .get(self.code)
            .and_then(|s| StatusCode::from_u16(*s).ok())
        {
            return s;
        }
        match self.code {
            "authentication_error" | "identification_error" | "authorization_error" => {
                StatusCode::UNAUTHORIZED
            }
            "internal_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "not_found" => StatusCode::NOT_FOUND,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn envelope(&self) -> Value {
        json!({"status": "error", "error": self.body()})
    }

    pub(crate) fn body(&self) -> Value {
        json!({"code": self.code, "description": self.description})
    }
}

/// A payout's error is kept in the state directory by its code alone: the codes a payout can
/// end with are the declines' and `internal_error`, and each maps back to its fixed text.
impl Serialize for ApiError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for ApiError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Decline::ALL
            .iter()
            .map(|d| d.error())
            .chain([Self::internal()])
            .find(|e| e.code == code)
            .ok_or_else(|| serde::de::Error::custom("an error code no payout ends with"))
    }
}

/// Why a payout failed or a session ended unsuccessfully (the payout's `error` object).
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) enum Decline {
    CardNumber,
    IssuerDeclined,
    CardExpired,
    AmountTooSmall,
    AmountLimit,
    InsufficientWallet,
    CancelledByPartner,
    ConfirmTimeout,
}

impl Decline {
    const ALL: [Self; 8] = [
        Self::CardNumber,
        Self::IssuerDeclined,
        Self::CardExpired,
        Self::AmountTooSmall,
        Self::AmountLimit,
        Self::InsufficientWallet,
        Self::CancelledByPartner,
        Self::ConfirmTimeout,
    ];

    pub(crate) fn error(self) -> ApiError {
        match self {
            Self::CardNumber => ApiError::new("card_number_does_not_exist", "Invalid card number"),
            Self::IssuerDeclined => {
                ApiError::new("declined_by_issuer_bank", "Declined by the issuer bank")
            }
            Self::CardExpired => ApiError::new("bank_card_expired", "The card has expired"),
            Self::AmountTooSmall => ApiError::new(
                "amount_less_allowed_provider",
                "The amount is less than the minimum allowed",
            ),
            Self::AmountLimit => ApiError::new(
                "provider_exceeds_amount_limit",
                "The amount exceeds the provider's limit",
            ),
            Self::InsufficientWallet => ApiError::new(
                "insufficient_wallet_balance",
                "Insufficient funds on the partner's wallet",
            ),
            Self::CancelledByPartner => {
                ApiError::new("session_cancelled_by_partner", "Cancelled by the partner")
            }
            Self::ConfirmTimeout => ApiError::new(
                "confirm_timeout",
                "The transaction was cancelled: no confirmation in time",
            ),
        }
    }
}
