//! Tokenize, read, detokenize, delete, TTL.

use reqwest::{Method, StatusCode};

use crate::helpers::{ALL_SCOPES, TestVault};

#[tokio::test]
async fn round_trip_gives_back_the_same_pan_and_metadata_only_on_read() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", ALL_SCOPES).await;

    let created = v
        .tokenize_body(
            &key,
            r#"{"pan":"5555 5555 5555 4444","exp_month":7,"exp_year":2031}"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let body = created.json();
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tok_") && token.len() == 26);
    // By default a client sees last four, brand and expiry: BIN and length only with
    // tokens:read_bin (see bin_and_length_need_their_own_scope).
    assert!(body["card"].get("bin").is_none(), "{body}");
    assert!(body["card"].get("length").is_none(), "{body}");
    assert_eq!(body["card"]["last4"], "4444");
    assert_eq!(body["card"]["brand"], "mastercard");
    assert_eq!(body["card"]["exp_month"], 7);
    assert_eq!(body["card"]["exp_year"], 2031);
    assert!(body["fingerprint"].as_str().unwrap().starts_with("fp_"));

    let read = v.read(&key, &token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["card"], body["card"]);
    assert!(!read.text().contains("5555555555554444"));

    let pan = v.detokenize(&key, &token).await;
    assert_eq!(pan.status, StatusCode::OK);
    assert_eq!(pan.json()["pan"], "5555555555554444");
    assert_eq!(pan.json()["token"], token.as_str());
}

