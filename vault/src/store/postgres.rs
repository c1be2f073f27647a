//! The PostgreSQL backend: any number of vault replicas on one database.
//!
//! What makes replicas safe: tokenize relies on the unique `(tenant, fingerprint)` index
//! (`INSERT … ON CONFLICT DO NOTHING`, then read the winner), so two replicas tokenizing the same
//! card at once return one token; audit appends take a transaction-level advisory lock, so the
//! chain stays one chain whatever the number of writers. Every audited transaction takes that
//! lock first, before any row lock, so no two writers can deadlock.
//!
//! Tokenize and plain audit appends (every read and detokenize) go through group commit
//! ([`group_commit`]): one transaction, one lock and one commit for all that are waiting.
//!
//! Long because it is one backend of the whole store trait: each operation is one transaction
//! with its SQL beside it. The mapping of rows to domain values is not here but in `rows`,
//! shared with the other backend.

mod group_commit;

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use shared::postgres::{Access, Db, Params};
use shared::row::Row as _;

use super::rows::{
    self, client_columns, collect_session_columns, event_columns, key_columns, select,
    token_columns,
};
use super::{ClientRevocation, KeyUse, Refingerprinted, Resealed, Store, StoreError, TokenRecord};
use crate::audit::{Action, AuditDraft, AuditEvent, ChainHead, Link, Outcome};
use crate::auth::ClientRecord;
use crate::clock::now_micros;
use crate::collect::{CollectId, CollectSession};
use crate::crypto::{AuditKey, ClientKey, KeyPurpose, KeyState, RowMac, WrappedKey};
use crate::store::Result;
use crate::token::{ClientId, Token};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_client_macs.sql"),
    include_str!("../../migrations/postgres/0003_collect_sessions.sql"),
    include_str!("../../migrations/postgres/0004_collect_completions.sql"),
    include_str!("../../migrations/postgres/0005_key_states.sql"),
    include_str!("../../migrations/postgres/0006_rewrap.sql"),
    include_str!("../../migrations/postgres/0007_key_seals.sql"),
    include_str!("../../migrations/postgres/0008_dual_control.sql"),
    include_str!("../../migrations/postgres/0009_refingerprint.sql"),
    include_str!("../../migrations/postgres/0010_client_certificates.sql"),
];
/// Advisory lock ids: one for migrations, one serializing audit appends.
const MIGRATION_LOCK: i64 = 0x7661_756c_7401;
const AUDIT_LOCK: i64 = 0x7661_756c_7402;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    db: Db,
    batches: group_commit::GroupCommit,
    head: Arc<ChainHead>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (at most `max_connections`), optionally in `schema`, and migrates. At most
    /// `max_queued_writes` writes wait for the group commit; more are refused at once.
    ///
    /// # Errors
    ///
    /// A bad URL, an unreachable server, a failed migration.
    pub async fn connect(
        url: &str,
        max_connections: usize,
        schema: Option<&str>,
        max_queued_writes: usize,
    ) -> Result<Self> {
        let pool = shared::postgres::connect(url, max_connections, schema).await?;
        shared::postgres::migrate(&pool, MIGRATION_LOCK, MIGRATIONS).await?;
        let head = Arc::new(ChainHead::default());
        Ok(Self {
            batches: group_commit::GroupCommit::start(
                pool.clone(),
                Arc::clone(&head),
                max_queued_writes,
            ),
            db: pool.into(),
            head,
        })
    }

    /// Connects for reading only: every transaction is read-only, nothing is migrated, and the
    /// schema must be the one this build writes.
    ///
    /// # Errors
    ///
    /// A bad URL, an unreachable server, a schema of another version.
    pub async fn connect_read_only(
        url: &str,
        max_connections: usize,
        schema: Option<&str>,
    ) -> Result<Self> {
        let pool =
            shared::postgres::connect_as(Access::ReadOnly, url, max_connections, schema).await?;
        let applied = shared::postgres::applied_migrations(&pool).await?;
        if applied != MIGRATIONS.len() {
            return Err(StoreError::Database(Box::new(
                shared::postgres::PgSetupError::Database(format!(
                    "the vault schema is version {applied}, this build expects {}; run `vault migrate` with the matching build",
                    MIGRATIONS.len()
                )),
            )));
        }
        let head = Arc::new(ChainHead::default());
        Ok(Self {
            batches: group_commit::GroupCommit::start(pool.clone(), Arc::clone(&head), 1),
            db: pool.into(),
            head,
        })
    }

    /// Begins an audited transaction on `client`: the audit lock held, the chain's head read.
    async fn audited<'a>(&self, client: &'a mut deadpool_postgres::Object) -> Result<Audited<'a>> {
        let tx = client.transaction().await?;
        let chain = Chain::lock(&tx, &self.head).await?;
        Ok(Audited { tx, chain })
    }

    /// Chains `draft` after the transaction's changes and commits them together.
    async fn commit_with(
        &self,
        Audited { tx, mut chain }: Audited<'_>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        insert_events(&tx, &[chain.link(audit, draft)]).await?;
        self.commit(tx, &chain).await
    }

    /// Commits `tx` and remembers `chain`'s head as this store's.
    async fn commit(&self, tx: Transaction<'_>, chain: &Chain) -> Result<()> {
        tx.commit().await?;
        self.head.advance(chain.head());
        Ok(())
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.db.conn().await
    }
}

