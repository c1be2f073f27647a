//! Egress (docs/ARCHITECTURE.md §9.3): card data goes only where it is configured to go. A bank endpoint that
//! answers with a redirect must not make the proxy re-send the signed body, card number
//! included, to wherever the redirect points.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use serde_json::json;

use crate::stack::{SECS, Stack, serve_local};

/// A server that counts what reaches it: where a hijacked redirect would send the card.
async fn attacker() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .fallback(steal)
        .with_state(Arc::clone(&hits));
    let url = format!("http://{}/steal", serve_local(app).await);
    (url, hits)
}

/// Counts one request that reached the attacker.
async fn steal(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
    hits.fetch_add(1, Ordering::SeqCst);
    "{}"
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
    let starts = stack.calls_for("session/start/payout", &done).await;
    assert_eq!(starts.len(), 1, "the start was re-sent: {starts:?}");
    // The proxy says what happened, without the target.
    let log = std::fs::read_to_string(stack.path("proxy-1.log")).unwrap();
    assert!(log.contains("the bank answered with a redirect; not followed"));
    assert!(!log.contains("/steal"));
}
