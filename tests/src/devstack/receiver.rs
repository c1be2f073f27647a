//! The demo app's webhook receiver: what a platform would run to hear about its payouts. It
//! checks `X-Signature` on the raw body before it reads anything, prints each event, and hands
//! it to the demo.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Printer;

/// The path the proxy posts app webhooks to.
pub(crate) const PATH: &str = "/webhooks";

/// Tolerance for the timestamp in `X-Signature`.
const TOLERANCE_SECONDS: i64 = 300;

/// One verified app webhook.
#[derive(Clone, Debug)]
pub(crate) struct AppEvent {
    /// `payout.succeeded`, ….
    pub(crate) event_type: String,
    /// `pay_…`.
    pub(crate) payout_id: String,
    /// The payout's status in the event.
    pub(crate) status: String,
}

/// What the receiver needs: the secret webhooks are signed with, and where events go.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// `whsec_…`: the app client's webhook secret.
    pub(crate) secret: String,
    /// Every verified event.
    pub(crate) events: mpsc::UnboundedSender<AppEvent>,
    /// While the demo runs it reports the events itself.
    pub(crate) quiet: Arc<AtomicBool>,
    pub(crate) out: Printer,
}

/// Serves the receiver, and the demo shop's checkout page beside it, on `listener` (over TLS
/// with `tls`, as the services' listeners) until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<shared::server::ServerTls>>,
    receiver: Receiver,
    shop: super::shop::Shop,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(PATH, post(receive))
        .with_state(Arc::new(receiver))
        .merge(super::shop::routes(shop));
    let mut options =
        shared::server::ServeOptions::from_config(&shared::config::ServerConfig::default());
    options.grace = std::time::Duration::from_millis(super::SHUTDOWN_GRACE_MS);
    shared::server::serve(listener, app, shutdown, options, tls).await
}

async fn receive(
    State(state): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = proxy::engine::now_micros() / 1_000_000;
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    let valid = signature.is_some_and(|header| {
        proxy::outbox::verify(&state.secret, header, &body, now, TOLERANCE_SECONDS)
    });
    if !valid {
        state
            .out
            .line("  [app] refused a webhook: X-Signature missing or invalid (answered 401)");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        state
            .out
            .line("  [app] refused a webhook: not JSON (answered 400)");
        return StatusCode::BAD_REQUEST;
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let payout = &json["data"]["payout"];
    let event = AppEvent {
        event_type: text(&json["type"]),
        payout_id: text(&payout["id"]),
        status: text(&payout["status"]),
    };
    if !state.quiet.load(Ordering::SeqCst) {
        state.out.line(format!(
            "  [app] webhook {} for {} (status {}), X-Signature valid",
            event.event_type, event.payout_id, event.status
        ));
    }
    let _ = state.events.send(event);
    StatusCode::OK
}
