//! One store conformance suite, run unchanged against SQLite and PostgreSQL (when
//! `TEST_DATABASE_URL` is set; each PostgreSQL test gets a fresh schema). Two store instances on
//! one database stand for two vault replicas.
#![allow(clippy::unwrap_used, reason = "tests")]

mod suite;

use vault::store::{PgStore, SqliteStore, Store};

testkit::conformance! {
    store: dyn Store,
    sqlite: "vault.db" => |options| SqliteStore::open(options).unwrap(),
    postgres: "vt_" => async |url, schema| {
        PgStore::connect(url, 8, Some(schema), 4096).await.unwrap()
    },
    checks: [
        keys_insert_once,
        key_versions_are_added_retired_once_and_counted,
        tokens_are_resealed_once_and_a_version_destroyed_only_when_empty,
        tokenize_returns_the_existing_token_and_replaces_expired_ones,
        tokens_are_isolated_by_tenant_and_expiry,
        delete_and_sweep,
        clients_and_revocation,
        audit_chain_pages_and_verifies,
        replicas_tokenizing_one_card_make_one_token,
        replicas_appending_audit_events_keep_one_chain,
        replicas_approving_one_proposal_record_one_approval,
        tokens_are_refingerprinted_once_and_a_duplicate_keeps_its_own,
        a_card_under_two_fingerprint_versions_answers_with_the_newest,
        rows_are_remaced_only_from_the_mac_they_were_read_with,
        a_key_version_under_an_old_master_key_is_refused,
        a_refused_write_fails_alone_among_concurrent_ones,
        the_store_refuses_to_append_after_the_chain_was_cut,
        the_store_refuses_to_append_after_its_last_event_changed,
        readiness_beside_concurrent_writes_never_latches,
        collect_sessions_complete_once,
        a_changed_or_expired_collect_session_is_not_claimed,
        a_collect_session_restored_to_before_its_card_is_not_claimed,
        collect_sessions_past_their_retention_are_swept,
        replicas_completing_one_collect_session_complete_it_once,
    ],
}
