//! The one mapping between the vault's rows and its domain values, used by both backends: each
//! table's column list, the function reading a row of it (through [`shared::row::Row`]), and the
//! values an insert binds, in column order (as [`shared::row::Value`]s).
//!
//! The column lists are macros so the queries that splice them in stay `&'static str` (each
//! statement is prepared once per connection and cached by its text).

use shared::Brand;
use shared::row::{Row, Value};

use super::{CardMeta, StoreError, TokenRecord};
use crate::audit::{AuditEvent, Link};
use crate::auth::{ClientRecord, Scopes};
use crate::collect::{CollectId, CollectSession, Completion, split_origins};
use crate::crypto::{KeyPurpose, KeyState, RowMac, Sealed, WrappedKey};
use crate::store::Result;
use crate::token::{ClientId, Token};

/// The token columns in [`token`]'s order.
macro_rules! token_columns {
    () => {
        "token, tenant, fingerprint, fingerprint_key_version, bin, brand, last4, pan_length, \
         exp_month, exp_year, algorithm, key_version, nonce, ciphertext, created_at, expires_at"
    };
}
pub(super) use token_columns;

/// The client columns in [`client`]'s order.
macro_rules! client_columns {
    () => {
        "id, name, tenant, scopes, key_hash, created_at, revoked_at, mac, cert_sha256"
    };
}
pub(super) use client_columns;

/// The audit event columns in [`event`]'s order.
macro_rules! event_columns {
    () => {
        "seq, occurred_at, actor, tenant, action, token, purpose, outcome, request_id, detail, mac"
    };
}
pub(super) use event_columns;

/// The key columns in [`wrapped_key`]'s order.
macro_rules! key_columns {
    () => {
        "purpose, version, algorithm, wrap_nonce, wrapped, created_at, state, seals"
    };
}
pub(super) use key_columns;

/// The collect session columns in [`collect_session`]'s order.
macro_rules! collect_session_columns {
    () => {
        "id, tenant, created_by, secret_hash, allowed_origins, name_required, metadata, \
         created_at, expires_at, completed_at, token, last4, brand, cardholder_name, mac"
    };
}
pub(super) use collect_session_columns;

/// `SELECT` a table's columns, in the order its mapping reads them, `FROM` the table, then the
/// rest of the query: `select!(clients, "WHERE id = $1")`.
macro_rules! select {
    (tokens, $rest:literal) => {
        concat!("SELECT ", token_columns!(), " FROM tokens ", $rest)
    };
    (clients, $rest:literal) => {
        concat!("SELECT ", client_columns!(), " FROM clients ", $rest)
    };
    (audit_events, $rest:literal) => {
        concat!("SELECT ", event_columns!(), " FROM audit_events ", $rest)
    };
    (keys, $rest:literal) => {
        concat!("SELECT ", key_columns!(), " FROM keys ", $rest)
    };
    (collect_sessions, $rest:literal) => {
        concat!(
            "SELECT ",
            collect_session_columns!(),
            " FROM collect_sessions ",
            $rest
        )
    };
}
pub(super) use select;

/// A stored audit sequence number (BIGINT) as the chain's `u64`.
pub(super) fn seq_of(stored: i64) -> Result<u64> {
    u64::try_from(stored).map_err(|_| StoreError::Corrupt("audit seq"))
}

/// An audit sequence number as stored.
pub(super) fn stored_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq"))
}

/// A row of `token_columns!()`.
pub(super) fn token<R: Row>(r: &R) -> Result<TokenRecord>
where
    StoreError: From<R::Error>,
{
    let token: String = r.column(0)?;
    let nonce: Vec<u8> = r.column(12)?;
    let exp_month: Option<i16> = r.column(8)?;
    let exp_year: Option<i32> = r.column(9)?;
    Ok(TokenRecord {
        token: Token::parse(&token).ok_or(StoreError::Corrupt("token"))?,
        tenant: r.column(1)?,
        fingerprint: r.blob32(2, "fingerprint")?,
        fingerprint_key_version: r.count(3, "fingerprint key version")?,
        earlier_fingerprints: Vec::new(),
        card: CardMeta {
            bin: r.column(4)?,
            brand: Brand::from_name(&r.column::<String>(5)?),
            last4: r.column(6)?,
            pan_length: u8::try_from(r.column::<i16>(7)?)
                .map_err(|_| StoreError::Corrupt("pan length"))?,
            exp_month: exp_month
                .map(|m| u8::try_from(m).map_err(|_| StoreError::Corrupt("exp month")))
                .transpose()?,
            exp_year: exp_year
                .map(|y| u16::try_from(y).map_err(|_| StoreError::Corrupt("exp year")))
                .transpose()?,
        },
        sealed: Sealed {
            algorithm: r.column(10)?,
            key_version: r.count(11, "key version")?,
            nonce: nonce.try_into().map_err(|_| StoreError::Corrupt("nonce"))?,
            ciphertext: r.column(13)?,
        },
        created_at: r.column(14)?,
        expires_at: r.column(15)?,
    })
}

