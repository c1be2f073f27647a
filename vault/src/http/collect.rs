//! Collect session routes: the platform's backend opens and reads sessions
//! (`/v1/collect_sessions`, API key with `collect:create`); the cardholder's browser loads the
//! form (`/collect/{id}` and its two assets, plus `/collect.js` for the platform's page) and
//! submits the card (`POST /collect/{id}/submit`, the session's client secret, no API key).
//!
//! The form is the one place the vault answers a browser, so its responses carry what keeps it
//! ours alone: a CSP that allows only our own script and style and only the session's origins
//! as frame ancestors, `no-store`, `no-referrer`. A submission must come from a page of the
//! vault's own origin (`Origin` equal to `[collect] public_url`), is rate-limited per source
//! address before anything is read, and names no session it did not prove it holds.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequest, RawPathParams, Request, State};
use axum::http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ORIGIN, REFERRER_POLICY,
    RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::json::{FieldPath, card_number_path};

use super::caller::Caller;
use super::error::ApiError;
use super::json::ValidJson;
use super::tokens::{PanField, parse_expiry};
use super::{AppState, RequestId};
use crate::audit::Action;
use crate::auth::Scope;
use crate::clock::rfc3339;
use crate::collect::{
    CollectId, CollectSession, MAX_LINK_TTL_SECONDS, MAX_METADATA_BYTES, MAX_ORIGINS,
    MAX_TTL_SECONDS, Origin, SessionState,
};
use crate::limits::{FailureReason, Operation};
use crate::service::{NewCard, NewSession, Refusal, Submission, VaultError};
use crate::token::ApiKey;

/// The form, with `{{…}}` placeholders (see [`render_page`]).
const PAGE: &str = include_str!("../../assets/collect/page.html");
const PAGE_JS: &str = include_str!("../../assets/collect/page.js");
const PAGE_CSS: &str = include_str!("../../assets/collect/page.css");
const EMBED_JS: &str = include_str!("../../assets/collect/collect.js");

/// Longest cardholder name taken.
const MAX_NAME_CHARS: usize = 100;

/// `POST /v1/collect_sessions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    require_cardholder_name: bool,
}

/// `POST /collect/{id}/submit` body, as the form's script sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    client_secret: ApiKey,
    pan: PanField,
    exp_month: u8,
    exp_year: u16,
    #[serde(default)]
    cardholder_name: Option<String>,
    #[serde(default)]
    parent_origin: Option<String>,
}

/// A session as the platform sees it: never a BIN, never a secret (after creation).
#[derive(Debug, Serialize)]
struct SessionView<'a> {
    id: &'a str,
    state: &'static str,
    url: String,
    allowed_origins: Vec<&'a str>,
    require_cardholder_name: bool,
    metadata: Option<Value>,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    card: Option<CardView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cardholder_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct CardView<'a> {
    last4: &'a str,
    brand: &'static str,
}

impl<'a> SessionView<'a> {
    fn new(s: &'a CollectSession, public_origin: &str) -> Self {
        let done = s.completion.as_ref();
        Self {
            id: s.id.as_str(),
            state: s.state(crate::clock::now_micros()).as_str(),
            url: session_url(public_origin, &s.id),
            allowed_origins: s.allowed_origins.iter().map(Origin::as_str).collect(),
            require_cardholder_name: s.name_required,
            metadata: s
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            completed_at: done.map(|c| rfc3339(c.at)),
            token: done.map(|c| c.token.as_str()),
            card: done.map(|c| CardView {
                last4: &c.last4,
                brand: c.brand.as_str(),
            }),
            cardholder_name: done.and_then(|c| c.cardholder_name.as_deref()),
            client_secret: None,
        }
    }
}

fn session_url(public_origin: &str, id: &CollectId) -> String {
    format!("{public_origin}/collect/{id}")
}

