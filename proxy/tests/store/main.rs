//! One store conformance suite, run unchanged against SQLite and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; each PostgreSQL test gets a fresh schema). Two store instances on
//! one database stand for two proxy replicas.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod links;
mod rows;
mod suite;

use proxy::store::{PgStore, ProxyStore, SqliteStore};

testkit::conformance! {
    store: dyn ProxyStore,
    sqlite: "proxy.db" => |options| SqliteStore::open(options).unwrap(),
    postgres: "pt_" => async |url, schema| PgStore::connect(url, 8, Some(schema)).await.unwrap(),
    checks: [
        idempotency_keys_are_per_client,
        save_is_compare_and_set_with_its_events,
        listing_pages_filters_and_isolates_tenants,
        replicas_never_claim_the_same_payout,
        replicas_never_claim_the_same_event,
        clients_and_bank_events,
        events_are_listed_per_client_and_redelivered,
        forged_ids_in_rows_are_corrupt,
        a_session_state_without_a_session_is_corrupt,
        link_idempotency_keys_are_per_client,
        replicas_never_claim_the_same_link,
        a_link_closes_once_with_its_payout_and_event,
        forged_link_rows_are_corrupt,
    ],
}
