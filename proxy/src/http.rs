//! The proxy's HTTP API: the app routes, the bank's webhook receiver, health.
//!
//! Each request gets a proxy-made request id (`x-request-id`), a deadline,
//! `Cache-Control: no-store`, and one access-log line naming the route template, never the URI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::bank131::SignatureVerifier;
use crate::engine::Engine;

mod bank;
mod caller;
mod error;
mod events;
pub mod health;
mod payouts;

pub use caller::Caller;
pub use error::ApiError;

/// The body limit of `POST /webhooks/bank131`: 256 KiB, whatever `server.body_limit_bytes` says
/// for the app routes (when that is larger, it applies here too).
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The payout engine (and through it the store).
    pub engine: Engine,
    /// The bank's webhook key.
    pub bank_verifier: Arc<SignatureVerifier>,
    /// Deadline per request.
    pub request_timeout: Duration,
    /// The vault keys' and the bank's last check, for `/readyz`.
    pub dependencies: Arc<health::DependencyCheck>,
}

/// The API router.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/payouts", post(payouts::create).get(payouts::list))
        .route("/v1/payouts/{id}", get(payouts::read))
        .route("/v1/payouts/{id}/confirm", post(payouts::confirm))
        .route("/v1/payouts/{id}/cancel", post(payouts::cancel))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}/redeliver", post(events::redeliver))
        // The bank's webhooks carry fees, refunds and fiscalisation (API.md §14.11): larger
        // than anything an app sends.
        .route(
            "/webhooks/bank131",
            post(bank::receive).layer(DefaultBodyLimit::max(body_limit.max(WEBHOOK_BODY_LIMIT))),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        shared::ids::random_id("req_").unwrap_or_else(|_| "req_unavailable".to_owned());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let mut response = match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let status = response.status();
    let code = response.extensions().get::<ApiError>().map(|e| e.parts().1);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    // A body too large for the limit surfaces as axum's plain 413: give it our body.
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE && code.is_none() {
        response = ApiError::PayloadTooLarge.into_response();
    }
    tracing::info!(
        target: "proxy::access",
        request_id = %request_id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        error = code.unwrap_or(""),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}
