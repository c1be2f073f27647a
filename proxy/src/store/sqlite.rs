//! The SQLite backend on the shared durable set-up (`shared::sqlite`).
//!
//! Long because it is one backend of the whole store trait: each operation is one transaction
//! with its SQL beside it. The mapping of rows to domain values is not here but in `rows`,
//! shared with the other backend.

use async_trait::async_trait;
use rusqlite::params;
use shared::sqlite::{SqliteOptions, SqlitePool, query};

use super::rows::{
    self, bank_event_columns, client_columns, event_columns, link_close_sql, link_columns,
    payout_changes_sql, payout_columns, select,
};
use super::{BankEvent, Inserted, ProxyStore, StoreError};
use crate::auth::{ClientRecord, WebhookSecret};
use crate::ids::{AppClientId, PayoutId, PayoutLinkId};
use crate::link::PayoutLink;
use crate::payout::{OutboxEvent, Payout, PayoutState};
use crate::store::Result;
use crate::store::{EventFilter, PayoutClaim, PayoutFilter};

const MIGRATIONS: &[&str] = migrations!("sqlite");

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
    pub fn open(options: &SqliteOptions) -> Result<Self> {
        Ok(Self {
            pool: SqlitePool::open(options, MIGRATIONS)?,
        })
    }
}

