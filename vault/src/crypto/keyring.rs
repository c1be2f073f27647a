//! The unwrapped keys a running vault holds, and how they are made and stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::Pan;
use zeroize::Zeroizing;

use super::aead::{AeadKey, aad};
use super::{CryptoError, MasterKey, Sealed, random_bytes};

/// What a stored key is for. Each purpose has its own key: no key serves two.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
pub enum KeyPurpose {
    /// Seals PANs.
    Data,
    /// Keys the per-tenant PAN fingerprint.
    Fingerprint,
    /// Chains the audit log.
    Audit,
    /// Authenticates client rows (id, tenant, scopes, key hash, times).
    Client,
}

impl KeyPurpose {
    /// The name stored in the database and bound into the wrapping AAD.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Fingerprint => "fingerprint",
            Self::Audit => "audit",
            Self::Client => "client",
        }
    }

    /// Every purpose: a vault has a key of each.
    pub const ALL: [Self; 4] = [Self::Data, Self::Fingerprint, Self::Audit, Self::Client];

    /// Parses [`KeyPurpose::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Where a key version stands in its life.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum KeyState {
    /// Seals new writes (the newest active version of its purpose does) and opens old ones.
    Active,
    /// Opens what it sealed, never seals again (`vault keys retire`).
    DecryptOnly,
    /// Gone: its key material is deleted; what it sealed no longer opens.
    Destroyed,
}

impl KeyState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DecryptOnly => "decrypt_only",
            Self::Destroyed => "destroyed",
        }
    }

    /// Parses [`KeyState::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Active, Self::DecryptOnly, Self::Destroyed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A key as stored: wrapped under the master key.
#[derive(Clone, Debug)]
pub struct WrappedKey {
    /// What it is for.
    pub purpose: KeyPurpose,
    /// Version within its purpose, from 1.
    pub version: u32,
    /// Its state.
    pub state: KeyState,
    /// How many times it has sealed, as counted into the database so far.
    pub seals: u64,
    /// The key, sealed under the master key with AAD binding purpose and version.
    pub sealed: Sealed,
    /// Unix microseconds.
    pub created_at: i64,
}

/// The HMAC-SHA-256 key for PAN fingerprints.
pub struct FingerprintKey {
    key: Zeroizing<[u8; 32]>,
    version: u32,
}

impl FingerprintKey {
    /// HMAC-SHA-256 over the tenant and the PAN digits: the same card gets the same fingerprint
    /// within a tenant and an unrelated one in another tenant, so tenants cannot correlate cards.
    pub fn fingerprint(&self, tenant: &str, pan: &Pan) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.key);
        mac.update(&aad(
            b"vault.fingerprint.v1",
            &[tenant.as_bytes(), pan.expose().as_bytes()],
        ));
        mac.finalize().into_bytes().into()
    }

    /// The version recorded beside each fingerprint.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// A fingerprint no card has (it keys the token, not a PAN, under its own label): for a
    /// token whose card already has another token, so that it keeps its own row while lookups
    /// of the card find the other.
    pub fn unmatched(&self, token: &str) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.key);
        mac.update(&aad(b"vault.fingerprint.unmatched.v1", &[token.as_bytes()]));
        mac.finalize().into_bytes().into()
    }
}

/// The HMAC-SHA-256 key that chains audit events. Cheap to clone (shared).
///
/// It is kept as HMAC's keyed state (the hashes of key ⊕ ipad and key ⊕ opad) rather than as
/// the key: every audited request links an event, and keying HMAC afresh costs two of the
/// four or so SHA-256 blocks a link takes. That state is as secret as the key and lives as long;
/// like the per-call state before it, the `hmac` crate does not zeroize it on drop. The raw
/// key bytes are zeroized once keyed.
#[derive(Clone)]
pub struct AuditKey {
    keyed: Arc<Hmac<Sha256>>,
}

impl AuditKey {
    /// `HMAC(key, previous link || event encoding)`.
    pub fn link(&self, previous: &[u8; 32], event: &[u8]) -> [u8; 32] {
        let mut mac = (*self.keyed).clone();
        mac.update(previous);
        mac.update(event);
        mac.finalize().into_bytes().into()
    }

