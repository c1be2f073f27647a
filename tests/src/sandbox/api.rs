//! The emulated bank API over HTTP: one handler for every path outside `/__sandbox/`.
//!
//! Order of checks, as a bank must do them: route → HTTP method → call faults → project
//! (`identification_error`) → signature over the raw bytes (`authentication_error`) →
//! idempotency key → JSON → the method's own validation and state checks.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::sandbox::Sandbox;
use crate::sandbox::config::ApiVersion;
use crate::sandbox::engine::Reply;
use crate::sandbox::error::ApiError;
use crate::sandbox::faults::FaultAction;
use crate::sandbox::journal::{RequestRecord, header_map, masked_text};
use crate::sandbox::model::now;
use crate::sandbox::request;

const SESSION_METHODS: [&str; 6] = [
    "session/create",
    "session/init/payout",
    "session/start/payout",
    "session/confirm",
    "session/cancel",
    "session/status",
];

/// The methods whose request bodies carry the card number, and are journaled verbatim.
const CARD_METHODS: [&str; 2] = ["session/start/payout", "session/init/payout"];

/// `/api/v1/<method>` or `/api/v2/<method>` → (version, method). `wallet/balance` exists in v1
/// only, as in the SDK.
fn route(path: &str) -> Option<(ApiVersion, &'static str)> {
    let (version, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        (ApiVersion::V1, rest)
    } else {
        (ApiVersion::V2, path.strip_prefix("/api/v2/")?)
    };
    if rest == "wallet/balance" {
        return (version == ApiVersion::V1).then_some((version, "wallet/balance"));
    }
    SESSION_METHODS
        .iter()
        .find(|m| **m == rest)
        .map(|m| (version, *m))
}

/// An answer without a `Location`.
fn plain((status, body): (StatusCode, Value)) -> (StatusCode, Value, Option<String>) {
    (status, body, None)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The fallback handler: every request that is not for the control API.
pub(crate) async fn bank_api(
    State(sandbox): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = route(uri.path());
    let verbatim = route.is_some_and(|(_, m)| CARD_METHODS.contains(&m));
    // Masked like every journaled header: it is a free-form value a client controls.
    let project = header(&headers, "x-partner-project").map(|p| masked_text(p.as_bytes()));
    let seq = sandbox.journal.begin(RequestRecord {
        seq: 0,
        at: now(),
        method: method.to_string(),
        path: masked_text(uri.path().as_bytes()),
        headers: header_map(&headers),
        body: if verbatim {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            masked_text(&body)
        },
        project: project.clone(),
        status: None,
        response: None,
    });
    let (status, envelope, location) = sandbox.answer(route, &method, &headers, &body).await;
    let text = envelope.to_string();
    sandbox.journal.finish(seq, status.as_u16(), text.clone());
    // The method name and status only: never the path as sent, a body or a header value.
    tracing::info!(
        method = route.map_or("-", |(_, m)| m),
        version = route.map_or("-", |(v, _)| v.as_str()),
        project = project.as_deref().unwrap_or("-"),
        status = status.as_u16(),
        "bank api request"
    );
    let mut response = (status, [(CONTENT_TYPE, "application/json")], text).into_response();
    if let Some(value) = location.and_then(|l| axum::http::HeaderValue::from_str(&l).ok()) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, value);
    }
    response
}

