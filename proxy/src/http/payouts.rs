//! `/v1/payouts`: the app API's payout routes: input checked and decoded here, the operation
//! done by `service::Proxy`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawPathParams, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use shared::json::{DecodeError, FieldPath, card_number_path};

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::params::{self, ListRequest};
use crate::ids::PayoutId;
use crate::payout::{ConfirmMode, PayoutState};
use crate::service::{AppDecision, Created, NewPayout, Operation};
use crate::view::PayoutView;

/// `POST /v1/payouts` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePayout {
    card_token: String,
    amount: i64,
    currency: String,
    recipient: Recipient,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default = "default_confirm")]
    confirm: ConfirmMode,
}

/// `recipient`, in a payout or a payout link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Recipient {
    pub(super) full_name: String,
}

fn default_confirm() -> ConfirmMode {
    ConfirmMode::Auto
}

/// Longest accepted metadata, serialized.
const MAX_METADATA_BYTES: usize = 4096;

impl CreatePayout {
    /// Fixed-message validation. Anything that will be stored, sent to the bank or to the app
    /// must not carry a card number: a card candidate (a whole 13–19 digit run, Luhn-valid, in an
    /// issued range, in any spelling `shared::scan` knows) is refused with the path of the field
    /// that held it; order ids, timestamps and account numbers pass.
    fn validate(&self) -> Result<(), ApiError> {
        if !shared::ids::is_id("tok_", &self.card_token) {
            return Err(ApiError::InvalidParam(
                "card_token",
                "card_token must be a vault token (tok_ and 22 letters or digits)",
            ));
        }
        check_money(self.amount, &self.currency)?;
        check_recipient(&self.recipient)?;
        check_metadata(self.metadata.as_ref())
    }
}

/// `amount` a positive integer, `currency` an ISO 4217 code (any case).
pub(super) fn check_money(amount: i64, currency: &str) -> Result<(), ApiError> {
    if amount <= 0 {
        return Err(ApiError::InvalidParam(
            "amount",
            "amount must be a positive integer in minor units",
        ));
    }
    if iso_currency::Currency::from_code(&currency.to_ascii_uppercase()).is_none() {
        return Err(ApiError::InvalidParam(
            "currency",
            "currency must be an ISO 4217 currency code, such as RUB",
        ));
    }
    Ok(())
}

/// `recipient.full_name`: 1-256 printable characters once trimmed, no card number.
pub(super) fn check_recipient(recipient: &Recipient) -> Result<(), ApiError> {
    let name = recipient.full_name.trim();
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidParam(
            "recipient.full_name",
            "recipient.full_name must be 1-256 printable characters",
        ));
    }
    let name_path = FieldPath::root("recipient").child("full_name");
    if let Some(path) = card_number_path(&Value::from(name), &name_path) {
        return Err(ApiError::SensitiveField(path));
    }
    Ok(())
}

/// `metadata`: at most 4 KiB of JSON, no card number anywhere in it.
pub(super) fn check_metadata(metadata: Option<&Value>) -> Result<(), ApiError> {
    if let Some(m) = metadata {
        let text = m.to_string();
        if text.len() > MAX_METADATA_BYTES {
            return Err(ApiError::InvalidParam(
                "metadata",
                "metadata must be at most 4096 bytes of JSON",
            ));
        }
        if let Some(path) = card_number_path(m, &FieldPath::root("metadata")) {
            return Err(ApiError::SensitiveField(path));
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    decode_with_rules(headers, body, CREATE_FIELDS)
}

/// Decodes a create body of type `T`; a field that fails is named, with its rule from `fields`
/// (the body's own fields and the rule each must meet) when it is one of them.
pub(super) fn decode_with_rules<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    fields: &'static [(&'static str, &'static str)],
) -> Result<T, ApiError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !shared::json::is_json_content_type(content_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    shared::json::decode_at(body).map_err(|(e, path)| {
        // The create body's own fields get their rule; any other path is named as it is (a
        // `FieldPath` holds names only, never values).
        let rule = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, rule)| *rule)
        };
        match (e, path) {
            (DecodeError::Malformed, _) => ApiError::MalformedJson,
            (DecodeError::SensitiveData, Some(path)) => ApiError::SensitiveField(path),
            (DecodeError::SensitiveData, None) => ApiError::SensitiveData,
            (DecodeError::UnknownField, Some(path)) => ApiError::InvalidField(
                path,
                "the request body has a field this route does not accept (named in error.param)",
            ),
            (DecodeError::MissingField, Some(path)) => {
                let message = rule(path.as_str()).unwrap_or("a required field is missing");
                ApiError::InvalidField(path, message)
            }
            (DecodeError::Invalid, Some(path)) => {
                let message = rule(path.as_str())
                    .unwrap_or("a field of the request body has the wrong type or value");
                ApiError::InvalidField(path, message)
            }
            (e, _) => ApiError::InvalidRequest(e.whole_body_rule()),
        }
    })
}

