//! AES-256-GCM sealing with random nonces and AAD.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use super::{CryptoError, random_bytes};

/// The one algorithm implemented; recorded beside every ciphertext so another can be added.
pub const ALGORITHM: &str = "AES-256-GCM";

/// A ciphertext with what is needed to open it (besides the key and the AAD).
#[derive(Clone, Eq, PartialEq)]
pub struct Sealed {
    /// Always [`ALGORITHM`] today.
    pub algorithm: String,
    /// Version of the key that sealed it.
    pub key_version: u32,
    /// Random 96-bit nonce.
    pub nonce: [u8; 12],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("algorithm", &self.algorithm)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// An AES-256-GCM key (its round keys are zeroized on drop: the `aes` crate's `zeroize`
/// feature is on).
pub(crate) struct AeadKey {
    cipher: Aes256Gcm,
    version: u32,
}

impl AeadKey {
    pub(crate) fn new(bytes: &Zeroizing<[u8; 32]>, version: u32) -> Self {
        Self {
            cipher: Aes256Gcm::new(bytes.as_slice().into()),
            version,
        }
    }

    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` under a fresh random nonce.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce)?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // AES-GCM encryption fails only for inputs beyond 64 GiB.
            .map_err(|_| CryptoError::Integrity)?;
        Ok(Sealed {
            algorithm: ALGORITHM.to_owned(),
            key_version: self.version,
            nonce,
            ciphertext,
        })
    }

    /// Opens a ciphertext; the plaintext comes back in a zeroizing buffer.
    pub(crate) fn open(
        &self,
        sealed: &Sealed,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.algorithm != ALGORITHM {
            return Err(CryptoError::UnknownAlgorithm);
        }
        if sealed.key_version != self.version {
            return Err(CryptoError::UnknownKeyVersion);
        }
        // `decrypt` checks the length itself (a ciphertext shorter than the tag is an error,
        // not a panic), unlike slicing by hand.
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Integrity)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Builds an AAD from a domain tag and length-prefixed parts, so no two part lists encode alike.
pub(crate) fn aad(domain: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(domain.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(domain);
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, version: u32) -> AeadKey {
        AeadKey::new(&Zeroizing::new([byte; 32]), version)
    }

    #[test]
    fn nist_gcm_test_vector() {
        // NIST SP 800-38D / McGrew-Viega test case 14: AES-256, zero key, zero IV, 16 zero bytes.
        let cipher = Aes256Gcm::new((&[0u8; 32]).into());
        let ct = cipher
            .encrypt(Nonce::from_slice(&[0u8; 12]), [0u8; 16].as_slice())
            .unwrap();
        assert_eq!(
            hex::encode(ct),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = key(7, 1);
        let a = k.seal(b"4242424242424242", b"aad").unwrap();
        let b = k.seal(b"4242424242424242", b"aad").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(k.open(&a, b"aad").unwrap().as_slice(), b"4242424242424242");
    }

    #[test]
    fn tampering_wrong_aad_wrong_key_and_truncation_are_integrity_errors() {
        let k = key(7, 1);
        let sealed = k.seal(b"4242424242424242", b"aad").unwrap();

        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            k.open(&flipped, b"aad"),
            Err(CryptoError::Integrity)
        ));

        assert!(matches!(
            k.open(&sealed, b"other"),
            Err(CryptoError::Integrity)
        ));
        assert!(matches!(
            key(8, 1).open(&sealed, b"aad"),
            Err(CryptoError::Integrity)
        ));

        for len in [0, 1, 15, 16, 17] {
            let mut short = sealed.clone();
            short.ciphertext.truncate(len);
            assert!(matches!(
                k.open(&short, b"aad"),
                Err(CryptoError::Integrity)
            ));
        }

        let mut other_version = sealed.clone();
        other_version.key_version = 2;
        assert!(matches!(
            k.open(&other_version, b"aad"),
            Err(CryptoError::UnknownKeyVersion)
        ));
        let mut other_algorithm = sealed;
        other_algorithm.algorithm = "ROT13".to_owned();
        assert!(matches!(
            k.open(&other_algorithm, b"aad"),
            Err(CryptoError::UnknownAlgorithm)
        ));
    }

    #[test]
    fn aad_parts_are_unambiguous() {
        assert_ne!(aad(b"d", &[b"ab", b"c"]), aad(b"d", &[b"a", b"bc"]));
    }
}
