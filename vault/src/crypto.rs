//! Keys and encryption.
//!
//! The hierarchy (SECURITY.md has the picture):
//!
//! - the **master key** (KEK, 256 bits) comes from a [`KeyProvider`]: a key file written by
//!   `vault init` (development), Shamir shares typed in at unseal, or an HSM it never leaves;
//! - under it, stored only wrapped (AES-256-GCM): versioned **data keys** that seal PANs, the
//!   **fingerprint key** (HMAC-SHA-256 of PAN per tenant, for "same card, same token") and the
//!   **audit key** that chains the audit log and the **client key** that MACs client rows;
//! - every sealed PAN records its algorithm and data-key version, and its AAD binds it to its
//!   token, tenant and key version, so ciphertexts cannot be moved between rows.

mod aead;
mod keyring;
mod master;
mod pkcs11;
pub mod shamir;

pub use aead::{ALGORITHM, Sealed};
pub use keyring::{
    AuditKey, ClientKey, FingerprintKey, KeyPurpose, KeyState, Keyring, RowMac, WrappedKey,
};
pub use master::{FileKeyProvider, GivenKeyProvider, KeyProvider, MasterKey, Pkcs11KeyProvider};
pub use pkcs11::{HsmKey, Pkcs11Settings};

/// What can go wrong with keys and ciphertexts. Messages never contain key or card material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A ciphertext failed authentication: tampered, moved to another row, or sealed under
    /// another key.
    #[error("ciphertext failed its integrity check")]
    Integrity,
    /// The master key does not unwrap this vault's stored keys.
    #[error("the master key does not unwrap this vault's keys (wrong key file?)")]
    WrongMasterKey,
    /// The database has no key of this purpose (an older vault made it: `vault upgrade`).
    #[error("the database has no {} key", .0.as_str())]
    MissingKey(KeyPurpose),
    /// The newest stored version of a key is not active (set so in the database?), so nothing
    /// may seal or MAC under it and no older one may stand in.
    #[error("the newest {} key version is not active: the keys table was changed outside the vault; restore it from a backup", .0.as_str())]
    InactiveNewest(KeyPurpose),
    /// A ciphertext names a key version this vault does not have.
    #[error("ciphertext names an unknown key version")]
    UnknownKeyVersion,
    /// A ciphertext names an algorithm this vault does not implement.
    #[error("ciphertext names an unknown algorithm")]
    UnknownAlgorithm,
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The key file is missing, unreadable, malformed or too widely readable.
    #[error("key file: {0}")]
    KeyFile(&'static str),
    /// The HSM (PKCS#11) failed or refused: what was being done and the token's code.
    #[error("{0}")]
    Hsm(String),
    /// Shamir shares typed in were refused or too few.
    #[error("{0}")]
    Shares(String),
    /// An I/O error on the key file.
    #[error("key file: {0}")]
    Io(#[source] std::io::Error),
}

impl From<shared::ids::RandomFailed> for CryptoError {
    fn from(_: shared::ids::RandomFailed) -> Self {
        Self::Random
    }
}

/// Fills `buf` from the OS CSPRNG.
///
/// # Errors
///
/// [`CryptoError::Random`] if the OS refuses.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}
