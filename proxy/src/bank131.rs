//! The Bank 131 client: signed requests, typed answers and errors, verified webhooks.
//!
//! The contract is `bank131/API.md` of the design documents. In short: every request body is
//! signed as sent (RSA PKCS#1 v1.5, SHA-256, base64 in `X-PARTNER-SIGN`); answers come in an
//! envelope whose errors carry a `code`; webhooks are signed by the bank the same way and are
//! verified on the raw bytes before they are parsed. The card number exists here only as a
//! [`shared::Pan`] inside [`PayoutRequest`], and only the request body bytes ever spell it out.

mod client;
mod config;
mod error;
mod lenient;
mod models;
mod request;
mod signing;
mod webhook;

pub use client::{Bank131Client, ClientBuildError};
pub use config::{ApiVersion, Bank131Config};
pub use error::{Bank131Error, Call, ErrorClass};
pub use models::{
    Amount, BankErrorBody, Customer, MaskedCard, MaskedDestination, NextAction, Participant,
    ParticipantDetails, Payout, PayoutStatus, Refund, RefundStatus, Session, SessionStatus, Wallet,
    WebhookType,
};
pub use request::{CreateSession, PayoutRequest};
pub use signing::{RequestSigner, SignatureVerifier, SigningError};
pub use webhook::{Webhook, WebhookError, verify_and_parse};
