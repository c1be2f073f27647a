//! The PostgreSQL backend: any number of proxy replicas on one database.
//!
//! Replicas coordinate through the database only: `save` is a compare-and-set on the payout's
//! version (two replicas never both move a payout, so never both start, confirm or cancel it),
//! and the reconciler and the outbox claim work with `FOR UPDATE SKIP LOCKED` and a lease.
//!
//! Long because it is one backend of the whole store trait: each operation is one transaction
//! with its SQL beside it. The mapping of rows to domain values is not here but in `rows`,
//! shared with the other backend.

use async_trait::async_trait;
use shared::postgres::{Db, Params};

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

const MIGRATIONS: &[&str] = migrations!("postgres");
const MIGRATION_LOCK: i64 = 0x7072_6f78_7901;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    db: Db,
}

impl PgStore {
    /// Connects (at most `max_connections`), optionally in `schema`, and migrates.
    ///
    /// # Errors
    ///
    /// A bad URL, an unreachable server, a failed migration.
    pub async fn connect(url: &str, max_connections: usize, schema: Option<&str>) -> Result<Self> {
        let pool = shared::postgres::connect(url, max_connections, schema).await?;
        shared::postgres::migrate(&pool, MIGRATION_LOCK, MIGRATIONS).await?;
        Ok(Self { db: pool.into() })
    }
}

