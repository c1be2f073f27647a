//! `/v1/payout_links`: a payout to a card the app does not have. Input checked and decoded here
//! by the payout create's rules (`amount`, `currency`, `recipient`, `metadata`, the
//! `Idempotency-Key`), plus `expires_in`; the operation done by `service::Proxy`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use shared::secret::ExposeSecret;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::payouts::{
    Recipient, check_metadata, check_money, check_recipient, decode_with_rules, idempotency_key,
};
use crate::ids::PayoutLinkId;
use crate::link::{DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN, MIN_EXPIRES_IN};
use crate::links::NewLink;
use crate::service::{Created, Operation, ShownLink};
use crate::view::LinkView;

/// `POST /v1/payout_links` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    amount: i64,
    currency: String,
    #[serde(default)]
    recipient: Option<Recipient>,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
    #[serde(default)]
    metadata: Option<Value>,
}

fn default_expires_in() -> u64 {
    DEFAULT_EXPIRES_IN
}

const EXPIRES_IN_RULE: &str =
    "expires_in must be a whole number of seconds from 1 to 604800 (7 days); the default is 86400";

/// The create body's fields and the rule each must meet, for decode errors.
const CREATE_FIELDS: &[(&str, &str)] = &[
    ("amount", "amount must be a positive integer in minor units"),
    (
        "currency",
        "currency must be an ISO 4217 currency code, as a string, such as RUB",
    ),
    (
        "recipient",
        "recipient must be an object with full_name, or left out (the cardholder then enters the name)",
    ),
    (
        "recipient.full_name",
        "recipient.full_name must be the recipient's full name, as a string",
    ),
    ("expires_in", EXPIRES_IN_RULE),
    (
        "metadata",
        "metadata must be a JSON value of at most 4096 bytes",
    ),
];

impl CreateLink {
    fn validate(&self) -> Result<(), ApiError> {
        check_money(self.amount, &self.currency)?;
        if let Some(recipient) = &self.recipient {
            check_recipient(recipient)?;
        }
        if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&self.expires_in) {
            return Err(ApiError::InvalidParam("expires_in", EXPIRES_IN_RULE));
        }
        check_metadata(self.metadata.as_ref())
    }
}

/// A link as answered: its view, the URL only when the caller may see it.
fn answer(status: StatusCode, shown: &ShownLink, replayed: bool) -> Response {
    let url = shown.url.as_ref().map(|u| u.expose_secret());
    let body = Json(LinkView::new(&shown.link, url));
    if replayed {
        (status, [("idempotent-replayed", "true")], body).into_response()
    } else {
        (status, body).into_response()
    }
}

/// `POST /v1/payout_links`.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::WritePayouts)?;
    let key = idempotency_key(&headers)?;
    let req: CreateLink = decode_with_rules(&headers, &body, CREATE_FIELDS)?;
    req.validate()?;
    let new = NewLink {
        amount: req.amount,
        currency: req.currency,
        recipient_name: req.recipient.map(|r| r.full_name.trim().to_owned()),
        metadata: req.metadata,
        expires_in: req.expires_in,
    };
    Ok(
        match state.proxy.create_payout_link(&caller.0, key, new).await? {
            Created::New(shown) => answer(StatusCode::CREATED, &shown, false),
            Created::Replayed(shown) => answer(StatusCode::OK, &shown, true),
        },
    )
}

/// `GET /v1/payout_links/{id}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::ReadPayouts)?;
    let id = shared::http::path_param(&params, "id")
        .and_then(PayoutLinkId::parse)
        .ok_or(ApiError::LinkNotFound)?;
    let shown = state.proxy.payout_link(&caller.0, &id).await?;
    Ok(answer(StatusCode::OK, &shown, false))
}
