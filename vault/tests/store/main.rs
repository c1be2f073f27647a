//! One store conformance suite, run unchanged against SQLite and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; each PostgreSQL test gets a fresh schema). Two store instances on
//! one database stand for two vault replicas.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod suite;

use std::sync::{Arc, Once};

use tempfile::TempDir;
use vault::store::{PgStore, SqliteOptions, SqliteStore, Store};

/// A database and a way to open more stores (replicas) on it.
pub(crate) enum Backend {
    Sqlite(TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open(&SqliteOptions {
                    path: dir.path().join("vault.db"),
                    read_connections: 2,
                    busy_timeout: std::time::Duration::from_secs(10),
                    max_queued_writes: 4096,
                })
                .unwrap(),
            ),
            Self::Postgres { url, schema } => {
                Arc::new(PgStore::connect(url, 8, Some(schema), 4096).await.unwrap())
            }
        }
    }
}

impl Backend {
    /// Runs SQL on the database behind the stores' backs, as someone with database access.
    pub(crate) async fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite(dir) => {
                rusqlite::Connection::open(dir.path().join("vault.db"))
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Self::Postgres { url, schema } => {
                let pool = shared::postgres::connect(url, 1, Some(schema))
                    .await
                    .unwrap();
                pool.get().await.unwrap().batch_execute(sql).await.unwrap();
            }
        }
    }
}

pub(crate) fn sqlite() -> Backend {
    Backend::Sqlite(tempfile::tempdir().unwrap())
}

pub(crate) fn postgres() -> Option<Backend> {
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
    let schema = shared::ids::random_id("vt_").unwrap().to_ascii_lowercase();
    Some(Backend::Postgres { url, schema })
}

/// Declares `name::sqlite` and `name::postgres` tests running `suite::name` on each backend.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::suite::$name(crate::sqlite()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = crate::postgres() {
                        crate::suite::$name(backend).await;
                    }
                }
            }
        )+
    };
}

conformance!(
    keys_insert_once,
    tokenize_returns_the_existing_token_and_replaces_expired_ones,
    tokens_are_isolated_by_tenant_and_expiry,
    delete_and_sweep,
    clients_and_revocation,
    audit_chain_pages_and_verifies,
    replicas_tokenizing_one_card_make_one_token,
    replicas_appending_audit_events_keep_one_chain,
    a_refused_write_fails_alone_among_concurrent_ones,
    the_store_refuses_to_append_after_the_chain_was_cut,
    the_store_refuses_to_append_after_its_last_event_changed,
    readiness_beside_concurrent_writes_never_latches,
);