/// The audit chain's last link, and the MAC of the event at a sequence number.
const LAST_LINK: &str = "SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1";
const MAC_AT: &str = "SELECT mac FROM audit_events WHERE seq = $1";

/// A row of [`MAC_AT`].
fn audit_mac(r: &tokio_postgres::Row) -> Result<[u8; 32]> {
    Ok(r.blob32(0, "audit mac")?)
}

async fn insert_token(tx: &Transaction<'_>, t: &TokenRecord) -> Result<bool> {
    let stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO tokens (",
            token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (tenant, fingerprint) DO NOTHING"
        ))
        .await?;
    let n = tx.execute_raw(&stmt, rows::token_values(t)).await?;
    Ok(n == 1)
}

/// Stores `new` unless the tenant already holds a live token for the card, which is returned
/// instead (with `draft` saying so); an expired one is replaced.
async fn tokenize_in(
    tx: &Transaction<'_>,
    new: TokenRecord,
    draft: &mut AuditDraft,
) -> Result<TokenRecord> {
    // During a fingerprint key rotation the card's token may still carry its fingerprint under
    // an older version. One query looks for the card under the newest fingerprint and every
    // earlier one, newest version first (as SQLite does): a card that a stale replica gave a
    // second token under an older version (at most a second after a rotation) keeps answering
    // with the one under the newest, and several rows under different older versions (two
    // stale windows) are not an error. Found only under an older version, the token is
    // re-fingerprinted under the newest on the spot, so the insert below cannot make a second
    // one. Writers hold the audit lock, so nothing takes the fingerprint meanwhile.
    if !new.earlier_fingerprints.is_empty() {
        let mut wanted: Vec<&[u8]> = Vec::with_capacity(new.earlier_fingerprints.len() + 1);
        wanted.push(new.fingerprint.as_slice());
        wanted.extend(new.earlier_fingerprints.iter().map(<[u8; 32]>::as_slice));
        let stmt = tx
            .prepare_cached(select!(
                tokens,
                "WHERE tenant = $1 AND fingerprint = ANY($2) \
                 ORDER BY fingerprint = $3 DESC, fingerprint_key_version DESC LIMIT 1 FOR UPDATE"
            ))
            .await?;
        let found = tx
            .query_opt(&stmt, &[&new.tenant, &wanted, &new.fingerprint.as_slice()])
            .await?;
        if let Some(row) = found {
            let mut old = rows::token(&row)?;
            if old.expires_at.is_some_and(|at| at <= new.created_at) {
                tx.execute(
                    "DELETE FROM tokens WHERE token = $1",
                    &[&old.token.as_str()],
                )
                .await?;
                insert_token(tx, &new).await?;
                return Ok(new);
            }
            if old.fingerprint != new.fingerprint {
                tx.execute(
                    "UPDATE tokens SET fingerprint = $2, fingerprint_key_version = $3 \
                     WHERE token = $1",
                    &[
                        &old.token.as_str(),
                        &new.fingerprint.as_slice(),
                        &i64::from(new.fingerprint_key_version),
                    ],
                )
                .await?;
                old.fingerprint = new.fingerprint;
                old.fingerprint_key_version = new.fingerprint_key_version;
            }
            draft.detail = Some("existing token".to_owned());
            return Ok(old);
        }
    }
    if insert_token(tx, &new).await? {
        return Ok(new);
    }
    // Another request (maybe another replica) holds this card: lock its row and decide.
    let stmt = tx
        .prepare_cached(select!(
            tokens,
            "WHERE tenant = $1 AND fingerprint = $2 FOR UPDATE"
        ))
        .await?;
    let row = tx
        .query_one(&stmt, &[&new.tenant, &new.fingerprint.as_slice()])
        .await?;
    let old = rows::token(&row)?;
    if old.expires_at.is_none_or(|at| at > new.created_at) {
        draft.detail = Some("existing token".to_owned());
        return Ok(old);
    }
    tx.execute(
        "DELETE FROM tokens WHERE token = $1",
        &[&old.token.as_str()],
    )
    .await?;
    insert_token(tx, &new).await?;
    Ok(new)
}

