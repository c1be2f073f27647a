//! Exactly once when the bank is slow or loses a start (issue 11 §2): a start the bank does not
//! show is re-sent only with its own idempotency key, and only a bounded number of times; then
//! the session is cancelled and the payout left to a person, never failed or paid twice.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::stack::{SECS, Stack, bank_session, until};

fn idempotency_keys(calls: &[Value]) -> BTreeSet<String> {
    calls
        .iter()
        .map(|r| {
            r["headers"]["x-partner-idempotency-key"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A UUID in its canonical text form (the bank documents no key format; a UUID is what every
/// API takes).
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_is_resent_only_with_its_own_idempotency_key() {
    let stack = Stack::start().await;
    // Two starts fail before reaching the bank: the session shows nothing, so the start is
    // sent again, with the key it was first sent with.
    stack
        .fault(json!({"on": "session/start/payout", "action": "error", "status": 502, "count": 2}))
        .await;
    let (id, done) = stack
        .pay_succeeded("4242424242424242", 1_000, "Ivanov Ivan")
        .await;
    let starts = stack.calls_for("session/start/payout", &done).await;
    assert_eq!(starts.len(), 3, "{starts:?}");
    let keys = idempotency_keys(&starts);
    assert_eq!(
        keys.len(),
        1,
        "a start was re-sent with a new key: {keys:?}"
    );
    assert!(keys.iter().all(|k| is_uuid(k)), "{keys:?}");
    assert_eq!(stack.payouts_at_bank(&id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_bank_admitted_but_never_shows_is_capped_then_cancelled_and_flagged() {
    let stack = Stack::start().await;
    // The bank takes the start's key and loses the request: every re-send with that key is
    // "already in progress or processed", and the session never shows a payout.
    stack.fault_once("session/start/payout", "lose").await;
    let id = stack
        .pay("4242424242424242", 1_000, "auto", "Ivanov Ivan")
        .await;
    // Progress, not time: the proxy gives up and asks for a person.
    let flagged = stack
        .wait_payout(&id, SECS, "flagged", |p| {
            p["status"] == "cancelling"
                && p["needs_attention"]
                    .as_str()
                    .is_some_and(|a| a.contains("proxy payouts resolve"))
        })
        .await;
    let session = bank_session(&flagged);
    // The cancel has gone through: the session is cancelled and still holds no payout.
    until(SECS, async || {
        let cancels = stack.bank_calls("session/cancel", &session).await;
        if cancels.iter().any(|r| r["status"] == 200) {
            Ok(())
        } else {
            Err("the session was never cancelled".to_owned())
        }
    })
    .await;
    let starts = stack.bank_calls("session/start/payout", &session).await;
    // The first send and max_start_resends (3) re-sends, all with one key.
    assert_eq!(starts.len(), 4, "{starts:?}");
    assert_eq!(idempotency_keys(&starts).len(), 1);
    assert_eq!(stack.payouts_at_bank(&id).await, 0);
    // Not failed (that would invite the app to pay again) and not sent again.
    let after = stack.payout(&id).await;
    assert!(
        !["succeeded", "failed", "cancelled"]
            .iter()
            .any(|s| after["status"] == *s),
        "{after}"
    );
    assert!(after["needs_attention"].is_string(), "{after}");
    assert_eq!(
        stack
            .bank_calls("session/start/payout", &session)
            .await
            .len(),
        4
    );
}
