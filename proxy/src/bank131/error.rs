//! Client errors, and what a caller may do about each (API.md §7).

use std::fmt;

use super::signing::SigningError;

/// The bank call that failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Call {
    /// `session/create`.
    CreateSession,
    /// `session/init/payout`.
    InitPayout,
    /// `session/start/payout`.
    StartPayout,
    /// `session/confirm`.
    Confirm,
    /// `session/cancel`.
    Cancel,
    /// `session/status`.
    Status,
    /// `wallet/balance`.
    WalletBalance,
}

impl Call {
    /// The method path after `/api/vN/`.
    pub fn method(self) -> &'static str {
        match self {
            Self::CreateSession => "session/create",
            Self::InitPayout => "session/init/payout",
            Self::StartPayout => "session/start/payout",
            Self::Confirm => "session/confirm",
            Self::Cancel => "session/cancel",
            Self::Status => "session/status",
            Self::WalletBalance => "wallet/balance",
        }
    }

    /// Whether the call changes state at the bank: if its outcome is unknown, the caller must
    /// reconcile (read `session/status`) instead of sending it again.
    pub fn changes_state(self) -> bool {
        !matches!(self, Self::Status | Self::WalletBalance)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

/// What a caller may do after an error.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ErrorClass {
    /// Nothing happened at the bank, or the call only reads: the same request may be sent again
    /// (later).
    Retryable,
    /// The bank may or may not have acted. Never send a state-changing call again blindly: read
    /// `session/status` and continue from what it says.
    OutcomeUnknown,
    /// The bank refused; sending the same request again will not help.
    Permanent,
}

