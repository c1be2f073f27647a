//! The SQLite backend, on the shared durable set-up (`shared::sqlite`): WAL, `synchronous=FULL`,
//! `secure_delete=ON`.
//! With `synchronous=FULL` a commit returns only after the WAL is fsynced, so an acknowledged
//! token survives `kill -9` and power loss; `secure_delete` overwrites deleted rows' bytes, so a
//! deleted ciphertext does not linger in free pages.
//!
//! Long because it is one backend of the whole store trait: each operation is one transaction
//! with its SQL beside it. The mapping of rows to domain values is not here but in `rows`,
//! shared with the other backend.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
pub use shared::sqlite::SqliteOptions;
use shared::sqlite::{OpenReadOnlyError, SqlitePool, query};

use super::rows::{
    self, client_columns, collect_session_columns, event_columns, key_columns, select,
    token_columns,
};
use super::{ClientRevocation, KeyUse, Refingerprinted, Resealed, Store, StoreError, TokenRecord};
use crate::audit::{AuditDraft, AuditEvent, ChainHead, Link, Outcome};
use crate::auth::ClientRecord;
use crate::clock::now_micros;
use crate::collect::{CollectId, CollectSession};
use crate::crypto::{AuditKey, ClientKey, KeyPurpose, KeyState, RowMac, WrappedKey};
use crate::store::Result;
use crate::token::{ClientId, Token};

/// A row mapping with the store's error.
type MapRow<T> = shared::sqlite::MapRow<T, StoreError>;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_client_macs.sql"),
    include_str!("../../migrations/sqlite/0003_collect_sessions.sql"),
    include_str!("../../migrations/sqlite/0004_collect_completions.sql"),
    include_str!("../../migrations/sqlite/0005_key_states.sql"),
    include_str!("../../migrations/sqlite/0006_rewrap.sql"),
    include_str!("../../migrations/sqlite/0007_key_seals.sql"),
    include_str!("../../migrations/sqlite/0008_dual_control.sql"),
    include_str!("../../migrations/sqlite/0009_refingerprint.sql"),
    include_str!("../../migrations/sqlite/0010_client_certificates.sql"),
];

/// The SQLite store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    head: Arc<ChainHead>,
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
            head: Arc::default(),
        })
    }

    /// Opens an existing, migrated database for reading only: nothing is created or written.
    ///
    /// # Errors
    ///
    /// No file at the path, a schema of another version, or SQLite fails.
    pub fn open_read_only(options: &SqliteOptions) -> Result<Self> {
        let pool = SqlitePool::open_read_only(options, MIGRATIONS.len()).map_err(|e| match e {
            OpenReadOnlyError::Missing(path) => StoreError::Missing { path },
            other => StoreError::Database(Box::new(other)),
        })?;
        Ok(Self {
            pool,
            head: Arc::default(),
        })
    }

    /// Runs `f` in a write transaction with an [`Appender`] for its audit events; once the
    /// transaction is durable, the last event appended becomes the remembered chain head.
    async fn audited<T, F>(&self, key: &AuditKey, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut Appender) -> Result<T> + Send + 'static,
    {
        let mut appender = Appender {
            key: key.clone(),
            head: Arc::clone(&self.head),
            checked: false,
            last: None,
        };
        let (value, last) = self
            .pool
            .transaction(move |tx| {
                let value = f(tx, &mut appender)?;
                Ok::<_, StoreError>((value, appender.last))
            })
            .await?;
        if let Some(link) = last {
            self.head.advance(link);
        }
        Ok(value)
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.pool.read(f).await
    }

    /// Every row of a whole-table `sql` (no parameters), mapped by `map`.
    async fn scan<T: Send + 'static>(&self, sql: &'static str, map: MapRow<T>) -> Result<Vec<T>> {
        self.pool.read(move |c| query(c, sql, [], map)).await
    }

    async fn lookup<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.pool.lookup(f).await
    }
}

/// Appends chained audit events inside one transaction, after checking the stored chain still
/// holds the head this vault remembers ([`ChainHead`]).
struct Appender {
    key: AuditKey,
    head: Arc<ChainHead>,
    checked: bool,
    last: Option<Link>,
}

