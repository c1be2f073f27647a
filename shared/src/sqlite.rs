//! SQLite as both services use it: one file in WAL mode with `synchronous=FULL` (a commit returns
//! only after its fsync, so nothing acknowledged is lost to `kill -9` or power loss) and
//! `secure_delete=ON` (deleted rows are overwritten, not left in free pages); migrations numbered
//! by `PRAGMA user_version`; a read-only open for commands that only look; a few reader
//! connections (point reads run inline on a free one, scans on tokio's blocking pool).
//!
//! Writes go through **group commit**: one writer thread owns the write connection, takes every
//! write waiting in its queue (up to [`MAX_BATCH`]), runs each in its own savepoint inside one
//! transaction, and commits once, so concurrent writes share one fsync. A write is answered only
//! after the commit holding it is durable; a write that fails rolls back to its savepoint and
//! leaves the others alone. A write arriving alone is committed at once: nobody waits for a batch
//! to fill. A full queue sheds load (`QueueFull`).
//!
//! The WAL stays bounded: a checkpointer thread copies it back beside the writer, and past a
//! bound the writer, once a batch is answered, waits briefly for readers (RESTART), so readers
//! that never pause cannot keep it from starting over. (Long for a module because the pool, the
//! writer and their tests belong together.)

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use std::ffi::c_int;

use rusqlite::hooks::CheckpointMode;
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
    /// Writes that may wait for the writer thread; one more is refused with [`QueueFull`].
    pub max_queued_writes: usize,
}

/// The blocking task running a query died (a panic inside it).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("database task failed")]
pub struct TaskFailed;

/// Prepared statements kept per connection (more than either service has).
const STATEMENT_CACHE: usize = 64;

/// The most writes committed together.
pub const MAX_BATCH: usize = 256;

/// The writer's queue is full: the write was refused without waiting (shed load rather than
/// queue without bound).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("too many writes are waiting for the database")]
pub struct QueueFull;

/// The database was opened read-only: it takes no writes.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the database was opened read-only")]
pub struct ReadOnly;