/// A failed bank call. No variant carries request data, and bank descriptions have long digit
/// runs redacted, so no card number can reach a log through this type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Bank131Error {
    /// The connection could not be made: the request was not sent.
    #[error("Bank 131 {call}: could not connect")]
    Connect {
        /// The call.
        call: Call,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// No answer in time: the request may have arrived.
    #[error("Bank 131 {call}: timed out")]
    Timeout {
        /// The call.
        call: Call,
    },
    /// The connection failed after the request may have been sent.
    #[error("Bank 131 {call}: transport error")]
    Transport {
        /// The call.
        call: Call,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A non-2xx answer without the bank's error envelope.
    #[error("Bank 131 {call}: HTTP {status} without an error body")]
    Http {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
    },
    /// A redirect (3xx). Never followed: the body carries the card number, and goes only to the
    /// configured base URL. Permanent for the call.
    #[error("Bank 131 {call}: answered with a redirect (HTTP {status}), not followed")]
    Redirect {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
    },
    /// The bank's error envelope, from a non-2xx answer or a 2xx with `"status":"error"`.
    #[error("Bank 131 {call}: {code} (HTTP {status}): {description}")]
    Bank {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
        /// `error.code`, or `api_exception` when the envelope had none (as the SDK does).
        code: String,
        /// `error.description`, with any run of 13+ digits redacted.
        description: String,
    },
    /// A 2xx answer that is not the expected envelope.
    #[error("Bank 131 {call}: unexpected response: {reason}")]
    BadResponse {
        /// The call.
        call: Call,
        /// What was wrong.
        reason: &'static str,
    },
    /// The request was refused before sending (client-side validation).
    #[error("Bank 131 {call}: invalid request: {reason}")]
    InvalidRequest {
        /// The call.
        call: Call,
        /// What was wrong.
        reason: &'static str,
    },
    /// Signing failed.
    #[error("Bank 131 request signing failed")]
    Signing(#[from] SigningError),
}

/// Codes the docs say to retry later ("retry the operation later").
const RETRY_LATER: &[&str] = &[
    "internal_error",
    "provider_internal_error",
    "provider_issuer_unavailable",
    "routing_internal_error",
    "wallet_internal_error",
];

/// Codes after which the state at the bank must be read before anything else.
const READ_STATE: &[&str] = &["session_wrong_state", "idempotency_key_already_exists"];

impl Bank131Error {
    /// The call that failed, when one was attempted.
    pub fn call(&self) -> Option<Call> {
        match self {
            Self::Connect { call, .. }
            | Self::Timeout { call }
            | Self::Transport { call, .. }
            | Self::Http { call, .. }
            | Self::Redirect { call, .. }
            | Self::Bank { call, .. }
            | Self::BadResponse { call, .. }
            | Self::InvalidRequest { call, .. } => Some(*call),
            Self::Signing(_) => None,
        }
    }

    /// The bank's error code, if the bank answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Bank { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What the caller may do (API.md §7.2 and its golden rule: never blindly resend a payout).
    pub fn class(&self) -> ErrorClass {
        let changes_state = self.call().is_some_and(Call::changes_state);
        let unknown_unless_read_only = if changes_state {
            ErrorClass::OutcomeUnknown
        } else {
            ErrorClass::Retryable
        };
        match self {
            Self::Connect { .. } => ErrorClass::Retryable,
            Self::Timeout { .. } | Self::Transport { .. } | Self::BadResponse { .. } => {
                unknown_unless_read_only
            }
            Self::Http { status, .. } if *status >= 500 || *status == 429 => {
                unknown_unless_read_only
            }
            Self::Http { .. }
            | Self::Redirect { .. }
            | Self::InvalidRequest { .. }
            | Self::Signing(_) => ErrorClass::Permanent,
            Self::Bank { code, .. } if READ_STATE.contains(&code.as_str()) => {
                ErrorClass::OutcomeUnknown
            }
            Self::Bank { code, .. } if RETRY_LATER.contains(&code.as_str()) => {
                unknown_unless_read_only
            }
            // A server error says nothing of what was done, whatever code it carries: the bank
            // may have taken the call.
            Self::Bank { status, .. } if *status >= 500 => unknown_unless_read_only,
            Self::Bank { .. } => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(call: Call, status: u16, code: &str) -> Bank131Error {
        Bank131Error::Bank {
            call,
            status,
            code: code.to_owned(),
            description: String::new(),
        }
    }

    #[test]
    fn classification() {
        use Call::*;
        use ErrorClass::*;
        let transport = [
            (Bank131Error::Timeout { call: StartPayout }, OutcomeUnknown),
            (Bank131Error::Timeout { call: Status }, Retryable),
            (
                Bank131Error::Http {
                    call: Confirm,
                    status: 502,
                },
                OutcomeUnknown,
            ),
            (
                Bank131Error::Http {
                    call: Status,
                    status: 503,
                },
                Retryable,
            ),
            (
                Bank131Error::Http {
                    call: Confirm,
                    status: 404,
                },
                Permanent,
            ),
            // A redirect is permanent: the call was not made where it should go.
            (
                Bank131Error::Redirect {
                    call: StartPayout,
                    status: 307,
                },
                Permanent,
            ),
        ];
        // The bank answered, with a status and a code.
        let answered = [
            (StartPayout, 500, "internal_error", OutcomeUnknown),
            (Status, 500, "internal_error", Retryable),
            (Confirm, 400, "session_wrong_state", OutcomeUnknown),
            (
                InitPayout,
                400,
                "idempotency_key_already_exists",
                OutcomeUnknown,
            ),
            (StartPayout, 400, "invalid_request", Permanent),
            (StartPayout, 401, "authentication_error", Permanent),
            (StartPayout, 400, "insufficient_wallet_balance", Permanent),
            (StartPayout, 400, "declined_by_issuer_bank", Permanent),
            // Any 5xx on a state-changing call is unknown, whatever its code.
            (StartPayout, 503, "some_new_code", OutcomeUnknown),
            (Confirm, 500, "invalid_request", OutcomeUnknown),
            (Status, 502, "whatever", Retryable),
        ]
        .map(|(call, status, code, class)| (bank(call, status, code), class));
        for (error, class) in transport.into_iter().chain(answered) {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }
}