#[async_trait]
impl ProxyStore for SqliteStore {
    async fn insert_payout(&self, p: Payout) -> Result<Inserted> {
        self.pool
            .transaction(move |tx| {
                let existing = query(
                    tx,
                    select!(payouts, "WHERE client_id = ?1 AND idempotency_key = ?2"),
                    params![p.client_id.as_str(), p.idempotency_key],
                    |r| rows::payout(r),
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
                .execute(rows::payout_values(&p))?;
                Ok(Inserted::New(p))
            })
            .await
    }

    async fn payout(&self, id: &PayoutId) -> Result<Option<Payout>> {
        let id = id.as_str();
        let sql = select!(payouts, "WHERE id = ?1");
        let params = [id.to_owned()];
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::payout(r)))
            .await
    }

    async fn payout_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<Payout>> {
        let client_id = client_id.as_str();
        let sql = select!(payouts, "WHERE client_id = ?1 AND idempotency_key = ?2");
        let params = (client_id.to_owned(), key.to_owned());
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::payout(r)))
            .await
    }

    async fn payout_by_session(&self, session_id: &str) -> Result<Option<Payout>> {
        let sql = select!(payouts, "WHERE bank_session_id = ?1");
        let params = [session_id.to_owned()];
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::payout(r)))
            .await
    }

    async fn list_payouts(
        &self,
        tenant: &str,
        filter: PayoutFilter,
        limit: u32,
    ) -> Result<Vec<Payout>> {
        let sql = select!(
            payouts,
            "WHERE tenant = ?1 AND (?2 IS NULL OR state = ?2) \
             AND (?3 IS NULL OR created_at < (SELECT created_at FROM payouts WHERE id = ?3) \
                  OR (created_at = (SELECT created_at FROM payouts WHERE id = ?3) AND id < ?3)) \
             AND (?5 IS NULL OR client_id = ?5) \
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        );
        let state = filter.state.map(PayoutState::as_str);
        let params = (
            tenant.to_owned(),
            state,
            filter.after,
            limit,
            filter.client_id,
        );
        self.pool
            .read(move |c| query(c, sql, params, |r| rows::payout(r)))
            .await
    }

    async fn save(&self, p: &Payout, events: Vec<OutboxEvent>) -> Result<Payout> {
        let mut p = p.clone();
        self.pool
            .transaction(move |tx| {
                let changed = tx
                    .prepare_cached(payout_changes_sql!("?"))?
                    .execute(rows::payout_changes(&p))?;
                if changed == 0 {
                    return Err(StoreError::Conflict);
                }
                for e in &events {
                    insert_event(tx, e)?;
                }
                p.version += 1;
                Ok(p)
            })
            .await
    }

    async fn claim_due_payouts(&self, claim: PayoutClaim<'_>) -> Result<Vec<Payout>> {
        let PayoutClaim {
            due,
            lease_until,
            limit,
            ..
        } = claim;
        let owner = claim.owner.to_owned();
        self.pool
            .transaction(move |tx| {
                let mut claimed: Vec<Payout> = query(
                    tx,
                    select!(payouts, "WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'returned') \
                             AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"),
                    params![due, limit], |r| rows::payout(r))?;
                let mut lease = tx.prepare_cached(
                    "UPDATE payouts SET next_attempt_at = ?2, lease_owner = ?3, version = version + 1 WHERE id = ?1",
                )?;
                for p in &mut claimed {
                    lease.execute(params![p.id.as_str(), lease_until, owner])?;
                    p.next_attempt_at = lease_until;
                    p.lease_owner = Some(owner.clone());
                    p.version += 1;
                }
                Ok(claimed)
            })
            .await
    }

    async fn record_bank_event(&self, e: BankEvent) -> Result<bool> {
        let sql = "INSERT INTO bank_events (payout_id, bank_session_id, kind, body, received_at, body_sha256) \
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (body_sha256) DO NOTHING";
        let digest = e.digest().to_vec();
        let payout_id = e.payout_id.map(|id| id.as_str().to_owned());
        let params = (
            payout_id,
            e.bank_session_id,
            e.kind,
            e.body,
            e.received_at,
            digest,
        );
        Ok(self.pool.execute::<StoreError, _>(sql, params).await? == 1)
    }

    async fn bank_events(&self, payout_id: &PayoutId) -> Result<Vec<BankEvent>> {
        let payout_id = payout_id.as_str();
        let sql = select!(bank_events, "WHERE payout_id = ?1 ORDER BY seq");
        let params = [payout_id.to_owned()];
        self.pool
            .read(move |c| query(c, sql, params, |r| rows::bank_event(r)))
            .await
    }

    async fn claim_due_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        self.pool
            .transaction(move |tx| {
                let claimed: Vec<OutboxEvent> = query(
                    tx,
                    select!(
                        outbox,
                        "WHERE delivered_at IS NULL AND abandoned_at IS NULL \
                         AND next_attempt_at <= ?1 ORDER BY next_attempt_at, created_at LIMIT ?2"
                    ),
                    params![now, limit],
                    |r| rows::event(r),
                )?;
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
        client_id: &AppClientId,
        filter: EventFilter,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let client_id = client_id.as_str();
        let sql = select!(
            outbox,
            "WHERE client_id = ?1 AND (?2 IS NULL OR payout_id = ?2) \
             AND (?3 IS NULL OR event_type = ?3) \
             AND (?4 IS NULL OR created_at < (SELECT created_at FROM outbox WHERE id = ?4 AND client_id = ?1) \
                  OR (created_at = (SELECT created_at FROM outbox WHERE id = ?4 AND client_id = ?1) AND id < ?4)) \
             AND (?6 IS NULL OR payout_link_id = ?6) \
             ORDER BY created_at DESC, id DESC LIMIT ?5"
        );
        let EventFilter {
            payout_id,
            payout_link_id,
            event_type,
            after,
        } = filter;
        let params = (
            client_id.to_owned(),
            payout_id,
            event_type,
            after,
            limit,
            payout_link_id,
        );
        self.pool
            .read(move |c| query(c, sql, params, |r| rows::event(r)))
            .await
    }

    async fn redeliver_event(
        &self,
        client_id: &AppClientId,
        id: &str,
        now: i64,
    ) -> Result<Option<OutboxEvent>> {
        let client_id = client_id.as_str();
        let (client_id, id) = (client_id.to_owned(), id.to_owned());
        self.pool
            .transaction(move |tx| {
                query(
                    tx,
                    concat!(
                        "UPDATE outbox SET attempts = 0, next_attempt_at = ?3, delivered_at = NULL, \
                         abandoned_at = NULL WHERE id = ?2 AND client_id = ?1 RETURNING ",
                        event_columns!()
                    ),
                    params![client_id, id, now],
                    |r| rows::event(r),
                )
            })
            .await
    }

    async fn undelivered_events(&self) -> Result<u64> {
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

    async fn update_event(&self, e: &OutboxEvent) -> Result<()> {
        let sql = "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, delivered_at = ?4, abandoned_at = ?5, last_error = ?6 \
                   WHERE id = ?1";
        let e = e.clone();
        let params = (
            e.id,
            e.attempts,
            e.next_attempt_at,
            e.delivered_at,
            e.abandoned_at,
            e.last_error,
        );
        self.pool.execute::<StoreError, _>(sql, params).await?;
        Ok(())
    }

    async fn insert_client(&self, c: ClientRecord) -> Result<()> {
        self.pool
            .transaction(move |tx| {
                tx.prepare_cached(concat!(
                    "INSERT INTO clients (",
                    client_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))?
                .execute(rows::client_values(&c))?;
                Ok(())
            })
            .await
    }

    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>> {
        let sql = select!(clients, "WHERE key_hash = ?1 OR previous_key_hash = ?1");
        self.pool
            .lookup(move |c| query(c, sql, [key_hash], |r| rows::client(r)))
            .await
    }

    async fn client(&self, id: &AppClientId) -> Result<Option<ClientRecord>> {
        let id = id.as_str();
        let sql = select!(clients, "WHERE id = ?1");
        let params = [id.to_owned()];
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::client(r)))
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        let sql = select!(clients, "ORDER BY created_at, id");
        self.pool
            .read(move |c| query(c, sql, [], |r| rows::client(r)))
            .await
    }

    async fn set_webhook_secret(&self, id: &AppClientId, stored: &WebhookSecret) -> Result<()> {
        let id = id.as_str();
        let sql = "UPDATE clients SET webhook_secret = ?2 WHERE id = ?1";
        let params = (id.to_owned(), stored.expose().to_owned());
        self.pool.execute::<StoreError, _>(sql, params).await?;
        Ok(())
    }

    async fn revoke_client(&self, id: &AppClientId, now: i64) -> Result<bool> {
        let id = id.as_str();
        let sql = "UPDATE clients SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL";
        let params = (id.to_owned(), now);
        Ok(self.pool.execute::<StoreError, _>(sql, params).await? > 0)
    }

    async fn rotate_client_key(
        &self,
        id: &AppClientId,
        key_hash: [u8; 32],
        previous_until: Option<i64>,
    ) -> Result<bool> {
        let id = id.as_str();
        // The old hash is kept only with a time it stops at.
        let sql = "UPDATE clients SET \
                     previous_key_hash = CASE WHEN ?3 IS NULL THEN NULL ELSE key_hash END, \
                     previous_key_expires_at = ?3, key_hash = ?2 \
                   WHERE id = ?1 AND revoked_at IS NULL";
        let params = (id.to_owned(), key_hash, previous_until);
        Ok(self.pool.execute::<StoreError, _>(sql, params).await? > 0)
    }

    async fn set_webhook_url(&self, id: &AppClientId, url: Option<&str>) -> Result<bool> {
        let id = id.as_str();
        let sql = "UPDATE clients SET webhook_url = ?2 WHERE id = ?1 AND revoked_at IS NULL";
        let params = (id.to_owned(), url.map(str::to_owned));
        Ok(self.pool.execute::<StoreError, _>(sql, params).await? > 0)
    }

    async fn check_writable(&self) -> Result<()> {
        self.pool.transaction(|_| Ok(())).await
    }

    async fn insert_link(&self, link: PayoutLink) -> Result<Inserted<PayoutLink>> {
        self.pool
            .transaction(move |tx| {
                let existing = query(
                    tx,
                    select!(
                        payout_links,
                        "WHERE client_id = ?1 AND idempotency_key = ?2"
                    ),
                    params![link.client_id.as_str(), link.idempotency_key],
                    |r| rows::payout_link(r),
                )?;
                if let Some(existing) = existing {
                    return Ok(Inserted::Existing(existing));
                }
                tx.prepare_cached(concat!(
                    "INSERT INTO payout_links (",
                    link_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                     ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
                ))?
                .execute(rows::link_values(&link))?;
                Ok(Inserted::New(link))
            })
            .await
    }

    async fn link(&self, id: &PayoutLinkId) -> Result<Option<PayoutLink>> {
        let sql = select!(payout_links, "WHERE id = ?1");
        let params = [id.as_str().to_owned()];
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::payout_link(r)))
            .await
    }

    async fn link_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<PayoutLink>> {
        let sql = select!(
            payout_links,
            "WHERE client_id = ?1 AND idempotency_key = ?2"
        );
        let params = (client_id.as_str().to_owned(), key.to_owned());
        self.pool
            .lookup(move |c| query(c, sql, params, |r| rows::payout_link(r)))
            .await
    }

    async fn claim_due_links(&self, claim: PayoutClaim<'_>) -> Result<Vec<PayoutLink>> {
        let PayoutClaim {
            due,
            lease_until,
            limit,
            ..
        } = claim;
        let owner = claim.owner.to_owned();
        self.pool
            .transaction(move |tx| {
                let mut claimed: Vec<PayoutLink> = query(
                    tx,
                    select!(
                        payout_links,
                        "WHERE state = 'open' AND next_poll_at <= ?1 ORDER BY next_poll_at LIMIT ?2"
                    ),
                    params![due, limit],
                    |r| rows::payout_link(r),
                )?;
                let mut lease = tx.prepare_cached(
                    "UPDATE payout_links SET next_poll_at = ?2, lease_owner = ?3, version = version + 1 WHERE id = ?1",
                )?;
                for l in &mut claimed {
                    lease.execute(params![l.id.as_str(), lease_until, owner])?;
                    l.next_poll_at = lease_until;
                    l.lease_owner = Some(owner.clone());
                    l.version += 1;
                }
                Ok(claimed)
            })
            .await
    }

    async fn complete_link(
        &self,
        link: &PayoutLink,
        payout: Option<Payout>,
        event: OutboxEvent,
    ) -> Result<()> {
        let link = link.clone();
        self.pool
            .transaction(move |tx| {
                // The payout first: the link and the event name it.
                if let Some(p) = &payout {
                    let inserted = tx
                        .prepare_cached(concat!(
                            "INSERT INTO payouts (",
                            payout_columns!(),
                            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                             ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) \
                             ON CONFLICT (client_id, idempotency_key) DO NOTHING"
                        ))?
                        .execute(rows::payout_values(p))?;
                    if inserted == 0 {
                        return Err(StoreError::Conflict);
                    }
                }
                let closed = tx
                    .prepare_cached(link_close_sql!("?"))?
                    .execute(rows::link_close(&link))?;
                if closed == 0 {
                    return Err(StoreError::Conflict);
                }
                insert_event(tx, &event)
            })
            .await
    }

    async fn expire_link(&self, link: &PayoutLink, event: OutboxEvent) -> Result<bool> {
        let link = link.clone();
        self.pool
            .transaction(move |tx| {
                let closed = tx
                    .prepare_cached(link_close_sql!("?"))?
                    .execute(rows::link_close(&link))?;
                if closed == 0 {
                    return Ok(false);
                }
                insert_event(tx, &event)?;
                Ok(true)
            })
            .await
    }
}

/// Writes one app event, in the caller's transaction.
fn insert_event(tx: &rusqlite::Transaction<'_>, e: &OutboxEvent) -> Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO outbox (",
        event_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(rows::event_values(e))?;
    Ok(())
}
