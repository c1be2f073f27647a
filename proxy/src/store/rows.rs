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
use crate::ids::{AppClientId, PayoutId};
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
         abandoned_at, last_error, created_at"
    };
}
pub(super) use event_columns;

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
    Ok(OutboxEvent {
        id: r.column(0)?,
        payout_id: id(r, 1, PayoutId::parse, "payout id")?,
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
pub(super) fn event_values(e: &OutboxEvent) -> [Value<'_>; 11] {
    [
        Value::from(&e.id),
        Value::from(e.payout_id.as_str()),
        Value::from(e.client_id.as_str()),
        Value::from(&e.event_type),
        Value::from(&e.payload),
        Value::from(e.attempts),
        Value::from(e.next_attempt_at),
        Value::from(e.delivered_at),
        Value::from(e.abandoned_at),
        Value::from(&e.last_error),
        Value::from(e.created_at),
    ]
}
