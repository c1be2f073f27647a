//! `/readyz` and `/metrics` (`/healthz` is `shared::http::live`): no authentication, no card
//! data.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::service::Vault;

/// How long a readiness verdict is reused. `/readyz` needs no key, and a fresh check is a
/// write (a probe event inserted and rolled back): a flood of probes must not become a flood of
/// writes. One check at a time; probes arriving meanwhile wait for it and share its verdict.
const READINESS_TTL: Duration = Duration::from_secs(1);

/// The last readiness verdict and when it was reached.
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    async fn check(&self, vault: &Vault) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last
            && at.elapsed() < READINESS_TTL
        {
            return ready;
        }
        let ready = match vault.ready().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                false
            }
        };
        *last = Some((Instant::now(), ready));
        ready
    }
}

/// Readiness: the keys are loaded (they are, or the process would not have started), an audit
/// event could be written, and the stored chain still holds what this vault wrote. At most one
/// check per [`READINESS_TTL`].
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if state.readiness.check(&state.vault).await {
        Json(json!({"status": "ready", "database": "ok", "keys": "ok", "audit": "ok"}))
            .into_response()
    } else {
        ApiError::NotReady.into_response()
    }
}

/// Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = state.metrics.render();
    super::metrics::render_keys(&mut body, &state.vault.key_gauges());
    (
        axum::http::StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
