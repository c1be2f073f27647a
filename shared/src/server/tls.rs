//! TLS on a listener (`[server.tls]`): rustls with the aws-lc-rs provider reqwest already
//! brings, so no protocol or crypto code of ours.
//!
//! - TLS 1.2 and 1.3 only, and only AEAD suites: rustls implements nothing older and no CBC or
//!   RC4 suite, so a client offering only those is refused in the handshake (tested with
//!   `openssl s_client` in `vault/tests/process/tls.rs` and `tests/tests/payouts/flows.rs`).
//! - ALPN `http/1.1`: the servers speak HTTP/1.1 only (hyper's `http1`), so that is all they
//!   announce.
//! - With `client_ca_file`, the listener asks for a client certificate and verifies any it is
//!   given against that CA (and `client_crl_file`, when set); a client without one still
//!   connects, because health probes and apps calling tokenize need none. What a certificate
//!   proves is decided per request by the service (a vault client bound to a certificate is
//!   refused without it), from the [`PeerCertificate`] every request on the connection carries.
//! - The files are re-read on SIGHUP (`serve` installs the handler): a new certificate takes the
//!   next handshake, connections already open keep theirs, and files that do not load are
//!   logged and leave the previous configuration in use, so short-lived certificates can be
//!   renewed without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::TlsConfig;

/// The most a certificate, key, CA or CRL file may hold: far above any real chain, far below
/// what would hurt if a wrong path named a large file.
const PEM_FILE_MAX: u64 = 1 << 20;

/// Why a listener's TLS files were refused. Each names the setting and the file, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read (or is too large to be a PEM file).
    #[error("{setting} {path}: {reason}")]
    File {
        /// The setting (`server.tls.cert_file`).
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file is open to group or others.
    #[error(transparent)]
    SecretFile(#[from] crate::files::SecretFileError),
    /// A file holds no PEM block of the kind the setting needs.
    #[error("{setting} {path}: {what}")]
    Content {
        /// The setting.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it, and what it should hold.
        what: &'static str,
    },
    /// rustls refused the combination (a key that is not the certificate's, a CA it cannot use).
    #[error("{setting}: {reason}")]
    Rejected {
        /// The setting most likely at fault.
        setting: &'static str,
        /// rustls's reason.
        reason: String,
    },
}

/// The client certificate a request's connection presented (verified against
/// `server.tls.client_ca_file` in the handshake), for the service to bind callers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the end-entity certificate's DER: what `--cert-sha256` binds a client to.
    pub sha256: [u8; 32],
}

/// A listener's TLS configuration as loaded now, replaced whole by [`ServerTls::reload`].
#[derive(Debug)]
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<rustls::ServerConfig>,
    /// Bumped by each successful reload: connections that presented a client certificate end
    /// (gracefully) and their clients reconnect under the new CA and CRL, so a certificate
    /// revoked since their handshake stops working at once.
    reloads: tokio::sync::watch::Sender<u64>,
    /// Refused handshakes, for the rate-limited warning.
    refused: std::sync::atomic::AtomicU64,
    /// When the last warning about them was logged (Unix seconds).
    warned_at: std::sync::atomic::AtomicI64,
}

/// At most one warning about refused client certificates per this many seconds: anyone can
/// make a handshake fail, and must not be able to fill the log.
const REFUSAL_WARNING_EVERY_SECONDS: i64 = 10;

