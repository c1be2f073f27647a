//! Every anonymous request is cheap (docs/ARCHITECTURE.md §9.5): failed authentications cost no durable
//! write each and are limited per source address; a full writer queue sheds with 503 instead of
//! growing.

use std::sync::Arc;

use reqwest::{Method, StatusCode};

use crate::helpers::{ALL_SCOPES, TestVault};

fn audit_rows(v: &TestVault) -> i64 {
    v.raw_db()
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn an_anonymous_flood_writes_nothing_per_request_and_is_limited_per_address() {
    let (mut v, owner, token) = TestVault::with_token("4242424242424242").await;
    let before = audit_rows(&v);
    let path = format!("/v1/tokens/{token}/detokenize");
    let (mut unauthorized, mut limited) = (0, 0);
    for i in 0..200 {
        let key = format!("vk_guess-{i}");
        let key = if i % 2 == 0 { None } else { Some(key.as_str()) };
        let reply = v
            .call(Method::POST, &path, key, Some(r#"{"purpose":"x"}"#))
            .await;
        match reply.status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(reply.headers.contains_key("retry-after"));
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(
        audit_rows(&v),
        before,
        "a failed authentication was written at once"
    );
    // The default burst is 20 per address, then 5 a second.
    assert!(
        (20..60).contains(&unauthorized),
        "{unauthorized} answered 401"
    );
    assert_eq!(unauthorized + limited, 200);
    // A revoked key past the address's budget is counted, not written one by one.
    let (revoked_id, revoked) = v.client_with_id("acme", ALL_SCOPES).await;
    v.admin.revoke_client(&revoked_id).await.unwrap();
    // (The budget refills at 5 a second, so the first few may still be within it: those are
    // 401 and audited one by one.)
    let before = audit_rows(&v);
    let (mut audited, mut counted) = (0, 0);
    for _ in 0..10 {
        match v.detokenize(&revoked, &token).await.status {
            StatusCode::UNAUTHORIZED => audited += 1,
            StatusCode::TOO_MANY_REQUESTS => counted += 1,
            other => panic!("{other}"),
        }
    }
    assert!(counted >= 5, "{counted}");
    assert_eq!(audit_rows(&v), before + audited);
    // A valid key from the same address is never limited by that.
    assert_eq!(v.detokenize(&owner, &token).await.status, StatusCode::OK);

    v.stop().await;
    // The revoked key's uses still within the budget were audited one by one (as many as
    // `audited`; how many depends on how fast this machine ran); the rest are summed.
    let (one_by_one, events): (Vec<String>, Vec<String>) = v
        .events("auth.fail")
        .into_iter()
        .filter_map(|(_, _, d)| d)
        .partition(|d| d == "revoked API key");
    assert_eq!(
        i64::try_from(one_by_one.len()).unwrap(),
        audited,
        "{one_by_one:?}"
    );
    assert_eq!(
        events,
        [
            "missing API key: 100 requests from 127.0.0.1 within 60 s",
            "unknown API key: 100 requests from 127.0.0.1 within 60 s",
        ],
        "one event per reason and address, with the count"
    );
    // The revoked key's uses past the budget are counted under its client, so the event names
    // whose key is still out there.
    let limited = v.events("rate.limited");
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0].1, revoked_id.as_str());
    assert_eq!(
        limited[0].2,
        Some(format!(
            "refused by rate limits within 60 s: unauthenticated={counted}"
        ))
    );
}

/// With the writer's queue bound at one and the database locked, concurrent tokenizes beyond
/// what can wait are refused at once with 503 `overloaded` (and counted), not queued; once the
/// lock goes, the waiting ones complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_sheds_with_503() {
    let v = Arc::new(
        TestVault::spawn_with(|c| {
            c.database.max_queued_writes = 1;
            c.database.busy_timeout_ms = 60_000;
            crate::helpers::unlimited(c);
        })
        .await,
    );
    let key = v.client("acme", ALL_SCOPES).await;
    let blocker = v.raw_db();
    blocker.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let tasks: Vec<_> = testkit::TEST_CARDS
        .into_iter()
        .chain(["4111111111111111"])
        .map(|pan| {
            let (v, key) = (Arc::clone(&v), key.clone());
            tokio::spawn(async move { v.tokenize(&key, pan).await })
        })
        .collect();
    // The writer holds at most one batch and one queued write; the rest are refused at once,
    // so they come back while the lock is still held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let metrics = v.call(Method::GET, "/metrics", None, None).await.text();
        if metrics
            .lines()
            .any(|l| l.starts_with("vault_shed_total ") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing was shed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    blocker.execute_batch("COMMIT;").unwrap();
    let (mut created, mut shed) = (0, 0);
    for t in tasks {
        let reply = t.await.unwrap();
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(reply.code(), "overloaded");
                shed += 1;
            }
            other => panic!("{other}: {}", reply.text()),
        }
    }
    assert!(shed >= 1 && created >= 1, "created {created}, shed {shed}");
    assert_eq!(created + shed, testkit::TEST_CARDS.len() + 1);
}