/// A token's values in `token_columns!()` order.
pub(super) fn token_values(t: &TokenRecord) -> [Value<'_>; 16] {
    [
        Value::from(t.token.as_str()),
        Value::from(&t.tenant),
        Value::from(&t.fingerprint),
        Value::from(t.fingerprint_key_version),
        Value::from(&t.card.bin),
        Value::from(t.card.brand.as_str()),
        Value::from(&t.card.last4),
        Value::from(t.card.pan_length),
        Value::from(t.card.exp_month),
        Value::from(t.card.exp_year),
        Value::from(&t.sealed.algorithm),
        Value::from(t.sealed.key_version),
        Value::from(&t.sealed.nonce),
        Value::from(&t.sealed.ciphertext[..]),
        Value::from(t.created_at),
        Value::from(t.expires_at),
    ]
}

/// A row of `client_columns!()`.
pub(super) fn client<R: Row>(r: &R) -> Result<ClientRecord>
where
    StoreError: From<R::Error>,
{
    let id: String = r.column(0)?;
    let scopes: String = r.column(3)?;
    Ok(ClientRecord {
        id: ClientId::parse(&id).ok_or(StoreError::Corrupt("client id"))?,
        name: r.column(1)?,
        tenant: r.column(2)?,
        scopes: Scopes::parse(&scopes).map_err(|_| StoreError::Corrupt("client scopes"))?,
        key_hash: r.blob32(4, "client key hash")?,
        created_at: r.column(5)?,
        revoked_at: r.column(6)?,
        mac: r
            .column::<Option<Vec<u8>>>(7)?
            .map(|m| shared::row::blob32(m, "client mac").map(RowMac))
            .transpose()?,
        cert_sha256: r
            .column::<Option<Vec<u8>>>(8)?
            .map(|h| shared::row::blob32(h, "client certificate hash"))
            .transpose()?,
    })
}

/// A client's values in `client_columns!()` order.
pub(super) fn client_values(c: &ClientRecord) -> [Value<'_>; 9] {
    [
        Value::from(c.id.as_str()),
        Value::from(&c.name),
        Value::from(&c.tenant),
        Value::from(c.scopes.to_string()),
        Value::from(&c.key_hash),
        Value::from(c.created_at),
        Value::from(c.revoked_at),
        Value::from(c.mac.as_ref().map(|m| &m.0[..])),
        Value::from(c.cert_sha256.as_ref().map(|h| &h[..])),
    ]
}

/// A row of `event_columns!()`.
pub(super) fn event<R: Row>(r: &R) -> Result<AuditEvent>
where
    StoreError: From<R::Error>,
{
    Ok(AuditEvent {
        seq: seq_of(r.column(0)?)?,
        occurred_at: r.column(1)?,
        actor: r.column(2)?,
        tenant: r.column(3)?,
        action: r.column(4)?,
        token: r.column(5)?,
        purpose: r.column(6)?,
        outcome: r.column(7)?,
        request_id: r.column(8)?,
        detail: r.column(9)?,
        mac: r.blob32(10, "audit mac")?,
    })
}

/// A row of `seq, mac`: a link of the audit chain.
pub(super) fn link<R: Row>(r: &R) -> Result<Link>
where
    StoreError: From<R::Error>,
{
    Ok(Link {
        seq: seq_of(r.column(0)?)?,
        mac: r.blob32(1, "audit mac")?,
    })
}

