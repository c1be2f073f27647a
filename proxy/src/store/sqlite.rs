//! The SQLite backend on the shared durable set-up (`shared::sqlite`).

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use shared::sqlite::{
    CommitFailed, QueueFull, ReadOnly, SqliteOptions, SqlitePool, TaskFailed, blob32,
};

use super::{BankEvent, Inserted, ProxyStore, StoreError};
use crate::auth::{ClientRecord, PreviousKey, Scopes, WebhookSecret};
use crate::payout::{ConfirmMode, OutboxEvent, Payout, PayoutState};
use crate::store::EventFilter;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_leases.sql"),
    include_str!("../../migrations/sqlite/0003_returned.sql"),
    include_str!("../../migrations/sqlite/0004_bank_event_digest.sql"),
    include_str!("../../migrations/sqlite/0005_operations.sql"),
];

/// The SQLite store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or migrated.
    pub fn open(options: &SqliteOptions) -> Result<Self, StoreError> {
        Ok(Self {
            pool: SqlitePool::open(options, MIGRATIONS)?,
        })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => Self::Duplicate,
            _ => Self::Database(Box::new(e)),
        }
    }
}

impl From<CommitFailed> for StoreError {
    fn from(e: CommitFailed) -> Self {
        Self::Database(Box::new(e))
    }
}

impl From<TaskFailed> for StoreError {
    fn from(_: TaskFailed) -> Self {
        Self::Task
    }
}

impl From<QueueFull> for StoreError {
    fn from(_: QueueFull) -> Self {
        Self::Overloaded
    }
}

impl From<ReadOnly> for StoreError {
    fn from(e: ReadOnly) -> Self {
        Self::Database(Box::new(e))
    }
}

/// The payout columns in [`payout_from_row`]'s order. A macro so the queries stay `&'static str`
/// (each is prepared once per connection and cached by its text).
macro_rules! payout_columns {
    () => {
        "id, tenant, client_id, idempotency_key, request_hash, card_token, amount, currency, \
         recipient_name, metadata, confirm_mode, state, bank_session_id, bank_payout_id, card_last4, \
         failure_code, failure_message, attention, confirm_deadline, next_attempt_at, attempts, \
         created_at, updated_at, version, lease_owner, start_sends"
    };
}

fn payout_from_row(r: &Row<'_>) -> Result<Payout, StoreError> {
    let mode: String = r.get(10)?;
    let state: String = r.get(11)?;
    Ok(Payout {
        id: r.get(0)?,
        tenant: r.get(1)?,
        client_id: r.get(2)?,
        idempotency_key: r.get(3)?,
        request_hash: blob32(r.get(4)?, "request hash").map_err(StoreError::Corrupt)?,
        card_token: r.get(5)?,
        amount: r.get(6)?,
        currency: r.get(7)?,
        recipient_name: r.get(8)?,
        metadata: r.get(9)?,
        confirm_mode: ConfirmMode::from_name(&mode).ok_or(StoreError::Corrupt("confirm mode"))?,
        state: PayoutState::from_name(&state).ok_or(StoreError::Corrupt("payout state"))?,
        bank_session_id: r.get(12)?,
        bank_payout_id: r.get(13)?,
        card_last4: r.get(14)?,
        failure_code: r.get(15)?,
        failure_message: r.get(16)?,
        attention: r.get(17)?,
        confirm_deadline: r.get(18)?,
        next_attempt_at: r.get(19)?,
        attempts: r.get(20)?,
        created_at: r.get(21)?,
        updated_at: r.get(22)?,
        version: r.get(23)?,
        lease_owner: r.get(24)?,
        start_sends: r.get(25)?,
    })
}

/// The one payout `sql` (a query selecting `payout_columns!()`) finds with `params`.
fn one_payout(
    conn: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
) -> Result<Option<Payout>, StoreError> {
    conn.prepare_cached(sql)?
        .query_row(params, |r| Ok(payout_from_row(r)))
        .optional()?
        .transpose()
}

/// The payouts `sql` (a query selecting `payout_columns!()`) finds with `params`.
fn payouts(
    conn: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
) -> Result<Vec<Payout>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(payout_from_row(r)?);
    }
    Ok(out)
}

/// The client columns in [`client_from_row`]'s order.
macro_rules! client_columns {
    () => {
        "id, name, tenant, scopes, key_hash, webhook_url, webhook_secret, created_at, revoked_at, \
         previous_key_hash, previous_key_expires_at"
    };
}