    /// The tag of an audit checkpoint (an encoded link and time), so that a checkpoint kept
    /// outside the database cannot be forged or altered without this key. Domain-separated from
    /// the chain links.
    pub fn checkpoint_tag(&self, encoded: &[u8]) -> [u8; 32] {
        let mut mac = (*self.keyed).clone();
        mac.update(b"vault.audit.checkpoint.v1");
        mac.update(encoded);
        mac.finalize().into_bytes().into()
    }

    /// A key from raw bytes (tests and tools); the bytes are zeroized when dropped here.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self {
            keyed: Arc::new(hmac_sha256(&bytes)),
        }
    }
}

/// A 32-byte MAC over a stored row. Not secret, but an equality test on it is an
/// authentication decision, so it compares in constant time and has no other `==`.
#[derive(Clone, Copy)]
pub struct RowMac(pub [u8; 32]);

impl PartialEq for RowMac {
    fn eq(&self, other: &Self) -> bool {
        shared::ct::bytes_eq(&self.0, &other.0)
    }
}

impl Eq for RowMac {}

impl std::fmt::Debug for RowMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowMac(..)")
    }
}

/// The HMAC-SHA-256 key that authenticates client rows, so that a row written or edited by
/// anyone without the master key (a DBA, a stolen replica credential, SQL injection elsewhere in
/// a shared cluster) authenticates nothing (docs/ARCHITECTURE.md §9.2). Cloned only into a
/// store transaction that must seal the row it writes (a completed collect session).
#[derive(Clone)]
pub struct ClientKey {
    /// Every client key version held, newest first: the newest MACs, any verifies (rows MAC'd
    /// before a rotation keep verifying until the rewrap job has MAC'd them again and the old
    /// version is destroyed).
    keys: Vec<(u32, Zeroizing<[u8; 32]>)>,
}

impl ClientKey {
    /// The MAC of a client row's canonical encoding, under the newest version.
    pub fn mac(&self, encoded: &[u8]) -> RowMac {
        self.tagged(self.newest(), b"vault.client.v1", encoded)
    }

    /// Whether `mac` is the MAC of `encoded` under any version held (constant time each).
    pub fn verify(&self, encoded: &[u8], mac: &RowMac) -> bool {
        self.keys.iter().any(|(_, key)| {
            shared::ct::bytes_eq(&self.tagged(key, b"vault.client.v1", encoded).0, &mac.0)
        })
    }

    /// Whether `mac` is the MAC of `encoded` under the newest version (else the row waits for
    /// the rewrap job to MAC it again).
    pub fn verify_newest(&self, encoded: &[u8], mac: &RowMac) -> bool {
        shared::ct::bytes_eq(&self.mac(encoded).0, &mac.0)
    }

    /// The MAC of a collect session row's canonical encoding: the same key, another domain, so
    /// no session row can pass for a client row or the other way round.
    pub fn session_mac(&self, encoded: &[u8]) -> RowMac {
        self.tagged(self.newest(), b"vault.collect_session.v1", encoded)
    }

    /// Whether `mac` is the session MAC of `encoded` under any version held (constant time).
    pub fn verify_session(&self, encoded: &[u8], mac: &RowMac) -> bool {
        self.keys.iter().any(|(_, key)| {
            shared::ct::bytes_eq(
                &self.tagged(key, b"vault.collect_session.v1", encoded).0,
                &mac.0,
            )
        })
    }

    /// Whether `mac` is the session MAC of `encoded` under the newest version.
    pub fn verify_session_newest(&self, encoded: &[u8], mac: &RowMac) -> bool {
        shared::ct::bytes_eq(&self.session_mac(encoded).0, &mac.0)
    }

    /// The versions held, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        let mut versions: Vec<u32> = self.keys.iter().map(|(v, _)| *v).collect();
        versions.sort_unstable();
        versions
    }

    fn newest(&self) -> &Zeroizing<[u8; 32]> {
        // `Keyring::open` never makes a `ClientKey` without a version.
        &self.keys[0].1
    }

    fn tagged(&self, key: &Zeroizing<[u8; 32]>, domain: &[u8], encoded: &[u8]) -> RowMac {
        let mut mac = hmac_sha256(key);
        mac.update(domain);
        mac.update(encoded);
        RowMac(mac.finalize().into_bytes().into())
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey { .. }")
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey { .. }")
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac())
}