/// A transaction holding the audit lock, and the chain as it stands in it.
struct Audited<'a> {
    tx: Transaction<'a>,
    chain: Chain,
}

/// The audit chain's last link, read under the advisory lock that serializes appends.
struct Chain {
    seq: u64,
    mac: [u8; 32],
}

impl Chain {
    /// Takes the audit lock for the rest of `tx`, reads the chain's head, and checks that the
    /// chain still holds the head this store remembers. Every audited transaction calls this
    /// before touching any row: one lock order for all writers.
    async fn lock(tx: &Transaction<'_>, head: &ChainHead) -> Result<Self> {
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await?;
        let last = tx.prepare_cached(LAST_LINK).await?;
        let at = tx.prepare_cached(MAC_AT).await?;
        let known = head.known();
        let known_seq: i64 = i64::try_from(known.map_or(0, |k| k.seq)).unwrap_or(i64::MAX);
        let at_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&known_seq];
        // All three go out in one round trip. The server runs them in order, and under READ
        // COMMITTED the queries take their snapshots only once the lock is held, so they see
        // the last event committed by whoever held the lock before.
        let (_, last, at_known) = tokio::try_join!(
            tx.execute(&lock, &[&AUDIT_LOCK]),
            tx.query_opt(&last, &[]),
            tx.query_opt(&at, &at_params),
        )?;
        let stored = last.map(|r| rows::link(&r)).transpose()?;
        let mac_at_known = at_known.as_ref().map(audit_mac).transpose()?;
        head.check(known, stored, mac_at_known)?;
        Ok(stored.map_or(
            Self {
                seq: 0,
                mac: [0; 32],
            },
            |l| Self {
                seq: l.seq,
                mac: l.mac,
            },
        ))
    }

    /// The head as it now stands (after any links added).
    fn head(&self) -> Link {
        Link {
            seq: self.seq,
            mac: self.mac,
        }
    }

    /// Chains `draft` after the head and makes it the new head.
    fn link(&mut self, key: &AuditKey, draft: AuditDraft) -> AuditEvent {
        let e = AuditEvent::chain(key, &self.mac, self.seq + 1, now_micros(), draft);
        self.seq = e.seq;
        self.mac = e.mac;
        e
    }
}