impl Sandbox {
    async fn answer(
        &self,
        route: Option<(ApiVersion, &'static str)>,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (StatusCode, Value, Option<String>) {
        let Some((version, name)) = route else {
            return plain(self.error(ApiError::new("not_found", "no such method")));
        };
        if method != Method::POST {
            return plain(self.error(ApiError::new("method_not_allowed", "use POST")));
        }
        let fault = self.faults.fire(name);
        let before_the_bank = matches!(
            fault.terminal,
            Some((
                FaultAction::Error | FaultAction::Hang | FaultAction::Redirect,
                _
            ))
        );
        // A request that reached the bank is authenticated and its idempotency key taken on
        // arrival, before a slow bank gets to it: a re-send meanwhile is "already in progress"
        // (API.md §14.2). The faults that fail before the bank (a front end's 5xx, a hang, a
        // redirect) leave no trace.
        let admitted = if before_the_bank {
            Ok(())
        } else {
            self.admit(name, headers, body)
        };
        if !fault.delay.is_zero() && !self.sleep(fault.delay).await {
            return plain(self.error(ApiError::internal()));
        }
        let code = fault.code.as_deref();
        match fault.terminal {
            Some((action @ (FaultAction::Error | FaultAction::Hang), status)) => {
                return self.fault_answer(action, status, code).await;
            }
            Some((FaultAction::Redirect, status)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
                return (status, serde_json::json!({}), fault.location.clone());
            }
            Some((action @ FaultAction::Lose, status)) if admitted.is_ok() => {
                return self.fault_answer(action, status, code).await;
            }
            _ => {}
        }
        let outcome = admitted.and_then(|()| {
            let json = request::object(body)?;
            let project = header(headers, "x-partner-project").unwrap_or_default();
            self.call(name, project, version, &json)
        });
        if let Some((action @ (FaultAction::ErrorAfter | FaultAction::HangAfter), status)) =
            fault.terminal
        {
            return self.fault_answer(action, status, code).await;
        }
        match outcome {
            Ok(Reply { body, slow }) => {
                if slow {
                    self.sleep(self.config.slow_delay).await;
                }
                (StatusCode::OK, body, None)
            }
            Err(e) => plain(self.error(e)),
        }
    }

    /// Authenticates the request and takes its idempotency key.
    fn admit(&self, name: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        // [INF] An unknown or missing project is `identification_error`: the partner could not
        // be identified; `authorization_error` is kept for a known project lacking a right.
        let project = header(headers, "x-partner-project").ok_or(ApiError::new(
            "identification_error",
            "X-PARTNER-PROJECT is missing",
        ))?;
        let signature = header(headers, "x-partner-sign");
        {
            let mut state = self.state.lock();
            let known = state
                .projects
                .get(project)
                .ok_or(ApiError::new("identification_error", "unknown project"))?;
            if !signature.is_some_and(|s| known.verifier.verify(body, s)) {
                return Err(ApiError::new(
                    "authentication_error",
                    "X-PARTNER-SIGN is missing or does not match the body",
                ));
            }
            // Scope: project + method (whatever the version prefix). A key counts as used once
            // an authenticated request carrying it arrives, whatever its outcome.
            if let Some(key) = header(headers, "x-partner-idempotency-key")
                && name.starts_with("session/")
                && !state
                    .idempotency
                    .insert((project.to_owned(), name.to_owned(), key.to_owned()))
            {
                return Err(ApiError::new(
                    "idempotency_key_already_exists",
                    "already in progress or processed",
                ));
            }
        }
        Ok(())
    }

    fn error(&self, e: ApiError) -> (StatusCode, Value) {
        (e.status(&self.config.error_status), e.envelope())
    }

    /// The error answer of an `error`, `lose` or `hang` fault (before the work or after it); a
    /// hang first holds the request for `hang_limit`.
    async fn fault_answer(
        &self,
        action: FaultAction,
        status: u16,
        code: Option<&str>,
    ) -> (StatusCode, Value, Option<String>) {
        if matches!(action, FaultAction::Hang | FaultAction::HangAfter) {
            self.sleep(self.config.hang_limit).await;
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = ApiError::internal().envelope();
        if let Some(code) = code {
            body["error"]["code"] = Value::from(code);
        }
        (status, body, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/api/v1/session/create"),
            Some((ApiVersion::V1, "session/create"))
        );
        assert_eq!(
            route("/api/v2/session/start/payout"),
            Some((ApiVersion::V2, "session/start/payout"))
        );
        assert_eq!(
            route("/api/v1/wallet/balance"),
            Some((ApiVersion::V1, "wallet/balance"))
        );
        for none in [
            "/api/v2/wallet/balance",
            "/api/v3/session/create",
            "/api/v1/session/create/",
            "/api/v1/session/refund",
            "/",
        ] {
            assert_eq!(route(none), None, "{none}");
        }
    }
}
