//! The conversions every store's error enum takes from the two backends and the pools over them,
//! written once for both services: a unique or primary key refusing a row is `Duplicate`, a full
//! write queue `Overloaded`, a dead storage thread `Task`, a write to a read-only open
//! `ReadOnly`, a row that does not decode `Corrupt`, anything else `Database` (boxed: its message
//! is logged, never answered).

#[doc(hidden)]
pub use deadpool_postgres::PoolError;
#[doc(hidden)]
pub use rusqlite::Error as SqliteError;
#[doc(hidden)]
pub use tokio_postgres::Error as PgError;

/// True when a SQLite error is a unique or primary key refusing a row. Other constraint
/// failures (a trigger refusing the row, a CHECK) are the database refusing the write, not a
/// duplicate the caller may resolve by reading the winner.
pub fn sqlite_duplicate(e: &rusqlite::Error) -> bool {
    const UNIQUE: i32 = 2067;
    const PRIMARY_KEY: i32 = 1555;
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && matches!(f.extended_code, UNIQUE | PRIMARY_KEY)
    )
}

/// Declares a store's error enum: the failures every store has (a duplicate, a corrupt row, the
/// database, the storage thread, a full write queue, a read-only open), then the store's own
/// variants, and every conversion from the backends ([`store_error_from_backends!`]).
/// Messages name tables and constraints, never values.
#[macro_export]
macro_rules! store_error {
    ($(#[$attr:meta])* $vis:vis enum $error:ident { $($own:tt)* }) => {
        $(#[$attr])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        $vis enum $error {
            /// A unique constraint refused the write.
            #[error("duplicate row")]
            Duplicate,
            /// A stored row does not decode (corruption or a manual edit).
            #[error("stored row is corrupt: {0}")]
            Corrupt(&'static str),
            /// The database failed.
            #[error("database error")]
            Database(#[source] Box<dyn std::error::Error + Send + Sync>),
            /// The blocking task running the query died.
            #[error("storage task failed")]
            Task,
            /// Too many writes are waiting: refused at once rather than queued (load shedding).
            #[error("too many writes are waiting for the database")]
            Overloaded,
            /// The store was opened read-only.
            #[error("the database was opened read-only")]
            ReadOnly,
            $($own)*
        }

        $crate::store_error_from_backends!($error);
    };
}
pub use store_error;

/// Makes a store's error enum convert from every backend error: `store_error_from_backends!(StoreError)`.
/// The enum needs the variants `Duplicate`, `Corrupt(&'static str)`, `Database(Box<dyn Error +
/// Send + Sync>)`, `Task`, `Overloaded` and `ReadOnly`.
#[macro_export]
macro_rules! store_error_from_backends {
    ($error:ident) => {
        $crate::row::corrupt_rows_are!($error::Corrupt);
        $crate::store_error_from_backends!(@duplicate $error, $crate::store_error::SqliteError, $crate::store_error::sqlite_duplicate);
        $crate::store_error_from_backends!(@duplicate $error, $crate::store_error::PgError, $crate::postgres::is_unique_violation);
        $crate::store_error_from_backends!(@boxed $error, $crate::store_error::PoolError);
        $crate::store_error_from_backends!(@boxed $error, $crate::postgres::PgSetupError);
        $crate::store_error_from_backends!(@boxed $error, $crate::sqlite::CommitFailed);
        $crate::store_error_from_backends!(@unit $error, $crate::sqlite::TaskFailed => Task);
        $crate::store_error_from_backends!(@unit $error, $crate::sqlite::QueueFull => Overloaded);
        $crate::store_error_from_backends!(@unit $error, $crate::sqlite::ReadOnly => ReadOnly);
    };
    (@duplicate $error:ident, $from:ty, $is_duplicate:path) => {
        impl From<$from> for $error {
            fn from(e: $from) -> Self {
                if $is_duplicate(&e) { Self::Duplicate } else { Self::Database(Box::new(e)) }
            }
        }
    };
    (@boxed $error:ident, $from:ty) => {
        impl From<$from> for $error {
            fn from(e: $from) -> Self { Self::Database(Box::new(e)) }
        }
    };
    (@unit $error:ident, $from:ty => $variant:ident) => {
        impl From<$from> for $error {
            fn from(_: $from) -> Self { Self::$variant }
        }
    };
}
pub use store_error_from_backends;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unique_and_primary_keys_are_duplicates() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n INTEGER CHECK (n > 0));
             INSERT INTO t VALUES (1, 'a', 1);",
        )
        .unwrap();
        let refused = |sql: &str| conn.execute(sql, []).unwrap_err();
        assert!(sqlite_duplicate(&refused(
            "INSERT INTO t VALUES (1, 'b', 1)"
        )));
        assert!(sqlite_duplicate(&refused(
            "INSERT INTO t VALUES (2, 'a', 1)"
        )));
        assert!(!sqlite_duplicate(&refused(
            "INSERT INTO t VALUES (3, 'c', 0)"
        )));
    }
}
