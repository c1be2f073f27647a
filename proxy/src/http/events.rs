//! `GET /v1/events` and `POST /v1/events/{id}/redeliver`: an app reads the webhook events (about
//! its payouts and its payout links) the
//! proxy wrote for it, with how their delivery went, and asks for one again (after fixing its
//! endpoint, or to replay what it lost). An app sees only its own events; another app's event
//! is 404 exactly like a missing one.

use axum::Json;
use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::params::{self, ListRequest};
use crate::ids::{PayoutId, PayoutLinkId};
use crate::payout::OutboxEvent;
use crate::service::Operation;
use crate::store::EventFilter;
use crate::view::rfc3339;

/// The event types an app can hear.
const EVENT_TYPES: [&str; 7] = [
    "payout.awaiting_confirmation",
    "payout.succeeded",
    "payout.failed",
    "payout.cancelled",
    "payout.returned",
    "payout_link.completed",
    "payout_link.expired",
];

/// An event as the app reads it: what was (or will be) sent, and how delivery went.
#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    payout_id: Option<&'a PayoutId>,
    payout_link_id: Option<&'a PayoutLinkId>,
    created_at: String,
    delivery: DeliveryView<'a>,
    /// The exact body POSTed to the webhook URL.
    payload: serde_json::Value,
}

#[derive(Serialize)]
struct DeliveryView<'a> {
    /// `pending`, `delivered` or `abandoned`.
    status: &'static str,
    attempts: u32,
    delivered_at: Option<String>,
    next_attempt_at: Option<String>,
    /// Fixed text and the HTTP status of the last failed attempt; never the URL.
    last_error: Option<&'a str>,
}

impl<'a> EventView<'a> {
    fn new(e: &'a OutboxEvent) -> Self {
        let status = if e.delivered_at.is_some() {
            "delivered"
        } else if e.abandoned_at.is_some() {
            "abandoned"
        } else {
            "pending"
        };
        Self {
            delivery: DeliveryView {
                status,
                attempts: e.attempts,
                delivered_at: e.delivered_at.map(rfc3339),
                next_attempt_at: (status == "pending").then(|| rfc3339(e.next_attempt_at)),
                last_error: e.last_error.as_deref(),
            },
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(e.created_at),
            id: &e.id,
            event_type: &e.event_type,
            payout_id: e.payout_id.as_ref(),
            payout_link_id: e.payout_link_id.as_ref(),
        }
    }
}

/// `GET /v1/events` query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    payout: Option<String>,
    payout_link: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

impl params::ListQuery for ListQuery {
    const OPERATION: Operation = Operation::ReadEvents;
    const RULE: &'static str = "query: payout (a payout id), payout_link (a payout link id), type (an event type), after (an event id) and limit (1-100)";
}

/// `GET /v1/events?payout=&type=&after=&limit=`: newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    ListRequest { caller, query: q }: ListRequest<ListQuery>,
) -> Result<Response, ApiError> {
    if q.payout
        .as_deref()
        .is_some_and(|p| PayoutId::parse(p).is_none())
    {
        return Err(ApiError::InvalidParam(
            "payout",
            "payout must be a payout id",
        ));
    }
    if q.payout_link
        .as_deref()
        .is_some_and(|p| PayoutLinkId::parse(p).is_none())
    {
        return Err(ApiError::InvalidParam(
            "payout_link",
            "payout_link must be a payout link id",
        ));
    }
    if q.event_type
        .as_deref()
        .is_some_and(|t| !EVENT_TYPES.contains(&t))
    {
        return Err(ApiError::InvalidParam(
            "type",
            "type must be an event type (payout.awaiting_confirmation, payout.succeeded, payout.failed, payout.cancelled, payout.returned, payout_link.completed, payout_link.expired)",
        ));
    }
    let size = params::page_size(
        q.after.as_deref(),
        "evt_",
        "after must be an event id",
        q.limit,
    )?;
    let filter = EventFilter {
        payout_id: q.payout,
        payout_link_id: q.payout_link,
        event_type: q.event_type,
        after: q.after,
    };
    let page = state.proxy.events(&caller.0, filter, size).await?;
    Ok(params::page(&page, size, |e| &e.id, EventView::new))
}

/// `POST /v1/events/{id}/redeliver`: due again now, with fresh attempts (202: it is sent by the
/// deliverer, at least once; dedupe on the event id).
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    state.proxy.permits(&caller.0, Operation::WritePayouts)?;
    let id = params::path_id(&params, |id| shared::ids::is_id("evt_", id))
        .ok_or(ApiError::EventNotFound)?;
    let event = state.proxy.redeliver(&caller.0, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(EventView::new(&event))).into_response())
}
