//! The database is not trusted for authorization (docs/ARCHITECTURE.md §9.2): rows written or edited behind
//! the vault's back grant nothing, and a running vault notices an audit log cut short.

use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::helpers::{ALL_SCOPES, TestVault, logs};

/// Someone with write access to the database inserts a client with a key of their choosing and
/// `tokens:detokenize`, then edits real clients' rows: scopes widened, tenant moved, a
/// revocation undone. None of it authenticates.
#[tokio::test]
async fn client_rows_written_or_edited_outside_the_vault_authenticate_nothing() {
    let (mut v, owner, token) = TestVault::with_token("4242424242424242").await;

    // A forged row: the attacker's key, every scope, no MAC (or someone else's).
    let forged_key = "vk_attacker-chosen-key-0000000000000000000000";
    let hash = Sha256::digest(forged_key.as_bytes()).to_vec();
    let db = v.raw_db();
    db.execute(
        "INSERT INTO clients (id, name, tenant, scopes, key_hash, created_at, revoked_at, mac)
         VALUES ('cli_0000000000000000Forged', 'x', 'acme', 'tokens:detokenize', ?1, 0, NULL, NULL)",
        [&hash],
    )
    .unwrap();
    assert_eq!(
        v.detokenize(forged_key, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    db.execute(
        "UPDATE clients SET mac = (SELECT mac FROM clients WHERE key_hash != ?1 LIMIT 1) WHERE key_hash = ?1",
        [&hash],
    )
    .unwrap();
    let reply = v.detokenize(forged_key, &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.text().contains("4242424242424242"));

    // A real client's row widened to detokenize, then moved to another tenant.
    let reader = v.client("acme", "tokens:read").await;
    let reader_hash = Sha256::digest(reader.as_bytes()).to_vec();
    let path = format!("/v1/tokens/{token}");
    assert_eq!(
        v.call(Method::GET, &path, Some(&reader), None).await.status,
        StatusCode::OK
    );
    db.execute(
        "UPDATE clients SET scopes = 'tokens:detokenize,tokens:read' WHERE key_hash = ?1",
        [&reader_hash],
    )
    .unwrap();
    assert_eq!(
        v.detokenize(&reader, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        v.call(Method::GET, &path, Some(&reader), None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A revocation undone by hand.
    let (revoked_id, revoked) = v.client_with_id("acme", ALL_SCOPES).await;
    v.admin.revoke_client(&revoked_id).await.unwrap();
    db.execute(
        "UPDATE clients SET revoked_at = NULL WHERE id = ?1",
        [revoked_id.as_str()],
    )
    .unwrap();
    assert_eq!(
        v.detokenize(&revoked, &token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The genuine client still works, and listing shows which rows are not the vault's.
    assert_eq!(v.detokenize(&owner, &token).await.status, StatusCode::OK);
    let clients = v.admin.clients().await.unwrap();
    let tampered: Vec<_> = clients
        .iter()
        .filter(|c| !v.admin.is_authentic(c))
        .collect();
    assert_eq!(tampered.len(), 3, "{tampered:?}");
    // A tampered row is not acted on blindly either.
    assert!(v.admin.revoke_client(&revoked_id).await.is_err());

    let log = String::from_utf8_lossy(&logs()).into_owned();
    assert!(
        log.contains("a client row failed its integrity check"),
        "not in the log"
    );
    v.stop().await;
    let details: Vec<String> = v
        .events("auth.fail")
        .into_iter()
        .filter_map(|(_, _, d)| d)
        .filter(|d| d.starts_with("client row failed its integrity check"))
        .collect();
    assert_eq!(
        details,
        ["client row failed its integrity check: 5 requests from 127.0.0.1 within 60 s"],
        "the audit log records the tampered rows' use"
    );
}

/// PCI DSS §5 case 17 (the running vault's half): events cut off the end of the audit log
/// while the vault runs. It notices at the next append: every audited request gets 503 and
/// `/readyz` says not ready, and it stays so (putting rows back does not make it trust the log
/// again; only a restart, after an operator looked, does).
#[tokio::test]
async fn pci_17_a_running_vault_refuses_to_append_to_a_truncated_chain() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;
    for _ in 0..3 {
        assert_eq!(v.detokenize(&key, &token).await.status, StatusCode::OK);
    }
    v.wait_readyz(StatusCode::OK).await;
    let db = v.raw_db();
    let head: i64 = db
        .query_row("SELECT max(seq) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    db.execute_batch(&format!(
        "CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq > {};
         DELETE FROM audit_events WHERE seq > {};",
        head - 2,
        head - 2
    ))
    .unwrap();

    let reply = v.detokenize(&key, &token).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "audit_unavailable");
    assert!(!reply.text().contains("4242424242424242"));
    assert_eq!(
        v.tokenize(&key, "5555555555554444").await.code(),
        "audit_unavailable"
    );
    v.wait_readyz(StatusCode::SERVICE_UNAVAILABLE).await;
    let after: i64 = db
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, head - 2, "something was appended to the cut chain");

    db.execute_batch("INSERT INTO audit_events SELECT * FROM saved;")
        .unwrap();
    assert_eq!(
        v.detokenize(&key, &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the vault trusted the log again"
    );
    let log = String::from_utf8_lossy(&logs()).into_owned();
    assert!(log.contains("AUDIT CHAIN TAMPERING"));
}

/// A MAC proves the vault wrote a row once, not that it is the latest version: someone who kept
/// a client's row from before its revocation (a backup, a read) writes it back. The running
/// vault refuses the key anyway (it reads revocations from the audit log), and `audit verify`
/// reports the row.
#[tokio::test]
async fn a_row_restored_from_before_its_revocation_is_refused() {
    let v = TestVault::spawn().await;
    let (id, key) = v.client_with_id("acme", ALL_SCOPES).await;
    let token = v.token_for(&key, "4242424242424242").await;
    let db = v.raw_db();
    db.execute_batch("CREATE TABLE saved_clients AS SELECT * FROM clients;")
        .unwrap();
    // Revoked elsewhere (the command line's own process), and the old row put straight back,
    // before the server ever saw the revoked one.
    v.admin.revoke_client(&id).await.unwrap();
    db.execute_batch("DELETE FROM clients; INSERT INTO clients SELECT * FROM saved_clients;")
        .unwrap();
    let row = v.admin.clients().await.unwrap().pop().unwrap();
    assert!(
        row.revoked_at.is_none() && v.admin.is_authentic(&row),
        "the old row verifies"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let reply = v.detokenize(&key, &token).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked key still works: {}",
            reply.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = String::from_utf8_lossy(&logs()).into_owned();
    assert!(log.contains("a revoked client's row says active"));
    let (_, disagreements) = v
        .admin
        .verify_audit_and_clients(&Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disagreements.len(), 1, "{disagreements:?}");
    assert!(
        disagreements[0]
            .to_string()
            .contains("revoked in the audit chain")
    );
}