impl Appender {
    fn append(&mut self, tx: &Transaction<'_>, draft: AuditDraft) -> Result<()> {
        // The remembered head before the stored one, always (see `ChainHead::check`).
        let known = self.head.known();
        let stored = stored_head(tx)?;
        if !self.checked {
            let mac_at_known = match (known, stored) {
                (Some(k), Some(s)) if s.seq > k.seq => mac_at(tx, k.seq)?,
                _ => None,
            };
            self.head.check(known, stored, mac_at_known)?;
            self.checked = true;
        }
        let (seq, previous) = stored.map_or((0, [0; 32]), |l| (l.seq, l.mac));
        let e = AuditEvent::chain(&self.key, &previous, seq + 1, now_micros(), draft);
        tx.prepare_cached(concat!(
            "INSERT INTO audit_events (",
            event_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))?
        .execute(params![
            rows::stored_seq(e.seq)?,
            e.occurred_at,
            e.actor,
            e.tenant,
            e.action,
            e.token,
            e.purpose,
            e.outcome,
            e.request_id,
            e.detail,
            e.mac.as_slice(),
        ])?;
        self.last = Some(Link {
            seq: e.seq,
            mac: e.mac,
        });
        Ok(())
    }
}

/// The last stored event's link (uncommitted ones of this transaction included).
fn stored_head(conn: &Connection) -> Result<Option<Link>> {
    conn.prepare_cached("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok(rows::link(r)))
        .optional()?
        .transpose()
}

/// The stored MAC of event `seq`, if there is one.
fn mac_at(conn: &Connection, seq: u64) -> Result<Option<[u8; 32]>> {
    let seq = rows::stored_seq(seq)?;
    conn.prepare_cached("SELECT mac FROM audit_events WHERE seq = ?1")?
        .query_row([seq], |r| r.get::<_, Vec<u8>>(0))
        .optional()?
        .map(|mac| Ok(shared::row::blob32(mac, "audit mac")?))
        .transpose()
}

fn insert_token(tx: &Transaction<'_>, t: &TokenRecord) -> Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO tokens (",
        token_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(rows::token_values(t))?;
    Ok(())
}

/// Stores `new` unless the tenant has a live token for the card (then that one is the answer;
/// an expired one is replaced), and names the token in `draft`.
fn tokenize_in(
    tx: &Transaction<'_>,
    new: TokenRecord,
    draft: &mut AuditDraft,
) -> Result<TokenRecord> {
    let mut existing: Option<TokenRecord> = query(
        tx,
        select!(tokens, "WHERE tenant = ?1 AND fingerprint = ?2"),
        params![new.tenant, new.fingerprint.as_slice()],
        |r| rows::token(r),
    )?;
    // During a fingerprint key rotation the card's token may still carry its fingerprint under
    // an older version; found so, it is re-fingerprinted under the newest on the spot.
    for earlier in &new.earlier_fingerprints {
        if existing.is_some() {
            break;
        }
        existing = query(
            tx,
            select!(tokens, "WHERE tenant = ?1 AND fingerprint = ?2"),
            params![new.tenant, earlier.as_slice()],
            |r| rows::token(r),
        )?;
        if let Some(old) = &mut existing {
            tx.prepare_cached(
                "UPDATE tokens SET fingerprint = ?2, fingerprint_key_version = ?3 WHERE token = ?1",
            )?
            .execute(params![
                old.token.as_str(),
                new.fingerprint.as_slice(),
                new.fingerprint_key_version
            ])?;
            old.fingerprint = new.fingerprint;
            old.fingerprint_key_version = new.fingerprint_key_version;
        }
    }
    let record = match existing {
        Some(old) if old.expires_at.is_none_or(|at| at > new.created_at) => {
            draft.detail = Some("existing token".to_owned());
            old
        }
        Some(expired) => {
            tx.prepare_cached("DELETE FROM tokens WHERE token = ?1")?
                .execute([expired.token.as_str()])?;
            insert_token(tx, &new)?;
            new
        }
        None => {
            insert_token(tx, &new)?;
            new
        }
    };
    draft.token = Some(record.token.as_str().to_owned());
    Ok(record)
}

fn insert_key(tx: &Transaction<'_>, k: &WrappedKey) -> Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO keys (",
        key_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(rows::key_values(k))?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn wrapped_keys(&self) -> Result<Vec<WrappedKey>> {
        let sql = select!(keys, "ORDER BY purpose, version");
        self.scan(sql, |r| rows::wrapped_key(r)).await
    }

    async fn insert_keys(
        &self,
        keys: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        self.audited(audit, move |tx, appender| {
            for k in &keys {
                insert_key(tx, k)?;
            }
            appender.append(tx, draft)
        })
        .await
    }

    async fn tokenize(
        &self,
        new: TokenRecord,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<TokenRecord> {
        self.audited(audit, move |tx, appender| {
            let record = tokenize_in(tx, new, &mut draft)?;
            appender.append(tx, draft)?;
            Ok(record)
        })
        .await
    }

    async fn token(&self, tenant: &str, token: &Token, now: i64) -> Result<Option<TokenRecord>> {
        let (tenant, token) = (tenant.to_owned(), token.clone());
        self.lookup(move |conn| {
            query(
                conn,
                select!(
                    tokens,
                    "WHERE token = ?1 AND tenant = ?2 \
                     AND (expires_at IS NULL OR expires_at > ?3)"
                ),
                params![token.as_str(), tenant, now],
                |r| rows::token(r),
            )
        })
        .await
    }

    async fn delete_token(
        &self,
        tenant: &str,
        token: &Token,
        now: i64,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        let (tenant, token) = (tenant.to_owned(), token.clone());
        self.audited(audit, move |tx, appender| {
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM tokens WHERE token = ?1 AND tenant = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                    )?
                    .execute(params![token.as_str(), tenant, now])?
                    > 0;
                if !deleted {
                    draft.outcome = Outcome::NotFound;
                }
                appender.append(tx, draft)?;
                Ok(deleted)
            })
        .await
    }

    async fn delete_expired(&self, now: i64, audit: &AuditKey) -> Result<u64> {
        self.audited(audit, move |tx, appender| {
            let n = tx.execute(
                "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )?;
            if n > 0 {
                let mut draft = AuditDraft::new(
                    "system",
                    crate::audit::Action::TokenExpire,
                    Outcome::Granted,
                );
                draft.detail = Some(format!("deleted {n} expired tokens"));
                appender.append(tx, draft)?;
            }
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
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
        self.audited(audit, move |tx, appender| {
            let moved = tx.execute(
                "UPDATE keys SET state = ?4 WHERE purpose = ?1 AND version = ?2 AND state = ?3",
                params![purpose.as_str(), version, from.as_str(), to.as_str()],
            )? > 0;
            if !moved {
                draft.outcome = Outcome::NotFound;
            }
            appender.append(tx, draft)?;
            Ok(moved)
        })
        .await
    }

    async fn tokens_sealed_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>> {
        self.lookup(move |conn| {
            query(
                conn,
                select!(
                    tokens,
                    "WHERE key_version = ?1 AND token > ?2 ORDER BY token LIMIT ?3"
                ),
                params![version, after.as_ref().map_or("", |t| t.as_str()), limit],
                |r| rows::token(r),
            )
        })
        .await
    }

    async fn tokens_fingerprinted_under(
        &self,
        version: u32,
        after: Option<Token>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>> {
        self.lookup(move |conn| {
            query(
                conn,
                select!(
                    tokens,
                    "WHERE fingerprint_key_version = ?1 AND token > ?2 ORDER BY token LIMIT ?3"
                ),
                params![version, after.as_ref().map_or("", |t| t.as_str()), limit],
                |r| rows::token(r),
            )
        })
        .await
    }

    async fn refingerprint_tokens(
        &self,
        moved: Vec<Refingerprinted>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        self.audited(audit, move |tx, appender| {
            let mut changed = 0;
            // The card's fingerprint, unless another token of the tenant has it already; then
            // the token's own unmatched one.
            let mut update = tx.prepare_cached(
                "UPDATE tokens SET fingerprint = CASE WHEN EXISTS (SELECT 1 FROM tokens \
                 WHERE tenant = ?2 AND fingerprint = ?4) THEN ?5 ELSE ?4 END, \
                 fingerprint_key_version = ?6 \
                 WHERE token = ?1 AND fingerprint_key_version = ?3 AND EXISTS (SELECT 1 FROM keys \
                 WHERE purpose = 'fingerprint' AND version = ?6 AND state = 'active')",
            )?;
            for m in &moved {
                changed += update.execute(params![
                    m.token.as_str(),
                    m.tenant,
                    m.from_version,
                    m.fingerprint.as_slice(),
                    m.unmatched.as_slice(),
                    m.version,
                ])?;
            }
            drop(update);
            appender.append(tx, draft)?;
            Ok(u64::try_from(changed).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn reseal_tokens(
        &self,
        resealed: Vec<Resealed>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        self.audited(audit, move |tx, appender| {
            let mut changed = 0;
            let mut update = tx.prepare_cached(
                "UPDATE tokens SET algorithm = ?3, key_version = ?4, nonce = ?5, ciphertext = ?6 \
                 WHERE token = ?1 AND key_version = ?2 AND EXISTS (SELECT 1 FROM keys \
                 WHERE purpose = 'data' AND version = ?4 AND state = 'active')",
            )?;
            for r in &resealed {
                changed += update.execute(params![
                    r.token.as_str(),
                    r.from_version,
                    r.sealed.algorithm,
                    r.sealed.key_version,
                    r.sealed.nonce.as_slice(),
                    r.sealed.ciphertext.as_slice(),
                ])?;
            }
            drop(update);
            appender.append(tx, draft)?;
            Ok(u64::try_from(changed).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn destroy_key(
        &self,
        purpose: KeyPurpose,
        version: u32,
        shred: bool,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        self.audited(audit, move |tx, appender| {
            if shred && purpose == KeyPurpose::Data {
                // The rows go with their key: a card tokenized again must get a token that
                // opens, not the dead one its fingerprint still points to.
                tx.execute(
                    "DELETE FROM tokens WHERE key_version = ?1 AND EXISTS (SELECT 1 FROM keys \
                     WHERE purpose = 'data' AND version = ?1 AND state = 'decrypt_only')",
                    params![version],
                )?;
            }
            let destroyed = tx.execute(
                "UPDATE keys SET state = 'destroyed', wrapped = X'', wrap_nonce = X'' \
                 WHERE purpose = ?1 AND version = ?2 AND state = 'decrypt_only' \
                 AND (?3 OR ?1 NOT IN ('data', 'fingerprint') \
                      OR (?1 = 'data' AND NOT EXISTS (SELECT 1 FROM tokens WHERE key_version = ?2)) \
                      OR (?1 = 'fingerprint' AND NOT EXISTS \
                          (SELECT 1 FROM tokens WHERE fingerprint_key_version = ?2)))",
                params![purpose.as_str(), version, shred],
            )? > 0;
            if !destroyed {
                draft.outcome = Outcome::NotFound;
            }
            appender.append(tx, draft)?;
            Ok(destroyed)
        })
        .await
    }

    async fn add_seals(&self, purpose: KeyPurpose, version: u32, n: u64) -> Result<()> {
        self.pool
            .execute::<StoreError, _>(
                "UPDATE keys SET seals = seals + ?3 WHERE purpose = ?1 AND version = ?2",
                (
                    purpose.as_str(),
                    version,
                    i64::try_from(n).unwrap_or(i64::MAX),
                ),
            )
            .await?;
        Ok(())
    }

    async fn tokens_per_key_version(&self) -> Result<KeyUse> {
        let map: MapRow<(u32, u64)> = |r| {
            Ok((
                shared::row::Row::count(r, 0, "key version")?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        };
        let data = self
            .scan(
                "SELECT key_version, count(*) FROM tokens GROUP BY key_version ORDER BY key_version",
                map,
            )
            .await?;
        let fingerprint = self
            .scan(
                "SELECT fingerprint_key_version, count(*) FROM tokens \
                 GROUP BY fingerprint_key_version ORDER BY fingerprint_key_version",
                map,
            )
            .await?;
        Ok(KeyUse { data, fingerprint })
    }

    async fn delete_expired_collect_sessions(&self, before: i64, audit: &AuditKey) -> Result<u64> {
        self.audited(audit, move |tx, appender| {
            let n = tx.execute(
                "DELETE FROM collect_sessions WHERE expires_at < ?1",
                [before],
            )?;
            if n > 0 {
                let mut draft = AuditDraft::new(
                    "system",
                    crate::audit::Action::CollectExpire,
                    Outcome::Granted,
                );
                draft.detail = Some(format!("deleted {n} collect sessions past their retention"));
                appender.append(tx, draft)?;
            }
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn insert_client(
        &self,
        c: ClientRecord,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        self.audited(audit, move |tx, appender| {
            tx.execute(
                concat!(
                    "INSERT INTO clients (",
                    client_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                rows::client_values(&c),
            )?;
            appender.append(tx, draft)
        })
        .await
    }

    async fn client_by_key_hash(&self, key_hash: [u8; 32]) -> Result<Option<ClientRecord>> {
        self.lookup(move |conn| {
            let sql = select!(clients, "WHERE key_hash = ?1");
            query(conn, sql, [key_hash.as_slice()], |r| rows::client(r))
        })
        .await
    }

    async fn client_by_id(&self, id: &ClientId) -> Result<Option<ClientRecord>> {
        let id = id.clone();
        self.lookup(move |conn| {
            let sql = select!(clients, "WHERE id = ?1");
            query(conn, sql, [id.as_str()], |r| rows::client(r))
        })
        .await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>> {
        let sql = select!(clients, "ORDER BY created_at, id");
        self.scan(sql, |r| rows::client(r)).await
    }

    async fn revoke_client(
        &self,
        revocation: ClientRevocation,
        audit: &AuditKey,
        mut draft: AuditDraft,
    ) -> Result<bool> {
        self.audited(audit, move |tx, appender| {
            // Only the row as it was read and checked: one changed since is not revoked blindly.
            let revoked = tx.execute(
                "UPDATE clients SET revoked_at = ?2, mac = ?3 WHERE id = ?1 AND revoked_at IS NULL AND mac = ?4",
                params![
                    revocation.id.as_str(),
                    revocation.revoked_at,
                    revocation.new_mac.0.as_slice(),
                    revocation.old_mac.0.as_slice(),
                ],
            )? > 0;
            if !revoked {
                draft.outcome = Outcome::NotFound;
            }
            appender.append(tx, draft)?;
            Ok(revoked)
        })
        .await
    }

    async fn add_key_version(
        &self,
        key: WrappedKey,
        witness: WrappedKey,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        self.audited(audit, move |tx, appender| {
            let held: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM keys WHERE purpose = ?1 AND version = ?2 \
                 AND wrap_nonce = ?3 AND wrapped = ?4)",
                params![
                    witness.purpose.as_str(),
                    witness.version,
                    witness.sealed.nonce.as_slice(),
                    witness.sealed.ciphertext.as_slice()
                ],
                |r| r.get(0),
            )?;
            if !held {
                return Err(StoreError::Duplicate);
            }
            insert_key(tx, &key)?;
            appender.append(tx, draft)
        })
        .await
    }

    async fn add_key_and_seal_clients(
        &self,
        key: WrappedKey,
        macs: Vec<(ClientId, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        self.audited(audit, move |tx, appender| {
            insert_key(tx, &key)?;
            for (id, mac) in &macs {
                tx.execute(
                    "UPDATE clients SET mac = ?2 WHERE id = ?1 AND mac IS NULL",
                    params![id.as_str(), mac.0.as_slice()],
                )?;
            }
            appender.append(tx, draft)
        })
        .await
    }

    async fn insert_collect_session(
        &self,
        session: CollectSession,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<()> {
        self.audited(audit, move |tx, appender| {
            tx.prepare_cached(concat!(
                "INSERT INTO collect_sessions (",
                collect_session_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?
            .execute(rows::collect_session_values(&session))?;
            appender.append(tx, draft)
        })
        .await
    }

    async fn collect_session(&self, id: &CollectId) -> Result<Option<CollectSession>> {
        let id = id.clone();
        self.lookup(move |conn| {
            let sql = select!(collect_sessions, "WHERE id = ?1");
            query(conn, sql, [id.as_str()], |r| rows::collect_session(r))
        })
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
        let key = key.clone();
        self.audited(audit, move |tx, appender| {
            let now = new.created_at;
            if completed_before(tx, &session.id)? {
                return Ok(None);
            }
            // Claimed first, so a session that is no longer open costs no token.
            let claimed = tx
                .prepare_cached(
                    "UPDATE collect_sessions SET completed_at = ?2, token = '' \
                     WHERE id = ?1 AND completed_at IS NULL AND expires_at > ?2 AND mac = ?3",
                )?
                .execute(params![session.id.as_str(), now, session.mac.0.as_slice()])?
                > 0;
            if !claimed {
                return Ok(None);
            }
            let record = tokenize_in(tx, new, &mut draft)?;
            session.complete(now, &record, cardholder_name, &key);
            let done = session.completion.as_ref();
            tx.prepare_cached(
                "UPDATE collect_sessions SET token = ?2, last4 = ?3, brand = ?4, \
                 cardholder_name = ?5, mac = ?6 WHERE id = ?1",
            )?
            .execute(params![
                session.id.as_str(),
                done.map(|c| c.token.as_str()),
                done.map(|c| c.last4.as_str()),
                done.map(|c| c.brand.as_str()),
                done.and_then(|c| c.cardholder_name.as_deref()),
                session.mac.0.as_slice(),
            ])?;
            appender.append(tx, draft)?;
            Ok(Some(session))
        })
        .await
    }

    async fn append_audit(&self, audit: &AuditKey, draft: AuditDraft) -> Result<()> {
        self.audited(audit, move |tx, appender| appender.append(tx, draft))
            .await
    }

    async fn rewrap_keys(
        &self,
        from: Vec<WrappedKey>,
        to: Vec<WrappedKey>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<bool> {
        let outcome = self
            .audited(audit, move |tx, appender| {
                let held: i64 = tx.query_row(
                    "SELECT count(*) FROM keys WHERE state <> 'destroyed'",
                    [],
                    |r| r.get(0),
                )?;
                if usize::try_from(held).ok() != Some(to.len()) || from.len() != to.len() {
                    return Err(StoreError::Duplicate);
                }
                let mut update = tx.prepare_cached(
                    "UPDATE keys SET wrap_nonce = ?3, wrapped = ?4 \
                     WHERE purpose = ?1 AND version = ?2 AND wrap_nonce = ?5 AND wrapped = ?6 \
                     AND state <> 'destroyed'",
                )?;
                for (old, new) in from.iter().zip(&to) {
                    let changed = update.execute(params![
                        new.purpose.as_str(),
                        new.version,
                        new.sealed.nonce.as_slice(),
                        new.sealed.ciphertext.as_slice(),
                        old.sealed.nonce.as_slice(),
                        old.sealed.ciphertext.as_slice(),
                    ])?;
                    if changed != 1 {
                        // Rolled back: the key rows changed since they were read.
                        return Err(StoreError::Duplicate);
                    }
                }
                drop(update);
                appender.append(tx, draft)
            })
            .await;
        match outcome {
            Ok(()) => Ok(true),
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn collect_sessions_after(
        &self,
        after: Option<CollectId>,
        limit: u32,
    ) -> Result<Vec<CollectSession>> {
        self.lookup(move |conn| {
            let sql = select!(collect_sessions, "WHERE id > ?1 ORDER BY id LIMIT ?2");
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map(
                    params![after.as_ref().map_or("", |a| a.as_str()), limit],
                    |r| Ok(rows::collect_session(r)),
                )?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    async fn remac_rows(
        &self,
        clients: Vec<(ClientId, RowMac, RowMac)>,
        sessions: Vec<(CollectId, RowMac, RowMac)>,
        audit: &AuditKey,
        draft: AuditDraft,
    ) -> Result<u64> {
        self.audited(audit, move |tx, appender| {
            let mut changed = 0;
            let mut update =
                tx.prepare_cached("UPDATE clients SET mac = ?3 WHERE id = ?1 AND mac = ?2")?;
            for (id, old, new) in &clients {
                changed +=
                    update.execute(params![id.as_str(), old.0.as_slice(), new.0.as_slice()])?;
            }
            drop(update);
            let mut update = tx.prepare_cached(
                "UPDATE collect_sessions SET mac = ?3 WHERE id = ?1 AND mac = ?2",
            )?;
            for (id, old, new) in &sessions {
                changed +=
                    update.execute(params![id.as_str(), old.0.as_slice(), new.0.as_slice()])?;
            }
            drop(update);
            appender.append(tx, draft)?;
            Ok(u64::try_from(changed).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn append_audit_once(&self, audit: &AuditKey, draft: AuditDraft) -> Result<bool> {
        self.audited(audit, move |tx, appender| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM audit_events WHERE action = ?1 AND request_id = ?2 AND outcome = 'granted')",
                params![draft.action.as_str(), draft.request_id],
                |r| r.get(0),
            )?;
            if taken {
                return Ok(false);
            }
            appender.append(tx, draft)?;
            Ok(true)
        })
        .await
    }

    async fn adopt_head(&self) -> Result<Option<Link>> {
        let stored = self.read(stored_head).await?;
        self.head.adopt(stored);
        Ok(stored)
    }

    fn known_head(&self) -> Option<Link> {
        self.head.known()
    }

    async fn audit_mac_at(&self, seq: u64) -> Result<Option<[u8; 32]>> {
        self.read(move |conn| mac_at(conn, seq)).await
    }

    async fn revocations_after(&self, after: u64) -> Result<Vec<(u64, String)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, detail FROM audit_events WHERE action = 'client.revoke' AND seq > ?1 \
                 AND outcome = 'granted' AND detail IS NOT NULL ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([after], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .map(|(seq, id)| (u64::try_from(seq).unwrap_or(0), id))
                .collect())
        })
        .await
    }

    async fn is_empty(&self) -> Result<bool> {
        self.read(|conn| {
            let any: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM audit_events) OR EXISTS (SELECT 1 FROM clients)",
                [],
                |r| r.get(0),
            )?;
            Ok(!any)
        })
        .await
    }

    async fn audit_events(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            query(
                conn,
                select!(audit_events, "WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after, limit],
                |r| rows::event(r),
            )
        })
        .await
    }

    async fn check_ready(&self) -> Result<()> {
        let head = Arc::clone(&self.head);
        self.pool
            .transaction(move |tx| {
                // The chain must still hold what this vault wrote ...
                let known = head.known();
                let stored = stored_head(tx)?;
                let mac_at_known = match (known, stored) {
                    (Some(k), Some(s)) if s.seq > k.seq => mac_at(tx, k.seq)?,
                    _ => None,
                };
                head.check(known, stored, mac_at_known)?;
                // ... and take one more event: a probe row, rolled back at once.
                tx.execute_batch(
                    "SAVEPOINT probe;
                     INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, mac)
                         VALUES (-1, 0, 'readiness-probe', 'probe', 'probe', x'');
                     ROLLBACK TO probe;
                     RELEASE probe;",
                )?;
                Ok(())
            })
            .await
    }
}

/// Whether the audit log holds a granted submission for this session: a card was accepted for
/// it, whatever its row now says (the row may have been restored from before).
fn completed_before(tx: &Transaction<'_>, id: &CollectId) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM audit_events WHERE action = 'collect.submit' AND outcome = 'granted' \
         AND actor = ?1 LIMIT 1",
    )?
    .exists(params![id.as_str()])
}
