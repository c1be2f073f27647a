//! PostgreSQL as both services use it: a connection pool built from a `postgres://` URL (parsed
//! into options field by field; the URL, which may hold a password, is never logged or put in an
//! error), migrations applied once under an advisory lock so replicas starting together do not
//! race, and an optional schema (tests give each run its own); and [`Db`], the pool with the
//! few ways both stores run one statement, so a store method is its SQL and its row mapping.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

mod tls;

pub use tls::SslMode;

/// Why PostgreSQL could not be set up. Never contains the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgSetupError {
    /// The URL did not parse.
    #[error("database.url is not a valid postgres:// URL")]
    Url,
    /// The pool could not be built.
    #[error("cannot build the PostgreSQL pool")]
    Pool,
    /// A connection or a migration failed.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// The URL's TLS settings (`sslmode`, `sslrootcert`) are refused (the message names them,
    /// never the URL).
    #[error("{0}")]
    Tls(String),
}

/// The `sslmode` `url` asks for (libpq's default, `prefer`, when it names none).
///
/// # Errors
///
/// [`PgSetupError`] for a URL whose TLS settings are refused.
pub fn ssl_mode(url: &str) -> Result<SslMode, PgSetupError> {
    Ok(tls::split(url)?.mode)
}

/// A read-write pool: [`connect_as`] with [`Access::ReadWrite`].
///
/// # Errors
///
/// [`PgSetupError`].
pub async fn connect(
    url: &str,
    max_connections: usize,
    schema: Option<&str>,
) -> Result<Pool, PgSetupError> {
    connect_as(Access::ReadWrite, url, max_connections, schema).await
}

/// Builds a pool of at most `max_connections` to `url`, with `search_path` set to `schema` when
/// given. A read-write pool creates the schema if missing; in a read-only one every transaction
/// is read-only (PostgreSQL's `default_transaction_read_only`), so a command that only reads
/// cannot write by mistake.
///
/// # Errors
///
/// [`PgSetupError`].
pub async fn connect_as(
    access: Access,
    url: &str,
    max_connections: usize,
    schema: Option<&str>,
) -> Result<Pool, PgSetupError> {
    let tls = tls::split(url)?;
    let mut config = tokio_postgres::Config::from_str(&tls.rest).map_err(|_| PgSetupError::Url)?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    // Added to the URL's own `options` (which may set the search path), never replacing them.
    let mut options: Vec<String> = config
        .get_options()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(schema) = schema {
        if !schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(PgSetupError::Url);
        }
        options.push(format!("-c search_path={schema}"));
    }
    if access == Access::ReadOnly {
        options.push("-c default_transaction_read_only=on".to_owned());
    }
    if !options.is_empty() {
        config.options(options.join(" "));
    }
    let manager = Manager::from_config(
        config,
        tls::connector(&tls)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(max_connections.max(1))
        .build()
        .map_err(|_| PgSetupError::Pool)?;
    if let Some(schema) = schema.filter(|_| access == Access::ReadWrite) {
        let client = pool
            .get()
            .await
            .map_err(|e| PgSetupError::Database(e.to_string()))?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| PgSetupError::Database(e.to_string()))?;
    }
    Ok(pool)
}

/// What a pool may do.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Access {
    /// Reads and writes (the services).
    ReadWrite,
    /// Reads only (the reading commands).
    ReadOnly,
}

/// Applies `migrations[i]` once each (recorded in `schema_migrations`), under a transaction-level
/// advisory lock `lock_id` so concurrent starters apply them exactly once.
///
/// # Errors
///
/// A connection or migration failure.
pub async fn migrate(pool: &Pool, lock_id: i64, migrations: &[&str]) -> Result<(), PgSetupError> {
    let db = |e: tokio_postgres::Error| PgSetupError::Database(e.to_string());
    let mut client = pool
        .get()
        .await
        .map_err(|e| PgSetupError::Database(e.to_string()))?;
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id])
        .await
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await
        .map_err(db)?;
    let done = highest_applied(&tx).await.map_err(db)?;
    for (i, sql) in migrations.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// How many migrations the database has applied (0 when it has none, or no migrations table).
///
/// # Errors
///
/// A connection failure.
pub async fn applied_migrations(pool: &Pool) -> Result<usize, PgSetupError> {
    let db = |e: tokio_postgres::Error| PgSetupError::Database(e.to_string());
    let client = pool
        .get()
        .await
        .map_err(|e| PgSetupError::Database(e.to_string()))?;
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let done = highest_applied(&client).await.map_err(db)?;
    Ok(usize::try_from(done).unwrap_or(0))
}

/// The highest migration version recorded in `schema_migrations` (0 for none).
async fn highest_applied<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0))
}

/// A statement's parameters, in `$1, $2, …` order.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A pool of connections to one database, and the statements a store runs on it outside a
/// transaction, each prepared once per connection and cached by its text. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's own `Debug` would show its configuration, URL password included.
        f.write_str("Db { .. }")
    }
}

impl From<Pool> for Db {
    fn from(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Db {
    /// The pool, for work that needs a connection of its own (a transaction, a batch writer).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection from the pool.
    ///
    /// # Errors
    ///
    /// The pool cannot give one (the server is unreachable, the pool is closed).
    pub async fn conn<E: From<PoolError>>(&self) -> Result<Object, E> {
        Ok(self.pool.get().await?)
    }

    /// What `sql` finds (or returns) with `params`, each row mapped by `map`: every row into a
    /// `Vec`, or the first into an `Option` (point queries, on a unique key).
    ///
    /// # Errors
    ///
    /// No connection, the statement fails, or `map` refuses a row.
    pub async fn fetch<T, E, Found>(
        &self,
        sql: &str,
        params: Params<'_>,
        map: impl Fn(&Row) -> Result<T, E>,
    ) -> Result<Found, E>
    where
        E: From<PoolError> + From<tokio_postgres::Error>,
        Found: crate::row::Rows<T>,
    {
        let client = self.conn::<E>().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, params).await?;
        crate::row::Rows::from_rows(rows.iter().map(map))
    }

    /// Runs `sql`, a write, and says how many rows it changed.
    ///
    /// # Errors
    ///
    /// No connection, or the statement fails.
    pub async fn execute<E>(&self, sql: &str, params: Params<'_>) -> Result<u64, E>
    where
        E: From<PoolError> + From<tokio_postgres::Error>,
    {
        let client = self.conn::<E>().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

/// True when the server `client` talks to takes writes (it is a primary, not a standby in
/// recovery): a promoted standby's old primary, or a replica named by mistake, answers false.
///
/// # Errors
///
/// The query fails.
pub async fn is_primary<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await?
        .try_get(0)
}

/// True when a PostgreSQL error is a unique constraint refusing a row: the store's duplicate.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// True when `url` names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
