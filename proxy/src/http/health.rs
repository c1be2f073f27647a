//! `/readyz` (`/healthz` is `shared::http::live`), and the dependency check behind it: the vault
//! keys against the vault and a signed `wallet/balance` at the bank, reused for a few seconds so
//! a probe a second is not a request a second. `proxy check` and start-up run the same check.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// What the proxy depends on, checked at most every [`DependencyCheck::EVERY`]: each configured
/// vault key against the vault (`GET /v1/clients/me`), and the bank's reachability, project and
/// signature (a signed `wallet/balance`, which changes nothing).
#[derive(Debug)]
pub struct DependencyCheck {
    vault: crate::vault_client::VaultClient,
    bank: crate::bank131::Bank131Client,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Findings)>>,
}

impl DependencyCheck {
    /// How long a verdict is reused: a readiness probe every second must not become a vault and
    /// a bank request every second.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    /// How long a verdict that found a problem is reused.
    pub const RECHECK_PROBLEMS: std::time::Duration = std::time::Duration::from_secs(1);

    /// A check of `vault`'s keys and of `bank`.
    pub fn new(
        vault: crate::vault_client::VaultClient,
        bank: crate::bank131::Bank131Client,
    ) -> Self {
        Self {
            vault,
            bank,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// What was found (fresh, or from the last check within [`DependencyCheck::EVERY`], or
    /// [`DependencyCheck::RECHECK_PROBLEMS`] when it found a problem), each
    /// naming the setting and the fix; none holds a secret.
    pub async fn findings(&self) -> Findings {
        let mut last = self.last.lock().await;
        if let Some((at, findings)) = last.as_ref()
            && findings.still_fresh(at.elapsed())
        {
            return findings.clone();
        }
        let (keys, bank) = tokio::join!(self.vault.check_keys(), self.bank_problem());
        let mut findings = Findings {
            problems: keys.problems,
            warnings: Vec::new(),
            notes: keys.notes,
        };
        match bank {
            Some((text, true)) => findings.problems.push(text),
            Some((text, false)) => findings.warnings.push(text),
            None => {}
        }
        *last = Some((std::time::Instant::now(), findings.clone()));
        findings
    }

    /// The bank's answer to a signed `wallet/balance`, when it is not a plain success: the text,
    /// and whether it is configuration (no retry helps) rather than the bank being unreachable
    /// or failing now.
    async fn bank_problem(&self) -> Option<(String, bool)> {
        use crate::bank131::Bank131Error as E;
        let e = self.bank.wallet_balance().await.err()?;
        Some(match &e {
            E::Connect { .. } | E::Timeout { .. } | E::Transport { .. } => (
                "bank131.base_url: Bank 131 cannot be reached now (check the URL and the network)"
                    .to_owned(),
                false,
            ),
            E::Bank { code, .. } if code == "identification_error" => (
                "bank131.project: Bank 131 does not know this project id".to_owned(),
                true,
            ),
            E::Bank { code, .. } if code == "authentication_error" => (
                "bank131.private_key_file: Bank 131 refused the request's signature (is this key's public half the one registered for bank131.project?)".to_owned(),
                true,
            ),
            E::Redirect { .. } => (
                "bank131.base_url: answered with a redirect (not followed); use the API's own URL"
                    .to_owned(),
                true,
            ),
            E::Signing(_) => (
                "bank131.private_key_file: the partner key cannot sign".to_owned(),
                true,
            ),
            E::Bank { code, status, .. } => (
                format!(
                    "bank131: the balance check failed ({}, HTTP {status})",
                    crate::engine::bank_error_code(code, "bank_error")
                ),
                false,
            ),
            E::Http { status, .. } => (
                format!(
                    "bank131.base_url: HTTP {status} without Bank 131's error body (is this the bank's API?)"
                ),
                false,
            ),
            _ => (
                "bank131: the balance check's answer could not be read".to_owned(),
                false,
            ),
        })
    }
}

/// What a [`DependencyCheck`] found.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Configuration that cannot work: the proxy is not ready.
    pub problems: Vec<String>,
    /// The bank unreachable or failing now: said, but the proxy stays ready (apps still read,
    /// confirm and cancel, and the bank's webhooks still arrive, through a bank incident).
    pub warnings: Vec<String>,
    /// What only payout links need and lacks (a vault key without `collect:create`): said,
    /// the proxy stays ready, payouts work.
    pub notes: Vec<String>,
}

impl Findings {
    /// Whether a verdict this old may be reused. One that found a problem is checked again
    /// sooner: a vault that was not up yet when the proxy started must not keep the proxy
    /// unready for the whole interval.
    fn still_fresh(&self, age: std::time::Duration) -> bool {
        let reuse = if self.problems.is_empty() {
            DependencyCheck::EVERY
        } else {
            DependencyCheck::RECHECK_PROBLEMS
        };
        age < reuse
    }
}

/// Readiness: the database accepts writes, every vault key is what the proxy needs, and the bank
/// takes the proxy's signed requests (a broken setting would otherwise fail every payout while
/// the proxy said it was ready).
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let Findings {
        problems,
        warnings,
        notes,
    } = match state.proxy.readiness().await {
        Ok(findings) => findings,
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            return ApiError::NotReady.into_response();
        }
    };
    if problems.is_empty() {
        let mut body = serde_json::json!({"status": "ready"});
        if !warnings.is_empty() {
            body["warnings"] = warnings.into();
        }
        if !notes.is_empty() {
            body["notes"] = notes.into();
        }
        return Json(body).into_response();
    }
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Json(
            serde_json::json!({"status": "not_ready", "problems": problems, "warnings": warnings, "notes": notes}),
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Findings;

    #[test]
    fn a_verdict_with_a_problem_is_checked_again_within_a_second() {
        let clean = Findings::default();
        let broken = Findings {
            problems: vec!["vault.url: the vault cannot be reached".to_owned()],
            ..Findings::default()
        };
        let warned = Findings {
            warnings: vec!["bank131.base_url: unreachable".to_owned()],
            ..Findings::default()
        };
        assert!(clean.still_fresh(Duration::from_secs(9)));
        assert!(warned.still_fresh(Duration::from_secs(9)));
        assert!(!clean.still_fresh(Duration::from_secs(10)));
        assert!(broken.still_fresh(Duration::from_millis(500)));
        assert!(!broken.still_fresh(Duration::from_secs(1)));
    }
}
