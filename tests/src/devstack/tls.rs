//! devstack's certificates, so that the stack runs in the shape a deployment does: TLS on
//! every hop (the app to the vault and the proxy, the proxy to the vault, the bank and the
//! app's webhook receiver, the bank to the proxy) and mutual TLS from the proxy to the vault,
//! whose detokenize client is bound to the proxy's certificate.
//!
//! The first run makes, under `tls/`: a local certificate authority (`ca.crt`), one server
//! certificate for `127.0.0.1` and `localhost` that the vault, the proxy, the sandbox and the
//! app all serve (`server.crt`, `server.key`), and the proxy's client certificate
//! (`proxy-client.crt`, `proxy-client.key`). Later runs reuse them while they verify: both
//! chain to `ca.crt`, name what they must, match their keys, and stay valid for another
//! [`RENEW_WITHIN_DAYS`] (they are made for [`VALID_DAYS`]). Anything else (a file missing or
//! replaced, a set half-written by an interrupted run, a clock past their dates) makes a whole
//! new set, and the proxy's certificate being new, a new proxy vault client bound to it. The
//! CA's private key signs these and is then dropped, never written: nothing on disk can mint
//! another certificate the stack trusts.
//!
//! The certificates are made with rcgen, which the tests' CA (`testkit::tls`) uses too; this
//! one differs in what it keeps: its files outlive the process, and their dates are real.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData as _,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest, Sha256};

use super::files::{self, Layout};

/// How long the certificates are valid: 397 days, the most browsers accept from a public CA
/// (a local CA is not held to it, but the stack should look like what it imitates).
pub(crate) const VALID_DAYS: u64 = 397;
/// A run renews certificates that expire within this many days.
pub(crate) const RENEW_WITHIN_DAYS: u64 = 60;
/// The names the server certificate holds: what every service is reached at.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The stack's certificate files.
#[derive(Clone, Debug)]
pub(crate) struct DevTls {
    dir: PathBuf,
    /// SHA-256 of the proxy's client certificate (DER): what its vault client is bound to.
    pub(crate) proxy_cert_sha256: [u8; 32],
    /// The base64 SHA-256 of the server certificate's public key, for Chromium's
    /// `--ignore-certificate-errors-spki-list` (a browser that trusts this certificate only).
    pub(crate) server_spki_sha256: String,
    ca_pem: String,
}

impl DevTls {
    /// Reuses the certificates under `tls/`, or makes them when any is missing or they are
    /// due for renewal; says so in `made`.
    ///
    /// # Errors
    ///
    /// A file cannot be read or written, or a certificate cannot be made.
    pub(crate) fn ensure(layout: &Layout, made: &mut Vec<String>) -> anyhow::Result<Self> {
        let dir = layout.dir.join("tls");
        files::make_private_dir(&dir)?;
        let tls = Self::files(&dir);
        if let Err(why) = tls.verify() {
            make(&dir)?;
            made.push(format!("TLS certificates ({why})"));
            tls.verify()
                .map_err(|why| anyhow::anyhow!("the certificates just made: {why}"))?;
        }
        tls.read()
    }

    fn files(dir: &std::path::Path) -> Self {
        Self {
            dir: dir.to_owned(),
            proxy_cert_sha256: [0; 32],
            server_spki_sha256: String::new(),
            ca_pem: String::new(),
        }
    }

