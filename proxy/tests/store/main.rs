//! One store conformance suite, run unchanged against SQLite and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; each PostgreSQL test gets a fresh schema). Two store instances on
//! one database stand for two proxy replicas.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod suite;

use std::sync::{Arc, Once};

use proxy::store::{PgStore, ProxyStore, SqliteStore};
use shared::sqlite::SqliteOptions;
use tempfile::TempDir;

pub(crate) enum Backend {
    Sqlite(TempDir),
    Postgres { url: String, schema: String },
}

impl Backend {
    pub(crate) async fn open(&self) -> Arc<dyn ProxyStore> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open(&SqliteOptions {
                    path: dir.path().join("proxy.db"),
                    read_connections: 2,
                    busy_timeout: std::time::Duration::from_secs(10),
                    max_queued_writes: 4096,
                })
                .unwrap(),
            ),
            Self::Postgres { url, schema } => {
                Arc::new(PgStore::connect(url, 8, Some(schema)).await.unwrap())
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
    let schema = shared::ids::random_id("pt_").unwrap().to_ascii_lowercase();
    Some(Backend::Postgres { url, schema })
}

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
    idempotency_keys_are_per_client,
    save_is_compare_and_set_with_its_events,
    listing_pages_filters_and_isolates_tenants,
    replicas_never_claim_the_same_payout,
    replicas_never_claim_the_same_event,
    clients_and_bank_events,
    events_are_listed_per_client_and_redelivered,
);
