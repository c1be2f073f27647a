//! The master key inside an HSM, through PKCS#11 (`keys.provider = "pkcs11"`).
//!
//! The key is an AES-256 secret key object the token made itself (`vault init --provider
//! pkcs11`), sensitive and never extractable: its bytes never leave the HSM, so no file, dump or
//! core of the vault host holds it. Wrapping and unwrapping the stored keys is AES-GCM computed
//! by the token (`CKM_AES_GCM`, 96-bit random nonce, 128-bit tag, the purpose and version bound
//! in as AAD), which gives the same [`Sealed`] shape as the file provider's key.
//!
//! PKCS#11 itself goes through `cryptoki` (the Parsec project's maintained binding); nothing of
//! the protocol is written here. Tested against SoftHSM2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::aead::ALGORITHM;
use super::{CryptoError, Sealed, random_bytes};

/// Where the HSM key is: `[keys.pkcs11]`.
#[derive(Clone, Debug, Eq, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module (shared library) of the HSM.
    pub module: PathBuf,
    /// The label of the token (slot) holding the key.
    pub token_label: String,
    /// The label of the AES key object.
    pub key_label: String,
    /// A file (mode 0600) holding the token's user PIN.
    pub pin_file: PathBuf,
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Self {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token_label: "vault".to_owned(),
            key_label: "vault-master".to_owned(),
            pin_file: PathBuf::from("hsm.pin"),
        }
    }
}

/// The master key held by the token: a logged-in session and the key's handle.
pub struct HsmKey {
    // A PKCS#11 session is not for concurrent use; wrapping is rare (start, rotation, reload),
    // so one session behind a lock is enough.
    session: Mutex<Session>,
    key: ObjectHandle,
    /// Said in errors and the inventory: which token and key.
    label: String,
}

impl std::fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKey")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl HsmKey {
    /// Logs in to the token and finds the key. Refuses a key that could leave the token.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Hsm`]: module, token, PIN or key missing or wrong; the key extractable.
    pub fn open(settings: &Pkcs11Settings) -> Result<Self, CryptoError> {
        let session = login(settings, false)?;
        let mut found = session
            .find_objects(&key_template(&settings.key_label))
            .map_err(|e| hsm("looking for the key", &e))?;
        let key = match (found.pop(), found.is_empty()) {
            (Some(key), true) => key,
            (None, _) => {
                return Err(CryptoError::Hsm(format!(
                    "token {:?} has no AES key labelled {:?} (make one with `vault init --provider pkcs11`)",
                    settings.token_label, settings.key_label
                )));
            }
            (Some(_), false) => {
                return Err(CryptoError::Hsm(format!(
                    "token {:?} has several AES keys labelled {:?}; keep one",
                    settings.token_label, settings.key_label
                )));
            }
        };
        // Made inside the token and never out of it: generated there (`CKA_LOCAL`, not imported
        // with a value someone knows), sensitive and unextractable from birth (not switched off
        // after a copy was taken), and good for nothing but encrypting and decrypting.
        let wanted = [
            (AttributeType::Local, true),
            (AttributeType::Sensitive, true),
            (AttributeType::AlwaysSensitive, true),
            (AttributeType::Extractable, false),
            (AttributeType::NeverExtractable, true),
            (AttributeType::Wrap, false),
            (AttributeType::Derive, false),
        ];
        let types: Vec<AttributeType> = wanted.iter().map(|(t, _)| *t).collect();
        let attributes = session
            .get_attributes(key, &types)
            .map_err(|e| hsm("reading the key's attributes", &e))?;
        let value = |a: &Attribute| match a {
            Attribute::Local(v)
            | Attribute::Sensitive(v)
            | Attribute::AlwaysSensitive(v)
            | Attribute::Extractable(v)
            | Attribute::NeverExtractable(v)
            | Attribute::Wrap(v)
            | Attribute::Derive(v) => Some((a.attribute_type(), *v)),
            _ => None,
        };
        let held_inside = wanted.iter().all(|(t, want)| {
            attributes
                .iter()
                .filter_map(value)
                .any(|(got_type, got)| got_type == *t && got == *want)
        });
        if !held_inside {
            return Err(CryptoError::Hsm(format!(
                "the key {:?} was not made inside the token to stay there (it must be generated by the token, always sensitive, never extractable, and unable to wrap or derive); make a new one with `vault init --provider pkcs11`",
                settings.key_label
            )));
        }
        Ok(Self {
            session: Mutex::new(session),
            key,
            label: format!("{}/{}", settings.token_label, settings.key_label),
        })
    }

    /// Makes the master key inside the token: AES-256, sensitive, never extractable, usable only
    /// to encrypt and decrypt. Refuses when a key of that label exists.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Hsm`]: module, token or PIN wrong, the label taken, or generation refused.
    pub fn create(settings: &Pkcs11Settings) -> Result<(), CryptoError> {
        let session = login(settings, true)?;
        let existing = session
            .find_objects(&key_template(&settings.key_label))
            .map_err(|e| hsm("looking for the key", &e))?;
        if !existing.is_empty() {
            return Err(CryptoError::Hsm(format!(
                "token {:?} already has a key labelled {:?}; refusing to make a second",
                settings.token_label, settings.key_label
            )));
        }
        let template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::ValueLen(32.into()),
            Attribute::Label(settings.key_label.as_bytes().to_vec()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| hsm("generating the key", &e))?;
        Ok(())
    }

    /// Which token and key, for people.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Seals `plaintext` under the token's key (AES-GCM, random nonce).
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce)?;
        let mut iv = nonce;
        let params =
            GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| hsm("preparing AES-GCM", &e))?;
        let ciphertext = self
            .session()?
            .encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
            .map_err(|e| hsm("wrapping a key", &e))?;
        Ok(Sealed {
            algorithm: ALGORITHM.to_owned(),
            key_version: 0,
            nonce,
            ciphertext,
        })
    }

    /// Opens what [`HsmKey::seal`] sealed; any failure is reported as one (tampered, another
    /// key's).
    pub(crate) fn open_sealed(
        &self,
        sealed: &Sealed,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.algorithm != ALGORITHM {
            return Err(CryptoError::UnknownAlgorithm);
        }
        let mut iv = sealed.nonce;
        let params =
            GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| hsm("preparing AES-GCM", &e))?;
        let session = self.session()?;
        match session.decrypt(&Mechanism::AesGcm(params), self.key, &sealed.ciphertext) {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            Err(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange,
                _,
            )) => Err(CryptoError::Integrity),
            Err(e) => Err(hsm("unwrapping a key", &e)),
        }
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, CryptoError> {
        self.session
            .lock()
            .map_err(|_| CryptoError::Hsm("the HSM session lock was poisoned".to_owned()))
    }
}

