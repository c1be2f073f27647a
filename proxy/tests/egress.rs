//! The proxy's vault client never follows a redirect with its vault key (docs/ARCHITECTURE.md §9.3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use proxy::config::{VaultKey, VaultSettings};
use proxy::vault_client::VaultClient;

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The thief's every answer: counts the request that reached it, and answers as the vault would,
/// with a card number.
async fn steal(State(stolen): State<Arc<AtomicUsize>>) -> &'static str {
    stolen.fetch_add(1, Ordering::SeqCst);
    r#"{"token":"tok_0000000000000000000000","pan":"4242424242424242"}"#
}

#[tokio::test]
async fn the_vault_client_never_follows_a_redirect() {
    let stolen = Arc::new(AtomicUsize::new(0));
    let thief = axum::Router::new()
        .fallback(steal)
        .with_state(Arc::clone(&stolen));
    let thief_url = serve(thief).await;

    let vault = axum::Router::new().fallback(move || {
        let to = format!("{thief_url}/v1/tokens/tok_0000000000000000000000/detokenize");
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    let vault_url = serve(vault).await;

    let client = VaultClient::new(&VaultSettings {
        url: vault_url,
        api_keys: BTreeMap::from([("acme".to_owned(), VaultKey::new("vk_secret"))]),
        api_key_files: BTreeMap::new(),
        request_timeout_ms: 5_000,
        allow_insecure_http: false,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
    })
    .unwrap();
    let result = client
        .detokenize("acme", "tok_0000000000000000000000", "payout:pay_x")
        .await;
    assert!(result.is_err(), "a redirect was followed to a PAN");
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the vault key followed the redirect"
    );
}