/// `POST /v1/collect_sessions`. Authorized before the body is read.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    caller
        .require(&state, Scope::CollectCreate, Action::CollectCreate, None)
        .await?;
    let ValidJson(body) = ValidJson::<CreateBody>::from_request(req, &state).await?;
    let new = validate_create(body)?;
    let opened = state
        .vault
        .create_collect_session(&caller.context, &caller.client.id, new)
        .await?;
    let mut view = SessionView::new(&opened.session, &state.limits.public_origin);
    view.client_secret = Some(opened.secret.expose());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn validate_create(body: CreateBody) -> Result<NewSession, ApiError> {
    const ORIGINS: &str = "allowed_origins";
    if body.allowed_origins.len() > MAX_ORIGINS {
        return Err(ApiError::InvalidParam(
            ORIGINS,
            "allowed_origins may list at most 10 origins",
        ));
    }
    let mut origins: Vec<Origin> = Vec::with_capacity(body.allowed_origins.len());
    for text in &body.allowed_origins {
        let origin = Origin::parse(text).map_err(|rule| ApiError::InvalidParam(ORIGINS, rule))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let (max_ttl, rule) = if origins.is_empty() {
        (
            MAX_LINK_TTL_SECONDS,
            "ttl_seconds must be a whole number of seconds from 1 to 604800 (7 days) for a standalone session (the default is 900)",
        )
    } else {
        (
            MAX_TTL_SECONDS,
            "ttl_seconds must be a whole number of seconds from 1 to 3600 for a session framed by allowed_origins (the default is 900)",
        )
    };
    if body.ttl_seconds.is_some_and(|t| t == 0 || t > max_ttl) {
        return Err(ApiError::InvalidParam("ttl_seconds", rule));
    }
    let metadata = match body.metadata {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => {
            if card_number_path(&m, &FieldPath::root("metadata")).is_some() {
                return Err(ApiError::InvalidParam(
                    "metadata",
                    "metadata must not hold a card number: keep card numbers out of it (the form collects the card)",
                ));
            }
            let text = m.to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(ApiError::InvalidParam(
                    "metadata",
                    "metadata must be at most 2048 bytes of JSON",
                ));
            }
            Some(text)
        }
        Some(_) => {
            return Err(ApiError::InvalidParam(
                "metadata",
                "metadata must be a JSON object",
            ));
        }
    };
    Ok(NewSession {
        allowed_origins: origins,
        ttl_seconds: body.ttl_seconds,
        metadata,
        name_required: body.require_cardholder_name,
    })
}

/// `GET /v1/collect_sessions/{id}`: the caller's tenant's session, else 404 alike.
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    caller
        .require_within(
            &state,
            Scope::CollectCreate,
            Action::CollectRead,
            None,
            Some(Operation::Read),
        )
        .await?;
    let id = shared::http::path_param(&params, "id").and_then(CollectId::parse);
    let session = state
        .vault
        .read_collect_session(&caller.context, &caller.client.id, id)
        .await?;
    Ok(Json(SessionView::new(&session, &state.limits.public_origin)).into_response())
}

/// `GET /collect/{id}`: the form, or a page saying there is none.
pub(crate) async fn page(
    State(state): State<AppState>,
    params: RawPathParams,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let lang = language(&parts.headers);
    let source = state.limits.trusted_proxies.source(
        shared::server::peer_addr(&parts).map(|a| a.ip()),
        &parts.headers,
    );
    if let Err(wait) = state.limiter.check_collect_page(source) {
        state.metrics.rate_limited(Operation::CollectPage);
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, render_busy(lang), &[]);
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let id = shared::http::path_param(&params, "id").and_then(CollectId::parse);
    let Some(session) = state.vault.collect_page(id).await? else {
        return Ok(html(StatusCode::NOT_FOUND, render_missing(lang), &[]));
    };
    let state_now = session.state(crate::clock::now_micros());
    let body = render_page(&session, state_now, lang);
    Ok(html(StatusCode::OK, body, &session.allowed_origins))
}

/// The form with its placeholders filled (each value HTML-escaped, though none can hold markup:
/// an id, validated origins, fixed words).
fn render_page(session: &CollectSession, state: SessionState, lang: &str) -> String {
    PAGE.replace("{{session}}", &escape(session.id.as_str()))
        .replace("{{origins}}", &escape(&session.origins_text()))
        .replace(
            "{{name}}",
            if session.name_required {
                "required"
            } else {
                "off"
            },
        )
        .replace("{{lang}}", lang)
        .replace("{{state}}", state.as_str())
}

fn render_missing(lang: &str) -> String {
    let words = if lang == "ru" {
        (
            "Форма не найдена",
            "Такой формы для ввода карты нет. Попросите новую ссылку.",
        )
    } else {
        (
            "Card form not found",
            "There is no such card form. Ask for a new link.",
        )
    };
    render_notice(lang, words)
}

fn render_busy(lang: &str) -> String {
    let words = if lang == "ru" {
        (
            "Слишком много попыток",
            "Подождите немного и обновите страницу.",
        )
    } else {
        ("Too many attempts", "Wait a moment, then reload this page.")
    };
    render_notice(lang, words)
}

/// A page with a heading and one sentence, in the form's style.
fn render_notice(lang: &str, (title, text): (&str, &str)) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/collect/assets/page.css\"></head>\
         <body><main id=\"missing\"><h1>{title}</h1><p>{text}</p></main></body></html>"
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `ru` when the browser prefers Russian to English, else `en`.
fn language(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut best = ("en", 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
            .unwrap_or(1.0_f32);
        let lang = match tag.split('-').next() {
            Some("ru") => "ru",
            Some("en") => "en",
            _ => continue,
        };
        // Equal weights keep the first listed.
        if q > best.1 {
            best = (lang, q);
        }
    }
    best.0
}