/// The search template for the master key: an AES secret key of that label.
fn key_template(label: &str) -> [Attribute; 3] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// A session on the token labelled as configured, logged in as its user.
fn login(settings: &Pkcs11Settings, read_write: bool) -> Result<Session, CryptoError> {
    let context = context(&settings.module)?;
    let slots = context
        .get_slots_with_initialized_token()
        .map_err(|e| hsm("listing the slots", &e))?;
    let mut slot = None;
    for candidate in slots {
        let info = context
            .get_token_info(candidate)
            .map_err(|e| hsm("reading a token", &e))?;
        if info.label().trim_end() == settings.token_label {
            slot = Some(candidate);
            break;
        }
    }
    let slot = slot.ok_or_else(|| {
        CryptoError::Hsm(format!(
            "no initialised token labelled {:?} in {} (softhsm2-util --init-token makes one)",
            settings.token_label,
            settings.module.display()
        ))
    })?;
    let session = if read_write {
        context.open_rw_session(slot)
    } else {
        context.open_ro_session(slot)
    }
    .map_err(|e| hsm("opening a session", &e))?;
    let pin = read_pin(&settings.pin_file)?;
    match session.login(UserType::User, Some(&pin)) {
        // Login is per application and token: another session of this process logged in.
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(P11Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
            Err(CryptoError::Hsm(format!(
                "the token refused the PIN in {}",
                settings.pin_file.display()
            )))
        }
        Err(e) => Err(hsm("logging in", &e)),
    }
}

/// The module's context, loaded and initialised once per process: a second `C_Initialize` of
/// the same module is refused by the module.
fn context(module: &Path) -> Result<Pkcs11, CryptoError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .map_err(|_| CryptoError::Hsm("the PKCS#11 context lock was poisoned".to_owned()))?;
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    if !module.exists() {
        return Err(CryptoError::Hsm(format!(
            "keys.pkcs11.module: {} does not exist (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
            module.display()
        )));
    }
    let context = Pkcs11::new(module).map_err(|e| hsm("loading the module", &e))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm("initialising the module", &e)),
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

/// The user PIN from its file (mode 0600, one line).
fn read_pin(path: &Path) -> Result<AuthPin, CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path).map_err(|_| {
        CryptoError::Hsm(format!(
            "keys.pkcs11.pin_file: {} cannot be read",
            path.display()
        ))
    })?;
    let mode = file
        .metadata()
        .map_err(CryptoError::Io)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CryptoError::Hsm(format!(
            "keys.pkcs11.pin_file: {} is readable by group or others; chmod 600 it",
            path.display()
        )));
    }
    let mut buf = Zeroizing::new([0u8; 256]);
    let len = shared::files::read_bounded(&mut file, buf.as_mut_slice())
        .map_err(CryptoError::Io)?
        .ok_or_else(|| {
            CryptoError::Hsm("keys.pkcs11.pin_file: longer than 255 bytes".to_owned())
        })?;
    let pin = std::str::from_utf8(&buf[..len])
        .map_err(|_| CryptoError::Hsm("keys.pkcs11.pin_file: not UTF-8 text".to_owned()))?
        .trim();
    if pin.is_empty() {
        return Err(CryptoError::Hsm(format!(
            "keys.pkcs11.pin_file: {} is empty",
            path.display()
        )));
    }
    Ok(AuthPin::from(pin))
}

/// A PKCS#11 failure, said with what was being done (its codes carry no key material).
fn hsm(doing: &str, error: &P11Error) -> CryptoError {
    let what = match error {
        P11Error::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        other => other.to_string(),
    };
    CryptoError::Hsm(format!("HSM: {doing}: {what}"))
}