#[async_trait]
impl ProxyStore for PgStore {
    async fn insert_payout(&self, p: Payout) -> Result<Inserted> {
        let client = self.db.conn::<StoreError>().await?;
        let stmt = client
            .prepare_cached(concat!(
                "INSERT INTO payouts (",
                payout_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26) \
                 ON CONFLICT (client_id, idempotency_key) DO NOTHING"
            ))
            .await?;
        let inserted = client.execute_raw(&stmt, rows::payout_values(&p)).await?;
        if inserted == 1 {
            return Ok(Inserted::New(p));
        }
        // Another request holds the key: the store's own lookup, on its own connection.
        drop(client);
        self.payout_by_idempotency_key(&p.client_id, &p.idempotency_key)
            .await?
            .map(Inserted::Existing)
            .ok_or(StoreError::Corrupt(
                "payout refused as a duplicate but not found",
            ))
    }

    async fn payout(&self, id: &PayoutId) -> Result<Option<Payout>> {
        let id = id.as_str();
        let sql = select!(payouts, "WHERE id = $1");
        self.db.fetch(sql, &[&id], rows::payout).await
    }

    async fn payout_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<Payout>> {
        let client_id = client_id.as_str();
        let sql = select!(payouts, "WHERE client_id = $1 AND idempotency_key = $2");
        self.db.fetch(sql, &[&client_id, &key], rows::payout).await
    }

    async fn payout_by_session(&self, session_id: &str) -> Result<Option<Payout>> {
        let sql = select!(payouts, "WHERE bank_session_id = $1");
        self.db.fetch(sql, &[&session_id], rows::payout).await
    }

    async fn list_payouts(
        &self,
        tenant: &str,
        filter: PayoutFilter,
        limit: u32,
    ) -> Result<Vec<Payout>> {
        let sql = select!(
            payouts,
            "WHERE tenant = $1 AND ($2::TEXT IS NULL OR state = $2) \
             AND ($3::TEXT IS NULL OR (created_at, id) < (SELECT created_at, id FROM payouts WHERE id = $3)) \
             AND ($5::TEXT IS NULL OR client_id = $5) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let state = filter.state.map(PayoutState::as_str);
        let limit = i64::from(limit);
        let params: Params<'_> = &[&tenant, &state, &filter.after, &limit, &filter.client_id];
        self.db.fetch(sql, params, rows::payout).await
    }

    async fn save(&self, p: &Payout, events: Vec<OutboxEvent>) -> Result<Payout> {
        let mut client = self.db.conn::<StoreError>().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(payout_changes_sql!("$")).await?;
        let changed = tx.execute_raw(&stmt, rows::payout_changes(p)).await?;
        if changed == 0 {
            return Err(StoreError::Conflict);
        }
        for e in &events {
            insert_event(&tx, e).await?;
        }
        tx.commit().await?;
        let mut saved = p.clone();
        saved.version += 1;
        Ok(saved)
    }

    async fn claim_due_payouts(&self, claim: PayoutClaim<'_>) -> Result<Vec<Payout>> {
        let sql = concat!(
            "UPDATE payouts SET next_attempt_at = $2, lease_owner = $4, version = version + 1 WHERE id IN ( \
               SELECT id FROM payouts WHERE state NOT IN ('succeeded', 'failed', 'cancelled', 'returned') AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            payout_columns!()
        );
        let limit = i64::from(claim.limit);
        let params: Params<'_> = &[&claim.due, &claim.lease_until, &limit, &claim.owner];
        self.db.fetch(sql, params, rows::payout).await
    }

    async fn record_bank_event(&self, e: BankEvent) -> Result<bool> {
        let sql = "INSERT INTO bank_events (payout_id, bank_session_id, kind, body, received_at, body_sha256) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (body_sha256) DO NOTHING";
        let payout_id = e.payout_id.as_ref().map(|id| id.as_str());
        let digest = e.digest().to_vec();
        let params: Params<'_> = &[
            &payout_id,
            &e.bank_session_id,
            &e.kind,
            &e.body,
            &e.received_at,
            &digest,
        ];
        Ok(self.db.execute::<StoreError>(sql, params).await? == 1)
    }

    async fn bank_events(&self, payout_id: &PayoutId) -> Result<Vec<BankEvent>> {
        let payout_id = payout_id.as_str();
        let sql = select!(bank_events, "WHERE payout_id = $1 ORDER BY seq");
        self.db.fetch(sql, &[&payout_id], rows::bank_event).await
    }

    async fn claim_due_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let sql = concat!(
            "UPDATE outbox SET next_attempt_at = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, created_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            event_columns!()
        );
        let params: Params<'_> = &[&now, &lease_until, &i64::from(limit)];
        self.db.fetch(sql, params, rows::event).await
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
            "WHERE client_id = $1 AND ($2::TEXT IS NULL OR payout_id = $2) \
             AND ($3::TEXT IS NULL OR event_type = $3) \
             AND ($4::TEXT IS NULL OR created_at < (SELECT created_at FROM outbox WHERE id = $4 AND client_id = $1) \
                  OR (created_at = (SELECT created_at FROM outbox WHERE id = $4 AND client_id = $1) AND id < $4)) \
             AND ($6::TEXT IS NULL OR payout_link_id = $6) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        let limit = i64::from(limit);
        let EventFilter {
            payout_id,
            payout_link_id,
            event_type,
            after,
        } = &filter;
        let params: Params<'_> = &[
            &client_id,
            payout_id,
            event_type,
            after,
            &limit,
            payout_link_id,
        ];
        self.db.fetch(sql, params, rows::event).await
    }

    async fn redeliver_event(
        &self,
        client_id: &AppClientId,
        id: &str,
        now: i64,
    ) -> Result<Option<OutboxEvent>> {
        let client_id = client_id.as_str();
        let sql = concat!(
            "UPDATE outbox SET attempts = 0, next_attempt_at = $3, delivered_at = NULL, \
             abandoned_at = NULL WHERE id = $2 AND client_id = $1 RETURNING ",
            event_columns!()
        );
        self.db
            .fetch(sql, &[&client_id, &id, &now], rows::event)
            .await
    }

    async fn undelivered_events(&self) -> Result<u64> {
        let sql = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL";
        let n: Option<i64> = self
            .db
            .fetch(sql, &[], |r| Ok::<i64, StoreError>(r.try_get(0)?))
            .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    async fn update_event(&self, e: &OutboxEvent) -> Result<()> {
        let sql = "UPDATE outbox SET attempts = $2, next_attempt_at = $3, delivered_at = $4, abandoned_at = $5, last_error = $6 \
                   WHERE id = $1";
        let params: Params<'_> = &[
            &e.id,
            &i64::from(e.attempts),
            &e.next_attempt_at,
            &e.delivered_at,
            &e.abandoned_at,
            &e.last_error,
        ];
        self.db.execute::<StoreError>(sql, params).await?;
        Ok(())
    }

    async fn insert_client(&self, c: ClientRecord) -> Result<()> {
        let sql = concat!(
            "INSERT INTO clients (",
            client_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let client = self.db.conn::<StoreError>().await?;
        client.execute_raw(sql, rows::client_values(&c)).await?;
        Ok(())
    }

    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>> {
        // The key presented may be the current one or the one it replaced (while that lasts).
        let sql = select!(clients, "WHERE key_hash = $1 OR previous_key_hash = $1");
        let hash = key_hash.as_slice();
        self.db.fetch(sql, &[&hash], rows::client).await
    }

    async fn client(&self, id: &AppClientId) -> Result<Option<ClientRecord>> {
        let id = id.as_str();
        let sql = select!(clients, "WHERE id = $1");
        self.db.fetch(sql, &[&id], rows::client).await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        let sql = select!(clients, "ORDER BY created_at, id");
        self.db.fetch(sql, &[], rows::client).await
    }

    async fn set_webhook_secret(&self, id: &AppClientId, stored: &WebhookSecret) -> Result<()> {
        let id = id.as_str();
        let sql = "UPDATE clients SET webhook_secret = $2 WHERE id = $1";
        self.db
            .execute::<StoreError>(sql, &[&id, &stored.expose()])
            .await?;
        Ok(())
    }

    async fn revoke_client(&self, id: &AppClientId, now: i64) -> Result<bool> {
        let id = id.as_str();
        let sql = "UPDATE clients SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        Ok(self.db.execute::<StoreError>(sql, &[&id, &now]).await? > 0)
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
                     previous_key_hash = CASE WHEN $3::BIGINT IS NULL THEN NULL ELSE key_hash END, \
                     previous_key_expires_at = $3, key_hash = $2 \
                   WHERE id = $1 AND revoked_at IS NULL";
        let params: Params<'_> = &[&id, &key_hash.as_slice(), &previous_until];
        Ok(self.db.execute::<StoreError>(sql, params).await? > 0)
    }

    async fn set_webhook_url(&self, id: &AppClientId, url: Option<&str>) -> Result<bool> {
        let id = id.as_str();
        let sql = "UPDATE clients SET webhook_url = $2 WHERE id = $1 AND revoked_at IS NULL";
        Ok(self.db.execute::<StoreError>(sql, &[&id, &url]).await? > 0)
    }

    async fn check_writable(&self) -> Result<()> {
        let client = self.db.conn::<StoreError>().await?;
        if shared::postgres::is_primary(&client).await? {
            Ok(())
        } else {
            Err(StoreError::Corrupt("the database is a read-only replica"))
        }
    }

    async fn insert_link(&self, link: PayoutLink) -> Result<Inserted<PayoutLink>> {
        let client = self.db.conn::<StoreError>().await?;
        let stmt = client
            .prepare_cached(concat!(
                "INSERT INTO payout_links (",
                link_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24) \
                 ON CONFLICT (client_id, idempotency_key) DO NOTHING"
            ))
            .await?;
        let inserted = client.execute_raw(&stmt, rows::link_values(&link)).await?;
        if inserted == 1 {
            return Ok(Inserted::New(link));
        }
        drop(client);
        self.link_by_idempotency_key(&link.client_id, &link.idempotency_key)
            .await?
            .map(Inserted::Existing)
            .ok_or(StoreError::Corrupt(
                "payout link refused as a duplicate but not found",
            ))
    }

    async fn link(&self, id: &PayoutLinkId) -> Result<Option<PayoutLink>> {
        let id = id.as_str();
        let sql = select!(payout_links, "WHERE id = $1");
        self.db.fetch(sql, &[&id], rows::payout_link).await
    }

    async fn link_by_idempotency_key(
        &self,
        client_id: &AppClientId,
        key: &str,
    ) -> Result<Option<PayoutLink>> {
        let client_id = client_id.as_str();
        let sql = select!(
            payout_links,
            "WHERE client_id = $1 AND idempotency_key = $2"
        );
        self.db
            .fetch(sql, &[&client_id, &key], rows::payout_link)
            .await
    }

    async fn claim_due_links(&self, claim: PayoutClaim<'_>) -> Result<Vec<PayoutLink>> {
        let sql = concat!(
            "UPDATE payout_links SET next_poll_at = $2, lease_owner = $4, version = version + 1 WHERE id IN ( \
               SELECT id FROM payout_links WHERE state = 'open' AND next_poll_at <= $1 \
               ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            link_columns!()
        );
        let limit = i64::from(claim.limit);
        let params: Params<'_> = &[&claim.due, &claim.lease_until, &limit, &claim.owner];
        self.db.fetch(sql, params, rows::payout_link).await
    }

    async fn complete_link(
        &self,
        link: &PayoutLink,
        payout: Option<Payout>,
        event: OutboxEvent,
    ) -> Result<()> {
        let mut client = self.db.conn::<StoreError>().await?;
        let tx = client.transaction().await?;
        // The payout first: the link and the event name it. Dropping `tx` rolls back.
        if let Some(p) = &payout {
            let stmt = tx
                .prepare_cached(concat!(
                    "INSERT INTO payouts (",
                    payout_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                     $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26) \
                     ON CONFLICT (client_id, idempotency_key) DO NOTHING"
                ))
                .await?;
            if tx.execute_raw(&stmt, rows::payout_values(p)).await? == 0 {
                return Err(StoreError::Conflict);
            }
        }
        let stmt = tx.prepare_cached(link_close_sql!("$")).await?;
        if tx.execute_raw(&stmt, rows::link_close(link)).await? == 0 {
            return Err(StoreError::Conflict);
        }
        insert_event(&tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn expire_link(&self, link: &PayoutLink, event: OutboxEvent) -> Result<bool> {
        let mut client = self.db.conn::<StoreError>().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(link_close_sql!("$")).await?;
        if tx.execute_raw(&stmt, rows::link_close(link)).await? == 0 {
            return Ok(false);
        }
        insert_event(&tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Writes one app event, in the caller's transaction.
async fn insert_event(tx: &deadpool_postgres::Transaction<'_>, e: &OutboxEvent) -> Result<()> {
    let stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO outbox (",
            event_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .await?;
    tx.execute_raw(&stmt, rows::event_values(e)).await?;
    Ok(())
}
