//! The master key (KEK) and where it comes from.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::aead::{AeadKey, aad};
use super::pkcs11::{HsmKey, Pkcs11Settings};
use super::{CryptoError, Sealed, random_bytes};

/// The 256-bit key-encryption key. It wraps the stored keys and nothing else. Either its bytes
/// are in this process (the file and Shamir providers) or it never leaves an HSM.
pub struct MasterKey {
    kind: Kind,
}

enum Kind {
    // Boxed: the cipher's round keys are a kilobyte, and the master key is used rarely.
    Local(Box<AeadKey>),
    Hsm(HsmKey),
}

impl MasterKey {
    /// A master key from raw bytes.
    pub fn from_bytes(bytes: &Zeroizing<[u8; 32]>) -> Self {
        Self {
            // The KEK itself is unversioned; rotation of the KEK rewraps the stored keys.
            kind: Kind::Local(Box::new(AeadKey::new(bytes, 0))),
        }
    }

    /// The master key an HSM holds.
    pub fn from_hsm(key: HsmKey) -> Self {
        Self {
            kind: Kind::Hsm(key),
        }
    }

    /// Wraps a stored key, binding it to its purpose and version.
    pub(crate) fn wrap(
        &self,
        purpose: &str,
        version: u32,
        key: &[u8],
    ) -> Result<Sealed, CryptoError> {
        let aad = wrap_aad(purpose, version);
        match &self.kind {
            Kind::Local(kek) => kek.seal(key, &aad),
            Kind::Hsm(kek) => kek.seal(key, &aad),
        }
    }

    /// Unwraps a stored key. A failure means the master key is not this vault's.
    pub(crate) fn unwrap_key(
        &self,
        purpose: &str,
        version: u32,
        sealed: &Sealed,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let aad = wrap_aad(purpose, version);
        let plain = match &self.kind {
            Kind::Local(kek) => kek.open(sealed, &aad),
            Kind::Hsm(kek) => kek.open_sealed(sealed, &aad),
        }
        .map_err(|e| match e {
            // The HSM unreachable or refusing says so: it is not a wrong key.
            hsm @ CryptoError::Hsm(_) => hsm,
            _ => CryptoError::WrongMasterKey,
        })?;
        let mut out = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(CryptoError::WrongMasterKey);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }

    /// Where this key lives, for the inventory and the startup line.
    pub fn location(&self) -> String {
        match &self.kind {
            Kind::Local(_) => "in this process's memory".to_owned(),
            Kind::Hsm(key) => format!("inside the HSM, key {}", key.label()),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey { .. }")
    }
}

fn wrap_aad(purpose: &str, version: u32) -> Vec<u8> {
    aad(
        b"vault.key.v1",
        &[purpose.as_bytes(), &version.to_be_bytes()],
    )
}

/// Where the master key comes from: a file, an HSM, or the shares typed in at unseal.
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Produces the master key.
    ///
    /// # Errors
    ///
    /// When the key cannot be had (missing, malformed, refused).
    fn master_key(&self) -> Result<MasterKey, CryptoError>;

    /// Whether a vault opened with this key may make the keys of an empty database. Not for a
    /// key rebuilt from shares typed in: whoever can empty the database could then unseal it
    /// with shares of a key they made themselves, and every card stored after would be theirs.
    fn may_make_keys(&self) -> bool {
        true
    }
}

/// The master key inside an HSM, reached through PKCS#11.
#[derive(Debug, Clone)]
pub struct Pkcs11KeyProvider {
    settings: Pkcs11Settings,
}

impl Pkcs11KeyProvider {
    /// A provider logging in to the token `settings` names.
    pub fn new(settings: Pkcs11Settings) -> Self {
        Self { settings }
    }
}

impl KeyProvider for Pkcs11KeyProvider {
    fn master_key(&self) -> Result<MasterKey, CryptoError> {
        Ok(MasterKey::from_hsm(HsmKey::open(&self.settings)?))
    }
}

/// A master key already in hand: rebuilt from Shamir shares at unseal, or just made by `vault
/// init`.
pub struct GivenKeyProvider {
    key: Zeroizing<[u8; 32]>,
    makes_keys: bool,
}

