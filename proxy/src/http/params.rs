//! What the app routes share in reading a request and answering a list: the `{id}` path segment,
//! a list's query (decoded only once the caller may read the list) and its paging, and the page
//! shape `{"data": [...], "next_after": id}`.

use axum::Json;
use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use crate::service::Operation;

/// The `{id}` path segment, if it passes `valid`. Anything else (a card number, say) is treated
/// as an id that does not exist, and is never logged or stored.
pub(super) fn path_id(params: &RawPathParams, valid: impl Fn(&str) -> bool) -> Option<String> {
    shared::http::path_param(params, "id")
        .filter(|id| valid(id))
        .map(str::to_owned)
}

/// A list route's query string, as its handler declares it.
pub(super) trait ListQuery: DeserializeOwned {
    /// What the caller must be permitted to read the list.
    const OPERATION: Operation;
    /// The refusal of a query that does not decode: every parameter and its form.
    const RULE: &'static str;
}

/// A list request: the authenticated caller, permitted [`ListQuery::OPERATION`], and its query.
/// The permission is checked before the query is decoded, so a caller without it is refused
/// the same way whatever it sent.
pub(super) struct ListRequest<Q> {
    pub(super) caller: Caller,
    pub(super) query: Q,
}

impl<Q: ListQuery> FromRequestParts<AppState> for ListRequest<Q> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        state.proxy.permits(&caller.0, Q::OPERATION)?;
        let Ok(Query(query)) = Query::<Q>::try_from_uri(&parts.uri) else {
            return Err(ApiError::InvalidRequest(Q::RULE));
        };
        Ok(Self { caller, query })
    }
}

/// A list's paging parameters checked: `after` an id with `prefix` (else `after_rule`), `limit`
/// 1-100; the page size (20 by default).
pub(super) fn page_size(
    after: Option<&str>,
    prefix: &str,
    after_rule: &'static str,
    limit: Option<u32>,
) -> Result<u32, ApiError> {
    if after.is_some_and(|a| !shared::ids::is_id(prefix, a)) {
        return Err(ApiError::InvalidParam("after", after_rule));
    }
    if limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(ApiError::InvalidParam(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    Ok(limit.unwrap_or(20))
}

/// The answer to a list: each item as `view` shows it, and `next_after`, the last item's id when
/// the page is full (there may be more), else null.
pub(super) fn page<'a, T, V: Serialize>(
    items: &'a [T],
    size: u32,
    id: impl Fn(&T) -> &str,
    view: impl Fn(&'a T) -> V,
) -> Response {
    let next = (items.len() == usize::try_from(size).unwrap_or(usize::MAX))
        .then(|| items.last().map(id))
        .flatten();
    let data: Vec<V> = items.iter().map(view).collect();
    Json(serde_json::json!({ "data": data, "next_after": next })).into_response()
}