/// Why a database could not be opened read-only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenReadOnlyError {
    /// There is no file at the path: a reading command never creates one.
    #[error("no database file at {0}")]
    Missing(PathBuf),
    /// The file's schema is older than this build's (`migrate` first) or newer (a newer build
    /// wrote it).
    #[error(
        "the database schema is version {found}, this build expects {expected}; run `migrate` with the matching build"
    )]
    SchemaVersion {
        /// What the file has.
        found: usize,
        /// What this build writes.
        expected: usize,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The commit holding a write failed; the write did not happen.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the database commit failed: {0}")]
pub struct CommitFailed(pub String);

/// What the writer thread calls back once the batch's commit is known.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A queued write: runs inside the batch transaction (`None` when no transaction could be
/// started), says whether it succeeded, and how to answer once the commit is known.
type Job = Box<dyn FnOnce(Option<&Transaction<'_>>) -> (bool, Finish) + Send>;

/// What an error type must convert from to carry every way a read can fail: the statement, or
/// a lost storage thread.
pub trait ReadError: From<TaskFailed> + From<rusqlite::Error> + Send + 'static {}

impl<E: From<TaskFailed> + From<rusqlite::Error> + Send + 'static> ReadError for E {}

/// What an error type must convert from to carry every way a write can fail: a read's ways,
/// and the commit, a full queue, a read-only open.
pub trait WriteError: ReadError + From<CommitFailed> + From<QueueFull> + From<ReadOnly> {}

impl<E: ReadError + From<CommitFailed> + From<QueueFull> + From<ReadOnly>> WriteError for E {}

/// A group-committing writer and readers over one database file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqlitePool {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when opened read-only.
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePool")
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

impl SqlitePool {
    /// Opens (creating if needed) and migrates: `migrations[i]` runs once, when
    /// `user_version` is `i`. Starts the writer thread.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or a migration fails.
    pub fn open(options: &SqliteOptions, migrations: &[&str]) -> Result<Self, rusqlite::Error> {
        create_private(&options.path)?;
        let mut writer = connect(
            options,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        migrate(&mut writer, migrations)?;
        // The checkpointer thread copies the WAL back into the database beside the writer, so
        // the writer's own checkpoint, when the WAL reaches WRITER_CHECKPOINT_PAGES, has only the
        // last few pages left to copy. The writer must still make it: only a checkpoint that
        // catches up with the last commit lets the next transaction restart the WAL from the
        // start, and only the writer can stop commits while it does.
        writer.wal_hook(Some(writer_checkpoint));
        // A WAL that grew during a burst is cut back to this size when it restarts.
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let checkpointer = connect(options, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let readers = (0..options.read_connections.max(1))
            .map(|_| connect(options, OpenFlags::SQLITE_OPEN_READ_WRITE).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(options.max_queued_writes.max(1));
        let (committed, commits) = std::sync::mpsc::sync_channel::<()>(1);
        let busy_timeout = options.busy_timeout;
        spawn("sqlite-checkpoint", move || {
            checkpoint_loop(&checkpointer, &commits)
        })?;
        spawn("sqlite-writer", move || {
            write_loop(writer, &queue, &committed, busy_timeout)
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Some(jobs),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Opens an existing database for reading only: nothing is created, migrated or written
    /// (commands that only look, such as verifying an audit log, must not change what they
    /// look at). Writes through the pool fail with [`ReadOnly`].
    ///
    /// # Errors
    ///
    /// The file is missing, its schema is not `expected_version`, or SQLite fails.
    pub fn open_read_only(
        options: &SqliteOptions,
        expected_version: usize,
    ) -> Result<Self, OpenReadOnlyError> {
        if !options.path.is_file() {
            return Err(OpenReadOnlyError::Missing(options.path.clone()));
        }
        let readers: Vec<Mutex<Connection>> = (0..options.read_connections.max(1))
            .map(|_| connect_read_only(options).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let found: usize = readers
            .first()
            .map(|c| {
                c.lock()
                    .pragma_query_value(None, "user_version", |r| r.get(0))
            })
            .transpose()?
            .unwrap_or(0);
        if found != expected_version {
            return Err(OpenReadOnlyError::SchemaVersion {
                found,
                expected: expected_version,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: None,
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Runs `f` inside a write transaction shared with other concurrent writes, and returns its
    /// result once that transaction is durable. An `Err` from `f` undoes only `f`'s changes.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, [`CommitFailed`] when the commit failed, or [`TaskFailed`] if the
    /// writer thread is gone.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteError,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |tx| {
            let Some(tx) = tx else {
                let finish: Finish = Box::new(move |commit| {
                    let _ =
                        reply.send(Err(E::from(CommitFailed(commit.err().unwrap_or_default()))));
                });
                return (false, finish);
            };
            let result = in_savepoint(tx, f);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let answer = match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(why)) => Err(E::from(CommitFailed(why))),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(answer);
            });
            (ok, finish)
        });
        let jobs = self.inner.jobs.as_ref().ok_or(E::from(ReadOnly))?;
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => return Err(E::from(QueueFull)),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(E::from(TaskFailed)),
        }
        answer.await.map_err(|_| E::from(TaskFailed))?
    }

    /// Runs `f`, a point query on an index (microseconds on a warm cache), on a free reader
    /// connection right here on the calling task's thread. Handing such a query to another
    /// thread and back costs more than running it, so this is what request paths use; when
    /// every reader is busy it falls back to [`Self::read`]. Scans and anything unbounded go
    /// through [`Self::read`].
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or [`TaskFailed`] converted.
    pub async fn lookup<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TaskFailed> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            if let Some(conn) = readers
                .get((start + i) % readers.len())
                .and_then(Mutex::try_lock)
            {
                return f(&conn);
            }
        }
        self.read(f).await
    }

    /// Runs `sql`, one write, as a [`Self::transaction`] of its own, and says how many rows it
    /// changed.
    ///
    /// # Errors
    ///
    /// As [`Self::transaction`].
    pub async fn execute<E, P>(&self, sql: &'static str, params: P) -> Result<usize, E>
    where
        E: WriteError,
        P: rusqlite::Params + Send + 'static,
    {
        self.transaction(move |tx| Ok(tx.prepare_cached(sql)?.execute(params)?))
            .await
    }

    /// Runs `f` on a reader connection on tokio's blocking pool.
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
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len().max(1);
            match inner.readers.get(i) {
                Some(conn) => f(&conn.lock()),
                None => Err(E::from(TaskFailed)),
            }
        })
        .await
        .map_err(|_| E::from(TaskFailed))?
    }
}

/// Creates the database file readable by its owner only (SQLite gives its `-wal` and `-shm`
/// files the same mode); an existing file is left as it is.
fn create_private(path: &std::path::Path) -> Result<(), rusqlite::Error> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
    }
}