/// An HTML answer with the form's security headers; `ancestors` may frame it (none: nobody).
fn html(status: StatusCode, body: String, ancestors: &[Origin]) -> Response {
    let frame_ancestors = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        crate::collect::join_origins(ancestors)
    };
    let csp = csp(&frame_ancestors);
    // Fail closed: a policy that cannot be sent (no origin can make one, as `Origin` admits
    // only header-safe characters) becomes one that nobody may frame, never no policy at all.
    let (csp, deny_frames) = match HeaderValue::from_str(&csp) {
        Ok(value) => (value, ancestors.is_empty()),
        Err(_) => {
            tracing::error!("a collect page's frame-ancestors could not be sent; framing refused");
            (HeaderValue::from_static(UNFRAMED_CSP), true)
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, csp);
    if deny_frames {
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    // A standalone form (a payout link, opened from a message) keeps no handle to or from the
    // window that opened it; a framed one is unaffected (the policy binds top-level pages).
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    security_headers(headers);
    response
}

/// [`csp`] with `frame-ancestors 'none'`, for when the session's origins cannot be sent.
const UNFRAMED_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The form's Content-Security-Policy: our own script and style, requests only back to us, and
/// framing only by `frame_ancestors`.
fn csp(frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}"
    )
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    security_headers(headers);
    response
}

/// `GET /collect/assets/{asset}`: the form's script and style sheet, nothing else.
pub(crate) async fn asset_route(params: RawPathParams) -> Result<Response, ApiError> {
    match shared::http::path_param(&params, "asset") {
        Some("page.js") => Ok(asset("text/javascript; charset=utf-8", PAGE_JS)),
        Some("page.css") => Ok(asset("text/css; charset=utf-8", PAGE_CSS)),
        _ => Err(ApiError::RouteNotFound),
    }
}

/// `GET /collect.js`: the embed for the platform's page.
pub(crate) async fn embed_js() -> Response {
    asset("text/javascript; charset=utf-8", EMBED_JS)
}

