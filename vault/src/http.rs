//! The HTTP API: routes, shared state, and the middleware every request passes through.
//!
//! Each request gets a vault-made request id (`x-request-id` in the response, and in every audit
//! event of the request), a deadline, `Cache-Control: no-store`, and one access-log line that
//! names the *route template*, never the raw URI: a caller can put anything in a path or query
//! string, including a card number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::service::Vault;

mod caller;
mod clients;
mod error;
mod health;
mod json;
mod metrics;
mod tokens;

pub use caller::Caller;
pub use error::ApiError;
pub use metrics::Metrics;

/// Request limits from the configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted body.
    pub body_limit_bytes: usize,
    /// Deadline per request.
    pub request_timeout: Duration,
    /// Largest `ttl_seconds`.
    pub max_ttl_seconds: u64,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The vault.
    pub vault: Vault,
    /// Limits.
    pub limits: Arc<Limits>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Rate limiters and refusal tallies.
    pub limiter: Arc<crate::limits::Limiter>,
    /// The last readiness verdict.
    pub readiness: Arc<health::Readiness>,
}

/// The vault-made id of the current request.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tokens", post(tokens::create))
        .route(
            "/v1/tokens/{token}",
            get(tokens::read).delete(tokens::delete),
        )
        .route("/v1/tokens/{token}/detokenize", post(tokens::detokenize))
        .route("/v1/clients/me", get(clients::me))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = crate::token::request_id();
    let method = req.method().clone();
    let route = metrics::route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let in_flight = state.metrics.start(route);

    let mut response = match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await
    {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    let error = response.extensions().get::<ApiError>().copied();
    if error == Some(ApiError::Overloaded) {
        state.metrics.shed();
    }
    let code = error.map(|e| e.parts().1);
    let elapsed = started.elapsed();
    drop(in_flight);
    state.metrics.record(route, status, elapsed);
    tracing::info!(
        target: "vault::access",
        request_id = %request_id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        error = code.unwrap_or(""),
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

impl IntoResponse for &Metrics {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            self.render(),
        )
            .into_response()
    }
}
