//! RSA keys: the bank's own key pair (signs webhooks), partner public keys (check requests), and
//! helpers for tests that play the partner.
//!
//! Everything is RSASSA-PKCS1-v1_5 with SHA-256 over the exact body bytes, standard padded base64
//! (API.md §2).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM did not hold a key of the expected kind.
    #[error("no usable {0} in the PEM text")]
    Pem(&'static str),
    /// The key was not an RSA key of 2048–8192 bits, or was malformed.
    #[error("the key was rejected: {0}")]
    Rejected(&'static str),
    /// Key generation or signing failed inside the crypto library.
    #[error("the crypto library failed")]
    Crypto,
}

/// An RSA private key that signs bodies: the bank's key, or a partner's in tests.
#[derive(Debug)]
pub struct Signer {
    pair: RsaKeyPair,
    public_pem: String,
}

impl Signer {
    /// A fresh 2048-bit key.
    ///
    /// # Errors
    ///
    /// [`KeyError::Crypto`] if the library cannot generate one.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Crypto)?;
        Self::from_pair(pair)
    }

    /// Loads a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM key.
    ///
    /// # Errors
    ///
    /// [`KeyError::Pem`] for text that holds no private key, [`KeyError::Rejected`] for a key
    /// that is not RSA.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::Pem("private key"))?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(KeyError::Rejected("not an RSA key")),
        }
        .map_err(|e| KeyError::Rejected(e.description_()))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self, KeyError> {
        let spki = pair.public_key().as_der().map_err(|_| KeyError::Crypto)?;
        let public_pem = pem_encode("PUBLIC KEY", spki.as_ref());
        Ok(Self { pair, public_pem })
    }

    /// The private key as PKCS#8 PEM.
    ///
    /// # Errors
    ///
    /// [`KeyError::Crypto`] if the library cannot encode it.
    pub fn private_key_pem(&self) -> Result<String, KeyError> {
        let der = self.pair.as_der().map_err(|_| KeyError::Crypto)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Standard base64 of the PKCS#1 v1.5 SHA-256 signature over `body`: the `X-PARTNER-SIGN`
    /// value.
    ///
    /// # Errors
    ///
    /// [`KeyError::Crypto`] if signing fails.
    pub fn sign(&self, body: &[u8]) -> Result<String, KeyError> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), body, &mut sig)
            .map_err(|_| KeyError::Crypto)?;
        Ok(STANDARD.encode(sig))
    }
}

/// An RSA public key that checks signatures: a partner's key, or the bank's in a webhook
/// receiver.
#[derive(Debug)]
pub struct Verifier {
    key: ParsedPublicKey,
}

impl Verifier {
    /// Loads an SPKI PEM public key (`BEGIN PUBLIC KEY`) of 2048–8192 bits.
    ///
    /// # Errors
    ///
    /// [`KeyError::Pem`] or [`KeyError::Rejected`].
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::Pem("public key"))?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
            .map_err(|e| KeyError::Rejected(e.description_()))?;
        Ok(Self { key })
    }

    /// True when `signature_b64` (standard base64, surrounding whitespace ignored) is a valid
    /// signature of exactly `body`.
    pub fn verify(&self, body: &[u8], signature_b64: &str) -> bool {
        STANDARD
            .decode(signature_b64.trim())
            .is_ok_and(|sig| self.key.verify_sig(body, &sig).is_ok())
    }
}

/// A fresh 2048-bit RSA key pair for a test partner: `(private PKCS#8 PEM, public SPKI PEM)`.
///
/// # Errors
///
/// [`KeyError::Crypto`] if the library cannot generate or encode the key.
pub fn generate_rsa_keypair_pem() -> Result<(String, String), KeyError> {
    let signer = Signer::generate()?;
    Ok((signer.private_key_pem()?, signer.public_pem))
}

/// PEM armour with 64-column base64 lines, as OpenSSL writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_negatives() {
        let signer = Signer::generate().unwrap();
        let verifier = Verifier::from_pem(signer.public_key_pem()).unwrap();
        let sig = signer.sign(b"{}").unwrap();
        assert_eq!(sig.len(), 344);
        assert!(verifier.verify(b"{}", &sig));
        assert!(!verifier.verify(b"{} ", &sig));
        assert!(!verifier.verify(b"{}", "not base64!"));
        let other = Signer::generate().unwrap();
        assert!(!verifier.verify(b"{}", &other.sign(b"{}").unwrap()));
    }

    #[test]
    fn pem_round_trip() {
        let (private, public) = generate_rsa_keypair_pem().unwrap();
        let signer = Signer::from_pem(&private).unwrap();
        assert_eq!(signer.public_key_pem(), public);
        assert!(Verifier::from_pem("nonsense").is_err());
        assert!(Signer::from_pem(&public).is_err());
    }
}
