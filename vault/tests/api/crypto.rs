//! Tampered ciphertexts, swapped ciphertexts and a wrong master key are clear integrity errors:
//! never a wrong PAN, never a panic.

use std::sync::Arc;

use reqwest::StatusCode;
use vault::crypto::{CryptoError, FileKeyProvider};
use vault::service::{Vault, VaultError};
use vault::store::{SqliteStore, Store};

use crate::helpers::{ALL_SCOPES, TestVault, assert_no_pan};

#[tokio::test]
async fn tampered_ciphertext_is_an_integrity_error() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;

    for (column, offset) in [("ciphertext", 0), ("ciphertext", 17), ("nonce", 3)] {
        let db = v.raw_db();
        let mut blob: Vec<u8> = db
            .query_row(
                &format!("SELECT {column} FROM tokens WHERE token = ?1"),
                [&token],
                |r| r.get(0),
            )
            .unwrap();
        blob[offset] ^= 0x01;
        db.execute(
            &format!("UPDATE tokens SET {column} = ?1 WHERE token = ?2"),
            (&blob, &token),
        )
        .unwrap();

        let reply = v.detokenize(&key, &token).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{column}");
        assert_eq!(reply.code(), "integrity_error");
        assert_no_pan(&reply.body, &["4242424242424242"], "integrity error body");

        blob[offset] ^= 0x01;
        db.execute(
            &format!("UPDATE tokens SET {column} = ?1 WHERE token = ?2"),
            (&blob, &token),
        )
        .unwrap();
        assert_eq!(
            v.detokenize(&key, &token).await.status,
            StatusCode::OK,
            "restored {column}"
        );
    }

    // Truncated to less than a tag, and a key version that does not exist.
    let db = v.raw_db();
    db.execute(
        "UPDATE tokens SET ciphertext = x'0102' WHERE token = ?1",
        [&token],
    )
    .unwrap();
    assert_eq!(v.detokenize(&key, &token).await.code(), "integrity_error");
    db.execute(
        "UPDATE tokens SET key_version = 99 WHERE token = ?1",
        [&token],
    )
    .unwrap();
    assert_eq!(v.detokenize(&key, &token).await.code(), "integrity_error");

    let errors: i64 = db
        .query_row(
            "SELECT count(*) FROM audit_events WHERE action = 'token.detokenize' AND outcome = 'error'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(errors, 5, "each failed open is audited");
}

#[tokio::test]
async fn swapped_ciphertexts_do_not_open() {
    let (v, key, a) = TestVault::with_token("4242424242424242").await;
    let b = v.token_for(&key, "5555555555554444").await;

    let db = v.raw_db();
    let row = |t: &str| -> (Vec<u8>, Vec<u8>) {
        db.query_row(
            "SELECT nonce, ciphertext FROM tokens WHERE token = ?1",
            [t],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (ra, rb) = (row(&a), row(&b));
    db.execute(
        "UPDATE tokens SET nonce = ?1, ciphertext = ?2 WHERE token = ?3",
        (&rb.0, &rb.1, &a),
    )
    .unwrap();
    db.execute(
        "UPDATE tokens SET nonce = ?1, ciphertext = ?2 WHERE token = ?3",
        (&ra.0, &ra.1, &b),
    )
    .unwrap();

    for t in [&a, &b] {
        let reply = v.detokenize(&key, t).await;
        assert_eq!(reply.code(), "integrity_error");
        assert_no_pan(
            &reply.body,
            &["4242424242424242", "5555555555554444"],
            "swap",
        );
    }

    // Moving a row to another tenant does not open either.
    let globex = v.client("globex", ALL_SCOPES).await;
    db.execute(
        "UPDATE tokens SET tenant = 'globex', nonce = ?1, ciphertext = ?2 WHERE token = ?3",
        (&ra.0, &ra.1, &a),
    )
    .unwrap();
    assert_eq!(v.detokenize(&globex, &a).await.code(), "integrity_error");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_open() {
    let (v, _, _) = TestVault::with_token("4242424242424242").await;

    let other_key = v.dir.path().join("other.key");
    FileKeyProvider::create(&other_key).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&v.config.sqlite()).unwrap());
    let err = Vault::open(store, &FileKeyProvider::new(&other_key))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::Crypto(CryptoError::WrongMasterKey)),
        "{err:?}"
    );
    assert!(err.to_string().contains("master key"));
}