/// Inserts chained events with one statement (arrays unnested), however many there are.
async fn insert_events(tx: &Transaction<'_>, events: &[AuditEvent]) -> Result<()> {
    let seqs = events
        .iter()
        .map(|e| rows::stored_seq(e.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let occurred: Vec<i64> = events.iter().map(|e| e.occurred_at).collect();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let tenants: Vec<Option<&str>> = events.iter().map(|e| e.tenant.as_deref()).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let tokens: Vec<Option<&str>> = events.iter().map(|e| e.token.as_deref()).collect();
    let purposes: Vec<Option<&str>> = events.iter().map(|e| e.purpose.as_deref()).collect();
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    let requests: Vec<Option<&str>> = events.iter().map(|e| e.request_id.as_deref()).collect();
    let details: Vec<Option<&str>> = events.iter().map(|e| e.detail.as_deref()).collect();
    let macs: Vec<&[u8]> = events.iter().map(|e| e.mac.as_slice()).collect();
    let stmt = tx
        .prepare_cached(concat!(
            "INSERT INTO audit_events (",
            event_columns!(),
            ") SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[])"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &seqs, &occurred, &actors, &tenants, &actions, &tokens, &purposes, &outcomes,
            &requests, &details, &macs,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_key(tx: &Transaction<'_>, k: &WrappedKey) -> Result<()> {
    tx.execute_raw(
        concat!(
            "INSERT INTO keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        rows::key_values(k),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn wrapped_keys(&self) -> Result<Vec<WrappedKey>> {
        let sql = select!(keys, "ORDER BY purpose, version");
        self.db.fetch(sql, &[], rows::wrapped_key).await
    }

    async fn insert_keys(
        &self,
        keys: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        for k in &keys {
            insert_key(&w.tx, k).await?;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(())
    }

    async fn tokenize(
        &self,
        new: TokenRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<TokenRecord> {
        self.batches.tokenize(audit, new, draft).await
    }

    async fn token(&self, tenant: &str, token: &Token, now: i64) -> Result<Option<TokenRecord>> {
        let sql = select!(
            tokens,
            "WHERE token = $1 AND tenant = $2 AND (expires_at IS NULL OR expires_at > $3)"
        );
        let params: Params<'_> = &[&token.as_str(), &tenant, &now];
        self.db.fetch(sql, params, rows::token).await
    }

    async fn delete_token(
        &self,
        tenant: &str,
        token: &Token,
        now: i64,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let deleted = w.tx
            .execute(
                "DELETE FROM tokens WHERE token = $1 AND tenant = $2 AND (expires_at IS NULL OR expires_at > $3)",
                &[&token.as_str(), &tenant, &now],
            )
            .await?
            > 0;
        if !deleted {
            draft.outcome = Outcome::NotFound;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(deleted)
    }

    async fn delete_expired(&self, now: i64, audit: &AuditKey) -> Result<u64> {
        let mut client = self.conn().await?;
        let Audited { tx, mut chain } = self.audited(&mut client).await?;
        let n = tx
            .execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1",
                &[&now],
            )
            .await?;
        if n > 0 {
            let mut draft = AuditDraft::new("system", Action::TokenExpire, Outcome::Granted);
            draft.detail = Some(format!("deleted {n} expired tokens"));
            insert_events(&tx, &[chain.link(audit, draft)]).await?;
        }
        self.commit(tx, &chain).await?;
        Ok(n)
    }

    async fn set_key_state(
        &self,
        purpose: KeyPurpose,
        version: u32,
        from: KeyState,
        to: KeyState,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let moved =
            w.tx.execute(
                "UPDATE keys SET state = $4 WHERE purpose = $1 AND version = $2 AND state = $3",
                &[
                    &purpose.as_str(),
                    &i64::from(version),
                    &from.as_str(),
                    &to.as_str(),
                ],
            )
            .await?
                > 0;
        if !moved {
            draft.outcome = Outcome::NotFound;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(moved)
    }

    async fn tokens_sealed_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>> {
        let sql = select!(
            tokens,
            "WHERE key_version = $1 AND token > $2 ORDER BY token LIMIT $3"
        );
        let after = after.as_ref().map_or("", |t| t.as_str()).to_owned();
        let params: Params<'_> = &[&i64::from(version), &after, &i64::from(limit)];
        self.db.fetch(sql, params, rows::token).await
    }

    async fn tokens_fingerprinted_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>> {
        let sql = select!(
            tokens,
            "WHERE fingerprint_key_version = $1 AND token > $2 ORDER BY token LIMIT $3"
        );
        let after = after.as_ref().map_or("", |t| t.as_str()).to_owned();
        let params: Params<'_> = &[&i64::from(version), &after, &i64::from(limit)];
        self.db.fetch(sql, params, rows::token).await
    }

    async fn refingerprint_tokens(
        &self,
        moved: Vec<Refingerprinted>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        // The card's fingerprint, unless another token of the tenant has it already; then the
        // token's own unmatched one. Writers of tokens hold the audit lock too, so nothing
        // takes the fingerprint between the check and the update.
        let update =
            w.tx.prepare(
                "UPDATE tokens SET fingerprint = CASE WHEN EXISTS (SELECT 1 FROM tokens \
                 WHERE tenant = $2 AND fingerprint = $4) THEN $5 ELSE $4 END, \
                 fingerprint_key_version = $6 \
                 WHERE token = $1 AND fingerprint_key_version = $3 AND EXISTS (SELECT 1 FROM keys \
                 WHERE purpose = 'fingerprint' AND version = $6 AND state = 'active')",
            )
            .await?;
        let mut changed = 0;
        for m in &moved {
            changed +=
                w.tx.execute(
                    &update,
                    &[
                        &m.token.as_str(),
                        &m.tenant,
                        &i64::from(m.from_version),
                        &m.fingerprint.as_slice(),
                        &m.unmatched.as_slice(),
                        &i64::from(m.version),
                    ],
                )
                .await?;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(changed)
    }

    async fn reseal_tokens(
        &self,
        resealed: Vec<Resealed>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let update =
            w.tx.prepare(
                "UPDATE tokens SET algorithm = $3, key_version = $4, nonce = $5, ciphertext = $6 \
                 WHERE token = $1 AND key_version = $2 AND EXISTS (SELECT 1 FROM keys \
                 WHERE purpose = 'data' AND version = $4 AND state = 'active')",
            )
            .await?;
        let mut changed = 0;
        for r in &resealed {
            changed +=
                w.tx.execute(
                    &update,
                    &[
                        &r.token.as_str(),
                        &i64::from(r.from_version),
                        &r.sealed.algorithm,
                        &i64::from(r.sealed.key_version),
                        &r.sealed.nonce.as_slice(),
                        &r.sealed.ciphertext.as_slice(),
                    ],
                )
                .await?;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(changed)
    }

    async fn destroy_key(
        &self,
        purpose: KeyPurpose,
        version: u32,
        shred: bool,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let empty: &[u8] = &[];
        if shred && purpose == KeyPurpose::Data {
            // The rows go with their key: a card tokenized again must get a token that opens,
            // not the dead one its fingerprint still points to.
            w.tx.execute(
                "DELETE FROM tokens WHERE key_version = $1 AND EXISTS (SELECT 1 FROM keys \
                 WHERE purpose = 'data' AND version = $1 AND state = 'decrypt_only')",
                &[&i64::from(version)],
            )
            .await?;
        }
        let destroyed =
            w.tx.execute(
                "UPDATE keys SET state = 'destroyed', wrapped = $4, wrap_nonce = $4 \
                 WHERE purpose = $1 AND version = $2 AND state = 'decrypt_only' \
                 AND ($3 OR $1 NOT IN ('data', 'fingerprint') \
                      OR ($1 = 'data' AND NOT EXISTS (SELECT 1 FROM tokens WHERE key_version = $2)) \
                      OR ($1 = 'fingerprint' AND NOT EXISTS \
                          (SELECT 1 FROM tokens WHERE fingerprint_key_version = $2)))",
                &[&purpose.as_str(), &i64::from(version), &shred, &empty],
            )
            .await?
                > 0;
        if !destroyed {
            draft.outcome = Outcome::NotFound;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(destroyed)
    }

    async fn add_seals(&self, purpose: KeyPurpose, version: u32, n: u64) -> Result<()> {
        self.db
            .execute::<StoreError>(
                "UPDATE keys SET seals = seals + $3 WHERE purpose = $1 AND version = $2",
                &[
                    &purpose.as_str(),
                    &i64::from(version),
                    &i64::try_from(n).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        Ok(())
    }

    async fn tokens_per_key_version(&self) -> Result<KeyUse> {
        let map = |r: &tokio_postgres::Row| -> Result<(u32, u64)> {
            Ok((
                r.count(0, "key version")?,
                u64::try_from(r.column::<i64>(1)?).unwrap_or(0),
            ))
        };
        let data = self
            .db
            .fetch(
                "SELECT key_version, count(*) FROM tokens GROUP BY key_version ORDER BY key_version",
                &[],
                map,
            )
            .await?;
        let fingerprint = self
            .db
            .fetch(
                "SELECT fingerprint_key_version, count(*) FROM tokens \
                 GROUP BY fingerprint_key_version ORDER BY fingerprint_key_version",
                &[],
                map,
            )
            .await?;
        Ok(KeyUse { data, fingerprint })
    }

    async fn delete_expired_collect_sessions(&self, before: i64, audit: &AuditKey) -> Result<u64> {
        let mut client = self.conn().await?;
        let Audited { tx, mut chain } = self.audited(&mut client).await?;
        let n = tx
            .execute(
                "DELETE FROM collect_sessions WHERE expires_at < $1",
                &[&before],
            )
            .await?;
        if n > 0 {
            let mut draft = AuditDraft::new("system", Action::CollectExpire, Outcome::Granted);
            draft.detail = Some(format!("deleted {n} collect sessions past their retention"));
            insert_events(&tx, &[chain.link(audit, draft)]).await?;
        }
        self.commit(tx, &chain).await?;
        Ok(n)
    }

    async fn insert_client(
        &self,
        c: ClientRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        w.tx.execute_raw(
            concat!(
                "INSERT INTO clients (",
                client_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            rows::client_values(&c),
        )
        .await?;
        self.commit_with(w, audit, draft).await?;
        Ok(())
    }

    async fn insert_collect_session(
        &self,
        session: CollectSession,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        w.tx.execute_raw(
            concat!(
                "INSERT INTO collect_sessions (",
                collect_session_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            rows::collect_session_values(&session),
        )
        .await?;
        self.commit_with(w, audit, draft).await
    }

    async fn collect_session(&self, id: &CollectId) -> Result<Option<CollectSession>> {
        let sql = select!(collect_sessions, "WHERE id = $1");
        self.db
            .fetch(sql, &[&id.as_str()], rows::collect_session)
            .await
    }

    async fn complete_collect_session(
        &self,
        mut session: CollectSession,
        new: TokenRecord,
        cardholder_name: Option<String>,
        key: &ClientKey,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<Option<CollectSession>> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let now = new.created_at;
        // A card already accepted for this session (the audit log says so) ends it, whatever its
        // row now says: the row may have been restored from before its completion.
        let completed_before =
            w.tx.query_opt(
                "SELECT 1 FROM audit_events WHERE action = 'collect.submit' \
                 AND outcome = 'granted' AND actor = $1 LIMIT 1",
                &[&session.id.as_str()],
            )
            .await?
            .is_some();
        if completed_before {
            return Ok(None);
        }
        // Claimed first (the row lock holds it until commit, and a concurrent claim re-reads
        // the row and finds it taken), so a session that is no longer open costs no token;
        // dropping the transaction rolls the claim back with everything.
        let claimed =
            w.tx.execute(
                "UPDATE collect_sessions SET completed_at = $2, token = '' \
                 WHERE id = $1 AND completed_at IS NULL AND expires_at > $2 AND mac = $3",
                &[&session.id.as_str(), &now, &session.mac.0.as_slice()],
            )
            .await?
                > 0;
        if !claimed {
            return Ok(None);
        }
        let record = tokenize_in(&w.tx, new, &mut draft).await?;
        draft.token = Some(record.token.as_str().to_owned());
        session.complete(now, &record, cardholder_name, key);
        let done = session.completion.as_ref();
        w.tx.execute(
            "UPDATE collect_sessions SET token = $2, last4 = $3, brand = $4, \
             cardholder_name = $5, mac = $6 WHERE id = $1",
            &[
                &session.id.as_str(),
                &done.map(|c| c.token.as_str()),
                &done.map(|c| c.last4.as_str()),
                &done.map(|c| c.brand.as_str()),
                &done.and_then(|c| c.cardholder_name.as_deref()),
                &session.mac.0.as_slice(),
            ],
        )
        .await?;
        self.commit_with(w, audit, draft).await?;
        Ok(Some(session))
    }

    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>> {
        let sql = select!(clients, "WHERE key_hash = $1");
        self.db
            .fetch(sql, &[&key_hash.as_slice()], rows::client)
            .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        let sql = select!(clients, "ORDER BY created_at, id");
        self.db.fetch(sql, &[], rows::client).await
    }

    async fn revoke_client(
        &self,
        revocation: ClientRevocation,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        // Only the row as it was read and checked: one changed since is not revoked blindly.
        let revoked = w.tx
            .execute(
                "UPDATE clients SET revoked_at = $2, mac = $3 WHERE id = $1 AND revoked_at IS NULL AND mac = $4",
                &[
                    &revocation.id.as_str(),
                    &revocation.revoked_at,
                    &revocation.new_mac.0.as_slice(),
                    &revocation.old_mac.0.as_slice(),
                ],
            )
            .await?
            > 0;
        if !revoked {
            draft.outcome = Outcome::NotFound;
        }
        self.commit_with(w, audit, draft).await?;
        Ok(revoked)
    }

    async fn add_key_version(
        &self,
        key: WrappedKey,
        witness: WrappedKey,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        // Under the audit lock, which a master-key rotation holds too: nothing changes the
        // witness between this check and the commit.
        let held: bool =
            w.tx.query_one(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE purpose = $1 AND version = $2 \
                 AND wrap_nonce = $3 AND wrapped = $4)",
                &[
                    &witness.purpose.as_str(),
                    &i64::from(witness.version),
                    &witness.sealed.nonce.as_slice(),
                    &witness.sealed.ciphertext.as_slice(),
                ],
            )
            .await?
            .get(0);
        if !held {
            return Err(StoreError::Duplicate);
        }
        insert_key(&w.tx, &key).await?;
        self.commit_with(w, audit, draft).await
    }

    async fn add_key_and_seal_clients(
        &self,
        key: WrappedKey,
        macs: Vec<(ClientId, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        insert_key(&w.tx, &key).await?;
        for (id, mac) in &macs {
            w.tx.execute(
                "UPDATE clients SET mac = $2 WHERE id = $1 AND mac IS NULL",
                &[&id.as_str(), &mac.0.as_slice()],
            )
            .await?;
        }
        self.commit_with(w, audit, draft).await
    }

    async fn client_by_id(&self, id: &ClientId) -> Result<Option<ClientRecord>> {
        let sql = select!(clients, "WHERE id = $1");
        self.db.fetch(sql, &[&id.as_str()], rows::client).await
    }

    async fn append_audit(&self, audit: &AuditKey, draft: AuditDraft) -> Result<()> {
        self.batches.append(audit, draft).await
    }

    async fn rewrap_keys(
        &self,
        from: Vec<WrappedKey>,
        to: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        let audited = self.audited(&mut conn).await?;
        let held: i64 = audited
            .tx
            .query_one("SELECT count(*) FROM keys WHERE state <> 'destroyed'", &[])
            .await?
            .get(0);
        if usize::try_from(held).ok() != Some(to.len()) || from.len() != to.len() {
            return Ok(false);
        }
        let update = audited
            .tx
            .prepare_cached(
                "UPDATE keys SET wrap_nonce = $3, wrapped = $4 \
                 WHERE purpose = $1 AND version = $2 AND wrap_nonce = $5 AND wrapped = $6 \
                 AND state <> 'destroyed'",
            )
            .await?;
        for (old, new) in from.iter().zip(&to) {
            let changed = audited
                .tx
                .execute(
                    &update,
                    &[
                        &new.purpose.as_str(),
                        &i64::from(new.version),
                        &new.sealed.nonce.as_slice(),
                        &new.sealed.ciphertext.as_slice(),
                        &old.sealed.nonce.as_slice(),
                        &old.sealed.ciphertext.as_slice(),
                    ],
                )
                .await?;
            if changed != 1 {
                // Dropping the transaction rolls it back.
                return Ok(false);
            }
        }
        self.commit_with(audited, audit, draft).await?;
        Ok(true)
    }

    async fn collect_sessions_after(
        &self,
        after: Option<CollectId>,
        limit: u32,
    ) -> Result<Vec<CollectSession>> {
        let sql = select!(collect_sessions, "WHERE id > $1 ORDER BY id LIMIT $2");
        let after = after.as_ref().map_or("", |a| a.as_str()).to_owned();
        let params: Params<'_> = &[&after, &i64::from(limit)];
        self.db.fetch(sql, params, rows::collect_session).await
    }

    async fn remac_rows(
        &self,
        clients: Vec<(ClientId, RowMac, RowMac)>,
        sessions: Vec<(CollectId, RowMac, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        let mut client = self.conn().await?;
        let w = self.audited(&mut client).await?;
        let mut changed = 0;
        for (table, rows) in [
            (
                "UPDATE clients SET mac = $3 WHERE id = $1 AND mac = $2",
                clients
                    .iter()
                    .map(|(id, old, new)| (id.as_str(), old, new))
                    .collect::<Vec<_>>(),
            ),
            (
                "UPDATE collect_sessions SET mac = $3 WHERE id = $1 AND mac = $2",
                sessions
                    .iter()
                    .map(|(id, old, new)| (id.as_str(), old, new))
                    .collect::<Vec<_>>(),
            ),
        ] {
            let update = w.tx.prepare(table).await?;
            for (id, old, new) in rows {
                changed +=
                    w.tx.execute(&update, &[&id, &old.0.as_slice(), &new.0.as_slice()])
                        .await?;
            }
        }
        self.commit_with(w, audit, draft).await?;
        Ok(changed)
    }

    async fn append_audit_once(&self, audit: &AuditKey, draft: AuditDraft) -> Result<bool> {
        let mut conn = self.conn().await?;
        let audited = self.audited(&mut conn).await?;
        let taken: bool = audited
            .tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM audit_events WHERE action = $1 AND request_id = $2 AND outcome = 'granted')",
                &[&draft.action.as_str(), &draft.request_id],
            )
            .await?
            .get(0);
        if taken {
            return Ok(false);
        }
        self.commit_with(audited, audit, draft).await?;
        Ok(true)
    }

    async fn audit_events(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        let sql = select!(audit_events, "WHERE seq > $1 ORDER BY seq LIMIT $2");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.db
            .fetch(sql, &[&after, &i64::from(limit)], rows::event)
            .await
    }

    async fn adopt_head(&self) -> Result<Option<Link>> {
        let stored = self.db.fetch(LAST_LINK, &[], rows::link).await?;
        self.head.adopt(stored);
        Ok(stored)
    }

    fn known_head(&self) -> Option<Link> {
        self.head.known()
    }

    async fn audit_mac_at(&self, seq: u64) -> Result<Option<[u8; 32]>> {
        let seq = rows::stored_seq(seq)?;
        self.db.fetch(MAC_AT, &[&seq], audit_mac).await
    }

    async fn revocations_after(&self, after: u64) -> Result<Vec<(u64, String)>> {
        let sql = "SELECT seq, detail FROM audit_events WHERE action = 'client.revoke' AND seq > $1 \
                   AND outcome = 'granted' AND detail IS NOT NULL ORDER BY seq";
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.db
            .fetch(sql, &[&after], |r| {
                Ok((
                    u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
                    r.try_get::<_, String>(1)?,
                ))
            })
            .await
    }

    async fn is_empty(&self) -> Result<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM audit_events) \
                   OR EXISTS (SELECT 1 FROM clients)";
        let any: Option<bool> = self
            .db
            .fetch(sql, &[], |r| Ok::<bool, StoreError>(r.try_get(0)?))
            .await?;
        Ok(any == Some(false))
    }

    async fn check_ready(&self) -> Result<()> {
        let mut client = self.conn().await?;
        if !shared::postgres::is_primary(&client).await? {
            return Err(StoreError::Corrupt("the database is a read-only replica"));
        }
        // The chain must still hold what this store wrote, and take one more event: a probe
        // row inserted and rolled back (the transaction is dropped uncommitted). No audit lock:
        // nothing is chained.
        let tx = client.transaction().await?;
        // The snapshot of the remembered head first: a commit of this process between the two
        // reads would otherwise make the stored head look behind it.
        let known = self.head.known();
        let last = tx
            .query_opt(LAST_LINK, &[])
            .await?
            .map(|r| rows::link(&r))
            .transpose()?;
        let mac_at_known = match (known, last) {
            (Some(k), Some(s)) if s.seq > k.seq => {
                let seq = rows::stored_seq(k.seq)?;
                tx.query_opt(MAC_AT, &[&seq])
                    .await?
                    .as_ref()
                    .map(audit_mac)
                    .transpose()?
            }
            _ => None,
        };
        self.head.check(known, last, mac_at_known)?;
        tx.execute(
            "INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, mac) \
             VALUES (-1 - pg_backend_pid(), 0, 'readiness-probe', 'probe', 'probe', ''::bytea)",
            &[],
        )
        .await?;
        tx.rollback().await?;
        Ok(())
    }
}
