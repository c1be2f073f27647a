//! TLS on the vault's listener (PCI DSS 4.2.1, ../shared/PCI.md case 13): served over TLS 1.2
//! and 1.3 with AEAD suites only; with `server.tls.client_ca_file`, client certificates from
//! another CA, expired or revoked are refused in the handshake, and a client bound to a
//! certificate (`clients create --cert-file`) is refused without it, each refusal audited; a
//! renewed certificate is served after SIGHUP without a restart.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::tls::{Issued, TestCa};

use crate::helpers::{ALL_SCOPES, READY_DEADLINE, Server, VaultDir};

/// The vault's files for TLS: its certificate, the client CA and a CRL revoking `revoked`.
struct Pki {
    ca: TestCa,
    proxy: Issued,
    other: Issued,
    expired: Issued,
    revoked: Issued,
    rogue: Issued,
}

impl Pki {
    fn configure(vault: &VaultDir) -> Self {
        let ca = TestCa::new("test CA");
        let dir = vault.path("");
        ca.write_cert(&dir.join("ca.crt"));
        ca.server(&["127.0.0.1", "localhost"]).write(&dir, "server");
        let revoked = ca.client("revoked");
        std::fs::write(dir.join("clients.crl"), ca.crl(&[&revoked])).unwrap();
        vault.configure(
            "[server.tls]\n\
             cert_file = \"server.crt\"\n\
             key_file = \"server.key\"\n\
             client_ca_file = \"ca.crt\"\n\
             client_crl_file = \"clients.crl\"\n",
        );
        Self {
            proxy: ca.client("proxy"),
            other: ca.client("other"),
            expired: ca.expired_client("expired"),
            revoked,
            rogue: TestCa::new("rogue CA").client("proxy"),
            ca,
        }
    }

    /// A client trusting the test CA, presenting `identity` if given; one connection per
    /// request, so each request is its own handshake.
    fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).unwrap(),
            ])
            .pool_max_idle_per_host(0)
            .tls_info(true);
        if let Some(id) = identity {
            let pem = format!("{}{}", id.cert_pem, id.key_pem);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }
}

