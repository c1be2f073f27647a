//! `/v1/tokens` routes.

use std::marker::PhantomData;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};
use shared::Pan;
use zeroize::Zeroizing;

use super::AppState;
use super::caller::Caller;
use super::error::{ApiError, PAN_NOT_STRING};
use super::json::ValidJson;
use crate::audit::Action;
use crate::auth::Scope;
use crate::clock::rfc3339;
use crate::service::{MAX_PURPOSE_LEN, NewCard};
use crate::store::TokenRecord;
use crate::token::Token;

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenizeBody {
    pan: PanField,
    #[serde(default)]
    exp_month: Option<u8>,
    #[serde(default)]
    exp_year: Option<u16>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /v1/tokens/{token}/detokenize` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetokenizeBody {
    purpose: String,
}

/// A PAN decoded straight from the JSON string into [`Pan`], or the fixed error it breaks. It
/// never fails to decode: a wrong PAN is reported by the route from the value itself (not from
/// a serde message, which could quote the digits).
#[derive(Debug)]
pub(crate) struct PanField(pub(crate) Result<Pan, ApiError>);

impl<'de> Deserialize<'de> for PanField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PanVisitor;
        impl<'v> Visitor<'v> for PanVisitor {
            type Value = PanField;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(PAN_NOT_STRING)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PanField, E> {
                Ok(PanField(Pan::parse(v).map_err(ApiError::from_pan)))
            }

            // Numbers would otherwise produce serde's `invalid type: integer `4242…``, which
            // quotes the digits.
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<PanField, E> {
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<PanField, E> {
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PanField, E> {
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PanField, E> {
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_unit<E: de::Error>(self) -> Result<PanField, E> {
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_seq<A: de::SeqAccess<'v>>(self, mut seq: A) -> Result<PanField, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }

            fn visit_map<A: de::MapAccess<'v>>(self, mut map: A) -> Result<PanField, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(PanField(Err(ApiError::InvalidPan(PAN_NOT_STRING))))
            }
        }
        // `deserialize_any`, so a number reaches `visit_u64` (and a fixed message) instead of
        // serde_json's `invalid type` error, which quotes the digits.
        d.deserialize_any(PanVisitor)
    }
}

/// Card metadata as the API shows it: last four, brand and expiry; BIN and length only to a
/// client holding `tokens:read_bin` (they shrink what a tokenize oracle must search).
#[derive(Debug, Serialize)]
struct CardView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bin: Option<&'a str>,
    last4: &'a str,
    brand: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u8>,
    exp_month: Option<u8>,
    exp_year: Option<u16>,
}

/// How much of the card a client may see.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum CardDetail {
    /// Last four, brand, expiry.
    Last4,
    /// And BIN and length (`tokens:read_bin`).
    WithBin,
}

impl CardDetail {
    fn for_caller(caller: &Caller) -> Self {
        if caller.client.scopes.contains(Scope::TokensReadBin) {
            Self::WithBin
        } else {
            Self::Last4
        }
    }
}

#[derive(Debug, Serialize)]
struct TokenView<'a> {
    token: &'a str,
    card: CardView<'a>,
    fingerprint: String,
    created_at: String,
    expires_at: Option<String>,
}

impl<'a> TokenView<'a> {
    fn new(r: &'a TokenRecord, detail: CardDetail) -> Self {
        use base64::Engine;
        let with_bin = detail == CardDetail::WithBin;
        Self {
            token: r.token.as_str(),
            card: CardView {
                bin: with_bin.then_some(r.card.bin.as_str()),
                last4: &r.card.last4,
                brand: r.card.brand.as_str(),
                length: with_bin.then_some(r.card.pan_length),
                exp_month: r.card.exp_month,
                exp_year: r.card.exp_year,
            },
            fingerprint: format!(
                "fp_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r.fingerprint)
            ),
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.map(rfc3339),
        }
    }
}

/// A request on one token (`/v1/tokens/{token}…`): its caller, authorized for the route `R`
/// before anything else is read (a denial is audited on the token), and the `{token}` segment.
/// Anything that is not a well-formed token (a PAN, say) is treated as a token that does not
/// exist, and is never logged or stored.
pub(crate) struct OnToken<R> {
    caller: Caller,
    token: Option<Token>,
    route: PhantomData<R>,
}

/// What a token route asks of its caller.
pub(crate) trait TokenRoute {
    /// The scope it needs (and whose rate limit applies).
    const SCOPE: Scope;
    /// What a denial is audited as.
    const ACTION: Action;
}

/// `GET /v1/tokens/{token}`.
pub(crate) struct ReadRoute;

impl TokenRoute for ReadRoute {
    const SCOPE: Scope = Scope::TokensRead;
    const ACTION: Action = Action::TokenRead;
}

/// `POST /v1/tokens/{token}/detokenize`.
pub(crate) struct DetokenizeRoute;

impl TokenRoute for DetokenizeRoute {
    const SCOPE: Scope = Scope::TokensDetokenize;
    const ACTION: Action = Action::TokenDetokenize;
}

/// `DELETE /v1/tokens/{token}`.
pub(crate) struct DeleteRoute;

impl TokenRoute for DeleteRoute {
    const SCOPE: Scope = Scope::TokensDelete;
    const ACTION: Action = Action::TokenDelete;
}

impl<R: TokenRoute> FromRequestParts<AppState> for OnToken<R> {
    // A response, so that each check answers exactly as it does as an extractor of its own.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = shared::http::path_param(&params, "token").and_then(Token::parse);
        caller
            .require(state, R::SCOPE, R::ACTION, token.as_ref())
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            caller,
            token,
            route: PhantomData,
        })
    }
}

/// `POST /v1/tokens`. The body is read only once the caller is authorized (a client without
/// the scope gets 403, audited, whatever it sent).
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    caller
        .require(&state, Scope::TokensCreate, Action::TokenCreate, None)
        .await?;
    let ValidJson(body) = ValidJson::<TokenizeBody>::from_request(req, &state).await?;
    let pan = body.pan.0?;
    let expiry = parse_expiry(body.exp_month, body.exp_year)?;
    if body
        .ttl_seconds
        .is_some_and(|ttl| ttl == 0 || ttl > state.limits.max_ttl_seconds)
    {
        return Err(ApiError::InvalidParam(
            "ttl_seconds",
            "ttl_seconds must be positive and at most the configured maximum",
        ));
    }
    let card = NewCard {
        pan,
        expiry,
        ttl_seconds: body.ttl_seconds,
    };
    let tokenized = state.vault.tokenize(&caller.context, card).await?;
    let status = if tokenized.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(TokenView::new(
            &tokenized.record,
            CardDetail::for_caller(&caller),
        )),
    )
        .into_response())
}

/// `GET /v1/tokens/{token}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    OnToken { caller, token, .. }: OnToken<ReadRoute>,
) -> Result<Response, ApiError> {
    let record = state.vault.read(&caller.context, token).await?;
    Ok(Json(TokenView::new(&record, CardDetail::for_caller(&caller))).into_response())
}

