//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` read from `database.url`
//! (tokio-postgres parses neither `verify-ca`/`verify-full` nor `sslrootcert`, so they are taken
//! out of the URL here and the rest is left to it). The connection itself is
//! `tokio-postgres-rustls` over rustls with the aws-lc-rs provider.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `prefer` (libpq's default, and ours when unset) | when the server offers it | not checked |
//! | `require` | always | not checked (checked as `verify-ca` when `sslrootcert` is given, as libpq does) |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert` and names the host |
//!
//! `verify-ca` and `verify-full` need `sslrootcert` (libpq's `~/.postgresql/root.crt` default is
//! not followed: the file a vault trusts is named in its configuration). `prefer` and `require`
//! encrypt but prove nothing about the server, as in libpq; production mode refuses them. The
//! verifier that checks nothing is written here because rustls offers none on purpose: it still
//! checks the handshake's signatures, so the session is with whoever holds the presented key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::PgSetupError;

/// libpq's `sslmode`, all of it.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when offered, the certificate unchecked.
    #[default]
    Prefer,
    /// TLS always, the certificate unchecked.
    Require,
    /// TLS always, the certificate chained to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// Its name in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked (what production mode asks for).
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// `database.url`'s TLS settings, and the URL without them for tokio-postgres.
#[derive(Debug)]
pub(super) struct UrlTls {
    pub(super) rest: String,
    pub(super) mode: SslMode,
    pub(super) root_cert: Option<std::path::PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query, leaving every other parameter as it
/// was written (re-encoding them could change what tokio-postgres reads). Never echoes the URL.
pub(super) fn split(url: &str) -> Result<UrlTls, PgSetupError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root_cert) = (None, None);
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
        match decoded.as_ref().map(|(k, v)| (k.as_ref(), v)) {
            Some(("sslmode", value)) => {
                mode = Some(SslMode::parse(value).ok_or_else(|| {
                    PgSetupError::Tls(
                        "database.url: sslmode must be disable, prefer, require, verify-ca or verify-full"
                            .to_owned(),
                    )
                })?);
            }
            Some(("sslrootcert", value)) => {
                root_cert = Some(std::path::PathBuf::from(value.as_ref()));
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut mode = mode.unwrap_or_default();
    if mode == SslMode::Require && root_cert.is_some() {
        mode = SslMode::VerifyCa;
    }
    if mode.verifies() && root_cert.is_none() {
        return Err(PgSetupError::Tls(format!(
            "database.url: sslmode={} needs sslrootcert=/path/to/ca.crt (the CA that signed the server's certificate)",
            mode.as_str()
        )));
    }
    Ok(UrlTls {
        rest,
        mode,
        root_cert,
    })
}

/// The connector for `tls`'s mode.
pub(super) fn connector(
    tls: &UrlTls,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PgSetupError::Tls(format!("database.url: {e}")))?;
    let config = match &tls.root_cert {
        Some(path) if tls.mode.verifies() => {
            let roots = roots(path)?;
            let full = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| PgSetupError::Tls(format!("database.url: sslrootcert: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if tls.mode == SslMode::VerifyFull {
                full
            } else {
                Arc::new(AnyName(full))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn roots(path: &std::path::Path) -> Result<rustls::RootCertStore, PgSetupError> {
    let unreadable = |what: String| {
        PgSetupError::Tls(format!(
            "database.url: sslrootcert {}: {what}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| unreadable("not PEM certificates".to_owned()))?;
        roots.add(cert).map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable(
            "no certificate in it: it must hold the CA certificate (BEGIN CERTIFICATE)".to_owned(),
        ));
    }
    Ok(roots)
}

/// `verify-ca`: the whole WebPKI check but the name.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate, as libpq; the handshake's signatures still checked.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_and_the_rest_kept() {
        let t = split(
            "postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=/ca.crt&options=-c%20x%3Dy",
        )
        .unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(
            t.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.crt"))
        );
        assert_eq!(t.rest, "postgres://u:p@h:5432/db?options=-c%20x%3Dy");
        assert!(!t.rest.contains("ssl"));
        let t = split("postgres://u:p@h/db").unwrap();
        assert_eq!(
            (t.mode, t.rest.as_str()),
            (SslMode::Prefer, "postgres://u:p@h/db")
        );
        // require with a CA checks it, as libpq does.
        let t = split("postgres://h/db?sslmode=require&sslrootcert=/ca.crt").unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
    }

    #[test]
    fn a_verifying_mode_needs_a_root_certificate_and_bad_modes_are_refused_without_the_url() {
        let e = split("postgres://u:SECRET@h/db?sslmode=verify-full").unwrap_err();
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        assert!(!e.to_string().contains("SECRET"));
        let e = split("postgres://u:SECRET@h/db?sslmode=allow-anything").unwrap_err();
        assert!(e.to_string().contains("sslmode must be"), "{e}");
        assert!(!e.to_string().contains("SECRET"));
    }
}
