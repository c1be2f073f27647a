//! The audit trail: the chain verifies, and detokenize fails closed when it cannot be written.

use reqwest::StatusCode;

use crate::helpers::{ALL_SCOPES, TestVault, assert_no_pan};

#[tokio::test]
async fn chain_verifies_and_tampering_is_found() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", ALL_SCOPES).await;
    for pan in ["4242424242424242", "5555555555554444", "2200000000000004"] {
        let token = v.token_for(&key, pan).await;
        assert_eq!(v.detokenize(&key, &token).await.status, StatusCode::OK);
    }
    let verdict = v.verify_audit().await.unwrap();
    assert!(verdict.checked() >= 8);

    let db = v.raw_db();
    db.execute(
        "UPDATE audit_events SET purpose = 'nothing to see' WHERE seq = 5",
        [],
    )
    .unwrap();
    let broken = v.verify_audit().await.unwrap_err();
    assert_eq!(broken.seq, 5);
}

#[tokio::test]
async fn detokenize_fails_closed_when_the_audit_log_cannot_be_written() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;

    v.fail_audit_writes();
    let reply = v.detokenize(&key, &token).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "audit_unavailable");
    assert_no_pan(&reply.body, &["4242424242424242"], "503 body");

    // Tokenize commits with its audit event or not at all.
    let reply = v.tokenize(&key, "5555555555554444").await;
    assert!(reply.status.is_server_error());
    let rows: i64 = v.scalar("SELECT count(*) FROM tokens", []);
    assert_eq!(rows, 1, "a token was stored without its audit event");

    v.restore_audit_writes();
    assert_eq!(v.detokenize(&key, &token).await.status, StatusCode::OK);
    v.wait_readyz(StatusCode::OK).await;
}