#[allow(
    clippy::panic,
    reason = "HMAC takes keys of any length; this is never reached"
)]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC rejected a 32-byte key")
}

/// Every key a running vault uses, unwrapped.
#[derive(Debug)]
pub struct Keyring {
    /// Data keys by version, each with whether it may still seal.
    data: BTreeMap<u32, (AeadKey, KeyState)>,
    /// The highest data key version stored, destroyed ones included: the only one that seals.
    newest_data: u32,
    /// The newest fingerprint key: new tokens are fingerprinted with it.
    fingerprint: FingerprintKey,
    /// Older fingerprint versions not yet destroyed, newest first: rows still fingerprinted
    /// under them are found by a card's fingerprint under each, until the rewrap job has
    /// re-fingerprinted them ("same card, same token" across a rotation).
    earlier_fingerprints: Vec<FingerprintKey>,
    audit: AuditKey,
    client: ClientKey,
}

impl Keyring {
    /// Makes a fresh set of keys (version 1 of every purpose) and their wrapped forms.
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate(master: &MasterKey, now: i64) -> Result<(Self, Vec<WrappedKey>), CryptoError> {
        let mut wrapped = Vec::new();
        for purpose in KeyPurpose::ALL {
            wrapped.push(Self::generate_one(master, purpose, now)?);
        }
        let ring = Self::open(master, &wrapped)?;
        Ok((ring, wrapped))
    }

    /// Makes version 1 of one purpose's key, wrapped (an upgrade adds a purpose an older vault
    /// did not have).
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate_one(
        master: &MasterKey,
        purpose: KeyPurpose,
        now: i64,
    ) -> Result<WrappedKey, CryptoError> {
        Self::generate_version(master, purpose, 1, now)
    }

