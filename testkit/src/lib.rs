//! What the store conformance suites of both services share (dev-only): a fresh database per
//! test, on SQLite (a temporary directory) or on PostgreSQL (a fresh schema in the database
//! `TEST_DATABASE_URL` names, skipped with one visible line when it is not set), SQL run behind
//! the stores' backs, and [`conformance!`], which declares a suite's harness from its store's two
//! constructors and runs each check once on each backend. Each suite opens its own store on a
//! [`Database`]; two stores on one database stand for two replicas. Also what the HTTP-level and
//! command-line tests of every crate share: [`logs`] (a test binary's logs, captured to scan for
//! card data), [`http`] (a request's body in one call), [`output`] (a finished command's output
//! as text, and its success asserted with its stderr shown), [`named_id`] (a readable id that the
//! services' strict id parsers accept) and [`TEST_CARDS`].
#![forbid(unsafe_code)]

pub mod browser;
pub mod http;
pub mod logs;
pub mod output;
pub mod tls;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use shared::sqlite::SqliteOptions;
use tempfile::TempDir;

/// Luhn-valid test card numbers: Visa, Mastercard, Mir, American Express, UnionPay, JCB and a
/// Visa debit, so that a check runs over every brand and length the vault knows.
pub const TEST_CARDS: [&str; 7] = [
    "4242424242424242",
    "5555555555554444",
    "2200000000000004",
    "378282246310005",
    "6200000000000005",
    "3530111333300000",
    "4000056655665556",
];

/// A Luhn-valid 16-digit Visa test number made from `n` (`4`, `n` in 14 digits, the check
/// digit): distinct `n`, distinct cards, for tests that need many.
pub fn numbered_card(n: u64) -> String {
    let mut digits = format!("4{n:014}0").into_bytes();
    for check in b'0'..=b'9' {
        if let Some(last) = digits.last_mut() {
            *last = check;
        }
        if shared::pan::luhn_valid(&digits) {
            break;
        }
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// `prefix` and `name` left-padded with `0` to a well-formed id (`app_a` is
/// `app_000000000000000000000a`): a fixture that reads as its name, where the services parse
/// ids strictly. `name` is base62 and at most 22 characters; ids of equal-length names order as
/// the names do.
///
/// # Panics
///
/// When the result is not a well-formed id.
pub fn named_id(prefix: &str, name: &str) -> String {
    let id = format!("{prefix}{name:0>width$}", width = shared::ids::ID_CHARS);
    assert!(shared::ids::is_id(prefix, &id), "{id} is not an id");
    id
}

/// One test's database.
#[derive(Debug)]
pub enum Database {
    /// A SQLite file in its own directory.
    Sqlite {
        /// Removed with the test.
        dir: TempDir,
        /// The file's name in `dir`.
        file: &'static str,
    },
    /// A schema of its own in a PostgreSQL database.
    Postgres {
        /// `TEST_DATABASE_URL`.
        url: String,
        /// A fresh schema name.
        schema: String,
    },
}

impl Database {
    /// A SQLite database named `file` in a fresh temporary directory.
    ///
    /// # Panics
    ///
    /// No temporary directory can be made.
    #[allow(clippy::expect_used, reason = "test set-up")]
    pub fn sqlite(file: &'static str) -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory"),
            file,
        }
    }

    /// A fresh schema, its name starting with `prefix`, in the `TEST_DATABASE_URL` database; `None`
    /// (said once on stderr) when the variable is not set.
    ///
    /// # Panics
    ///
    /// No randomness for the schema name.
    #[allow(clippy::expect_used, reason = "test set-up")]
    pub fn postgres(prefix: &str) -> Option<Self> {
        static SKIP: Once = Once::new();
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            SKIP.call_once(|| {
                // Written to /dev/stderr, past the test harness's capture, so it is seen once.
                use std::io::Write;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/stderr")
                    .and_then(|mut e| {
                        writeln!(
                            e,
                            "TEST_DATABASE_URL is not set: the PostgreSQL store tests are skipped"
                        )
                    });
            });
            return None;
        };
        let schema = shared::ids::random_id(prefix)
            .expect("randomness")
            .to_ascii_lowercase();
        Some(Self::Postgres { url, schema })
    }

    /// Opens a store (a replica) on this database: `sqlite` with the suite's options for the
    /// file, or `postgres` with the URL and the schema.
    pub async fn open_with<T>(
        &self,
        sqlite: impl FnOnce(&SqliteOptions) -> T,
        postgres: impl AsyncFnOnce(&str, &str) -> T,
    ) -> T {
        match self {
            Self::Sqlite { dir, file } => sqlite(&Self::sqlite_options(dir.path().join(file))),
            Self::Postgres { url, schema } => postgres(url, schema).await,
        }
    }

    /// The SQLite file (`None` on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite { dir, file } => Some(dir.path().join(file)),
            Self::Postgres { .. } => None,
        }
    }

    /// The options a suite opens its SQLite store with: two readers, a patient busy timeout.
    pub fn sqlite_options(path: PathBuf) -> SqliteOptions {
        SqliteOptions {
            path,
            read_connections: 2,
            busy_timeout: Duration::from_secs(10),
            max_queued_writes: 4096,
        }
    }

    /// Runs SQL on the database behind the stores' backs, as someone with database access.
    ///
    /// # Panics
    ///
    /// The SQL fails.
    #[allow(clippy::expect_used, reason = "tests")]
    pub async fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite { dir, file } => {
                rusqlite::Connection::open(dir.path().join(file))
                    .expect("the SQLite file")
                    .execute_batch(sql)
                    .expect("the SQL");
            }
            Self::Postgres { url, schema } => {
                let pool = shared::postgres::connect(url, 1, Some(schema))
                    .await
                    .expect("PostgreSQL");
                pool.get()
                    .await
                    .expect("a connection")
                    .batch_execute(sql)
                    .await
                    .expect("the SQL");
            }
        }
    }
}

