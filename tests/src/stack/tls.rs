//! TLS for a test stack, every hop as a deployment runs it: one test CA per stack signs a
//! certificate for 127.0.0.1 that the vaults, the proxies and the sandbox serve, and the
//! proxy's client certificate; the vault asks for client certificates and binds the proxy's
//! keys to the proxy's; the proxy trusts only the test CA for the vault and the bank, and the
//! sandbox for the proxy's webhook route. The app's own webhook receiver (the test) stays plain
//! HTTP on loopback. The end-to-end payout suite and the replicas test share it, so both run
//! with TLS on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::tls::{Issued, TestCa};

/// The stack's CA and the files written for it into the stack's directory.
#[derive(Debug)]
pub struct StackTls {
    ca: TestCa,
    server: Issued,
    dir: PathBuf,
}

impl StackTls {
    /// Makes the CA and writes `ca.crt`, `server.crt`/`.key` and `proxy-client.crt`/`.key`
    /// into `dir`.
    pub fn make(dir: &Path) -> Self {
        let ca = TestCa::new("stack CA");
        ca.write_cert(&dir.join("ca.crt"));
        let server = ca.server(&["127.0.0.1", "localhost"]);
        server.write(dir, "server");
        ca.client("proxy").write(dir, "proxy-client");
        Self {
            ca,
            server,
            dir: dir.to_owned(),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// An HTTP client for the test itself: trusts the stack's CA only.
    ///
    /// # Panics
    ///
    /// The client cannot be built.
    pub fn http(&self, timeout: Duration) -> reqwest::Client {
        #[allow(clippy::expect_used, reason = "test set-up")]
        self.http_builder()
            .timeout(timeout)
            .build()
            .expect("an HTTP client")
    }

    /// [`Self::http`]'s builder, for more settings.
    ///
    /// # Panics
    ///
    /// The test CA's certificate does not parse.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        #[allow(clippy::expect_used, reason = "test set-up")]
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(
            self.ca.cert_pem().as_bytes(),
        )
        .expect("the test CA's certificate")])
    }

    /// The vault's `[server.tls]`: its certificate, and client certificates asked for.
    pub fn vault_toml(&self) -> String {
        format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
            self.file("server.crt"),
            self.file("server.key"),
            self.file("ca.crt")
        )
    }

    /// The proxy's `[server.tls]`.
    pub fn proxy_server_toml(&self) -> String {
        format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.file("server.crt"),
            self.file("server.key")
        )
    }

    /// Lines for the proxy's `[vault]`: the vault's CA, and the client certificate.
    pub fn proxy_vault_lines(&self) -> String {
        format!(
            "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            self.file("ca.crt"),
            self.file("proxy-client.crt"),
            self.file("proxy-client.key")
        )
    }

    /// The line for the proxy's `[bank131]`: the sandbox's CA.
    pub fn bank_ca_line(&self) -> String {
        format!("ca_file = \"{}\"\n", self.file("ca.crt"))
    }

    /// The sandbox's flags: served over TLS, trusting the CA for webhooks.
    pub fn sandbox_flags(&self) -> Vec<String> {
        [
            ("--tls-cert", "server.crt"),
            ("--tls-key", "server.key"),
            ("--webhook-ca-file", "ca.crt"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_owned(), self.file(file)])
        .collect()
    }

    /// The proxy's client certificate, for `vault clients create --cert-file`.
    pub fn proxy_cert_file(&self) -> PathBuf {
        self.dir.join("proxy-client.crt")
    }

    /// The base64 SHA-256 of the served certificate's public key, for a browser to accept it
    /// (`testkit::browser::launch_trusting`).
    pub fn server_spki(&self) -> String {
        self.server.spki_sha256_base64.clone()
    }
}
