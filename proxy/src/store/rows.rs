//! The one mapping between the proxy's rows and its domain values, used by both backends: each
//! table's column list, the function reading a row of it (through [`shared::row::Row`]), and the
//! values a write binds, in the order of its statement (as [`shared::row::Value`]s).
//!
//! A payout's session columns (`bank_session_id`, `bank_payout_id`, `confirm_deadline`) are one
//! [`BankSession`] in the domain: [`payout`] reads a row whose state has a session
//! ([`PayoutState::has_session`]) but names none, or whose session columns are set without a
//! session, as [`StoreError::Corrupt`].
//!
//! The column lists are macros so the queries that splice them in stay `&'static str` (each
//! statement is prepared once per connection and cached by its text).

use shared::row::{Row, Value};

use super::{BankEvent, StoreError};
use crate::auth::{ClientRecord, PreviousKey, Scopes, WebhookSecret};
use crate::ids::{AppClientId, CollectSessionId, PayoutId, PayoutLinkId};
use crate::link::{LinkCompletion, LinkState, PayoutLink};
use crate::payout::{BankSession, ConfirmMode, OutboxEvent, Payout, PayoutState, SessionId};
use crate::store::Result;

/// The payout columns in [`payout`]'s order.
macro_rules! payout_columns {
    () => {
        "id, tenant, client_id, idempotency_key, request_hash, card_token, amount, currency, \
         recipient_name, metadata, confirm_mode, state, bank_session_id, bank_payout_id, card_last4, \
         failure_code, failure_message, attention, confirm_deadline, next_attempt_at, attempts, \
         created_at, updated_at, version, lease_owner, start_sends"
    };
}
pub(super) use payout_columns;

/// The client columns in [`client`]'s order.
macro_rules! client_columns {
    () => {
        "id, name, tenant, scopes, key_hash, webhook_url, webhook_secret, created_at, revoked_at, \
         previous_key_hash, previous_key_expires_at"
    };
}
pub(super) use client_columns;

/// The verified bank webhook columns in [`bank_event`]'s order.
macro_rules! bank_event_columns {
    () => {
        "payout_id, bank_session_id, kind, body, received_at"
    };
}
pub(super) use bank_event_columns;

/// The outbox columns in [`event`]'s order.
macro_rules! event_columns {
    () => {
        "id, payout_id, client_id, event_type, payload, attempts, next_attempt_at, delivered_at, \
         abandoned_at, last_error, created_at, payout_link_id"
    };
}
pub(super) use event_columns;

/// The payout link columns in [`payout_link`]'s order: first those fixed at creation (the ones
/// its tag covers, then the tag), then those that move.
macro_rules! link_columns {
    () => {
        "id, tenant, client_id, idempotency_key, request_hash, amount, currency, recipient_name, \
         metadata, collect_session_id, session_url, sealed_secret, expires_at, created_at, tag, \
         state, payout_id, card_last4, card_brand, completed_at, next_poll_at, lease_owner, \
         updated_at, version"
    };
}
pub(super) use link_columns;

/// `SELECT` a table's columns, in the order its mapping reads them, `FROM` the table, then the
/// rest of the query: `select!(clients, "WHERE id = $1")`.
macro_rules! select {
    (payouts, $rest:literal) => {
        concat!("SELECT ", payout_columns!(), " FROM payouts ", $rest)
    };
    (clients, $rest:literal) => {
        concat!("SELECT ", client_columns!(), " FROM clients ", $rest)
    };
    (outbox, $rest:literal) => {
        concat!("SELECT ", event_columns!(), " FROM outbox ", $rest)
    };
    (payout_links, $rest:literal) => {
        concat!("SELECT ", link_columns!(), " FROM payout_links ", $rest)
    };
    (bank_events, $rest:literal) => {
        concat!(
            "SELECT ",
            bank_event_columns!(),
            " FROM bank_events ",
            $rest
        )
    };
}
pub(super) use select;

