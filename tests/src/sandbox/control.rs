//! The control API under `/__sandbox/`: unsigned, for tests and developers (SANDBOX.md lists
//! every route with examples). Errors are `{"error": "<reason>"}` with 400, 404 or 409.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::sandbox::Sandbox;
use crate::sandbox::faults::FaultSpec;
use crate::sandbox::handle::{AdvanceStep, ControlError};
use crate::sandbox::journal::JournalEntry;
use crate::sandbox::state::ProjectUpdate;

pub(crate) fn router() -> Router<Sandbox> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/journal", get(journal).delete(clear_journal))
        .route("/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/projects", post(upsert_project))
        .route("/projects/{id}", get(project))
        .route("/sessions/{id}", get(session))
        .route(
            "/sessions/{id}/advance",
            session_action(|sb, id, b: AdvanceBody| sb.advance(id, b.step)),
        )
        .route(
            "/sessions/{id}/refund",
            session_action(|sb, id, b: RefundBody| sb.refund(id, b.amount)),
        )
        .route(
            "/sessions/{id}/tamper",
            session_action(|sb, id, b: TamperBody| sb.tamper(id, b.amount, b.last4)),
        )
        .route("/bank-public-key", get(bank_public_key))
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// Parses an optional JSON body: empty means `T::default()`.
fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ControlError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    required_body(bytes)
}

/// Parses a JSON body that must be there.
fn required_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|e| ControlError::Invalid(e.to_string()))
}

#[derive(Debug, Deserialize)]
struct JournalQuery {
    /// `request` or `webhook`.
    kind: Option<String>,
}

async fn journal(State(sb): State<Sandbox>, Query(q): Query<JournalQuery>) -> Response {
    let entries: Vec<JournalEntry> = sb
        .journal
        .entries()
        .into_iter()
        .filter(|e| match q.kind.as_deref() {
            Some("request") => matches!(e, JournalEntry::Request(_)),
            Some("webhook") => matches!(e, JournalEntry::Webhook(_)),
            _ => true,
        })
        .collect();
    Json(json!({ "entries": entries })).into_response()
}

async fn clear_journal(State(sb): State<Sandbox>) -> StatusCode {
    sb.journal.clear();
    StatusCode::NO_CONTENT
}

async fn faults(State(sb): State<Sandbox>) -> Response {
    Json(json!({ "faults": sb.faults.list() })).into_response()
}

async fn add_fault(State(sb): State<Sandbox>, bytes: Bytes) -> Result<Response, ControlError> {
    let spec: FaultSpec = required_body(&bytes)?;
    let id = sb.faults.add(spec).map_err(ControlError::Invalid)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

async fn clear_faults(State(sb): State<Sandbox>) -> StatusCode {
    sb.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<StatusCode, ControlError> {
    if sb.faults.remove(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::NotFound("fault"))
    }
}

async fn upsert_project(State(sb): State<Sandbox>, bytes: Bytes) -> Result<Response, ControlError> {
    let update: ProjectUpdate = required_body(&bytes)?;
    let (view, created) = sb.upsert_project(update)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn project(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let state = sb.state.lock();
    let p = state
        .projects
        .get(&id)
        .ok_or(ControlError::NotFound("project"))?;
    Ok(Json(p.view()).into_response())
}

async fn session(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let view = sb
        .session_view(&id)
        .ok_or(ControlError::NotFound("session"))?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    step: Option<AdvanceStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TamperBody {
    amount: Option<i64>,
    last4: Option<String>,
}

/// `POST /sessions/{id}/<action>`: the optional body read as `B`, then `act` on the session;
/// the answer is the session view it returns.
fn session_action<B>(
    act: fn(&Sandbox, &str, B) -> Result<Value, ControlError>,
) -> MethodRouter<Sandbox>
where
    B: DeserializeOwned + Default + Send + 'static,
{
    post(
        move |State(sb): State<Sandbox>, Path(id): Path<String>, bytes: Bytes| async move {
            let b: B = body(&bytes)?;
            Ok::<_, ControlError>(Json(act(&sb, &id, b)?))
        },
    )
}

async fn bank_public_key(State(sb): State<Sandbox>) -> Response {
    (
        [(CONTENT_TYPE, "application/x-pem-file")],
        sb.bank.public_key_pem().to_owned(),
    )
        .into_response()
}