    /// Makes `version` of one purpose's key, active, wrapped (a rotation adds the next one).
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate_version(
        master: &MasterKey,
        purpose: KeyPurpose,
        version: u32,
        now: i64,
    ) -> Result<WrappedKey, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut_slice())?;
        Ok(WrappedKey {
            purpose,
            version,
            state: KeyState::Active,
            seals: 0,
            sealed: master.wrap(purpose.as_str(), version, key.as_slice())?,
            created_at: now,
        })
    }

    /// Every stored key that still has material, unwrapped with `old` and wrapped again under
    /// `new` (master-key rotation: the keys themselves, and so every token, stay as they are).
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongMasterKey`] when `old` does not unwrap them; the RNG failing.
    pub fn rewrap(
        old: &MasterKey,
        new: &MasterKey,
        wrapped: &[WrappedKey],
    ) -> Result<Vec<WrappedKey>, CryptoError> {
        wrapped
            .iter()
            .filter(|w| w.state != KeyState::Destroyed)
            .map(|w| {
                let key = old.unwrap_key(w.purpose.as_str(), w.version, &w.sealed)?;
                Ok(WrappedKey {
                    sealed: new.wrap(w.purpose.as_str(), w.version, key.as_slice())?,
                    ..w.clone()
                })
            })
            .collect()
    }

    /// The keyring the stored (wrapped) keys hold, opened with the master key.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongMasterKey`] when any key fails to unwrap;
    /// [`CryptoError::MissingKey`] when a purpose has no key.
    pub fn open(master: &MasterKey, wrapped: &[WrappedKey]) -> Result<Self, CryptoError> {
        let mut data = BTreeMap::new();
        let newest_data = wrapped
            .iter()
            .filter(|w| w.purpose == KeyPurpose::Data)
            .map(|w| w.version)
            .max()
            .unwrap_or(0);
        let mut fingerprints: BTreeMap<u32, (FingerprintKey, KeyState)> = BTreeMap::new();
        let newest_fingerprint = wrapped
            .iter()
            .filter(|w| w.purpose == KeyPurpose::Fingerprint)
            .map(|w| w.version)
            .max()
            .unwrap_or(0);
        let mut audit = None;
        let mut clients: Vec<(u32, KeyState, Zeroizing<[u8; 32]>)> = Vec::new();
        for w in wrapped {
            // A destroyed version's material is gone: nothing to unwrap, nothing it opens.
            if w.state == KeyState::Destroyed {
                continue;
            }
            let key = master.unwrap_key(w.purpose.as_str(), w.version, &w.sealed)?;
            match w.purpose {
                KeyPurpose::Data => {
                    data.insert(w.version, (AeadKey::new(&key, w.version), w.state));
                }
                KeyPurpose::Fingerprint => {
                    fingerprints.insert(
                        w.version,
                        (
                            FingerprintKey {
                                key,
                                version: w.version,
                            },
                            w.state,
                        ),
                    );
                }
                // The newest audit version wins; the chain keeps one key for its life.
                KeyPurpose::Audit => audit = Some(AuditKey::from_bytes(key)),
                KeyPurpose::Client => clients.push((w.version, w.state, key)),
            }
        }
        // Only the newest version seals, and it must be active: a legitimate retirement never
        // leaves the newest decrypt-only (the one in use cannot be retired), so a newest that is
        // not active was set so in the database, perhaps to make the vault fall back to an older
        // (retired, suspect) key. Refused rather than followed. The same holds for the
        // fingerprint key new tokens are fingerprinted with.
        if !matches!(data.get(&newest_data), Some((_, KeyState::Active))) {
            return Err(CryptoError::MissingKey(KeyPurpose::Data));
        }
        let Some((fingerprint, KeyState::Active)) = fingerprints.remove(&newest_fingerprint) else {
            return Err(CryptoError::MissingKey(KeyPurpose::Fingerprint));
        };
        let earlier_fingerprints = fingerprints.into_values().rev().map(|(k, _)| k).collect();
        // The newest client key MACs, and must be active, as above.
        clients.sort_by_key(|(v, _, _)| std::cmp::Reverse(*v));
        let newest_client = wrapped
            .iter()
            .filter(|w| w.purpose == KeyPurpose::Client)
            .map(|w| w.version)
            .max();
        let client = match clients.first() {
            None => None,
            Some((v, KeyState::Active, _)) if Some(*v) == newest_client => Some(ClientKey {
                keys: clients.into_iter().map(|(v, _, k)| (v, k)).collect(),
            }),
            Some(_) => return Err(CryptoError::InactiveNewest(KeyPurpose::Client)),
        };
        Ok(Self {
            data,
            newest_data,
            fingerprint,
            earlier_fingerprints,
            audit: audit.ok_or(CryptoError::MissingKey(KeyPurpose::Audit))?,
            client: client.ok_or(CryptoError::MissingKey(KeyPurpose::Client))?,
        })
    }

    /// Seals a PAN under the current data key, bound to its token and tenant.
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn seal_pan(&self, pan: &Pan, token: &str, tenant: &str) -> Result<Sealed, CryptoError> {
        let key = self.sealing_key().ok_or(CryptoError::UnknownKeyVersion)?;
        key.seal(
            pan.expose().as_bytes(),
            &pan_aad(token, tenant, key.version()),
        )
    }

    /// Opens a sealed PAN.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Integrity`] if it was tampered with, sealed for another token or tenant,
    /// or under another key; never a wrong PAN.
    pub fn open_pan(&self, sealed: &Sealed, token: &str, tenant: &str) -> Result<Pan, CryptoError> {
        let (key, _) = self
            .data
            .get(&sealed.key_version)
            .ok_or(CryptoError::UnknownKeyVersion)?;
        let plain = key.open(sealed, &pan_aad(token, tenant, sealed.key_version))?;
        // Authenticated plaintext that is not a PAN can only come from a bug: treat as integrity.
        Pan::parse_bytes(&plain).map_err(|_| CryptoError::Integrity)
    }

    /// The newest data key, which new PANs are sealed under (active, as `open` checked).
    fn sealing_key(&self) -> Option<&AeadKey> {
        match self.data.get(&self.newest_data) {
            Some((key, KeyState::Active)) => Some(key),
            _ => None,
        }
    }

    /// The version new PANs are sealed under.
    pub fn sealing_version(&self) -> Option<u32> {
        self.sealing_key().map(AeadKey::version)
    }

    /// Whether this keyring holds data key `version` (to open what it sealed).
    pub fn holds_data_version(&self, version: u32) -> bool {
        self.data.contains_key(&version)
    }

    /// The data key versions this keyring opens, with their states, oldest first.
    pub fn data_versions(&self) -> Vec<(u32, KeyState)> {
        self.data.iter().map(|(v, (_, s))| (*v, *s)).collect()
    }

    /// The fingerprint key new tokens are fingerprinted with (the newest).
    pub fn fingerprint(&self) -> &FingerprintKey {
        &self.fingerprint
    }

    /// Every fingerprint key version held, oldest first.
    pub fn fingerprint_versions(&self) -> Vec<u32> {
        let mut versions: Vec<u32> = self
            .earlier_fingerprints
            .iter()
            .map(FingerprintKey::version)
            .chain(std::iter::once(self.fingerprint.version))
            .collect();
        versions.sort_unstable();
        versions
    }

    /// Older fingerprint key versions still held, newest first (empty but during a move).
    pub fn earlier_fingerprints(&self) -> &[FingerprintKey] {
        &self.earlier_fingerprints
    }

    /// The audit chain key.
    pub fn audit(&self) -> &AuditKey {
        &self.audit
    }

    /// The client-row key.
    pub fn client(&self) -> &ClientKey {
        &self.client
    }
}