    /// Whether the set on disk will serve for another [`RENEW_WITHIN_DAYS`]: each certificate
    /// matches its key and verifies against `ca.crt` now and then (the server's for every name
    /// the services are reached at, the proxy's as a client certificate). The error, for the
    /// report, says what was wrong.
    fn verify(&self) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};
        if !self.ca_file().exists() {
            return Err("a local CA, a server and a proxy client certificate".to_owned());
        }
        let replace = |why: String| format!("new ones: those in {} {why}", self.dir.display());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = |path: PathBuf| -> Result<Vec<CertificateDer<'static>>, String> {
            let certs: Vec<_> = CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("cannot be read ({}: {e})", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("do not parse ({}: {e})", path.display()))?;
            if certs.is_empty() {
                return Err(format!("are incomplete ({} holds none)", path.display()));
            }
            Ok(certs)
        };
        let matched = |certs: &[CertificateDer<'static>], key: PathBuf| -> Result<(), String> {
            let der = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("are incomplete ({}: {e})", key.display()))?;
            rustls::sign::CertifiedKey::from_der(certs.to_vec(), der, &provider)
                .map(drop)
                .map_err(|e| format!("do not match their keys ({}: {e})", key.display()))
        };
        let ca = chain(self.ca_file()).map_err(replace)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| replace(format!("hold a CA that is not one ({e})")))?;
        }
        let roots = Arc::new(roots);
        let server = chain(self.server_cert()).map_err(replace)?;
        matched(&server, self.server_key()).map_err(replace)?;
        let proxy = chain(self.proxy_cert()).map_err(replace)?;
        matched(&proxy, self.proxy_key()).map_err(replace)?;

        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| replace(format!("cannot be checked ({e})")))?;
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots,
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| replace(format!("cannot be checked ({e})")))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let (server_leaf, server_rest) = server
            .split_first()
            .ok_or_else(|| replace("are empty".into()))?;
        let (proxy_leaf, proxy_rest) = proxy
            .split_first()
            .ok_or_else(|| replace("are empty".into()))?;
        let later = format!("in {RENEW_WITHIN_DAYS} days");
        for (when, at) in [
            ("now", now),
            (later.as_str(), now + days(RENEW_WITHIN_DAYS)),
        ] {
            let at = UnixTime::since_unix_epoch(at);
            for name in SERVER_NAMES {
                let name = ServerName::try_from(name)
                    .map_err(|e| replace(format!("name no valid host ({e})")))?;
                server_verifier
                    .verify_server_cert(server_leaf, server_rest, &name, &[], at)
                    .map_err(|e| replace(format!("fail {when} for {name:?} ({e})")))?;
            }
            client_verifier
                .verify_client_cert(proxy_leaf, proxy_rest, at)
                .map_err(|e| {
                    replace(format!(
                        "fail {when} for the proxy's client certificate ({e})"
                    ))
                })?;
        }
        Ok(())
    }

    /// Reads what the stack needs from the files: the CA, and the two hashes.
    fn read(mut self) -> anyhow::Result<Self> {
        let read = |path: PathBuf| {
            files::read_optional(&path)?
                .with_context(|| format!("{} disappeared; run again", path.display()))
        };
        self.ca_pem = read(self.ca_file())?;
        let proxy_pem = read(self.proxy_cert())?;
        let first = CertificateDer::pem_slice_iter(proxy_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .with_context(|| {
                format!(
                    "{} holds no certificate; delete {} to make new ones",
                    self.proxy_cert().display(),
                    self.dir.display()
                )
            })?;
        self.proxy_cert_sha256 = Sha256::digest(first.as_ref()).into();
        let key = KeyPair::from_pem(&read(self.server_key())?).with_context(|| {
            format!(
                "{} is not a private key; delete {} to make new ones",
                self.server_key().display(),
                self.dir.display()
            )
        })?;
        self.server_spki_sha256 = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(key.subject_public_key_info()));
        Ok(self)
    }

    /// The CA certificate every client of the stack trusts (curl's `--cacert`).
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub(crate) fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub(crate) fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub(crate) fn proxy_cert(&self) -> PathBuf {
        self.dir.join("proxy-client.crt")
    }
    pub(crate) fn proxy_key(&self) -> PathBuf {
        self.dir.join("proxy-client.key")
    }

    /// A `[server.tls]` serving the server certificate; `ask_client_certificates` adds the CA
    /// as the one client certificates must chain to (the vault's, for the proxy).
    pub(crate) fn server_config(&self, ask_client_certificates: bool) -> shared::config::TlsConfig {
        shared::config::TlsConfig {
            cert_file: Some(self.server_cert()),
            key_file: Some(self.server_key()),
            client_ca_file: ask_client_certificates.then(|| self.ca_file()),
            client_crl_file: None,
        }
    }

    /// An HTTP client (the app's, and devstack's own readiness checks) that trusts the stack's
    /// CA and nothing else.
    ///
    /// # Errors
    ///
    /// The CA certificate is unreadable, or the client cannot be built.
    pub(crate) fn http_client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())
            .with_context(|| format!("{} is not a certificate", self.ca_file().display()))?;
        reqwest::Client::builder()
            .timeout(timeout)
            .tls_certs_only([ca])
            .build()
            .context("building the HTTP client")
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

/// Makes the CA and both certificates and writes them (keys mode 0600), the CA's key dropped.
fn make(dir: &std::path::Path) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    // A day's slack before now, for a clock a little behind.
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(VALID_DAYS.cast_signed());

    let mut ca = CertificateParams::new(Vec::<String>::new()).context("the CA's parameters")?;
    ca.distinguished_name
        .push(DnType::CommonName, "devstack local CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate().context("the CA's key")?;
    let ca_cert = ca.self_signed(&ca_key).context("the CA's certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: &[&str], common_name: &str, usage| -> anyhow::Result<(String, String)> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).context("certificate names")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().context("a key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing a certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key) = leaf(
        &SERVER_NAMES,
        "devstack services",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (proxy_pem, proxy_key) = leaf(&[], "devstack proxy", ExtendedKeyUsagePurpose::ClientAuth)?;

    let tls = DevTls::files(dir);
    // The CA goes first and comes back last: a run interrupted in between leaves no CA, or
    // one the other files do not verify against, and the next run makes the whole set again.
    match std::fs::remove_file(tls.ca_file()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot replace {}", tls.ca_file().display()));
        }
    }
    files::write_secret(&tls.server_key(), server_key.as_bytes())?;
    files::write_secret(&tls.proxy_key(), proxy_key.as_bytes())?;
    files::write_file(&tls.server_cert(), server_pem.as_bytes(), 0o644)?;
    files::write_file(&tls.proxy_cert(), proxy_pem.as_bytes(), 0o644)?;
    files::write_file(&tls.ca_file(), ca_cert.pem().as_bytes(), 0o644)?;
    Ok(())
}
