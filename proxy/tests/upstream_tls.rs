//! The proxy's outbound TLS (PCI DSS 4.2.1): the vault client checks the vault's certificate
//! against `vault.ca_file` (or the system's roots) and refuses an expired certificate, one from
//! another CA, one for another host, and a test CA's certificate when only the system's roots
//! are trusted; it presents `vault.client_cert_file` for mutual TLS and, after `reload_tls` (what
//! SIGHUP calls), a renewed one without a restart. The bank and app-webhook clients take their
//! CA through the same `upstream_tls::trust`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proxy::config::{VaultKey, VaultSettings};
use proxy::vault_client::VaultClient;
use shared::config::TlsConfig;
use testkit::tls::{Issued, TestCa};

/// What the fake vault saw: one entry per request, the client certificate's SHA-256 if any.
type Seen = Arc<Mutex<Vec<Option<[u8; 32]>>>>;

/// A fake vault over TLS with `cert` (asking for client certificates from `client_ca` when
/// given), answering every request as a detokenize; its port and what it saw.
async fn fake_vault(dir: &Path, cert: &Issued, client_ca: Option<PathBuf>) -> (u16, Seen) {
    let stem = format!("server-{}", &cert.sha256_hex[..8]);
    let (cert_file, key_file) = cert.write(dir, &stem);
    let tls = shared::server::ServerTls::load(&TlsConfig {
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        client_ca_file: client_ca,
        client_crl_file: None,
    })
    .unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = Arc::clone(&log);
        async move {
            let (parts, _) = req.into_parts();
            log.lock()
                .unwrap()
                .push(shared::server::peer_certificate(&parts).map(|c| c.sha256));
            // One request per connection: every request is a handshake of its own, so what
            // the server saw is what each request presented.
            (
                [(axum::http::header::CONNECTION, "close")],
                r#"{"token":"tok_0000000000000000000000","pan":"4242424242424242"}"#,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let options =
        shared::server::ServeOptions::from_config(&shared::config::ServerConfig::default());
    tokio::spawn(shared::server::serve(
        listener,
        app,
        std::future::pending(),
        options,
        tls,
    ));
    (port, seen)
}

fn client(
    url: String,
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
) -> VaultClient {
    let (client_cert_file, client_key_file) = identity.unzip();
    VaultClient::new(&VaultSettings {
        url,
        api_keys: BTreeMap::from([("acme".to_owned(), VaultKey::new("vk_test"))]),
        api_key_files: BTreeMap::new(),
        request_timeout_ms: 10_000,
        allow_insecure_http: false,
        ca_file,
        client_cert_file,
        client_key_file,
    })
    .unwrap()
}

async fn detokenizes(client: &VaultClient) -> bool {
    client
        .detokenize("acme", "tok_0000000000000000000000", "payout:pay_x")
        .await
        .is_ok()
}

#[tokio::test]
async fn the_vault_client_refuses_expired_foreign_and_misnamed_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("vault CA");
    let ca_file = dir.path().join("ca.crt");
    ca.write_cert(&ca_file);
    let trusting = |port: u16| {
        client(
            format!("https://127.0.0.1:{port}"),
            Some(ca_file.clone()),
            None,
        )
    };

    // The control: a current certificate for 127.0.0.1 from the configured CA works.
    let (good, seen) = fake_vault(dir.path(), &ca.server(&["127.0.0.1"]), None).await;
    assert!(detokenizes(&trusting(good)).await);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The same server with only the system's roots trusted: the test CA is nobody's.
    let system = client(format!("https://127.0.0.1:{good}"), None, None);
    assert!(
        !detokenizes(&system).await,
        "a private CA's certificate was trusted by default"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the request reached the server"
    );
    // Expired, from another CA (self-signed as far as the proxy knows), for another host: each
    // refused before a byte of the request is sent.
    for (what, cert) in [
        ("an expired", ca.expired_server(&["127.0.0.1"])),
        (
            "another CA's",
            TestCa::new("rogue CA").server(&["127.0.0.1"]),
        ),
        ("another host's", ca.server(&["vault.other.example"])),
    ] {
        let (port, seen) = fake_vault(dir.path(), &cert, None).await;
        assert!(
            !detokenizes(&trusting(port)).await,
            "{what} certificate was accepted"
        );
        assert!(
            seen.lock().unwrap().is_empty(),
            "{what}: the request reached the server"
        );
    }
}

#[tokio::test]
async fn the_vault_client_presents_its_certificate_and_a_renewed_one_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("vault CA");
    let ca_file = dir.path().join("ca.crt");
    ca.write_cert(&ca_file);
    let (port, seen) = fake_vault(
        dir.path(),
        &ca.server(&["127.0.0.1"]),
        Some(ca_file.clone()),
    )
    .await;
    let first = ca.client("proxy");
    let identity = first.write(dir.path(), "proxy-client");
    let vault = client(
        format!("https://127.0.0.1:{port}"),
        Some(ca_file),
        Some(identity),
    );
    assert!(detokenizes(&vault).await);
    // Renewed in place, then reloaded (SIGHUP in a running proxy): the next connection
    // presents the new certificate.
    let renewed = ca.client("proxy");
    renewed.write(dir.path(), "proxy-client");
    vault.reload_tls().unwrap();
    assert!(detokenizes(&vault).await);
    // A reload that finds a broken key keeps the certificate in use: the next connection
    // still presents the renewed one.
    std::fs::write(dir.path().join("proxy-client.key"), "not a key\n").unwrap();
    assert!(vault.reload_tls().is_err());
    assert!(detokenizes(&vault).await);
    let hex = |h: &Option<[u8; 32]>| h.map(hex::encode);
    let seen: Vec<Option<String>> = seen.lock().unwrap().iter().map(hex).collect();
    let (first, renewed) = (Some(first.sha256_hex), Some(renewed.sha256_hex));
    assert_eq!(seen, [first, renewed.clone(), renewed]);
}