fn pan_aad(token: &str, tenant: &str, key_version: u32) -> Vec<u8> {
    aad(
        b"vault.pan.v1",
        &[
            super::ALGORITHM.as_bytes(),
            token.as_bytes(),
            tenant.as_bytes(),
            &key_version.to_be_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&Zeroizing::new([byte; 32]))
    }

    #[test]
    fn generated_keys_unwrap_only_under_their_master() {
        let (ring, wrapped) = Keyring::generate(&master(1), 0).unwrap();
        let again = Keyring::open(&master(1), &wrapped).unwrap();
        let pan = Pan::parse("4242424242424242").unwrap();
        let sealed = ring.seal_pan(&pan, "tok_a", "t1").unwrap();
        assert_eq!(again.open_pan(&sealed, "tok_a", "t1").unwrap(), pan);
        assert!(matches!(
            Keyring::open(&master(2), &wrapped),
            Err(CryptoError::WrongMasterKey)
        ));
    }

    #[test]
    fn the_newest_active_data_key_seals_and_every_kept_one_opens() {
        let m = master(1);
        let (ring, mut wrapped) = Keyring::generate(&m, 0).unwrap();
        let pan = Pan::parse("4242424242424242").unwrap();
        let old = ring.seal_pan(&pan, "tok_a", "t1").unwrap();
        assert_eq!(old.key_version, 1);
        wrapped.push(Keyring::generate_version(&m, KeyPurpose::Data, 2, 0).unwrap());
        let rotated = Keyring::open(&m, &wrapped).unwrap();
        assert_eq!(
            rotated.seal_pan(&pan, "tok_b", "t1").unwrap().key_version,
            2
        );
        assert_eq!(rotated.open_pan(&old, "tok_a", "t1").unwrap(), pan);
        // Only the newest version seals: a database that makes it decrypt-only (to have the
        // vault fall back to an older, perhaps suspect, key) is refused, not followed...
        for w in &mut wrapped {
            if w.purpose == KeyPurpose::Data && w.version == 2 {
                w.state = KeyState::DecryptOnly;
            }
        }
        assert!(matches!(
            Keyring::open(&m, &wrapped),
            Err(CryptoError::MissingKey(KeyPurpose::Data))
        ));
        // ...and an older version made decrypt-only still opens what it sealed.
        for w in &mut wrapped {
            if w.purpose == KeyPurpose::Data {
                w.state = if w.version == 1 {
                    KeyState::DecryptOnly
                } else {
                    KeyState::Active
                };
            }
        }
        let retired = Keyring::open(&m, &wrapped).unwrap();
        assert_eq!(retired.sealing_version(), Some(2));
        assert_eq!(retired.open_pan(&old, "tok_a", "t1").unwrap(), pan);
        // ...a destroyed one opens nothing...
        for w in &mut wrapped {
            if w.purpose == KeyPurpose::Data && w.version == 1 {
                w.state = KeyState::Destroyed;
            }
        }
        let destroyed = Keyring::open(&m, &wrapped).unwrap();
        assert!(destroyed.open_pan(&old, "tok_a", "t1").is_err());
        assert_eq!(destroyed.sealing_version(), Some(2));
        // ...and a keyring with no active data key is refused.
        for w in &mut wrapped {
            if w.purpose == KeyPurpose::Data {
                w.state = KeyState::DecryptOnly;
            }
        }
        assert!(matches!(
            Keyring::open(&m, &wrapped),
            Err(CryptoError::MissingKey(KeyPurpose::Data))
        ));
    }

    #[test]
    fn sealed_pans_are_bound_to_token_and_tenant() {
        let (ring, _) = Keyring::generate(&master(1), 0).unwrap();
        let pan = Pan::parse("4242424242424242").unwrap();
        let sealed = ring.seal_pan(&pan, "tok_a", "t1").unwrap();
        assert!(matches!(
            ring.open_pan(&sealed, "tok_b", "t1"),
            Err(CryptoError::Integrity)
        ));
        assert!(matches!(
            ring.open_pan(&sealed, "tok_a", "t2"),
            Err(CryptoError::Integrity)
        ));
    }

    #[test]
    fn fingerprints_are_keyed_and_per_tenant() {
        let (ring, _) = Keyring::generate(&master(1), 0).unwrap();
        let (other, _) = Keyring::generate(&master(1), 0).unwrap();
        let pan = Pan::parse("4242424242424242").unwrap();
        let fp = ring.fingerprint().fingerprint("t1", &pan);
        assert_eq!(fp, ring.fingerprint().fingerprint("t1", &pan));
        assert_ne!(fp, ring.fingerprint().fingerprint("t2", &pan));
        assert_ne!(fp, other.fingerprint().fingerprint("t1", &pan));
        let unkeyed: [u8; 32] = <Sha256 as sha2::Digest>::digest(b"4242424242424242").into();
        assert_ne!(fp, unkeyed);
    }

    /// PCI case 35: a fingerprint is not SHA-256 of the PAN, is equal within a version, differs
    /// across versions, and its key is none of the other keys nor the master key.
    #[test]
    fn fingerprints_differ_across_versions_and_their_key_is_no_other_key() {
        let m = master(1);
        let (_, mut wrapped) = Keyring::generate(&m, 0).unwrap();
        let v1 = Keyring::open(&m, &wrapped).unwrap();
        wrapped.push(Keyring::generate_version(&m, KeyPurpose::Fingerprint, 2, 0).unwrap());
        let v2 = Keyring::open(&m, &wrapped).unwrap();
        let pan = Pan::parse("4242424242424242").unwrap();
        let (a, b) = (
            v1.fingerprint().fingerprint("t1", &pan),
            v2.fingerprint().fingerprint("t1", &pan),
        );
        assert_eq!(v2.fingerprint().version(), 2);
        assert_eq!(v2.earlier_fingerprints()[0].fingerprint("t1", &pan), a);
        assert_eq!(
            a,
            v1.fingerprint().fingerprint("t1", &pan),
            "equal within a version"
        );
        assert_ne!(a, b, "different across versions");
        for digest in [
            <Sha256 as sha2::Digest>::digest(b"4242424242424242"),
            <Sha256 as sha2::Digest>::digest(b"t14242424242424242"),
        ] {
            let digest: [u8; 32] = digest.into();
            assert!(digest != a && digest != b);
        }
        // The unmatched fingerprint of a token is no card's.
        assert_ne!(v2.fingerprint().unmatched("tok_1"), b);
        // Every stored key, unwrapped: pairwise different, and none is the master key.
        let raw: Vec<[u8; 32]> = wrapped
            .iter()
            .map(|w| {
                *m.unwrap_key(w.purpose.as_str(), w.version, &w.sealed)
                    .unwrap()
            })
            .collect();
        assert_eq!(*v2.fingerprint().key, raw[wrapped.len() - 1]);
        for (i, key) in raw.iter().enumerate() {
            assert_ne!(*key, [1u8; 32], "a stored key equals the master key");
            assert!(raw[i + 1..].iter().all(|other| other != key));
        }
    }
}
