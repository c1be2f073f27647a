//! PostgreSQL over TLS as `database.url` asks (PCI DSS 4.2.1 inside the card data environment):
//! `sslmode=verify-full` checks the server's certificate against `sslrootcert` and its name,
//! `verify-ca` the certificate only, `require` encrypts without checking; a certificate from
//! another CA is refused. Runs on the PostgreSQL `.ci/run` sets up with a test CA (its
//! `TEST_DATABASE_URL` names `sslrootcert`, and plain TCP connections are rejected there);
//! skipped, visibly, elsewhere.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

/// `TEST_DATABASE_URL` when it asks for TLS with a root certificate, else `None` after one
/// visible line (a failure instead under `REQUIRE_POSTGRES_TLS`).
fn tls_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.contains("sslrootcert="));
    if url.is_none() {
        assert!(
            std::env::var_os("REQUIRE_POSTGRES_TLS").is_none(),
            "REQUIRE_POSTGRES_TLS is set but TEST_DATABASE_URL names no sslrootcert"
        );
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/stderr")
            .and_then(|mut e| {
                writeln!(
                    e,
                    "SKIPPED: TEST_DATABASE_URL names no sslrootcert (.ci/run sets PostgreSQL up with TLS): the PostgreSQL TLS test"
                )
            });
    }
    url
}

/// Whether a connection made from `url` works, and if so whether it is encrypted.
async fn connects(url: &str) -> Result<bool, String> {
    let pool = shared::postgres::connect(url, 1, None)
        .await
        .map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, bool>(0))
}

fn with_mode(url: &str, mode: &str) -> String {
    url.replace("sslmode=verify-full", &format!("sslmode={mode}"))
}

#[tokio::test]
async fn the_server_certificate_is_checked_as_sslmode_says() {
    let Some(url) = tls_url() else {
        return;
    };
    assert!(
        url.contains("sslmode=verify-full") && url.contains("@localhost:"),
        "{url}"
    );
    // verify-full, as every PostgreSQL test connects: encrypted.
    assert_eq!(connects(&url).await, Ok(true));
    // The same server by another name than its certificate's: verify-full refuses it,
    // verify-ca (the chain only) takes it.
    let by_address = url.replace("@localhost:", "@127.0.0.1:");
    assert!(
        connects(&by_address).await.is_err(),
        "verify-full took a wrong name"
    );
    assert_eq!(
        connects(&with_mode(&by_address, "verify-ca")).await,
        Ok(true)
    );
    // A CA that did not sign the server's certificate: refused in both checking modes.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.crt");
    testkit::tls::TestCa::new("another CA").write_cert(&other);
    let root = url
        .split("sslrootcert=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let foreign = url.replace(&root, other.to_str().unwrap());
    assert!(
        connects(&foreign).await.is_err(),
        "verify-full took another CA's server"
    );
    assert!(connects(&with_mode(&foreign, "verify-ca")).await.is_err());
    // require encrypts and checks nothing (as libpq; production mode refuses it): with no
    // root certificate it connects, encrypted.
    let unchecked = with_mode(&url, "require").replace(&format!("&sslrootcert={root}"), "");
    assert_eq!(connects(&unchecked).await, Ok(true));
    // Without TLS the server refuses the connection (.ci/run rejects plain TCP).
    let plain = with_mode(&url, "disable");
    assert!(
        connects(&plain).await.is_err(),
        "the server took a plain connection"
    );
    // A verifying mode without a root certificate is a configuration error naming it.
    let no_root = url.replace(&format!("&sslrootcert={root}"), "");
    let e = connects(&no_root).await.unwrap_err();
    assert!(e.contains("sslrootcert"), "{e}");
}
