//! `/healthz` and `/readyz`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Liveness.
pub(crate) async fn live() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Readiness: the database accepts writes.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.store().check_writable().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::NotReady.into_response()
        }
    }
}