/// Runs `f` in a savepoint of `tx`: released on success, rolled back on error.
fn in_savepoint<T, E: From<rusqlite::Error>>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    tx.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(tx) {
        Ok(v) => {
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), rusqlite::Error> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// WAL pages after which the writer checkpoints (SQLite's default is 1,000).
const WRITER_CHECKPOINT_PAGES: c_int = 8_000;
/// WAL pages after which the writer, once the batch is answered, waits briefly for readers
/// (RESTART) so the WAL can start over ([`restart_wal`]): with short reads, the WAL stays at
/// about this many pages plus one batch.
const WRITER_RESTART_PAGES: c_int = 12_000;
/// Bytes a restarted WAL is truncated to.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

std::thread_local! {
    /// The WAL's length after the writer thread's last commit, as its hook saw it.
    static WAL_PAGES: std::cell::Cell<c_int> = const { std::cell::Cell::new(0) };
    /// How long the writer thread's next restart waits for readers.
    static RESTART_WAITS: std::cell::Cell<Duration> = const { std::cell::Cell::new(RESTART_WAIT) };
}

/// How long the writer waits for readers to move on when the WAL is past
/// [`WRITER_RESTART_PAGES`]. Short, and only after the batch is answered: a reader holding a
/// snapshot open for long (an operator's shell in a transaction) then costs each later batch at
/// most this, and the WAL grows on until it lets go, instead of every commit stalling for the
/// whole busy timeout.
const RESTART_WAIT: Duration = Duration::from_millis(100);
/// The longest wait for readers, reached by doubling [`RESTART_WAIT`] after each restart that
/// readers prevented: on a loaded machine, readers that do pause may need more than 100 ms to
/// all let go, and without it the WAL would grow past its bound; a snapshot held for long then
/// costs each later batch at most this.
const RESTART_WAIT_MAX: Duration = Duration::from_millis(1_600);

/// The writer's commit hook (in place of `wal_autocheckpoint`, which is the same hook with
/// PASSIVE only): `pages` is the WAL's length after the commit. It takes what it can without
/// waiting (PASSIVE) and notes the length, so the writer can wait for readers after answering
/// (see [`restart_wal`]). The hook must not fail, or the commit that did happen would report an
/// error; a failed checkpoint is left to the next commit.
fn writer_checkpoint(wal: &rusqlite::hooks::Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    if pages >= WRITER_CHECKPOINT_PAGES
        && let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE)
    {
        tracing::debug!(error = %e, pages, "WAL checkpoint left to the next commit");
    }
    Ok(())
}

/// Past [`WRITER_RESTART_PAGES`], a checkpoint that waits (at most [`RESTART_WAIT`], doubled up
/// to [`RESTART_WAIT_MAX`] while readers keep preventing it) for readers
/// to leave the WAL, so the next transaction starts it over. Readers that never pause would
/// otherwise always hold a snapshot inside it, and it would grow without end.
fn restart_wal(conn: &Connection, busy_timeout: Duration) {
    if WAL_PAGES.get() < WRITER_RESTART_PAGES {
        return;
    }
    let wait = RESTART_WAITS.get();
    // SQLITE_BUSY does not make the pragma fail: its first column says whether readers
    // prevented the restart.
    let restarted = conn.busy_timeout(wait).and_then(|()| {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
    });
    match restarted {
        Ok(0) => RESTART_WAITS.set(RESTART_WAIT),
        Ok(_) => RESTART_WAITS.set((wait * 2).min(RESTART_WAIT_MAX)),
        Err(e) => tracing::debug!(error = %e, "WAL restart left to a later batch"),
    }
    if let Err(e) = conn.busy_timeout(busy_timeout) {
        tracing::warn!(error = %e, "could not restore the writer's busy timeout");
    }
    WAL_PAGES.set(0);
}

