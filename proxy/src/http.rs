//! The proxy's HTTP API: the app routes, the bank's webhook receiver, health.
//!
//! Each request passes `shared::http`'s edge: a proxy-made request id (`x-request-id`), a
//! deadline, `Cache-Control: no-store` on every answer, and one access-log line naming the route
//! template, never the URI.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::service::Proxy;

mod bank;
mod caller;
mod error;
mod events;
pub mod health;
mod links;
mod params;
mod payouts;

pub use caller::Caller;
pub use error::ApiError;

/// The body limit of `POST /webhooks/bank131`: 256 KiB, whatever `server.body_limit_bytes` says
/// for the app routes (when that is larger, it applies here too).
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The operations: the only way to the engine and the store.
    pub proxy: Proxy,
    /// Deadline per request.
    pub request_timeout: Duration,
}

/// The API router.
pub fn router(state: AppState, body_limit: usize) -> Router {
    surface_router(state, body_limit, Surface::All)
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Surface {
    /// Everything (one listener).
    All,
    /// The app API, health and readiness: `server.listen` when `server.webhook_listen` is set.
    App,
    /// The bank's webhook route and liveness only: `server.webhook_listen`, the one that faces
    /// the internet.
    BankWebhooks,
}

/// The router for one listener's `surface`.
pub fn surface_router(state: AppState, body_limit: usize, surface: Surface) -> Router {
    // The bank's webhooks carry fees, refunds and fiscalisation (API.md §14.11): larger than
    // anything an app sends.
    let webhook =
        post(bank::receive).layer(DefaultBodyLimit::max(body_limit.max(WEBHOOK_BODY_LIMIT)));
    let routes = match surface {
        Surface::BankWebhooks => Router::new()
            .route("/webhooks/bank131", webhook)
            .route("/healthz", get(shared::http::live)),
        Surface::App => app_routes(),
        Surface::All => app_routes().route("/webhooks/bank131", webhook),
    };
    let routes = shared::http::with_edge::<ApiError, _>(routes)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ));
    shared::http::catch_panics::<ApiError, _>(routes).with_state(state)
}

fn app_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/payouts", post(payouts::create).get(payouts::list))
        .route("/v1/payouts/{id}", get(payouts::read))
        .route("/v1/payouts/{id}/confirm", post(payouts::confirm))
        .route("/v1/payouts/{id}/cancel", post(payouts::cancel))
        .route("/v1/payout_links", post(links::create))
        .route("/v1/payout_links/{id}", get(links::read))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}/redeliver", post(events::redeliver))
        .route("/healthz", get(shared::http::live))
        .route("/readyz", get(health::ready))
}

async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        shared::ids::random_id("req_").unwrap_or_else(|_| "req_unavailable".to_owned());
    let method = req.method().clone();
    let route = shared::http::route_template(&req)
        .unwrap_or("unmatched")
        .to_owned();
    let (response, error) =
        shared::http::exchange::<ApiError>(req, next, state.request_timeout, &request_id).await;
    shared::access_log!(
        "proxy::access",
        request_id,
        method,
        route,
        response.status(),
        error.as_ref().map(shared::http::EdgeError::code),
        started.elapsed()
    );
    response
}