/// `POST /collect/{id}/submit`: the form's card, with the session's client secret.
pub(crate) async fn submit(
    State(state): State<AppState>,
    params: RawPathParams,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let peer = state.limits.trusted_proxies.source(
        shared::server::peer_addr(&parts).map(|a| a.ip()),
        &parts.headers,
    );
    // The rate limit comes before anything is read: the form is public, and each submission
    // would otherwise be a free guess at a session, a secret or a card.
    if let Err(wait) = state.limiter.check_collect(peer) {
        state.metrics.rate_limited(Operation::CollectSubmit);
        return Err(ApiError::rate_limited(wait));
    }
    let origin = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(state.limits.public_origin.as_str()) {
        return Err(refused_anonymously(
            &state,
            peer,
            ApiError::OriginNotAllowed,
        ));
    }
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
    let id = shared::http::path_param(&params, "id").and_then(CollectId::parse);
    let session = id.as_ref().map(|id| id.as_str().to_owned());
    let req = Request::from_parts(parts, body);
    let ValidJson(body) = ValidJson::<SubmitBody>::from_request(req, &state).await?;
    let pan = body.pan.0?;
    let expiry = parse_expiry(Some(body.exp_month), Some(body.exp_year))?.ok_or(
        ApiError::InvalidParam("exp_month", "exp_month and exp_year are required"),
    )?;
    if expired(expiry) {
        return Err(ApiError::CardExpired);
    }
    let cardholder_name = body.cardholder_name.map(validate_name).transpose()?;
    let submission = Submission {
        id,
        secret: body.client_secret,
        parent_origin: body.parent_origin,
        card: NewCard {
            pan,
            expiry: Some(expiry),
            ttl_seconds: None,
        },
        cardholder_name,
        request_id,
    };
    // Refused often this interval, a session's refusals are counted into the interval's event
    // instead of written one by one.
    let audited = std::sync::atomic::AtomicBool::new(true);
    let may_audit = || {
        let take = session
            .as_deref()
            .is_some_and(|id| state.limiter.take_refusal_audit(id));
        audited.store(take, std::sync::atomic::Ordering::Relaxed);
        take
    };
    let result = state.vault.submit_collect(submission, &may_audit).await;
    let audited = audited.load(std::sync::atomic::Ordering::Relaxed);
    let tallied = (!audited).then_some(FailureReason::CollectRefused);
    // (A wrong secret is charged to the address below, with this tally.)
    if let Err(VaultError::SessionRefused(refusal)) = &result
        && !audited
        && *refusal != Refusal::WrongSecret
    {
        let _ = state.limiter.note_failure(tallied, peer);
    }
    match result {
        Ok(session) => {
            let done = session.completion.as_ref().ok_or(ApiError::Internal)?;
            Ok(Json(serde_json::json!({
                "session": session.id.as_str(),
                "token": done.token.as_str(),
                "card": {"last4": done.last4, "brand": done.brand.as_str()},
            }))
            .into_response())
        }
        Err(VaultError::NoSession) => Err(refused_anonymously(&state, peer, ApiError::NoSession)),
        Err(VaultError::SessionRefused(Refusal::WrongSecret)) => {
            // Audited already (or counted, past the session's bound); also charged to the
            // address like a failed authentication.
            Err(match state.limiter.note_failure(tallied, peer) {
                Ok(()) => ApiError::InvalidSecret,
                Err(wait) => ApiError::rate_limited(wait),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// A refusal that names no session the caller proved it holds: tallied per address for the
/// interval's audit event (no write per request), and 429 once the address failed too often.
fn refused_anonymously(state: &AppState, peer: Option<IpAddr>, error: ApiError) -> ApiError {
    match state
        .limiter
        .note_failure(Some(FailureReason::CollectRefused), peer)
    {
        Ok(()) => error,
        Err(wait) => {
            state.metrics.rate_limited(Operation::Unauthenticated);
            ApiError::rate_limited(wait)
        }
    }
}

/// Whether a card with this expiry has passed its last valid month (UTC).
fn expired((month, year): (u8, u16)) -> bool {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let this_year: u16 = now.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    let this_month: u8 = now.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
    (year, month) < (this_year, this_month)
}

fn validate_name(name: String) -> Result<String, ApiError> {
    const RULE: &str = "cardholder_name must be 1-100 printable characters, as on the card";
    let trimmed = name.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > MAX_NAME_CHARS
        || trimmed.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidParam("cardholder_name", RULE));
    }
    if card_number_path(&Value::from(trimmed), &FieldPath::root("cardholder_name")).is_some() {
        return Err(ApiError::InvalidParam(
            "cardholder_name",
            "cardholder_name must be the name on the card, not a card number",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_LANGUAGE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_page_speaks_russian_only_to_who_prefers_it() {
        assert_eq!(language(&HeaderMap::new()), "en");
        assert_eq!(language(&accept("ru-RU,ru;q=0.9,en;q=0.8")), "ru");
        assert_eq!(language(&accept("en-US,en;q=0.9,ru;q=0.8")), "en");
        assert_eq!(language(&accept("de-DE,ru;q=0.5")), "ru");
        assert_eq!(language(&accept("fr")), "en");
        assert_eq!(language(&accept("en;q=0.2,ru;q=0.7")), "ru");
    }

    #[test]
    fn the_fallback_policy_is_the_policy_that_frames_nothing() {
        assert_eq!(csp("'none'"), UNFRAMED_CSP);
        let origins = [Origin::parse("https://a.example").unwrap()];
        let framed = html(StatusCode::OK, String::new(), &origins);
        assert_eq!(
            framed.headers()[CONTENT_SECURITY_POLICY],
            csp("https://a.example").as_str()
        );
        assert!(framed.headers().get(X_FRAME_OPTIONS).is_none());
        let unframed = html(StatusCode::OK, String::new(), &[]);
        assert_eq!(unframed.headers()[CONTENT_SECURITY_POLICY], UNFRAMED_CSP);
        assert_eq!(unframed.headers()[X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }

    #[test]
    fn a_card_is_good_through_its_expiry_month() {
        assert!(expired((1, 2000)));
        assert!(!expired((12, 2099)));
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let year: u16 = now[0..4].parse().unwrap();
        let month: u8 = now[5..7].parse().unwrap();
        assert!(!expired((month, year)), "this month is still good");
    }

    #[test]
    fn a_submitted_secret_never_shows_in_a_debug_print() {
        let body: SubmitBody = serde_json::from_value(serde_json::json!({
            "client_secret": "css_abcdefghijklmnop", "pan": "4242424242424242",
            "exp_month": 12, "exp_year": 2099,
        }))
        .unwrap();
        let printed = format!("{body:?}");
        assert!(!printed.contains("css_abcdefghijklmnop"), "{printed}");
        assert_eq!(
            body.client_secret.hash(),
            ApiKey::presented("css_abcdefghijklmnop").hash()
        );
    }

    #[test]
    fn names_are_names() {
        assert_eq!(
            validate_name(" Ivan Petrov ".to_owned()).unwrap(),
            "Ivan Petrov"
        );
        assert!(validate_name(String::new()).is_err());
        assert!(validate_name("a\u{0}b".to_owned()).is_err());
        assert!(validate_name("x".repeat(101)).is_err());
        assert!(validate_name("4242 4242 4242 4242".to_owned()).is_err());
    }
}