/// Declares a store conformance suite's harness, in the test crate that calls it: `Backend` (a
/// test's [`Database`]); a trait `Open` whose `open()` makes a store (a replica) on that
/// database, with the `sqlite` constructor on the SQLite file named or the `postgres` one (given
/// the URL and the schema) on a fresh schema with the prefix named; and, for each check,
/// `name::sqlite` and `name::postgres` tests running `crate::suite::name`.
///
/// ```ignore
/// testkit::conformance! {
///     store: dyn Store,
///     sqlite: "vault.db" => |options| SqliteStore::open(options).unwrap(),
///     postgres: "vt_" => async |url, schema| PgStore::connect(url, 8, Some(schema)).await.unwrap(),
///     checks: [keys_insert_once, delete_and_sweep],
/// }
/// ```
#[macro_export]
#[allow(
    clippy::crate_in_macro_def,
    reason = "`crate` is meant: the suite of the test crate that calls it"
)]
macro_rules! conformance {
    (
        store: $store:ty,
        sqlite: $file:literal => $sqlite:expr,
        postgres: $prefix:literal => $postgres:expr,
        checks: [$($name:ident),+ $(,)?] $(,)?
    ) => {
        pub(crate) use $crate::Database as Backend;

        /// Opens a store (a replica) on a test's database.
        pub(crate) trait Open {
            async fn open(&self) -> ::std::sync::Arc<$store>;
        }

        impl Open for Backend {
            async fn open(&self) -> ::std::sync::Arc<$store> {
                self.open_with(
                    |options| -> ::std::sync::Arc<$store> {
                        ::std::sync::Arc::new(($sqlite)(options))
                    },
                    async |url, schema| {
                        // Bound with its type: the coercion to the trait object happens here.
                        let store: ::std::sync::Arc<$store> =
                            ::std::sync::Arc::new(($postgres)(url, schema).await);
                        store
                    },
                )
                .await
            }
        }

        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::suite::$name($crate::Database::sqlite($file)).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = $crate::Database::postgres($prefix) {
                        crate::suite::$name(backend).await;
                    }
                }
            }
        )+
    };
}

#[cfg(test)]
mod card_tests {
    #[test]
    fn numbered_cards_are_distinct_and_luhn_valid() {
        let cards: std::collections::BTreeSet<_> = (0..500).map(super::numbered_card).collect();
        assert_eq!(cards.len(), 500);
        assert!(
            cards.iter().all(|c| c.len() == 16
                && c.starts_with('4')
                && shared::pan::luhn_valid(c.as_bytes()))
        );
    }
}
