//! `/v1/payouts`: the app API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, RawPathParams, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use shared::json::{DecodeError, FieldPath, card_number_path};

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use crate::auth::Scope;
use crate::engine::{ActionError, now_micros};
use crate::payout::{ConfirmMode, Payout, PayoutState, RequestFingerprint};
use crate::store::Inserted;
use crate::vault_client::VaultError;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipient {
    full_name: String,
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
        if self.amount <= 0 {
            return Err(ApiError::InvalidParam(
                "amount",
                "amount must be a positive integer in minor units",
            ));
        }
        if iso_currency::Currency::from_code(&self.currency.to_ascii_uppercase()).is_none() {
            return Err(ApiError::InvalidParam(
                "currency",
                "currency must be an ISO 4217 currency code, such as RUB",
            ));
        }
        let name = self.recipient.full_name.trim();
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
        if let Some(m) = &self.metadata {
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
}

fn decode<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !shared::json::is_json_content_type(content_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    shared::json::decode_at(body, &[]).map_err(|(e, path)| {
        // The create body's own fields get their rule; any other path is named as it is (a
        // `FieldPath` holds names only, never values).
        let rule = |name: &str| {
            CREATE_FIELDS
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
            (DecodeError::Invalid | DecodeError::Known(_), Some(path)) => {
                let message = rule(path.as_str())
                    .unwrap_or("a field of the request body has the wrong type or value");
                ApiError::InvalidField(path, message)
            }
            (DecodeError::UnknownField, None) => {
                ApiError::InvalidRequest("the request body has a field this route does not accept")
            }
            (DecodeError::MissingField, None) => {
                ApiError::InvalidRequest("the request body lacks a required field")
            }
            (DecodeError::Invalid | DecodeError::Known(_), None) => ApiError::InvalidRequest(
                "the request body must be a JSON object of the fields this route takes",
            ),
            (DecodeError::TooDeep, _) => ApiError::InvalidRequest(
                "the request body nests arrays and objects more than 32 levels deep",
            ),
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

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or(ApiError::IdempotencyKeyRequired)?;
    if !shared::scan::card_candidates(key.as_bytes()).is_empty() {
        return Err(ApiError::SensitiveField(FieldPath::root("Idempotency-Key")));
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
    caller.require(Scope::PayoutsWrite)?;
    let key = idempotency_key(&headers)?;
    let req: CreatePayout = decode(&headers, &body)?;
    req.validate()?;
    let request_hash = RequestFingerprint {
        card_token: &req.card_token,
        amount: req.amount,
        currency: req.currency.to_ascii_lowercase(),
        recipient_full_name: req.recipient.full_name.trim(),
        metadata: req.metadata.as_ref(),
        confirm: req.confirm,
    }
    .hash();
    let now = now_micros();
    let payout = Payout {
        id: shared::ids::random_id("pay_").map_err(|_| ApiError::Internal)?,
        tenant: caller.0.tenant.clone(),
        client_id: caller.0.id.clone(),
        idempotency_key: key,
        request_hash,
        card_token: req.card_token,
        amount: req.amount,
        // Stored as ISO 4217 writes it; compared case-insensitively with the bank's echo.
        currency: req.currency.to_ascii_uppercase(),
        recipient_name: req.recipient.full_name.trim().to_owned(),
        metadata: req.metadata.map(|m| m.to_string()),
        confirm_mode: req.confirm,
        state: PayoutState::Created,
        bank_session_id: None,
        bank_payout_id: None,
        card_last4: None,
        failure_code: None,
        failure_message: None,
        attention: None,
        confirm_deadline: None,
        // This replica drives it at once, holding the lease: another's reconciler does not
        // take it meanwhile (if this one dies, the lease runs out and another does).
        next_attempt_at: now + i64::try_from(state.engine.lease().as_micros()).unwrap_or(0),
        attempts: 0,
        created_at: now,
        updated_at: now,
        version: 0,
        lease_owner: Some(state.engine.owner().to_owned()),
        start_sends: 0,
    };
    // A request seen before is answered as it was, without asking the vault again.
    let store = state.engine.store();
    if let Some(p) = store
        .payout_by_idempotency_key(&payout.client_id, &payout.idempotency_key)
        .await?
    {
        return replay(&p, &request_hash);
    }
    // The card is fetched now, once: a token the vault does not hold for this tenant is refused
    // here (nothing kept, the bank hears nothing), and the card goes straight to the session's
    // start, so checking costs no second vault call.
    let pan = match state.engine.fetch_card_for(&payout).await {
        Ok(pan) => pan,
        Err(VaultError::TokenNotFound) => {
            // Kept nowhere else: a run of these from one app is someone probing for tokens.
            tracing::info!(client = %payout.client_id, "a payout was refused: card token not found");
            return Err(ApiError::CardTokenNotFound);
        }
        Err(e) => {
            tracing::warn!(error = %e, "a payout was refused: the card could not be fetched");
            return Err(ApiError::Vault(e));
        }
    };
    match store.insert_payout(payout).await? {
        Inserted::New(p) => {
            let engine = state.engine.clone();
            let id = p.id.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.drive_new(&id, pan).await {
                    tracing::warn!(payout = %id, error = %e, "drive failed; the reconciler will resume it");
                }
            });
            Ok((StatusCode::CREATED, Json(PayoutView::new(&p))).into_response())
        }
        // The same key at the same moment from another request: its payout, ours never made.
        Inserted::Existing(p) => {
            drop(pan);
            replay(&p, &request_hash)
        }
    }
}

/// The answer to a request whose idempotency key was used before: the first answer, marked as
/// a replay (as Stripe does), when it is the same request.
fn replay(p: &Payout, request_hash: &[u8; 32]) -> Result<Response, ApiError> {
    if !shared::ct::bytes_eq(&p.request_hash, request_hash) {
        return Err(ApiError::IdempotencyConflict);
    }
    Ok(([("idempotent-replayed", "true")], Json(PayoutView::new(p))).into_response())
}

/// A list's paging parameters checked: `after` an id with `prefix` (else `after_rule`), `limit`
/// 1-100; the page size (20 by default).
pub(super) fn page(
    after: Option<&str>,
    prefix: &str,
    after_rule: &'static str,
    limit: Option<u32>,
) -> Result<u32, ApiError> {
    if after.is_some_and(|a| !shared::ids::is_id(prefix, a)) {
        return Err(ApiError::InvalidParam("after", after_rule));
    }
    if limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(ApiError::InvalidParam(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    Ok(limit.unwrap_or(20))
}

fn id_param(params: &RawPathParams) -> Option<String> {
    params
        .iter()
        .find(|(name, _)| *name == "id")
        .map(|(_, v)| v.to_owned())
        .filter(|v| shared::ids::is_id("pay_", v))
}

/// Whose payouts a caller may read: its own, or (with `payouts:read_tenant`) its tenant's.
/// Anything else is 404, exactly as a payout that does not exist.
fn readable_by(caller: &Caller) -> Result<Option<&str>, ApiError> {
    if caller.0.scopes.contains(Scope::PayoutsReadTenant) {
        return Ok(None);
    }
    caller.require(Scope::PayoutsRead)?;
    Ok(Some(caller.0.id.as_str()))
}

async fn readable_payout(
    state: &AppState,
    caller: &Caller,
    params: &RawPathParams,
) -> Result<Payout, ApiError> {
    let client = readable_by(caller)?;
    let id = id_param(params).ok_or(ApiError::NotFound)?;
    state
        .engine
        .store()
        .payout(&id)
        .await?
        .filter(|p| p.tenant == caller.0.tenant && client.is_none_or(|c| p.client_id == c))
        .ok_or(ApiError::NotFound)
}

/// `GET /v1/payouts/{id}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let p = readable_payout(&state, &caller, &params).await?;
    Ok(Json(PayoutView::new(&p)).into_response())
}

/// `GET /v1/payouts` query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/payouts?status=&after=&limit=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let client = readable_by(&caller)?;
    let Ok(Query(q)) = query else {
        return Err(ApiError::InvalidRequest(
            "query: status, after (a payout id) and limit (1-100)",
        ));
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(PayoutState::from_name(s).ok_or(ApiError::InvalidParam(
            "status",
            "status must be a payout status (created, started, awaiting_confirmation, succeeded, failed, cancelled, returned, …)",
        ))?),
    };
    let limit = page(
        q.after.as_deref(),
        "pay_",
        "after must be a payout id",
        q.limit,
    )?;
    let page = state
        .engine
        .store()
        .list_payouts(&caller.0.tenant, client, status, q.after.as_deref(), limit)
        .await?;
    let next = (page.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| page.last().map(|p| p.id.clone()))
        .flatten();
    let data: Vec<PayoutView<'_>> = page.iter().map(PayoutView::new).collect();
    Ok(Json(serde_json::json!({ "data": data, "next_after": next })).into_response())
}

/// `POST /v1/payouts/{id}/confirm`.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    decide(state, caller, params, true).await
}

/// `POST /v1/payouts/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    decide(state, caller, params, false).await
}

async fn decide(
    state: AppState,
    caller: Caller,
    params: RawPathParams,
    confirm: bool,
) -> Result<Response, ApiError> {
    caller.require(Scope::PayoutsWrite)?;
    let id = id_param(&params).ok_or(ApiError::NotFound)?;
    // Only the app that created a payout decides it.
    let result = if confirm {
        state
            .engine
            .confirm_by_app(&caller.0.tenant, &caller.0.id, &id)
            .await
    } else {
        state
            .engine
            .cancel_by_app(&caller.0.tenant, &caller.0.id, &id)
            .await
    };
    match result {
        Ok(p) => Ok(Json(PayoutView::new(&p)).into_response()),
        Err(ActionError::NotFound) => Err(ApiError::NotFound),
        Err(ActionError::WrongState) => Err(ApiError::NotAwaitingConfirmation),
        Err(ActionError::NotManual) => Err(ApiError::NotManual),
        Err(ActionError::Contradicts(why)) => Err(ApiError::PayoutStateConflict(why)),
        Err(ActionError::Mismatch) => Err(ApiError::ConfirmationMismatch),
        Err(ActionError::BankUnavailable) => Err(ApiError::BankUnavailable),
        Err(ActionError::Store(e)) => Err(e.into()),
    }
}
