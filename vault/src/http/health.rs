//! `/healthz`, `/readyz`, `/metrics`: no authentication, no card data.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};

/// Liveness: the process answers.
pub(crate) async fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: the keys are loaded (they are, or the process would not have started) and the
/// database accepts writes, so audit events can be written.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.vault.ready().await {
        Ok(()) => Json(json!({"status": "ready", "database": "ok", "keys": "ok", "audit": "ok"}))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::NotReady.into_response()
        }
    }
}

/// Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.as_ref().into_response()
}