/// `POST /v1/tokens/{token}/detokenize`. Authorized before the body is read.
pub(crate) async fn detokenize(
    State(state): State<AppState>,
    OnToken { caller, token, .. }: OnToken<DetokenizeRoute>,
    req: Request,
) -> Result<Response, ApiError> {
    let ValidJson(body) = ValidJson::<DetokenizeBody>::from_request(req, &state).await?;
    validate_purpose(&body.purpose)?;
    let pan = state
        .vault
        .detokenize(&caller.context, token.clone(), &body.purpose)
        .await?;
    // Built by hand: `Pan` has no `Serialize`, and this is the one place its digits are written
    // out. The buffer is zeroized when the response body is dropped.
    let mut json = Zeroizing::new(Vec::with_capacity(64));
    json.extend_from_slice(b"{\"token\":\"");
    json.extend_from_slice(
        token
            .as_ref()
            .map(Token::as_str)
            .unwrap_or_default()
            .as_bytes(),
    );
    json.extend_from_slice(b"\",\"pan\":\"");
    json.extend_from_slice(pan.expose().as_bytes());
    json.extend_from_slice(b"\"}");
    Ok((
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        Bytes::from_owner(json),
    )
        .into_response())
}

/// `DELETE /v1/tokens/{token}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    OnToken { caller, token, .. }: OnToken<DeleteRoute>,
) -> Result<Response, ApiError> {
    state.vault.delete(&caller.context, token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A purpose is stored in the audit log, so it must be short, printable, and unable to carry a
/// card number in any spelling: a card has at least 13 digits, so at most 12 are allowed in all,
/// however they are separated (`card 4242.4242.4242.4242` is refused).
fn validate_purpose(purpose: &str) -> Result<(), ApiError> {
    let printable = purpose.bytes().all(|b| (0x20..0x7f).contains(&b));
    if purpose.trim().is_empty() || purpose.len() > MAX_PURPOSE_LEN || !printable {
        return Err(ApiError::InvalidParam(
            "purpose",
            "purpose must be 1-128 printable ASCII characters",
        ));
    }
    if purpose.bytes().filter(u8::is_ascii_digit).count() > MAX_PURPOSE_DIGITS {
        return Err(ApiError::InvalidParam(
            "purpose",
            "purpose may contain at most 12 digits in all (a card number has at least 13)",
        ));
    }
    Ok(())
}

/// Most digits a purpose may hold.
const MAX_PURPOSE_DIGITS: usize = 12;

/// An expiry as the API takes it: both fields or neither, month 1-12, year 2000-2099.
pub(crate) fn parse_expiry(
    month: Option<u8>,
    year: Option<u16>,
) -> Result<Option<(u8, u16)>, ApiError> {
    const TOGETHER: &str = "exp_month and exp_year go together: send both or neither";
    match (month, year) {
        (None, None) => Ok(None),
        (Some(m), Some(y)) if (1..=12).contains(&m) && (2000..=2099).contains(&y) => {
            Ok(Some((m, y)))
        }
        (Some(m), Some(_)) if !(1..=12).contains(&m) => Err(ApiError::InvalidParam(
            "exp_month",
            "exp_month must be a whole number from 1 to 12",
        )),
        (Some(_), Some(_)) => Err(ApiError::InvalidParam(
            "exp_year",
            "exp_year must be a four-digit year from 2000 to 2099",
        )),
        (Some(_), None) => Err(ApiError::InvalidParam("exp_year", TOGETHER)),
        (None, Some(_)) => Err(ApiError::InvalidParam("exp_month", TOGETHER)),
    }
}
