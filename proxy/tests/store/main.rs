//! One store conformance suite, run unchanged against SQLite and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; each PostgreSQL test gets a fresh schema). Two store instances on
//! one database stand for two proxy replicas.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod rows;
mod suite;

use std::sync::Arc;

use proxy::store::{PgStore, ProxyStore, SqliteStore};
pub(crate) use testkit::Database as Backend;

/// Opens a store (a replica) on a test's database.
pub(crate) trait Open {
    async fn open(&self) -> Arc<dyn ProxyStore>;
}

impl Open for Backend {
    async fn open(&self) -> Arc<dyn ProxyStore> {
        self.open_with(
            |options| -> Arc<dyn ProxyStore> { Arc::new(SqliteStore::open(options).unwrap()) },
            async |url, schema| {
                let store = PgStore::connect(url, 8, Some(schema)).await.unwrap();
                let store: Arc<dyn ProxyStore> = Arc::new(store);
                store
            },
        )
        .await
    }
}

pub(crate) fn sqlite() -> Backend {
    Backend::sqlite("proxy.db")
}

pub(crate) fn postgres() -> Option<Backend> {
    Backend::postgres("pt_")
}

use testkit::conformance;

conformance!(
    idempotency_keys_are_per_client,
    save_is_compare_and_set_with_its_events,
    listing_pages_filters_and_isolates_tenants,
    replicas_never_claim_the_same_payout,
    replicas_never_claim_the_same_event,
    clients_and_bank_events,
    events_are_listed_per_client_and_redelivered,
    forged_ids_in_rows_are_corrupt,
);
