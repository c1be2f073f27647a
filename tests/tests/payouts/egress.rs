//! Egress (docs/ARCHITECTURE.md §9.3): card data goes only where it is configured to go. A bank endpoint that
//! answers with a redirect must not make the proxy re-send the signed body, card number
//! included, to wherever the redirect points.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::stack::{SECS, Stack, bank_session};

/// A server that counts what reaches it: where a hijacked redirect would send the card.
async fn attacker() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/steal", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_28_a_redirect_on_start_payout_is_never_followed() {
    let stack = Stack::start().await;
    let (steal, hits) = attacker().await;
    stack
        .fault(json!({"on": "session/start/payout", "action": "redirect", "location": steal}))
        .await;
    let id = stack
        .pay("4242424242424242", 150_000, "auto", "Ivanov Ivan")
        .await;
    let done = stack.wait_status(&id, &["failed"], SECS).await;
    assert_eq!(done["failure"]["code"], "bank_error", "{done}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the card went to the redirect's target"
    );
    let session = &bank_session(&done);
    let starts = stack.bank_calls("session/start/payout", session).await;
    assert_eq!(starts.len(), 1, "the start was re-sent: {starts:?}");
    // The proxy says what happened, without the target.
    let log = std::fs::read_to_string(stack.path("proxy-1.log")).unwrap();
    assert!(log.contains("the bank answered with a redirect; not followed"));
    assert!(!log.contains("/steal"));
}