/// An id column, parsed strictly: a forged or mangled id makes the row corrupt rather than
/// reaching the engine or an app.
fn id<R: Row, T>(r: &R, i: usize, parse: fn(&str) -> Option<T>, what: &'static str) -> Result<T>
where
    StoreError: From<R::Error>,
{
    let text: String = r.column(i)?;
    parse(&text).ok_or(StoreError::Corrupt(what))
}

/// An id column that may be NULL, parsed strictly when it is not.
fn optional_id<R: Row, T>(
    r: &R,
    i: usize,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> Result<Option<T>>
where
    StoreError: From<R::Error>,
{
    let text: Option<String> = r.column(i)?;
    text.map(|t| parse(&t).ok_or(StoreError::Corrupt(what)))
        .transpose()
}

/// A row of `payout_columns!()`.
pub(super) fn payout<R: Row>(r: &R) -> Result<Payout>
where
    StoreError: From<R::Error>,
{
    let mode: String = r.column(10)?;
    let state: String = r.column(11)?;
    let state = PayoutState::from_name(&state).ok_or(StoreError::Corrupt("payout state"))?;
    let bank = bank_session(state, r.column(12)?, r.column(13)?, r.column(18)?)?;
    Ok(Payout {
        id: id(r, 0, PayoutId::parse, "payout id")?,
        tenant: r.column(1)?,
        client_id: id(r, 2, AppClientId::parse, "client id")?,
        idempotency_key: r.column(3)?,
        request_hash: r.blob32(4, "request hash")?,
        card_token: r.column(5)?,
        amount: r.column(6)?,
        currency: r.column(7)?,
        recipient_name: r.column(8)?,
        metadata: r.column(9)?,
        confirm_mode: ConfirmMode::from_name(&mode).ok_or(StoreError::Corrupt("confirm mode"))?,
        state,
        bank,
        card_last4: r.column(14)?,
        failure_code: r.column(15)?,
        failure_message: r.column(16)?,
        attention: r.column(17)?,
        next_attempt_at: r.column(19)?,
        attempts: r.count(20, "attempts")?,
        created_at: r.column(21)?,
        updated_at: r.column(22)?,
        version: r.column(23)?,
        lease_owner: r.column(24)?,
        start_sends: r.count(25, "start_sends")?,
    })
}

/// A payout's session columns as its [`BankSession`]: a state that has a session must name one,
/// and what is learned within a session cannot be there without it.
fn bank_session(
    state: PayoutState,
    session_id: Option<String>,
    payout_id: Option<String>,
    confirm_deadline: Option<i64>,
) -> Result<Option<BankSession>> {
    match session_id {
        Some(id) => Ok(Some(BankSession {
            id: SessionId::new(id),
            payout_id,
            confirm_deadline,
        })),
        None if state.has_session() || payout_id.is_some() || confirm_deadline.is_some() => {
            Err(StoreError::Corrupt("bank session"))
        }
        None => Ok(None),
    }
}

/// A row of `client_columns!()`.
pub(super) fn client<R: Row>(r: &R) -> Result<ClientRecord>
where
    StoreError: From<R::Error>,
{
    let scopes: String = r.column(3)?;
    Ok(ClientRecord {
        id: id(r, 0, AppClientId::parse, "client id")?,
        name: r.column(1)?,
        tenant: r.column(2)?,
        scopes: Scopes::parse(&scopes).map_err(|_| StoreError::Corrupt("client scopes"))?,
        key_hash: shared::ct::Tag32(r.blob32(4, "client key hash")?),
        webhook_url: r.column(5)?,
        webhook_secret: WebhookSecret::from_stored(r.column(6)?),
        created_at: r.column(7)?,
        revoked_at: r.column(8)?,
        previous_key: match (r.column::<Option<Vec<u8>>>(9)?, r.column(10)?) {
            (Some(hash), Some(expires_at)) => Some(PreviousKey {
                hash: shared::ct::Tag32(shared::row::blob32(hash, "client previous key hash")?),
                expires_at,
            }),
            _ => None,
        },
    })
}

/// A client's values in `client_columns!()` order, for the insert.
pub(super) fn client_values(c: &ClientRecord) -> [Value<'_>; 11] {
    [
        Value::from(c.id.as_str()),
        Value::from(&c.name),
        Value::from(&c.tenant),
        Value::from(c.scopes.to_string()),
        Value::from(c.key_hash.as_slice()),
        Value::from(&c.webhook_url),
        Value::from(c.webhook_secret.expose()),
        Value::from(c.created_at),
        Value::from(c.revoked_at),
        Value::from(c.previous_key.as_ref().map(|k| k.hash.as_slice())),
        Value::from(c.previous_key.as_ref().map(|k| k.expires_at)),
    ]
}

/// A row of `event_columns!()`.
pub(super) fn event<R: Row>(r: &R) -> Result<OutboxEvent>
where
    StoreError: From<R::Error>,
{
    let payout_id = optional_id(r, 1, PayoutId::parse, "payout id")?;
    let payout_link_id = optional_id(r, 11, PayoutLinkId::parse, "payout link id")?;
    if payout_id.is_none() && payout_link_id.is_none() {
        return Err(StoreError::Corrupt("event subject"));
    }
    Ok(OutboxEvent {
        id: r.column(0)?,
        payout_id,
        payout_link_id,
        client_id: id(r, 2, AppClientId::parse, "client id")?,
        event_type: r.column(3)?,
        payload: r.column(4)?,
        attempts: r.count(5, "attempts")?,
        next_attempt_at: r.column(6)?,
        delivered_at: r.column(7)?,
        abandoned_at: r.column(8)?,
        last_error: r.column(9)?,
        created_at: r.column(10)?,
    })
}

/// A row of `bank_event_columns!()`.
pub(super) fn bank_event<R: Row>(r: &R) -> Result<BankEvent>
where
    StoreError: From<R::Error>,
{
    let payout_id: Option<String> = r.column(0)?;
    Ok(BankEvent {
        payout_id: payout_id
            .map(|text| PayoutId::parse(&text).ok_or(StoreError::Corrupt("payout id")))
            .transpose()?,
        bank_session_id: r.column(1)?,
        kind: r.column(2)?,
        body: r.column(3)?,
        received_at: r.column(4)?,
    })
}

/// A payout's values in `payout_columns!()` order, for the insert.
pub(super) fn payout_values(p: &Payout) -> [Value<'_>; 26] {
    [
        Value::from(p.id.as_str()),
        Value::from(&p.tenant),
        Value::from(p.client_id.as_str()),
        Value::from(&p.idempotency_key),
        Value::from(&p.request_hash),
        Value::from(&p.card_token),
        Value::from(p.amount),
        Value::from(&p.currency),
        Value::from(&p.recipient_name),
        Value::from(&p.metadata),
        Value::from(p.confirm_mode.as_str()),
        Value::from(p.state.as_str()),
        Value::from(p.bank.as_ref().map(|b| b.id.as_str())),
        Value::from(p.bank_payout_id()),
        Value::from(&p.card_last4),
        Value::from(&p.failure_code),
        Value::from(&p.failure_message),
        Value::from(&p.attention),
        Value::from(p.bank.as_ref().and_then(|b| b.confirm_deadline)),
        Value::from(p.next_attempt_at),
        Value::from(p.attempts),
        Value::from(p.created_at),
        Value::from(p.updated_at),
        Value::from(p.version),
        Value::from(&p.lease_owner),
        Value::from(p.start_sends),
    ]
}

/// What a save may change, for `UPDATE payouts SET state = ?3 … start_sends = ?15, version =
/// version + 1 WHERE id = ?1 AND version = ?2` (each backend writes that statement in its own
/// placeholders): the id and the version read, then the changing columns, picked from
/// [`payout_values`] by their place in `payout_columns!()`.
pub(super) fn payout_changes(p: &Payout) -> [Value<'_>; 15] {
    const CHANGES: [usize; 15] = [0, 23, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 25];
    let values = payout_values(p);
    // Every index is below 26, the length of `values`: the `Text(None)` is never bound.
    CHANGES.map(|i| values.get(i).cloned().unwrap_or(Value::Text(None)))
}

/// The columns [`payout_changes`] sets, after `UPDATE payouts SET `, in either backend's
/// placeholders (`?` or `$`).
macro_rules! payout_changes_sql {
    ($p:literal) => {
        concat!(
            "UPDATE payouts SET state = ",
            $p,
            "3, bank_session_id = ",
            $p,
            "4, bank_payout_id = ",
            $p,
            "5, card_last4 = ",
            $p,
            "6, failure_code = ",
            $p,
            "7, failure_message = ",
            $p,
            "8, attention = ",
            $p,
            "9, confirm_deadline = ",
            $p,
            "10, next_attempt_at = ",
            $p,
            "11, attempts = ",
            $p,
            "12, updated_at = ",
            $p,
            "13, lease_owner = ",
            $p,
            "14, start_sends = ",
            $p,
            "15, version = version + 1 WHERE id = ",
            $p,
            "1 AND version = ",
            $p,
            "2"
        )
    };
}
pub(super) use payout_changes_sql;

/// An outbox event's values in `event_columns!()` order, for the insert.
pub(super) fn event_values(e: &OutboxEvent) -> [Value<'_>; 12] {
    [
        Value::from(&e.id),
        Value::from(e.payout_id.as_ref().map(PayoutId::as_str)),
        Value::from(e.client_id.as_str()),
        Value::from(&e.event_type),
        Value::from(&e.payload),
        Value::from(e.attempts),
        Value::from(e.next_attempt_at),
        Value::from(e.delivered_at),
        Value::from(e.abandoned_at),
        Value::from(&e.last_error),
        Value::from(e.created_at),
        Value::from(e.payout_link_id.as_ref().map(PayoutLinkId::as_str)),
    ]
}

/// A row of `link_columns!()`. A completed link must name its payout and card (and only a
/// completed one may): anything else is corrupt, like a started payout without its session.
pub(super) fn payout_link<R: Row>(r: &R) -> Result<PayoutLink>
where
    StoreError: From<R::Error>,
{
    let state: String = r.column(15)?;
    let state = LinkState::from_name(&state).ok_or(StoreError::Corrupt("payout link state"))?;
    let payout_id = optional_id(r, 16, PayoutId::parse, "payout id")?;
    let card: (Option<String>, Option<String>, Option<i64>) =
        (r.column(17)?, r.column(18)?, r.column(19)?);
    let completion = match (state, payout_id, card) {
        (LinkState::Completed, Some(payout_id), (Some(last4), Some(brand), Some(at))) => {
            Some(LinkCompletion {
                payout_id,
                last4,
                brand,
                at,
            })
        }
        (LinkState::Open | LinkState::Expired, None, (None, None, None)) => None,
        _ => return Err(StoreError::Corrupt("payout link completion")),
    };
    Ok(PayoutLink {
        id: id(r, 0, PayoutLinkId::parse, "payout link id")?,
        tenant: r.column(1)?,
        client_id: id(r, 2, AppClientId::parse, "client id")?,
        idempotency_key: r.column(3)?,
        request_hash: r.blob32(4, "payout link request hash")?,
        amount: r.column(5)?,
        currency: r.column(6)?,
        recipient_name: r.column(7)?,
        metadata: r.column(8)?,
        session: id(r, 9, CollectSessionId::parse, "collect session id")?,
        session_url: r.column(10)?,
        sealed_secret: r.column(11)?,
        expires_at: r.column(12)?,
        created_at: r.column(13)?,
        tag: r.blob32(14, "payout link tag")?,
        state,
        completion,
        next_poll_at: r.column(20)?,
        lease_owner: r.column(21)?,
        updated_at: r.column(22)?,
        version: r.column(23)?,
    })
}

/// A link's values in `link_columns!()` order, for the insert.
pub(super) fn link_values(l: &PayoutLink) -> [Value<'_>; 24] {
    let done = l.completion.as_ref();
    [
        Value::from(l.id.as_str()),
        Value::from(&l.tenant),
        Value::from(l.client_id.as_str()),
        Value::from(&l.idempotency_key),
        Value::from(&l.request_hash),
        Value::from(l.amount),
        Value::from(&l.currency),
        Value::from(&l.recipient_name),
        Value::from(&l.metadata),
        Value::from(l.session.as_str()),
        Value::from(&l.session_url),
        Value::from(&l.sealed_secret),
        Value::from(l.expires_at),
        Value::from(l.created_at),
        Value::from(&l.tag),
        Value::from(l.state.as_str()),
        Value::from(done.map(|c| c.payout_id.as_str())),
        Value::from(done.map(|c| c.last4.as_str())),
        Value::from(done.map(|c| c.brand.as_str())),
        Value::from(done.map(|c| c.at)),
        Value::from(l.next_poll_at),
        Value::from(&l.lease_owner),
        Value::from(l.updated_at),
        Value::from(l.version),
    ]
}

/// What closing an open link writes, for `UPDATE payout_links SET state = ?2 … WHERE id = ?1
/// AND state = 'open'` ([`link_close_sql`]): the id, then the state and what it learned.
pub(super) fn link_close(l: &PayoutLink) -> [Value<'_>; 7] {
    let done = l.completion.as_ref();
    [
        Value::from(l.id.as_str()),
        Value::from(l.state.as_str()),
        Value::from(done.map(|c| c.payout_id.as_str())),
        Value::from(done.map(|c| c.last4.as_str())),
        Value::from(done.map(|c| c.brand.as_str())),
        Value::from(done.map(|c| c.at)),
        Value::from(l.updated_at),
    ]
}

/// The statement [`link_close`] binds, in either backend's placeholders: it changes a link only
/// while it is open, so of two replicas closing one link, one does.
macro_rules! link_close_sql {
    ($p:literal) => {
        concat!(
            "UPDATE payout_links SET state = ",
            $p,
            "2, payout_id = ",
            $p,
            "3, card_last4 = ",
            $p,
            "4, card_brand = ",
            $p,
            "5, completed_at = ",
            $p,
            "6, updated_at = ",
            $p,
            "7, version = version + 1 WHERE id = ",
            $p,
            "1 AND state = 'open'"
        )
    };
}
pub(super) use link_close_sql;
