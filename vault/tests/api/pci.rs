//! PCI DSS §5 test cases that are about the vault's HTTP API (the numbering is PCI.md's).

use reqwest::{Method, StatusCode};

use crate::helpers::{ALL_SCOPES, TestVault, assert_no_pan};

/// Case 3: JSON nested deeper than the explicit limit (32 levels) is refused as such, with a
/// fixed message; at the limit it is decoded (and here refused for what it is: a `pan` that is
/// not a string).
#[tokio::test]
async fn pci_03_nesting_is_limited_explicitly() {
    let v = TestVault::spawn().await;
    let key = v.client("acme", ALL_SCOPES).await;
    let body = |depth: usize| {
        format!(
            r#"{{"pan":{}"4970100000130001"{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    let at_limit = v.tokenize_body(&key, &body(shared::json::MAX_DEPTH)).await;
    assert_eq!(at_limit.status, StatusCode::BAD_REQUEST);
    assert_eq!(at_limit.code(), "invalid_pan", "{}", at_limit.text());
    let past = v
        .tokenize_body(&key, &body(shared::json::MAX_DEPTH + 1))
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST);
    assert_eq!(past.code(), "invalid_request");
    assert!(
        past.text().contains("more than 32 levels deep"),
        "{}",
        past.text()
    );
    assert_no_pan(&past.body, &["4970100000130001"], "nested body");
}

/// Case 15: N mixed detokenize calls (granted, denied, not found) make exactly N audit events,
/// each naming the request id the response carried.
#[tokio::test]
async fn pci_15_each_detokenize_is_one_audit_event_with_its_request_id() {
    let v = TestVault::spawn().await;
    let owner = v.client("acme", ALL_SCOPES).await;
    let no_scope = v.client("acme", "tokens:read").await;
    let other_tenant = v.client("globex", ALL_SCOPES).await;
    let token = v.token_for(&owner, "4242424242424242").await;
    let before: i64 = v.scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'token.detokenize'",
        [],
    );
    assert_eq!(before, 0);

    let mut expected = Vec::new();
    for i in 0..30 {
        let (key, tok, outcome) = match i % 4 {
            0 => (&owner, token.as_str(), "granted"),
            1 => (&no_scope, token.as_str(), "denied"),
            2 => (&other_tenant, token.as_str(), "not_found"),
            _ => (&owner, "tok_0000000000000000000000", "not_found"),
        };
        let reply = v.detokenize(key, tok).await;
        let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        assert!(request_id.starts_with("req_"));
        expected.push((request_id, outcome.to_owned()));
    }
    let db = v.raw_db();
    let mut stmt = db
        .prepare("SELECT request_id, outcome, actor, occurred_at FROM audit_events WHERE action = 'token.detokenize' ORDER BY seq")
        .unwrap();
    let events: Vec<(String, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(events.len(), expected.len());
    for ((id, outcome, actor, at), (want_id, want_outcome)) in events.iter().zip(&expected) {
        assert_eq!((id, outcome), (want_id, want_outcome));
        assert!(actor.starts_with("cli_"));
        assert!(*at > 0);
    }
}

/// Case 16: the audit store is down (every insert refused). Tokenize and detokenize answer 503
/// `audit_unavailable` without card data, `/readyz` is 503 for the whole outage, and all of it
/// comes back when the store recovers.
#[tokio::test]
async fn pci_16_an_audit_outage_fails_closed_and_recovers() {
    let (v, key, token) = TestVault::with_token("4242424242424242").await;
    assert_eq!(
        v.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );

    v.fail_audit_writes();
    v.wait_readyz(StatusCode::SERVICE_UNAVAILABLE).await;
    for _ in 0..3 {
        let ready = v.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.code(), "not_ready");
        let detokenized = v.detokenize(&key, &token).await;
        assert_eq!(detokenized.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(detokenized.code(), "audit_unavailable");
        assert_no_pan(&detokenized.body, &["4242424242424242"], "503 body");
        let tokenized = v.tokenize(&key, "5555555555554444").await;
        assert_eq!(tokenized.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(tokenized.code(), "audit_unavailable");
        assert_no_pan(&tokenized.body, &["5555555555554444"], "503 body");
    }
    let tokens: i64 = v.scalar("SELECT count(*) FROM tokens", []);
    assert_eq!(tokens, 1, "a token was stored without its audit event");

    v.restore_audit_writes();
    v.wait_readyz(StatusCode::OK).await;
    assert_eq!(v.detokenize(&key, &token).await.status, StatusCode::OK);
    assert_eq!(
        v.tokenize(&key, "5555555555554444").await.status,
        StatusCode::CREATED
    );
    let verdict = v.verify_audit().await;
    assert!(verdict.is_ok(), "{verdict:?}");
}
