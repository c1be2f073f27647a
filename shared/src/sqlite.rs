//! SQLite as both services use it: one file in WAL mode with `synchronous=FULL` (a commit returns
//! only after its fsync, so nothing acknowledged is lost to `kill -9` or power loss) and
//! `secure_delete=ON` (deleted rows are overwritten, not left in free pages); one writer
//! connection behind a mutex (SQLite has one writer anyway) and a few readers; every call on
//! tokio's blocking pool; migrations numbered by `PRAGMA user_version`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

/// How to open a database.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file (created if missing). `-wal` and `-shm` files live beside it.
    pub path: PathBuf,
    /// Reader connections (at least 1).
    pub read_connections: usize,
    /// How long a connection waits for a lock before failing.
    pub busy_timeout: Duration,
}

/// The blocking task running a query died (a panic inside it).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("database task failed")]
pub struct TaskFailed;

/// A writer and readers over one database file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqlitePool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl SqlitePool {
    /// Opens (creating if needed) and migrates: `migrations[i]` runs once, when
    /// `user_version` is `i`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or a migration fails.
    pub fn open(options: &SqliteOptions, migrations: &[&str]) -> Result<Self, rusqlite::Error> {
        let mut writer = connect(
            options,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        migrate(&mut writer, migrations)?;
        let readers = (0..options.read_connections.max(1))
            .map(|_| connect(options, OpenFlags::SQLITE_OPEN_READ_WRITE).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Runs `f` on the writer connection.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or [`TaskFailed`] converted.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TaskFailed> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut inner.writer.lock()))
            .await
            .map_err(|_| E::from(TaskFailed))?
    }

    /// Runs `f` on a reader connection.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or [`TaskFailed`] converted.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TaskFailed> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            match inner.readers.get(i) {
                Some(conn) => f(&conn.lock()),
                None => f(&inner.writer.lock()),
            }
        })
        .await
        .map_err(|_| E::from(TaskFailed))?
    }
}

/// Runs `f` in an immediate (write-locking) transaction and commits.
///
/// # Errors
///
/// Whatever `f` returns; a failed begin or commit converted.
pub fn in_tx<T, E>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<rusqlite::Error>,
{
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Succeeds when the database accepts writes (readiness checks).
///
/// # Errors
///
/// The write lock cannot be taken.
pub fn check_writable(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)?
        .rollback()
}

/// A 32-byte BLOB column.
///
/// # Errors
///
/// The column is not 32 bytes: `what` names it.
pub fn blob32(bytes: Vec<u8>, what: &'static str) -> Result<[u8; 32], &'static str> {
    bytes.try_into().map_err(|_| what)
}

fn connect(options: &SqliteOptions, flags: OpenFlags) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(&options.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let current: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in migrations.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()
}
