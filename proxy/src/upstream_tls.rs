//! TLS for the proxy's outbound clients (the vault, Bank 131, app webhooks): which CAs a server
//! certificate must chain to, and the client certificate the proxy presents to the vault.
//!
//! reqwest (rustls) does the verification: certificate chain, expiry and host name, always. With
//! a `ca_file` setting, the server's certificate must chain to the CAs in that file and to
//! nothing else (a private CA for the vault, a test CA for the sandbox); without one, to the
//! system's roots. There is no setting that turns verification off.

use std::path::{Path, PathBuf};

/// Why a TLS file of an outbound client was refused; names the setting and file, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTlsError {
    /// The file cannot be read.
    #[error("{setting} {path}: {source}")]
    Unreadable {
        /// The setting.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold what the setting needs.
    #[error("{setting} {path}: {what}")]
    Content {
        /// The setting.
        setting: &'static str,
        /// The file.
        path: String,
        /// What it should hold.
        what: &'static str,
    },
    /// The client key file is open to others.
    #[error(transparent)]
    SecretFile(#[from] shared::files::SecretFileError),
}

/// Why an outbound HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Its TLS files.
    #[error(transparent)]
    Tls(#[from] UpstreamTlsError),
    /// reqwest refused the configuration.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The CA file (`setting`, e.g. `vault.ca_file`) as the only roots of `builder`, when set.
///
/// # Errors
///
/// [`UpstreamTlsError`].
pub fn trust(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
    setting: &'static str,
) -> Result<reqwest::ClientBuilder, UpstreamTlsError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let pem = read(path, setting)?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| UpstreamTlsError::Content {
            setting,
            path: path.display().to_string(),
            what: "no PEM certificate in it: it must hold the CA certificates (BEGIN CERTIFICATE) that sign the server's",
        })?;
    Ok(builder.tls_certs_only(roots))
}

/// The client certificate and key (`vault.client_cert_file`, `vault.client_key_file`) the
/// proxy presents for mutual TLS, when set.
///
/// # Errors
///
/// [`UpstreamTlsError`].
pub fn present(
    builder: reqwest::ClientBuilder,
    cert_file: Option<&PathBuf>,
    key_file: Option<&PathBuf>,
) -> Result<reqwest::ClientBuilder, UpstreamTlsError> {
    let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
        return Ok(builder);
    };
    shared::files::ensure_private(key_file, "vault.client_key_file")?;
    let mut pem = zeroize::Zeroizing::new(read(cert_file, "vault.client_cert_file")?);
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(&read(key_file, "vault.client_key_file")?);
    let identity =
        reqwest::Identity::from_pem(&pem).map_err(|_| UpstreamTlsError::Content {
            setting: "vault.client_cert_file",
            path: cert_file.display().to_string(),
            what: "with vault.client_key_file, not a PEM certificate and its private key (PKCS#8, PKCS#1 or SEC1)",
        })?;
    Ok(builder.identity(identity))
}

fn read(
    path: &Path,
    setting: &'static str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, UpstreamTlsError> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|source| UpstreamTlsError::Unreadable {
            setting,
            path: path.display().to_string(),
            source,
        })
}