fn client_from_row(r: &Row<'_>) -> Result<ClientRecord, StoreError> {
    let scopes: String = r.get(3)?;
    Ok(ClientRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        tenant: r.get(2)?,
        scopes: Scopes::parse(&scopes).map_err(|_| StoreError::Corrupt("client scopes"))?,
        key_hash: shared::ct::Tag32(
            blob32(r.get(4)?, "client key hash").map_err(StoreError::Corrupt)?,
        ),
        webhook_url: r.get(5)?,
        webhook_secret: WebhookSecret::from_stored(r.get(6)?),
        created_at: r.get(7)?,
        revoked_at: r.get(8)?,
        previous_key: match (
            r.get::<_, Option<Vec<u8>>>(9)?,
            r.get::<_, Option<i64>>(10)?,
        ) {
            (Some(hash), Some(expires_at)) => Some(PreviousKey {
                hash: shared::ct::Tag32(
                    blob32(hash, "client previous key hash").map_err(StoreError::Corrupt)?,
                ),
                expires_at,
            }),
            _ => None,
        },
    })
}

/// The outbox columns in [`event_from_row`]'s order.
macro_rules! event_columns {
    () => {
        "id, payout_id, client_id, event_type, payload, attempts, next_attempt_at, delivered_at, \
         abandoned_at, last_error, created_at"
    };
}

fn event_from_row(r: &Row<'_>) -> Result<OutboxEvent, rusqlite::Error> {
    Ok(OutboxEvent {
        id: r.get(0)?,
        payout_id: r.get(1)?,
        client_id: r.get(2)?,
        event_type: r.get(3)?,
        payload: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        delivered_at: r.get(7)?,
        abandoned_at: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
    })
}