/// The create body's fields and the rule each must meet, for decode errors.
const CREATE_FIELDS: &[(&str, &str)] = &[
    (
        "card_token",
        "card_token must be a vault token (tok_ and 22 letters or digits), as a string",
    ),
    ("amount", "amount must be a positive integer in minor units"),
    (
        "currency",
        "currency must be an ISO 4217 currency code, as a string, such as RUB",
    ),
    ("recipient", "recipient must be an object with full_name"),
    (
        "recipient.full_name",
        "recipient.full_name must be the recipient's full name, as a string",
    ),
    (
        "metadata",
        "metadata must be a JSON value of at most 4096 bytes",
    ),
    ("confirm", "confirm must be \"auto\" or \"manual\""),
];

/// The request's `Idempotency-Key`: 1-255 printable ASCII characters, no card number, and not
/// one the proxy keeps for itself (`payout_link:…`, the keys of payout links' payouts).
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or(ApiError::IdempotencyKeyRequired)?;
    if !shared::scan::card_candidates(key.as_bytes()).is_empty() {
        return Err(ApiError::SensitiveField(FieldPath::root("Idempotency-Key")));
    }
    if crate::service::is_reserved_key(key) {
        return Err(ApiError::InvalidParam(
            "Idempotency-Key",
            "Idempotency-Key values starting with payout_link: are the proxy's own (the payouts of payout links); choose another key",
        ));
    }
    Ok(key.to_owned())
}

/// `POST /v1/payouts`.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::WritePayouts)?;
    let key = idempotency_key(&headers)?;
    let req: CreatePayout = decode(&headers, &body)?;
    req.validate()?;
    let new = NewPayout {
        card_token: req.card_token,
        amount: req.amount,
        currency: req.currency,
        recipient_name: req.recipient.full_name.trim().to_owned(),
        metadata: req.metadata,
        confirm: req.confirm,
    };
    Ok(
        match state.proxy.create_payout(&caller.0, key, new).await? {
            Created::New(p) => (StatusCode::CREATED, Json(PayoutView::new(&p))).into_response(),
            // Marked as a replay, as Stripe does.
            Created::Replayed(p) => {
                ([("idempotent-replayed", "true")], Json(PayoutView::new(&p))).into_response()
            }
        },
    )
}

/// The `{id}` segment, if it is a payout id.
fn id_param(params: &RawPathParams) -> Option<PayoutId> {
    shared::http::path_param(params, "id").and_then(PayoutId::parse)
}

/// `GET /v1/payouts/{id}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::ReadPayouts)?;
    let id = id_param(&params).ok_or(ApiError::NotFound)?;
    let p = state.proxy.payout(&caller.0, &id).await?;
    Ok(Json(PayoutView::new(&p)).into_response())
}

/// `GET /v1/payouts` query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

impl params::ListQuery for ListQuery {
    const OPERATION: Operation = Operation::ReadPayouts;
    const RULE: &'static str = "query: status, after (a payout id) and limit (1-100)";
}

/// `GET /v1/payouts?status=&after=&limit=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    ListRequest { caller, query: q }: ListRequest<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(PayoutState::from_name(s).ok_or(ApiError::InvalidParam(
            "status",
            "status must be a payout status (created, started, awaiting_confirmation, succeeded, failed, cancelled, returned, …)",
        ))?),
    };
    let size = params::page_size(
        q.after.as_deref(),
        PayoutId::PREFIX,
        "after must be a payout id",
        q.limit,
    )?;
    let page = state
        .proxy
        .payouts(&caller.0, status, q.after.as_deref(), size)
        .await?;
    Ok(params::page(
        &page,
        size,
        |p| p.id.as_str(),
        PayoutView::new,
    ))
}

/// `POST /v1/payouts/{id}/confirm`.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    decide(&state, &caller, &params, AppDecision::Confirm).await
}

/// `POST /v1/payouts/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    decide(&state, &caller, &params, AppDecision::Cancel).await
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    params: &RawPathParams,
    decision: AppDecision,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::WritePayouts)?;
    let id = id_param(params).ok_or(ApiError::NotFound)?;
    let p = state.proxy.decide(&caller.0, &id, decision).await?;
    Ok(Json(PayoutView::new(&p)).into_response())
}