impl ServerTls {
    /// Loads the files `config` names; `None` when it names no certificate (plain HTTP).
    ///
    /// # Errors
    ///
    /// [`TlsError`], naming the setting.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<Self>>, TlsError> {
        if config.cert_file.is_none() {
            return Ok(None);
        }
        let built = build(config)?;
        Ok(Some(Arc::new(Self {
            files: config.clone(),
            current: ArcSwap::from_pointee(built),
            reloads: tokio::sync::watch::Sender::new(0),
            refused: std::sync::atomic::AtomicU64::new(0),
            warned_at: std::sync::atomic::AtomicI64::new(0),
        })))
    }

    /// Re-reads the files; on failure the configuration in use stays.
    ///
    /// # Errors
    ///
    /// [`TlsError`].
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(build(&self.files)?));
        self.reloads.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Told of every successful reload from now on.
    pub(super) fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Counts a handshake refused for its client certificate; logs a warning with the count at
    /// most every [`REFUSAL_WARNING_EVERY_SECONDS`].
    pub(super) fn refused_certificate(&self, peer: std::net::SocketAddr, error: &std::io::Error) {
        use std::sync::atomic::Ordering;
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let last = self.warned_at.load(Ordering::Relaxed);
        if now - last >= REFUSAL_WARNING_EVERY_SECONDS
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                %peer,
                error = %error,
                refused,
                "TLS handshake refused: the client certificate does not verify against server.tls.client_ca_file (this one, and the count since the last such line)"
            );
        } else {
            tracing::debug!(%peer, error = %error, "TLS handshake refused: client certificate");
        }
    }

    /// Whether the listener asks for client certificates.
    pub fn asks_client_certificates(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// The acceptor for the next handshake.
    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

/// The peer's end-entity certificate on an established connection, if it gave one.
pub(super) fn peer_certificate(conn: &rustls::ServerConnection) -> Option<PeerCertificate> {
    let first = conn.peer_certificates()?.first()?;
    Some(PeerCertificate {
        sha256: Sha256::digest(first.as_ref()).into(),
    })
}

/// Re-reads `tls` on every SIGHUP until the process ends, logging each outcome.
pub(super) fn reload_on_sighup(tls: Arc<ServerTls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: TLS certificates are reloaded only by a restart");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the TLS files did not load; the previous certificate stays in use"
                ),
            }
        }
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build(config: &TlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err(TlsError::Content {
            setting: "server.tls.key_file",
            path: String::new(),
            what: "server.tls.cert_file and server.tls.key_file go together: set both",
        });
    };
    let chain = certificates(cert_file, "server.tls.cert_file")?;
    crate::files::ensure_private(key_file, "server.tls.key_file")?;
    let pem = read_pem(key_file, "server.tls.key_file")?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Content {
        setting: "server.tls.key_file",
        path: key_file.display().to_string(),
        what: "no private key in it: it must hold one PEM private key (PKCS#8, PKCS#1 or SEC1)",
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| rejected("server.tls", &e))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(ca_file, "server.tls.client_ca_file")? {
                roots
                    .add(ca)
                    .map_err(|e| rejected("server.tls.client_ca_file", &e))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    // A CRL past its next update is not evidence of anything: refused, so a
                    // CRL job that died cannot leave revoked certificates working.
                    .enforce_revocation_expiration();
            if let Some(crl_file) = &config.client_crl_file {
                let pem = read_pem(crl_file, "server.tls.client_crl_file")?;
                let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| TlsError::Content {
                        setting: "server.tls.client_crl_file",
                        path: crl_file.display().to_string(),
                        what: "no certificate revocation list in it: it must hold PEM X509 CRLs",
                    })?;
                verifier = verifier.with_crls(crls);
            }
            let verifier = verifier
                .build()
                .map_err(|e| rejected("server.tls.client_ca_file", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| rejected("server.tls.key_file", &e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

fn certificates(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path, setting)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TlsError::Content {
            setting,
            path: path.display().to_string(),
            what: "no certificate in it: it must hold PEM certificates (BEGIN CERTIFICATE)",
        })
}

fn read_pem(path: &Path, setting: &'static str) -> Result<zeroize::Zeroizing<Vec<u8>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        setting,
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
    let size = file
        .metadata()
        .map_err(|e| file_error(e.to_string()))?
        .len()
        .min(PEM_FILE_MAX);
    // A buffer that never grows, so a key leaves no copies behind in freed memory.
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; usize::try_from(size).unwrap_or(0) + 1]);
    let len = crate::files::read_bounded(&mut file, &mut bytes)
        .map_err(|e| file_error(e.to_string()))?
        .ok_or_else(|| file_error(format!("larger than {PEM_FILE_MAX} bytes, or growing")))?;
    bytes.truncate(len);
    Ok(bytes)
}

fn rejected(setting: &'static str, e: &dyn std::fmt::Display) -> TlsError {
    TlsError::Rejected {
        setting,
        reason: e.to_string(),
    }
}

/// The paths of a `[server.tls]` table resolved against the config file's directory.
pub fn anchor(config: &mut TlsConfig, base: Option<&Path>) {
    let anchored = |p: &mut Option<PathBuf>| {
        if let Some(path) = p.as_mut() {
            *path = crate::config::anchored(base, path);
        }
    };
    anchored(&mut config.cert_file);
    anchored(&mut config.key_file);
    anchored(&mut config.client_ca_file);
    anchored(&mut config.client_crl_file);
}
