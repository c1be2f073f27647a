//! The bank's webhooks: the signature is checked on the raw bytes, then the JSON is parsed
//! (API.md §2.2, §8).

use serde::Deserialize;
use serde_json::Value;

use super::models::{Session, WebhookType};
use super::signing::SignatureVerifier;

/// A verified webhook.
#[derive(Clone, Debug, PartialEq)]
pub enum Webhook {
    /// The bank is ready and waits for `session/confirm` or `session/cancel`.
    ReadyToConfirm {
        /// The session (payout `pending`, `next_action: confirm`).
        session: Session,
        /// Only for escrow-account flows.
        confirm_information: Option<Value>,
    },
    /// Final statuses inside.
    PaymentFinished {
        /// The session.
        session: Session,
    },
    /// A payout was returned.
    PaymentRefunded {
        /// The session.
        session: Session,
    },
    /// The user must act (acquiring); not expected for card payouts.
    ActionRequired {
        /// The session.
        session: Session,
    },
    /// A type this client does not know (the bank adds types; do not fail on them).
    Unknown {
        /// The `type` value.
        kind: String,
        /// The session, if the payload had one that parsed.
        session: Option<Session>,
    },
}

impl Webhook {
    /// The session the webhook is about.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Self::ReadyToConfirm { session, .. }
            | Self::PaymentFinished { session }
            | Self::PaymentRefunded { session }
            | Self::ActionRequired { session } => Some(session),
            Self::Unknown { session, .. } => session.as_ref(),
        }
    }
}

/// Why a webhook was refused. Nothing of the payload is in it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// No `X-PARTNER-SIGN` header.
    #[error("missing X-PARTNER-SIGN header")]
    MissingSignature,
    /// The signature does not match these bytes under the bank's key.
    #[error("invalid webhook signature")]
    BadSignature,
    /// Signed, but not a webhook this client can read.
    #[error("malformed webhook payload")]
    Malformed,
}

#[derive(Deserialize)]
struct RawWebhook {
    #[serde(rename = "type")]
    kind: WebhookType,
    #[serde(default)]
    session: Option<Value>,
    #[serde(default)]
    confirm_information: Option<Value>,
}

/// Checks `signature_header` over exactly `raw_body` with the bank's public key, and only then
/// parses.
///
/// # Errors
///
/// [`WebhookError`]; a forged, missing or mismatched signature is refused before any parsing.
pub fn verify_and_parse(
    verifier: &SignatureVerifier,
    raw_body: &[u8],
    signature_header: Option<&str>,
) -> Result<Webhook, WebhookError> {
    let signature = signature_header.ok_or(WebhookError::MissingSignature)?;
    if !verifier.verify(raw_body, signature) {
        return Err(WebhookError::BadSignature);
    }
    let raw: RawWebhook = serde_json::from_slice(raw_body).map_err(|_| WebhookError::Malformed)?;
    let session = || -> Result<Session, WebhookError> {
        raw.session
            .clone()
            .and_then(|s| serde_json::from_value(s).ok())
            .ok_or(WebhookError::Malformed)
    };
    Ok(match raw.kind {
        WebhookType::ReadyToConfirm => Webhook::ReadyToConfirm {
            session: session()?,
            confirm_information: raw.confirm_information.clone(),
        },
        WebhookType::PaymentFinished => Webhook::PaymentFinished {
            session: session()?,
        },
        WebhookType::PaymentRefunded => Webhook::PaymentRefunded {
            session: session()?,
        },
        WebhookType::ActionRequired => Webhook::ActionRequired {
            session: session()?,
        },
        other => Webhook::Unknown {
            kind: other.as_str().to_owned(),
            session: session().ok(),
        },
    })
}
