//! Request signatures and webhook verification (API.md §2).
//!
//! The bank signs and checks the exact body bytes: RSASSA-PKCS1-v1_5 with SHA-256, standard
//! padded base64. Nothing else (URL, headers, time) is covered, so the bytes signed must be the
//! bytes sent: callers serialize once and hand the same buffer to [`RequestSigner::sign`] and to
//! the HTTP client.

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

/// Key loading and signing failures. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a PEM RSA private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    #[error("not a PEM RSA private key (PKCS#1 or PKCS#8)")]
    PrivateKey,
    /// Not a PEM RSA public key (`PUBLIC KEY`, SubjectPublicKeyInfo).
    #[error("not a PEM RSA public key (SubjectPublicKeyInfo)")]
    PublicKey,
    /// The RSA operation failed.
    #[error("RSA signing failed")]
    Sign,
}

/// Signs request bodies with the partner's private key.
pub struct RequestSigner {
    key: KeyPair,
    rng: SystemRandom,
}

impl RequestSigner {
    /// Loads a PEM private key, PKCS#1 or PKCS#8.
    ///
    /// # Errors
    ///
    /// [`SigningError::PrivateKey`] for anything else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| SigningError::PrivateKey)?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => KeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => KeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(SigningError::PrivateKey),
        }
        .map_err(|_| SigningError::PrivateKey)?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// Loads a PEM private key file.
    ///
    /// # Errors
    ///
    /// Unreadable file or not an RSA private key.
    pub fn from_pem_file(path: &Path) -> Result<Self, SigningError> {
        Self::from_pem(&read(path)?)
    }

    /// The `X-PARTNER-SIGN` value for exactly these bytes.
    ///
    /// # Errors
    ///
    /// [`SigningError::Sign`] if the RSA operation fails.
    pub fn sign(&self, body: &[u8]) -> Result<String, SigningError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, body, &mut sig)
            .map_err(|_| SigningError::Sign)?;
        Ok(STANDARD.encode(sig))
    }
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestSigner { .. }")
    }
}

/// Checks signatures made with an RSA public key: the bank's, on webhooks.
pub struct SignatureVerifier {
    key: ParsedPublicKey,
}

impl SignatureVerifier {
    /// Loads a PEM public key (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`SigningError::PublicKey`] for anything else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        let der =
            SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| SigningError::PublicKey)?;
        // RSA_PKCS1_2048_8192_SHA256 refuses keys shorter than 2048 bits.
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
            .map_err(|_| SigningError::PublicKey)?;
        Ok(Self { key })
    }

    /// Loads a PEM public key file.
    ///
    /// # Errors
    ///
    /// Unreadable file or not an RSA public key.
    pub fn from_pem_file(path: &Path) -> Result<Self, SigningError> {
        Self::from_pem(&read(path)?)
    }

    /// True when `signature_b64` (standard padded base64) is a valid signature of exactly `body`.
    pub fn verify(&self, body: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = STANDARD.decode(signature_b64.trim()) else {
            return false;
        };
        self.key.verify_sig(body, &sig).is_ok()
    }
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignatureVerifier { .. }")
    }
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| SigningError::Read {
            path: path.display().to_string(),
            source,
        })
}