#[tokio::test]
async fn bin_and_length_need_their_own_scope() {
    let v = TestVault::spawn().await;
    let plain = v.client("acme", "tokens:create,tokens:read").await;
    let with_bin = v
        .client("acme", "tokens:create,tokens:read,tokens:read_bin")
        .await;
    let bin_only = v.client("acme", "tokens:read_bin").await;
    let token = v.token_for(&plain, "378282246310005").await;
    let path = format!("/v1/tokens/{token}");

    let shown = v.call(Method::GET, &path, Some(&with_bin), None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["card"]["bin"], "378282");
    assert_eq!(shown.json()["card"]["length"], 15);
    assert_eq!(shown.json()["card"]["last4"], "0005");
    let again = v.tokenize(&with_bin, "378282246310005").await;
    assert_eq!(again.json()["card"]["bin"], "378282");

    let hidden = v.call(Method::GET, &path, Some(&plain), None).await;
    assert_eq!(
        hidden.json()["card"],
        serde_json::json!({"last4": "0005", "brand": "amex", "exp_month": null, "exp_year": null})
    );
    // tokens:read_bin widens the view; it does not grant reading.
    let refused = v.call(Method::GET, &path, Some(&bin_only), None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn same_pan_same_tenant_same_token_and_unrelated_otherwise() {
    let (v, acme, globex) = TestVault::with_two_tenants().await;

    let first = v.tokenize(&acme, "4242424242424242").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = v.tokenize(&acme, "4242-4242-4242-4242").await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "an existing token is returned, not created"
    );
    assert_eq!(first.json()["token"], again.json()["token"]);
    assert_eq!(first.json()["fingerprint"], again.json()["fingerprint"]);

    let other_tenant = v.tokenize(&globex, "4242424242424242").await;
    assert_ne!(first.json()["token"], other_tenant.json()["token"]);
    assert_ne!(
        first.json()["fingerprint"],
        other_tenant.json()["fingerprint"]
    );

    // One body digit different, check digit recomputed: 42424242424242[4]2 -> ...[6]7.
    let near = v.tokenize(&acme, "4242424242424267").await;
    assert_eq!(near.status, StatusCode::CREATED);
    let (a, b) = (
        first.json()["token"].as_str().unwrap().to_owned(),
        near.json()["token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(a, b);
    // Unrelated: no shared run of 4+ characters after the prefix beyond chance.
    let shared_runs = (0..a.len() - 8)
        .filter(|i| b.contains(&a[4 + i..4 + i + 4]))
        .count();
    assert!(
        shared_runs <= 2,
        "{a} and {b} share {shared_runs} 4-character runs"
    );
}

#[tokio::test]
async fn delete_destroys_the_ciphertext() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;

    let deleted = v.delete(&key, &token).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let rows: i64 = v.scalar("SELECT count(*) FROM tokens", []);
    assert_eq!(rows, 0);
    assert_eq!(
        v.detokenize(&key, &token).await.status,
        StatusCode::NOT_FOUND
    );
    let again = v.delete(&key, &token).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // A new tokenize of the same card makes a new token.
    assert_ne!(v.token_for(&key, "4242424242424242").await, token);
}

#[tokio::test]
async fn expired_tokens_are_refused_at_once_and_swept() {
    let v = TestVault::spawn_with(|c| c.tokens.sweep_interval_seconds = 1).await;
    let key = v.client("acme", ALL_SCOPES).await;
    let reply = v
        .tokenize_body(&key, r#"{"pan":"4242424242424242","ttl_seconds":1}"#)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.json()["expires_at"].is_string());
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let keep = v.token_for(&key, "5555555555554444").await;

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        v.detokenize(&key, &token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(v.read(&key, &token).await.status, StatusCode::NOT_FOUND);

    // The sweeper runs every second; give it a few.
    let mut rows = 2;
    for _ in 0..50 {
        rows = v.scalar::<i64>("SELECT count(*) FROM tokens", []);
        if rows == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 1, "the expired token was not swept");
    assert_eq!(v.detokenize(&key, &keep).await.status, StatusCode::OK);

    // An expired card tokenizes again to a fresh token.
    assert_ne!(v.token_for(&key, "4242424242424242").await, token);
}

fn luhn_complete(body: &[u8]) -> String {
    let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
    digits.push(b'0');
    for check in b'0'..=b'9' {
        *digits.last_mut().unwrap() = check;
        if shared::pan::luhn_valid(&digits) {
            break;
        }
    }
    String::from_utf8(digits).unwrap()
}

/// Property: every generated valid PAN (13-19 digits) round-trips, and a card differing in one
/// body digit (with its check digit recomputed) gets an unrelated token.
#[tokio::test]
async fn generated_pans_round_trip_and_neighbours_get_unrelated_tokens() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    // Hundreds of cards at once: far past the default tokenize burst.
    let v = TestVault::spawn_with(crate::helpers::unlimited).await;
    let key = v.client("acme", ALL_SCOPES).await;
    let strategy = (
        proptest::collection::vec(0u8..10, 12..=18),
        0usize..18,
        1u8..10,
    );
    let mut runner = TestRunner::deterministic();
    for _ in 0..100 {
        let (body, pos, delta) = strategy.new_tree(&mut runner).unwrap().current();
        let pan = luhn_complete(&body);
        let token = v.token_for(&key, &pan).await;
        let reply = v.detokenize(&key, &token).await;
        assert_eq!(reply.json()["pan"], pan.as_str());

        let mut neighbour = body.clone();
        let pos = pos % neighbour.len();
        neighbour[pos] = (neighbour[pos] + delta) % 10;
        let other = v.token_for(&key, &luhn_complete(&neighbour)).await;
        assert_ne!(other, token);
        let same_place = token
            .bytes()
            .zip(other.bytes())
            .skip(4)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            same_place <= 8,
            "{token} and {other} agree in {same_place} places"
        );
    }
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503_timeout() {
    let v = TestVault::spawn_with(|c| c.server.request_timeout_ms = 300).await;
    let key = v.client("acme", ALL_SCOPES).await;
    // Hold the database's write lock, as a stuck disk or a long checkpoint would.
    let blocker = v.raw_db();
    blocker.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let reply = v.tokenize(&key, "4242424242424242").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "timeout");
    assert!(!reply.text().contains("4242424242424242"));
    blocker.execute_batch("COMMIT;").unwrap();
    // The write the client gave up on may still land; tokenizing again is safe either way.
    let again = v.tokenize(&key, "4242424242424242").await;
    assert!(again.status.is_success(), "{}", again.text());
}