/// A row of `key_columns!()`.
pub(super) fn wrapped_key<R: Row>(r: &R) -> Result<WrappedKey>
where
    StoreError: From<R::Error>,
{
    let purpose: String = r.column(0)?;
    let nonce: Vec<u8> = r.column(3)?;
    let state =
        KeyState::from_name(&r.column::<String>(6)?).ok_or(StoreError::Corrupt("key state"))?;
    // A destroyed version's wrapped key (and nonce) were wiped: nothing is left to unwrap.
    let nonce = if state == KeyState::Destroyed {
        [0; 12]
    } else {
        nonce
            .try_into()
            .map_err(|_| StoreError::Corrupt("key nonce"))?
    };
    Ok(WrappedKey {
        purpose: KeyPurpose::from_name(&purpose).ok_or(StoreError::Corrupt("key purpose"))?,
        version: r.count(1, "key version")?,
        sealed: Sealed {
            algorithm: r.column(2)?,
            key_version: 0,
            nonce,
            ciphertext: r.column(4)?,
        },
        created_at: r.column(5)?,
        state,
        // A negative count was not written by the vault: it would hold off rotation.
        seals: u64::try_from(r.column::<i64>(7)?).map_err(|_| StoreError::Corrupt("key seals"))?,
    })
}

/// A wrapped key's values in `key_columns!()` order.
pub(super) fn key_values(k: &WrappedKey) -> [Value<'_>; 8] {
    [
        Value::from(k.purpose.as_str()),
        Value::from(k.version),
        Value::from(&k.sealed.algorithm),
        Value::from(&k.sealed.nonce),
        Value::from(&k.sealed.ciphertext[..]),
        Value::from(k.created_at),
        Value::from(k.state.as_str()),
        Value::from(i64::try_from(k.seals).unwrap_or(i64::MAX)),
    ]
}

/// A row of `collect_session_columns!()`.
pub(super) fn collect_session<R: Row>(r: &R) -> Result<CollectSession>
where
    StoreError: From<R::Error>,
{
    let id: String = r.column(0)?;
    let created_by: String = r.column(2)?;
    let origins: String = r.column(4)?;
    let completed_at: Option<i64> = r.column(9)?;
    let token: Option<String> = r.column(10)?;
    let completion = match (completed_at, token) {
        (None, None) => None,
        (Some(at), Some(token)) => Some(Completion {
            at,
            token: Token::parse(&token).ok_or(StoreError::Corrupt("collect session token"))?,
            last4: r
                .column::<Option<String>>(11)?
                .ok_or(StoreError::Corrupt("collect session last4"))?,
            brand: Brand::from_name(&r.column::<Option<String>>(12)?.unwrap_or_default()),
            cardholder_name: r.column(13)?,
        }),
        _ => return Err(StoreError::Corrupt("collect session completion")),
    };
    Ok(CollectSession {
        id: CollectId::parse(&id).ok_or(StoreError::Corrupt("collect session id"))?,
        tenant: r.column(1)?,
        created_by: ClientId::parse(&created_by)
            .ok_or(StoreError::Corrupt("collect session client"))?,
        secret_hash: r.blob32(3, "collect session secret hash")?,
        allowed_origins: split_origins(&origins)
            .ok_or(StoreError::Corrupt("collect session origins"))?,
        name_required: r.column::<i16>(5)? != 0,
        metadata: r.column(6)?,
        created_at: r.column(7)?,
        expires_at: r.column(8)?,
        completion,
        mac: RowMac(r.blob32(14, "collect session mac")?),
    })
}

/// A new session's values in `collect_session_columns!()` order.
pub(super) fn collect_session_values(s: &CollectSession) -> [Value<'_>; 15] {
    let done = s.completion.as_ref();
    [
        Value::from(s.id.as_str()),
        Value::from(&s.tenant),
        Value::from(s.created_by.as_str()),
        Value::from(&s.secret_hash),
        Value::from(s.origins_text()),
        Value::from(u8::from(s.name_required)),
        Value::from(&s.metadata),
        Value::from(s.created_at),
        Value::from(s.expires_at),
        Value::from(done.map(|c| c.at)),
        Value::from(done.map(|c| c.token.as_str())),
        Value::from(done.map(|c| c.last4.as_str())),
        Value::from(done.map(|c| c.brand.as_str())),
        Value::from(done.and_then(|c| c.cardholder_name.as_deref())),
        Value::from(&s.mac.0),
    ]
}
