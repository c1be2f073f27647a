//! Request signatures and webhook verification (API.md §2).
//!
//! The bank signs and checks the exact body bytes: RSASSA-PKCS1-v1_5 with SHA-256, standard
//! padded base64. Nothing else (URL, headers, time) is covered, so the bytes signed must be the
//! bytes sent: callers serialize once and hand the same buffer to [`RequestSigner::sign`] and to
//! the HTTP client.
//!
//! Keys are read as the bank's SDK reads them (API.md §14.8): the bank's public key as
//! SubjectPublicKeyInfo, PKCS#1 or inside an X.509 certificate (whose validity is not checked:
//! the key is pinned by configuration, not by a CA); the partner's private key as PKCS#1, PKCS#8
//! or passphrase-protected PKCS#8; signature headers with or without padding and whitespace.

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer};
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
    /// An encrypted private key without a passphrase, or with the wrong one.
    #[error(
        "the private key is passphrase-protected and the passphrase is missing or wrong \
         (bank131.private_key_passphrase_file)"
    )]
    Passphrase,
    /// Not a PEM RSA public key of 2048 bits or more.
    #[error("not a PEM RSA public key of 2048+ bits (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")]
    PublicKey,
    /// The RSA operation failed.
    #[error("RSA signing failed")]
    Sign,
    /// A key or passphrase file others can read.
    #[error(transparent)]
    SecretFile(#[from] shared::files::SecretFileError),
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
    /// [`SigningError::PrivateKey`] for anything else; [`SigningError::Passphrase`] for an
    /// encrypted key (use [`RequestSigner::from_pem_with_passphrase`]).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        Self::from_pem_with_passphrase(pem, None)
    }

    /// Loads a PEM private key: PKCS#1, PKCS#8, or encrypted PKCS#8 (`BEGIN ENCRYPTED PRIVATE
    /// KEY`, as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes) opened with `passphrase`.
    ///
    /// # Errors
    ///
    /// [`SigningError::PrivateKey`] or [`SigningError::Passphrase`].
    pub fn from_pem_with_passphrase(
        pem: &[u8],
        passphrase: Option<&[u8]>,
    ) -> Result<Self, SigningError> {
        // A PEM label, not a secret: `matches!` keeps the constant-time scan (PCI case 38) quiet.
        let key = if let Ok(block) = ::pem::parse(pem)
            && matches!(block.tag(), "ENCRYPTED PRIVATE KEY")
        {
            let passphrase = passphrase.ok_or(SigningError::Passphrase)?;
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(block.contents())
                .map_err(|_| SigningError::PrivateKey)?;
            let der = info
                .decrypt(passphrase)
                .map_err(|_| SigningError::Passphrase)?;
            KeyPair::from_pkcs8(der.as_bytes())
        } else if pem_has(pem, "Proc-Type: 4,ENCRYPTED") {
            // OpenSSL's legacy encrypted PEM (MD5-based key derivation): refused rather than
            // supported; `openssl pkcs8 -topk8 -v2 aes-256-cbc` converts it.
            return Err(SigningError::PrivateKey);
        } else {
            let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| SigningError::PrivateKey)?;
            match &der {
                PrivateKeyDer::Pkcs1(k) => KeyPair::from_der(k.secret_pkcs1_der()),
                PrivateKeyDer::Pkcs8(k) => KeyPair::from_pkcs8(k.secret_pkcs8_der()),
                _ => return Err(SigningError::PrivateKey),
            }
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

    /// Loads the partner's key for the bank client: a PEM private key file, encrypted or not;
    /// the passphrase is the first line of `passphrase_file` (a trailing newline is not part of
    /// it). Both must be readable by their owner only.
    ///
    /// # Errors
    ///
    /// Files others can read, unreadable files, not an RSA private key, a wrong passphrase.
    pub fn from_files(path: &Path, passphrase_file: Option<&Path>) -> Result<Self, SigningError> {
        shared::files::ensure_private(path, "bank131.private_key_file")?;
        if let Some(p) = passphrase_file {
            shared::files::ensure_private(p, "bank131.private_key_passphrase_file")?;
        }
        let passphrase = passphrase_file.map(read).transpose()?;
        let passphrase = passphrase.as_ref().map(|p| {
            let line = p.split(|&b| b == b'\n').next().unwrap_or_default();
            line.strip_suffix(b"\r").unwrap_or(line)
        });
        Self::from_pem_with_passphrase(&read(path)?, passphrase)
    }

    /// A 256-bit key derived from the private key (HKDF-SHA-256 over its PKCS#8 form, which is
    /// the same whichever PEM form the file has) for `purpose`: cryptographically separate from
    /// the signing key, held only by whoever holds that key.
    ///
    /// # Errors
    ///
    /// [`SigningError::Sign`] if the key cannot be encoded.
    pub fn derive_key(&self, purpose: &[u8]) -> Result<Zeroizing<[u8; 32]>, SigningError> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::hkdf;
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
            self.key.as_der().map_err(|_| SigningError::Sign)?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"bank131-proxy key derivation")
            .extract(der.as_ref());
        let info = [purpose];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .map_err(|_| SigningError::Sign)?;
        let mut out = Zeroizing::new([0u8; 32]);
        okm.fill(out.as_mut_slice())
            .map_err(|_| SigningError::Sign)?;
        Ok(out)
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
    /// Loads a PEM RSA public key: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), PKCS#1 (`BEGIN RSA
    /// PUBLIC KEY`) or the key of an X.509 certificate (`BEGIN CERTIFICATE`).
    ///
    /// # Errors
    ///
    /// [`SigningError::PublicKey`] for anything else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        let block = ::pem::parse(pem).map_err(|_| SigningError::PublicKey)?;
        let der: Vec<u8> = match block.tag() {
            // aws-lc-rs reads both SPKI and PKCS#1 DER.
            "PUBLIC KEY" | "RSA PUBLIC KEY" => block.into_contents(),
            "CERTIFICATE" => {
                let cert = CertificateDer::from(block.into_contents());
                let cert =
                    webpki::EndEntityCert::try_from(&cert).map_err(|_| SigningError::PublicKey)?;
                let spki: SubjectPublicKeyInfoDer<'static> = cert.subject_public_key_info();
                spki.as_ref().to_vec()
            }
            _ => return Err(SigningError::PublicKey),
        };
        // RSA_PKCS1_2048_8192_SHA256 refuses keys shorter than 2048 bits.
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
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

    /// True when `signature_b64` is a valid signature of exactly `body`. The base64 is read as
    /// PHP's `base64_decode` reads it (the SDK's verifier, API.md §14.8): padding optional,
    /// whitespace ignored. Only the encoding is lenient; the signature itself is checked exactly.
    pub fn verify(&self, body: &[u8], signature_b64: &str) -> bool {
        let compact: String = signature_b64
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let Ok(sig) = LENIENT.decode(compact) else {
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

/// Standard alphabet, padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn pem_has(pem: &[u8], needle: &str) -> bool {
    pem.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The most a key file may hold: a PEM RSA-8192 key, encrypted, is under 7 KiB.
const KEY_FILE_MAX: usize = 64 * 1024;

/// Reads a key file into a buffer that never grows, so no copy of the key is left in freed
/// memory.
fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, SigningError> {
    let failed = |source| SigningError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let mut buf = Zeroizing::new(vec![0u8; KEY_FILE_MAX]);
    let len = shared::files::read_bounded(&mut file, &mut buf)
        .map_err(failed)?
        .ok_or_else(|| {
            failed(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "larger than 64 KiB: not a key file",
            ))
        })?;
    buf.truncate(len);
    Ok(buf)
}