impl GivenKeyProvider {
    /// A provider handing out `key`, which only opens a database that has its keys.
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self {
            key,
            makes_keys: false,
        }
    }

    /// A provider handing out a key just made, for `vault init` to make the database's keys.
    pub fn new_vault(key: Zeroizing<[u8; 32]>) -> Self {
        Self {
            key,
            makes_keys: true,
        }
    }
}

impl std::fmt::Debug for GivenKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GivenKeyProvider { .. }")
    }
}

impl KeyProvider for GivenKeyProvider {
    fn master_key(&self) -> Result<MasterKey, CryptoError> {
        Ok(MasterKey::from_bytes(&self.key))
    }

    fn may_make_keys(&self) -> bool {
        self.makes_keys
    }
}

/// A master key kept in a file: 64 hex digits and a newline, mode 0600.
#[derive(Debug, Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
}

impl FileKeyProvider {
    /// A provider reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Writes a new random master key to `path` with mode 0600. Refuses to overwrite.
    ///
    /// # Errors
    ///
    /// The file exists, or cannot be written.
    pub fn create(path: &Path) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut_slice())?;
        let mut text = Zeroizing::new(hex::encode(key.as_slice()));
        text.push('\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    CryptoError::KeyFile("refusing to overwrite an existing key file")
                }
                _ => CryptoError::Io(e),
            })?;
        file.write_all(text.as_bytes()).map_err(CryptoError::Io)?;
        file.sync_all().map_err(CryptoError::Io)?;
        Ok(Self::new(path))
    }
}

impl KeyProvider for FileKeyProvider {
    fn master_key(&self) -> Result<MasterKey, CryptoError> {
        let mut file = std::fs::File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CryptoError::KeyFile("not found (create one with `vault init`)")
            }
            _ => CryptoError::Io(e),
        })?;
        let mode = file
            .metadata()
            .map_err(CryptoError::Io)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFile(
                "readable by group or others; chmod 600 it",
            ));
        }
        // Read into a fixed buffer: a growing one would leave key digits in freed memory.
        let mut buf = Zeroizing::new([0u8; 128]);
        let len = shared::files::read_bounded(&mut file, buf.as_mut_slice())
            .map_err(CryptoError::Io)?
            .ok_or(CryptoError::KeyFile("expected 64 hex digits"))?;
        let text = std::str::from_utf8(&buf[..len])
            .map_err(|_| CryptoError::KeyFile("expected 64 hex digits"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut_slice())
            .map_err(|_| CryptoError::KeyFile("expected 64 hex digits"))?;
        Ok(MasterKey::from_bytes(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let provider = FileKeyProvider::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            FileKeyProvider::create(&path),
            Err(CryptoError::KeyFile(_))
        ));
        let key = provider.master_key().unwrap();
        let wrapped = key.wrap("data", 1, &[9u8; 32]).unwrap();
        assert_eq!(*key.unwrap_key("data", 1, &wrapped).unwrap(), [9u8; 32]);
        assert!(matches!(
            key.unwrap_key("data", 2, &wrapped),
            Err(CryptoError::WrongMasterKey)
        ));
        assert!(matches!(
            key.unwrap_key("fingerprint", 1, &wrapped),
            Err(CryptoError::WrongMasterKey)
        ));
    }

    #[test]
    fn rejects_world_readable_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        FileKeyProvider::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            FileKeyProvider::new(&path).master_key(),
            Err(CryptoError::KeyFile(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            FileKeyProvider::new(&path).master_key(),
            Err(CryptoError::KeyFile(_))
        ));
        // A key with trailing space still reads; a file larger than the read buffer is refused
        // rather than read by growing it.
        let key = "ab".repeat(32);
        std::fs::write(&path, format!("{key}\n\n")).unwrap();
        assert!(FileKeyProvider::new(&path).master_key().is_ok());
        std::fs::write(&path, format!("{key}{}", " ".repeat(200))).unwrap();
        assert!(matches!(
            FileKeyProvider::new(&path).master_key(),
            Err(CryptoError::KeyFile("expected 64 hex digits"))
        ));
        assert!(matches!(
            FileKeyProvider::new(dir.path().join("missing")).master_key(),
            Err(CryptoError::KeyFile(_))
        ));
    }
}