async fn tokenize(http: &reqwest::Client, server: &Server, key: &str) -> reqwest::Result<u16> {
    let resp = http
        .post(format!("{}/v1/tokens", server.base))
        .bearer_auth(key)
        .json(&serde_json::json!({ "pan": testkit::numbered_card(u64::from(next_card())) }))
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

/// A different card per call, so each tokenize makes a token (201).
fn next_card() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn audited_refusals(vault: &VaultDir, client_id: &str) -> i64 {
    rusqlite::Connection::open(vault.path("vault.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM audit_events WHERE action = 'auth.fail' AND actor = ?1 \
             AND detail LIKE 'API key without its bound client certificate%'",
            [client_id],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn mutual_tls_refuses_foreign_expired_and_revoked_certificates_and_a_bound_key_without_its_own()
 {
    let vault = VaultDir::new();
    let pki = Pki::configure(&vault);
    pki.proxy.write(&vault.path(""), "proxy");
    // The proxy's client, bound to its certificate by the command line; an app's, unbound.
    let out = vault.run(&[
        "clients",
        "create",
        "--name",
        "proxy",
        "--tenant",
        "acme",
        "--scopes",
        ALL_SCOPES,
        "--cert-file",
        vault.path("proxy.crt").to_str().unwrap(),
    ]);
    testkit::output::assert_success(&out);
    let text = testkit::output::stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (proxy_id, proxy_key) = (field("client_id:"), field("api_key:"));
    assert_eq!(field("cert_sha256:"), pki.proxy.sha256_hex);
    let (_, app_key) = vault.client("acme", "tokens:create");
    let form = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    vault.configure(&format!("[collect]\nlisten = \"{form}\"\n"));
    let server = vault.serve();
    assert!(server.base.starts_with("https://"), "{}", server.base);

    // With its certificate, the bound key works, and the connection is TLS 1.2 or 1.3.
    let with_cert = pki.client(Some(&pki.proxy));
    assert_eq!(
        tokenize(&with_cert, &server, &proxy_key).await.unwrap(),
        201
    );
    // The unbound app key needs no certificate.
    let no_cert = pki.client(None);
    assert_eq!(tokenize(&no_cert, &server, &app_key).await.unwrap(), 201);
    // The bound key without a certificate, or with another valid one from the same CA: 401,
    // each use audited under the client's id.
    assert_eq!(tokenize(&no_cert, &server, &proxy_key).await.unwrap(), 401);
    let other = pki.client(Some(&pki.other));
    assert_eq!(tokenize(&other, &server, &proxy_key).await.unwrap(), 401);
    assert_eq!(audited_refusals(&vault, &proxy_id), 2);
    let named_other: i64 = rusqlite::Connection::open(vault.path("vault.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM audit_events WHERE actor = ?1 AND detail LIKE ?2",
            [
                proxy_id.clone(),
                format!("%presented cert_sha256={}", pki.other.sha256_hex),
            ],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        named_other, 1,
        "the event names the certificate that came instead"
    );
    // Certificates from another CA, expired or revoked never finish the handshake.
    for (what, id) in [
        ("another CA's", &pki.rogue),
        ("an expired", &pki.expired),
        ("a revoked", &pki.revoked),
    ] {
        let refused = tokenize(&pki.client(Some(id)), &server, &app_key).await;
        assert!(
            refused.is_err(),
            "{what} certificate was accepted: {refused:?}"
        );
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(server.base.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    let ca = vault.path("ca.crt");
    testkit::tls::assert_only_modern_tls(server.base.trim_start_matches("https://"), &ca);
    // The card form's own listener: the same rules.
    server.wait_for_log("card form listening");
    testkit::tls::assert_only_modern_tls(&form, &ca);
    server.wait_for_log("TLS handshake refused");
    assert!(server.terminate().success());
}

/// The SHA-256 of the certificate the server presents to a new connection.
async fn served_certificate(http: &reqwest::Client, server: &Server) -> String {
    use sha2::Digest;
    let resp = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    hex::encode(sha2::Sha256::digest(info.peer_certificate().unwrap()))
}

fn certificate_sha256(pem: &str) -> String {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup_and_a_broken_one_is_not() {
    let vault = VaultDir::new();
    let pki = Pki::configure(&vault);
    let first = std::fs::read_to_string(vault.path("server.crt")).unwrap();
    let server = vault.serve();
    let http = pki.client(None);
    assert_eq!(
        served_certificate(&http, &server).await,
        certificate_sha256(&first)
    );
    // Renewed in place, as a certificate agent does, then SIGHUP.
    let renewed = pki.ca.server(&["127.0.0.1", "localhost"]);
    renewed.write(&vault.path(""), "server");
    hup(&server);
    server.wait_for_log("TLS certificate and key reloaded");
    // The next handshake gets the new certificate (the deadline only bounds a hang).
    let deadline = Instant::now() + READY_DEADLINE;
    while served_certificate(&http, &server).await != renewed.sha256_hex {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A half-written key: the reload is refused and logged, the renewed certificate stays.
    std::fs::write(vault.path("server.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    hup(&server);
    server.wait_for_log("the TLS files did not load");
    assert_eq!(served_certificate(&http, &server).await, renewed.sha256_hex);
    assert!(server.terminate().success());
}

fn hup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_revocation_ends_open_connections_and_a_stale_crl_refuses_every_certificate() {
    let vault = VaultDir::new();
    let pki = Pki::configure(&vault);
    let (_, app_key) = vault.client("acme", "tokens:create");
    let server = vault.serve();
    // One keep-alive connection (the pool keeps it), presenting the proxy's certificate.
    let pooled = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).unwrap()])
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", pki.proxy.cert_pem, pki.proxy.key_pem).as_bytes(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(tokenize(&pooled, &server, &app_key).await.unwrap(), 201);
    assert_eq!(tokenize(&pooled, &server, &app_key).await.unwrap(), 201);
    // The proxy's certificate is revoked and the CRL reloaded: the open connection ends, and
    // a new one is refused.
    std::fs::write(
        vault.path("clients.crl"),
        pki.ca.crl(&[&pki.revoked, &pki.proxy]),
    )
    .unwrap();
    hup(&server);
    server.wait_for_log("TLS certificate and key reloaded");
    // The connection ends once its task has seen the reload (a request already on its way
    // may still finish); from then on every request fails. Were the connection kept, the
    // pooled client would go on succeeding on it and the deadline would fail the test.
    let deadline = Instant::now() + READY_DEADLINE;
    while tokenize(&pooled, &server, &app_key).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "a revoked certificate kept working"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tokenize(&pooled, &server, &app_key).await.is_err());
    // A CRL past its next update proves nothing: every client certificate is refused, and a
    // client without one still connects.
    std::fs::write(
        vault.path("clients.crl"),
        pki.ca.expired_crl(&[&pki.revoked]),
    )
    .unwrap();
    hup(&server);
    let deadline = Instant::now() + READY_DEADLINE;
    while tokenize(&pki.client(Some(&pki.other)), &server, &app_key)
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "a stale CRL was trusted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tokenize(&pki.client(None), &server, &app_key)
            .await
            .unwrap(),
        201
    );
    assert!(server.terminate().success());
}

/// `mode = "production"`: a plain-HTTP listener off loopback and debug logs are refused, each on
/// its own line (`serve` exits 78, `check` lists them); a client that may read card numbers
/// must be bound to a client certificate (`clients create` refuses one that is not, also when
/// run in development mode on a production database), and a vault with such clients refuses to
/// start without a client CA; with TLS and mutual TLS it starts on a public address. (A reader
/// bound to nothing in a production database, a row from before binding existed, is refused at
/// start and at every request: `vault/tests/api/auth.rs`.)
#[test]
fn production_mode_refuses_plain_http_debug_logs_and_card_readers_without_a_certificate() {
    use testkit::output::stderr as said;
    let mut vault = VaultDir::uninitialised("", Vec::new());
    let path = vault.path("vault.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("mode = \"production\"\n{text}")).unwrap();
    testkit::output::assert_success(&vault.run(&["init"]));
    vault.env.push((
        "VAULT__KEYS__ALLOW_FILE_PROVIDER".to_owned(),
        "true".to_owned(),
    ));
    vault.env.push((
        "VAULT__SERVER__LISTEN".to_owned(),
        "\"0.0.0.0:0\"".to_owned(),
    ));
    // The helper's config logs at debug.
    let out = vault.command(&["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", said(&out));
    for setting in ["server.listen", "log.filter"] {
        assert!(
            said(&out).lines().any(|l| l.starts_with(&format!(
                "vault: mode = \"production\" refuses to start: {setting}"
            ))),
            "{setting}: {}",
            said(&out)
        );
    }
    let check = vault.command(&["check"]).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    let report = testkit::output::stdout(&check);
    assert!(
        report.contains("server.listen") && report.contains("log.filter"),
        "{report}"
    );
    vault
        .env
        .push(("VAULT__LOG__FILTER".to_owned(), "info".to_owned()));

    // A card reader without a certificate is refused at creation...
    let out = vault.run(&[
        "clients", "create", "--name", "proxy", "--tenant", "acme", "--scopes", ALL_SCOPES,
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", said(&out));
    assert!(said(&out).contains("--cert-file"), "{}", said(&out));
    // ...also by a command run in development mode: the database's keys were made in
    // production, and that decides.
    let mut dev = vault.env.clone();
    dev.push(("VAULT__MODE".to_owned(), "development".to_owned()));
    let create = [
        "clients", "create", "--name", "proxy", "--tenant", "acme", "--scopes", ALL_SCOPES,
    ];
    let out = vault.command(&create).envs(dev).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", said(&out));
    // A bound reader, but a vault that asks no client for a certificate: refused to start.
    let pki = Pki::configure(&vault);
    pki.proxy.write(&vault.path(""), "proxy");
    let cert = vault.path("proxy.crt");
    let bound = [&create[..], &["--cert-file", cert.to_str().unwrap()]].concat();
    testkit::output::assert_success(&vault.run(&bound));
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config
            .replace("client_ca_file = \"ca.crt\"\n", "")
            .replace("client_crl_file = \"clients.crl\"\n", ""),
    )
    .unwrap();
    let out = vault.command(&["serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        said(&out).contains("server.tls.client_ca_file"),
        "{}",
        said(&out)
    );
    // With mutual TLS on: it starts on 0.0.0.0, over TLS.
    std::fs::write(&path, config).unwrap();
    let server = vault.serve();
    assert!(
        server.base.starts_with("https://0.0.0.0:"),
        "{}",
        server.base
    );
    assert!(server.terminate().success());
}