/// How often, at most, the checkpointer copies the WAL back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// The checkpointer thread: after commits, at most once per [`CHECKPOINT_INTERVAL`], a passive
/// checkpoint (it never blocks the writer or readers; pages still in use wait for the next one).
/// Batching checkpoints also copies a page rewritten by many commits only once. It stops when
/// the writer does.
fn checkpoint_loop(conn: &Connection, commits: &std::sync::mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying after the next commit");
        }
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}

/// The writer thread: batch what is waiting, one transaction, one commit, then answer.
fn write_loop(
    mut conn: Connection,
    queue: &std::sync::mpsc::Receiver<Job>,
    committed: &std::sync::mpsc::SyncSender<()>,
    busy_timeout: Duration,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let why = e.to_string();
                for job in batch {
                    let (_, finish) = job(None);
                    finish(Err(why.clone()));
                }
                continue;
            }
        };
        let finishes: Vec<Finish> = batch.into_iter().map(|job| job(Some(&tx)).1).collect();
        let commit = tx.commit().map_err(|e| e.to_string());
        // Full means a checkpoint is already due.
        let _ = committed.try_send(());
        for finish in finishes {
            finish(commit.clone());
        }
        restart_wal(&conn, busy_timeout);
    }
}

/// A row mapping (a store's `rows::…` function) as the query helpers take it.
pub type MapRow<T, E> = fn(&rusqlite::Row<'_>) -> Result<T, E>;

/// What `sql` finds (or returns) with `params`, each row mapped by `map`: every row into a
/// `Vec`, or the first into an `Option` (point queries, on a unique key).
///
/// # Errors
///
/// The query fails, or `map` refuses a row.
pub fn query<T, E: From<rusqlite::Error>, Found: crate::row::Rows<T>>(
    conn: &Connection,
    sql: &'static str,
    params: impl rusqlite::Params,
    map: MapRow<T, E>,
) -> Result<Found, E> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok(map(r)))?;
    crate::row::Rows::from_rows(rows.map(|r| r.map_err(E::from).and_then(|mapped| mapped)))
}