#[async_trait]
impl ProxyStore for SqliteStore {
    async fn insert_payout(&self, p: Payout) -> Result<Inserted, StoreError> {
        self.pool
            .transaction(move |tx| {
                let existing = one_payout(
                    tx,
                    concat!(
                        "SELECT ",
                        payout_columns!(),
                        " FROM payouts WHERE client_id = ?1 AND idempotency_key = ?2"
                    ),
                    params![p.client_id, p.idempotency_key],
                )?;
                if let Some(existing) = existing {
                    return Ok(Inserted::Existing(existing));
                }
                tx.prepare_cached(concat!(
                    "INSERT INTO payouts (",
                    payout_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                         ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)"
                ))?
                .execute(params![
                    p.id,
                    p.tenant,
                    p.client_id,
                    p.idempotency_key,
                    p.request_hash.as_slice(),
                    p.card_token,
                    p.amount,
                    p.currency,
                    p.recipient_name,
                    p.metadata,
                    p.confirm_mode.as_str(),
                    p.state.as_str(),
                    p.bank_session_id,
                    p.bank_payout_id,
                    p.card_last4,
                    p.failure_code,
                    p.failure_message,
                    p.attention,
                    p.confirm_deadline,
                    p.next_attempt_at,
                    p.attempts,
                    p.created_at,
                    p.updated_at,
                    p.version,
                    p.lease_owner,
                    p.start_sends,
                ])?;
                Ok(Inserted::New(p))
            })
            .await
    }

    async fn payout(&self, id: &str) -> Result<Option<Payout>, StoreError> {
        let id = id.to_owned();
        self.pool
            .lookup(move |conn| {
                one_payout(
                    conn,
                    concat!("SELECT ", payout_columns!(), " FROM payouts WHERE id = ?1"),
                    [id],
                )
            })
            .await
    }

    async fn payout_by_idempotency_key(
        &self,
        client_id: &str,
        key: &str,
    ) -> Result<Option<Payout>, StoreError> {
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        self.pool
            .lookup(move |conn| {
                one_payout(
                    conn,
                    concat!(
                        "SELECT ",
                        payout_columns!(),
                        " FROM payouts WHERE client_id = ?1 AND idempotency_key = ?2"
                    ),
                    params![client_id, key],
                )
            })
            .await
    }

    async fn payout_by_session(&self, session_id: &str) -> Result<Option<Payout>, StoreError> {
        let id = session_id.to_owned();
        self.pool
            .lookup(move |conn| {
                one_payout(
                    conn,
                    concat!(
                        "SELECT ",
                        payout_columns!(),
                        " FROM payouts WHERE bank_session_id = ?1"
                    ),
                    [id],
                )
            })
            .await
    }

    async fn list_payouts(
        &self,
        tenant: &str,
        client_id: Option<&str>,
        state: Option<PayoutState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Payout>, StoreError> {
        let (tenant, after) = (tenant.to_owned(), after.map(str::to_owned));
        let client_id = client_id.map(str::to_owned);
        let state = state.map(PayoutState::as_str);
        self.pool
            .read(move |conn| {
                payouts(
                    conn,
                    concat!(
                        "SELECT ",
                        payout_columns!(),
                        " FROM payouts WHERE tenant = ?1 AND (?2 IS NULL OR state = ?2) \
                         AND (?3 IS NULL OR created_at < (SELECT created_at FROM payouts WHERE id = ?3) \
                              OR (created_at = (SELECT created_at FROM payouts WHERE id = ?3) AND id < ?3)) \
                         AND (?5 IS NULL OR client_id = ?5) \
                         ORDER BY created_at DESC, id DESC LIMIT ?4"
                    ),
                    params![tenant, state, after, limit, client_id],
                )
            })
            .await
    }

    async fn save(&self, p: &Payout, events: Vec<OutboxEvent>) -> Result<Payout, StoreError> {
        let mut p = p.clone();
        self.pool
            .transaction(move |tx| {
                    let changed = tx
                        .prepare_cached(
                            "UPDATE payouts SET state = ?3, bank_session_id = ?4, bank_payout_id = ?5, card_last4 = ?6, \
                             failure_code = ?7, failure_message = ?8, attention = ?9, confirm_deadline = ?10, \
                             next_attempt_at = ?11, attempts = ?12, updated_at = ?13, lease_owner = ?14, \
                             start_sends = ?15, version = version + 1 \
                             WHERE id = ?1 AND version = ?2",
                        )?
                        .execute(params![
                            p.id,
                            p.version,
                            p.state.as_str(),
                            p.bank_session_id,
                            p.bank_payout_id,
                            p.card_last4,
                            p.failure_code,
                            p.failure_message,
                            p.attention,
                            p.confirm_deadline,
                            p.next_attempt_at,
                            p.attempts,
                            p.updated_at,
                            p.lease_owner,
                            p.start_sends,
                        ])?;
                    if changed == 0 {
                        return Err(StoreError::Conflict);
                    }
                    let mut insert = tx.prepare_cached(concat!(
                        "INSERT INTO outbox (",
                        event_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                    ))?;
                    for e in &events {
                        insert.execute(params![
                                e.id,
                                e.payout_id,
                                e.client_id,
                                e.event_type,
                                e.payload,
                                e.attempts,
                                e.next_attempt_at,
                                e.delivered_at,
                                e.abandoned_at,
                                e.last_error,
                                e.created_at
                            ])?;
                    }
                    p.version += 1;
                    Ok(p)
                })
            .await
    }

    async fn claim_due_payouts(
        &self,
        due: i64,
        lease_until: i64,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<Payout>, StoreError> {
        let owner = owner.to_owned();
        self.pool
            .transaction(move |tx| {
                let mut claimed = payouts(
                    tx,
                    concat!(
                        "SELECT ",
                        payout_columns!(),
                        " FROM payouts WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'returned') \
                             AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
                    ),
                    params![due, limit],
                )?;
                let mut lease = tx.prepare_cached(
                    "UPDATE payouts SET next_attempt_at = ?2, lease_owner = ?3, version = version + 1 WHERE id = ?1",
                )?;
                for p in &mut claimed {
                    lease.execute(params![p.id, lease_until, owner])?;
                    p.next_attempt_at = lease_until;
                    p.lease_owner = Some(owner.clone());
                    p.version += 1;
                }
                Ok(claimed)
            })
            .await
    }

    async fn record_bank_event(&self, e: BankEvent) -> Result<bool, StoreError> {
        let digest = e.digest().to_vec();
        self.pool
            .transaction(move |tx| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO bank_events (payout_id, bank_session_id, kind, body, received_at, body_sha256) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (body_sha256) DO NOTHING",
                    )?
                    .execute(params![
                        e.payout_id,
                        e.bank_session_id,
                        e.kind,
                        e.body,
                        e.received_at,
                        digest
                    ])?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn bank_events(&self, payout_id: &str) -> Result<Vec<BankEvent>, StoreError> {
        let id = payout_id.to_owned();
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT payout_id, bank_session_id, kind, body, received_at FROM bank_events WHERE payout_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map([id], |r| {
                    Ok(BankEvent {
                        payout_id: r.get(0)?,
                        bank_session_id: r.get(1)?,
                        kind: r.get(2)?,
                        body: r.get(3)?,
                        received_at: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn claim_due_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.pool
            .transaction(move |tx| {
                let mut stmt = tx.prepare_cached(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL \
                         AND next_attempt_at <= ?1 ORDER BY next_attempt_at, created_at LIMIT ?2"
                ))?;
                let claimed: Vec<OutboxEvent> = stmt
                    .query_map(params![now, limit], event_from_row)?
                    .collect::<Result<_, _>>()?;
                let mut lease =
                    tx.prepare_cached("UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1")?;
                for e in &claimed {
                    lease.execute(params![e.id, lease_until])?;
                }
                Ok(claimed)
            })
            .await
    }

    async fn list_events(
        &self,
        client_id: &str,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let client_id = client_id.to_owned();
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM outbox WHERE client_id = ?1 AND (?2 IS NULL OR payout_id = ?2) \
                     AND (?3 IS NULL OR event_type = ?3) \
                     AND (?4 IS NULL OR created_at < (SELECT created_at FROM outbox WHERE id = ?4 AND client_id = ?1) \
                          OR (created_at = (SELECT created_at FROM outbox WHERE id = ?4 AND client_id = ?1) AND id < ?4)) \
                     ORDER BY created_at DESC, id DESC LIMIT ?5"
                ))?;
                let rows = stmt
                    .query_map(
                        params![client_id, filter.payout_id, filter.event_type, filter.after, limit],
                        event_from_row,
                    )?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn redeliver_event(
        &self,
        client_id: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OutboxEvent>, StoreError> {
        let (client_id, id) = (client_id.to_owned(), id.to_owned());
        self.pool
            .transaction(move |tx| {
                Ok(tx
                    .prepare_cached(concat!(
                        "UPDATE outbox SET attempts = 0, next_attempt_at = ?3, delivered_at = NULL, \
                         abandoned_at = NULL WHERE id = ?2 AND client_id = ?1 RETURNING ",
                        event_columns!()
                    ))?
                    .query_row(params![client_id, id, now], event_from_row)
                    .optional()?)
            })
            .await
    }

    async fn undelivered_events(&self) -> Result<u64, StoreError> {
        self.pool
            .read(|conn| {
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL",
                    )?
                    .query_row([], |r| r.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn update_event(&self, e: &OutboxEvent) -> Result<(), StoreError> {
        let e = e.clone();
        self.pool
            .transaction(move |tx| {
                tx.prepare_cached(
                    "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, delivered_at = ?4, abandoned_at = ?5, last_error = ?6 \
                     WHERE id = ?1",
                )?
                .execute(params![e.id, e.attempts, e.next_attempt_at, e.delivered_at, e.abandoned_at, e.last_error])?;
                Ok(())
            })
            .await
    }

    async fn insert_client(&self, c: ClientRecord) -> Result<(), StoreError> {
        self.pool
            .transaction(move |tx| {
                tx.execute(
                    concat!(
                        "INSERT INTO clients (",
                        client_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                    ),
                    params![
                        c.id,
                        c.name,
                        c.tenant,
                        c.scopes.to_string(),
                        c.key_hash.as_slice(),
                        c.webhook_url,
                        c.webhook_secret.expose(),
                        c.created_at,
                        c.revoked_at,
                        c.previous_key.map(|k| k.hash.0.to_vec()),
                        c.previous_key.map(|k| k.expires_at)
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn client_by_key_hash(
        &self,
        key_hash: [u8; 32],
    ) -> Result<Option<ClientRecord>, StoreError> {
        self.pool
            .lookup(move |conn| {
                conn.prepare_cached(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM clients WHERE key_hash = ?1 OR previous_key_hash = ?1"
                ))?
                .query_row([key_hash.as_slice()], |r| Ok(client_from_row(r)))
                .optional()?
                .transpose()
            })
            .await
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let id = id.to_owned();
        self.pool
            .lookup(move |conn| {
                conn.prepare_cached(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM clients WHERE id = ?1"
                ))?
                .query_row([id], |r| Ok(client_from_row(r)))
                .optional()?
                .transpose()
            })
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.pool
            .read(|conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM clients ORDER BY created_at, id"
                ))?;
                let mut rows = stmt.query([])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(client_from_row(r)?);
                }
                Ok(out)
            })
            .await
    }

    async fn set_webhook_secret(&self, id: &str, stored: &WebhookSecret) -> Result<(), StoreError> {
        let (id, stored) = (id.to_owned(), stored.expose().to_owned());
        self.pool
            .transaction(move |tx| {
                tx.prepare_cached("UPDATE clients SET webhook_secret = ?2 WHERE id = ?1")?
                    .execute(params![id, stored])?;
                Ok(())
            })
            .await
    }

    async fn revoke_client(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.pool
            .transaction(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE clients SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, now])?
                    > 0)
            })
            .await
    }

    async fn rotate_client_key(
        &self,
        id: &str,
        key_hash: [u8; 32],
        previous_until: Option<i64>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.pool
            .transaction(move |tx| {
                // The old hash is kept only with a time it stops at.
                Ok(tx
                    .prepare_cached(
                        "UPDATE clients SET \
                           previous_key_hash = CASE WHEN ?3 IS NULL THEN NULL ELSE key_hash END, \
                           previous_key_expires_at = ?3, key_hash = ?2 \
                         WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, key_hash.as_slice(), previous_until])?
                    > 0)
            })
            .await
    }

    async fn set_webhook_url(&self, id: &str, url: Option<&str>) -> Result<bool, StoreError> {
        let (id, url) = (id.to_owned(), url.map(str::to_owned));
        self.pool
            .transaction(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE clients SET webhook_url = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, url])?
                    > 0)
            })
            .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.pool.transaction(|_| Ok(())).await
    }
}
