//! `/healthz` and `/readyz`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Liveness.
pub(crate) async fn live() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// The configured vault keys, checked against the vault at most every [`VaultCheck::EVERY`].
#[derive(Debug)]
pub struct VaultCheck {
    vault: crate::vault_client::VaultClient,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

impl VaultCheck {
    /// How long a verdict is reused: a readiness probe every second must not become a vault
    /// request every second per key.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// A check of `vault`'s keys.
    pub fn new(vault: crate::vault_client::VaultClient) -> Self {
        Self {
            vault,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The problems found (fresh, or from the last check within [`VaultCheck::EVERY`]).
    pub async fn problems(&self) -> Vec<String> {
        let mut last = self.last.lock().await;
        if let Some((at, problems)) = last.as_ref()
            && at.elapsed() < Self::EVERY
        {
            return problems.clone();
        }
        let problems = self.vault.check_keys().await;
        *last = Some((std::time::Instant::now(), problems.clone()));
        problems
    }
}

/// Readiness: the database accepts writes, and every vault key is what the proxy needs (a
/// broken key would otherwise fail every payout while the proxy said it was ready).
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if let Err(e) = state.engine.store().check_writable().await {
        tracing::warn!(error = %e, "not ready");
        return ApiError::NotReady.into_response();
    }
    let problems = state.vault_check.problems().await;
    if problems.is_empty() {
        return Json(serde_json::json!({"status": "ready"})).into_response();
    }
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"status": "not_ready", "problems": problems})),
    )
        .into_response()
}