fn connect(options: &SqliteOptions, flags: OpenFlags) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(&options.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(options.busy_timeout)?;
    // Every query is prepared once per connection and reused: parsing SQL cost more than
    // running it.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// A reader for [`SqlitePool::open_read_only`]: `SQLITE_OPEN_READ_ONLY` and `query_only`, so
/// not even a stray statement can write; no journal or sync pragmas (they would need writes).
fn connect_read_only(options: &SqliteOptions) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        &options.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "query_only", "ON")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store's error, as the services declare theirs, and `Failed`: a job refusing itself.
    #[derive(Debug)]
    #[allow(dead_code, reason = "the variants' values are only shown by Debug")]
    enum Failure {
        Duplicate,
        Corrupt(&'static str),
        Database(Box<dyn std::error::Error + Send + Sync>),
        Task,
        Overloaded,
        ReadOnly,
        Failed,
    }

    crate::store_error_from_backends!(Failure);

    /// A pool on `t.db` in `dir`, its schema the one statement `table`.
    fn open(
        dir: &tempfile::TempDir,
        read_connections: usize,
        max_queued_writes: usize,
        table: &str,
    ) -> SqlitePool {
        let options = SqliteOptions {
            path: dir.path().join("t.db"),
            read_connections,
            busy_timeout: Duration::from_secs(5),
            max_queued_writes,
        };
        SqlitePool::open(&options, &[table]).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_all_commit_and_a_failing_one_is_undone_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir, 1, 4096, "CREATE TABLE t (n INTEGER PRIMARY KEY)");
        let mut tasks = Vec::new();
        for n in 0..300i64 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                pool.transaction(move |tx| {
                    tx.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    // Every tenth write changes something, then fails: only it is undone.
                    if n % 10 == 0 {
                        tx.execute("INSERT INTO t (n) VALUES (?1)", [n + 1000])?;
                        return Err(Failure::Failed);
                    }
                    Ok(n)
                })
                .await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => {}
                Err(Failure::Failed) => failed += 1,
                Err(e) => panic!("a database error: {e:?}"),
            }
        }
        assert_eq!(failed, 30);
        use std::os::unix::fs::PermissionsExt;
        for file in ["t.db", "t.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{file} is readable by others");
        }
        let (count, max): (i64, i64) = pool
            .read(|c| {
                Ok::<_, Failure>(c.query_row("SELECT count(*), max(n) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?)
            })
            .await
            .unwrap();
        assert_eq!(count, 270);
        assert!(max < 1000, "a failed write left a row");
        // A duplicate key fails only its own write.
        let dup = pool
            .transaction(|tx| Ok::<_, Failure>(tx.execute("INSERT INTO t (n) VALUES (1)", [])?))
            .await;
        assert!(matches!(dup, Err(Failure::Duplicate)), "{dup:?}");
    }

    /// A write arriving while `max_queued_writes` wait is refused at once, not queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_past_the_queue_bound_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir, 1, 2, "CREATE TABLE t (n INTEGER PRIMARY KEY)");
        // The first write holds the writer thread until released.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.transaction(move |tx| {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                    Ok::<_, Failure>(tx.execute("INSERT INTO t (n) VALUES (0)", [])?)
                })
                .await
            })
        };
        started.await.unwrap();
        // Two writes, each polled once: that is when it enters the queue (the writer is busy
        // with the first, so they stay there).
        let mut queued: Vec<_> = (1..=2i64)
            .map(|n| {
                let pool = pool.clone();
                Box::pin(async move {
                    pool.transaction(move |tx| {
                        Ok::<_, Failure>(tx.execute("INSERT INTO t (n) VALUES (?1)", [n])?)
                    })
                    .await
                })
            })
            .collect();
        for q in &mut queued {
            std::future::poll_fn(|cx| {
                assert!(q.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
        }
        let refused = matches!(
            pool.transaction(|tx| Ok::<_, Failure>(
                tx.execute("INSERT INTO t (n) VALUES (99)", [])?
            ))
            .await,
            Err(Failure::Overloaded)
        );
        release.send(()).unwrap();
        assert!(refused, "a write past the bound was queued");
        assert!(first.await.unwrap().is_ok());
        for q in queued {
            assert!(q.await.is_ok());
        }
    }

    /// With the writer checkpointing only when the WAL is long and the checkpointer copying
    /// beside it, the WAL must still restart: a WAL that only grows would fill the disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_writes_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(
            &dir,
            2,
            4096,
            "CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB NOT NULL)",
        );
        // Two readers that never pause, so that one of them nearly always holds a snapshot
        // inside the WAL: without the writer waiting for them, the WAL could never start over.
        let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (pool, reading) = (pool.clone(), Arc::clone(&reading));
                tokio::spawn(async move {
                    while reading.load(Ordering::Relaxed) {
                        let _: i64 = pool
                            .lookup(|c| {
                                Ok::<_, Failure>(c.query_row(
                                    "SELECT count(*) FROM t",
                                    [],
                                    |r| r.get(0),
                                )?)
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        // 160 MiB through the WAL, far more than it may keep.
        let blob = vec![7u8; 16 * 1024];
        let wal = dir.path().join("t.db-wal");
        let mut largest = 0;
        for round in 0..40i64 {
            let blob = blob.clone();
            pool.transaction(move |tx| {
                for i in 0..256 {
                    tx.execute(
                        "INSERT INTO t (n, b) VALUES (?1, ?2)",
                        rusqlite::params![round * 256 + i, blob],
                    )?;
                }
                Ok::<_, Failure>(())
            })
            .await
            .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        reading.store(false, Ordering::Relaxed);
        for reader in readers {
            reader.await.unwrap();
        }
        let limit = u64::try_from(WAL_SIZE_LIMIT).unwrap() + (5 << 20);
        assert!(largest < limit, "the WAL grew to {largest} bytes");
    }
}
