//! The HTTP API: routes, shared state, and the middleware every request passes through.
//!
//! Each request passes `shared::http`'s edge: a vault-made request id (`x-request-id` in the
//! response, and in every audit event of the request), a deadline, `Cache-Control: no-store` on
//! every answer, and one access-log line that names the *route template*, never the raw URI.
//! Around it the vault counts requests per route for `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::service::Vault;

mod caller;
mod clients;
mod collect;
mod error;
mod health;
mod json;
mod metrics;
pub mod source;
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
    /// The vault's origin as browsers reach it (`[collect] public_url`): collect session urls
    /// are made from it, and card submissions must come from it.
    pub public_origin: String,
    /// Whose `X-Forwarded-For` names the source address for per-address limits.
    pub trusted_proxies: source::TrustedProxies,
    /// `mode = "production"`: a client holding `tokens:detokenize` bound to no client
    /// certificate is refused at every request too, not only at start (one made later, by a
    /// command run with another configuration, reads no card).
    pub production: bool,
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
pub fn router(state: AppState, surface: Surface) -> Router {
    let api = Router::new()
        .route("/v1/tokens", post(tokens::create))
        .route(
            "/v1/tokens/{token}",
            get(tokens::read).delete(tokens::delete),
        )
        .route("/v1/tokens/{token}/detokenize", post(tokens::detokenize))
        .route("/v1/clients/me", get(clients::me))
        .route("/v1/collect_sessions", post(collect::create))
        .route("/v1/collect_sessions/{id}", get(collect::read))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics));
    let form = Router::new()
        .route("/collect/{id}", get(collect::page))
        .route("/collect/{id}/submit", post(collect::submit))
        .route("/collect/assets/{asset}", get(collect::asset_route))
        .route("/collect.js", get(collect::embed_js));
    let routes = match surface {
        Surface::All => api.merge(form),
        Surface::Api => api,
        Surface::Form => form,
    }
    .route("/healthz", get(shared::http::live));
    let routes = shared::http::with_edge::<ApiError, _>(routes).layer(
        middleware::from_fn_with_state(state.clone(), request_context),
    );
    shared::http::catch_panics::<ApiError, _>(routes).with_state(state)
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Surface {
    /// The API and the card form (one listener: `collect.listen` unset).
    All,
    /// The API only (`server.listen` when the form has its own listener).
    Api,
    /// The card form only (`collect.listen`), the side that faces cardholders' browsers.
    Form,
}

async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = crate::token::request_id();
    let method = req.method().clone();
    let route = metrics::route_label(shared::http::route_template(&req));
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let in_flight = state.metrics.start(route);
    let (response, error) =
        shared::http::exchange::<ApiError>(req, next, state.limits.request_timeout, &request_id)
            .await;
    let status = response.status();
    if error == Some(ApiError::Overloaded) {
        state.metrics.shed();
    }
    let elapsed = started.elapsed();
    drop(in_flight);
    state.metrics.record(route, status, elapsed);
    shared::access_log!(
        "vault::access",
        request_id,
        method,
        route,
        status,
        error.map(|e| e.parts().1),
        elapsed
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
