//! App webhook secrets at rest: wrapped (AES-256-GCM, bound to the client id), so that a reader
//! of the database, or of a backup, cannot sign a `payout.succeeded` the app would trust. The
//! same key seals each payout link's collect-session secret (bound to the link id: a reader of
//! the database could otherwise submit a card of their own and be paid) and, through a key
//! derived from it, tags each payout link row ([`WrapKey::row_tag`]: a link written or edited
//! outside the proxy pays nothing).
//!
//! The wrapping key is `webhooks.secret_key_file` (64 hex digits, mode 0600) when set; otherwise
//! it is derived with HKDF-SHA-256 from the partner private key the proxy already holds (a
//! separate key by construction, in a file the proxy already protects). A deployment that will
//! rotate its partner key sets the file first. Secrets stored by older versions in clear
//! (`whsec_…`) are still read, and wrapped in place at start ([`wrap_legacy_secrets`]).

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use zeroize::Zeroizing;

use crate::auth::WebhookSecret;
use crate::store::{ProxyStore, StoreError};

/// The prefix of a wrapped secret as stored.
const WRAPPED_PREFIX: &str = "wsk1:";
/// The prefix of a secret stored in clear by an older version.
const CLEAR_PREFIX: &str = "whsec_";
/// The HKDF label of the row key.
const ROW_TAG_LABEL: &[u8] = b"payout link rows v1";

/// Why a secret could not be wrapped or unwrapped. No secret material in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapKeyError {
    /// The key file is missing, open to others or not 64 hex digits.
    #[error("webhooks.secret_key_file: {0}")]
    KeyFile(String),
    /// As [`WrapKeyError::KeyFile`], in words that already name the setting.
    #[error("{0}")]
    KeyFileNamed(String),
    /// The stored secret does not open under this key (another key, or a changed row).
    #[error(
        "an app webhook secret does not open under this proxy's key (was webhooks.secret_key_file or the partner key changed?); restore the key, or revoke the client and create it again"
    )]
    WrongKey,
    /// The system random generator failed.
    #[error("the random generator failed")]
    Random,
}

/// The key app webhook secrets and payout link secrets are wrapped under, and the row key
/// derived from it (not a `secrecy::SecretBox`: keys, not secret values).
pub struct WrapKey {
    key: LessSafeKey,
    rng: SystemRandom,
    /// HMAC-SHA-256 key of the payout link rows' tags, derived from the wrapping key (HKDF with
    /// its own label), so one key file or partner key keeps covering everything at rest.
    rows: hmac::Key,
}

impl fmt::Debug for WrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrapKey { .. }")
    }
}

impl WrapKey {
    /// The key from 32 bytes.
    ///
    /// # Errors
    ///
    /// Never for 32 bytes; kept for the key type's contract.
    pub fn from_key(bytes: &[u8; 32]) -> Result<Self, WrapKeyError> {
        use aws_lc_rs::hkdf;
        let not_a_key = || WrapKeyError::KeyFile("not a 256-bit key".to_owned());
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| not_a_key())?;
        let rows = hkdf::Salt::new(hkdf::HKDF_SHA256, b"bank131-proxy at-rest keys")
            .extract(bytes)
            .expand(&[ROW_TAG_LABEL], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| not_a_key())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
            rows,
        })
    }

    /// The tag of a stored row's canonical bytes (HMAC-SHA-256 under the row key).
    pub fn row_tag(&self, row: &[u8]) -> [u8; 32] {
        let mut tag = [0u8; 32];
        let signed = hmac::sign(&self.rows, row);
        // SHA-256 tags are 32 bytes.
        for (out, byte) in tag.iter_mut().zip(signed.as_ref()) {
            *out = *byte;
        }
        tag
    }

    /// Whether `tag` is the tag of `row` (compared in constant time).
    pub fn row_tag_matches(&self, row: &[u8], tag: &[u8; 32]) -> bool {
        hmac::verify(&self.rows, row, tag).is_ok()
    }

    /// The key from a key file: 64 hex digits on its first line, mode 0600.
    ///
    /// # Errors
    ///
    /// [`WrapKeyError::KeyFile`].
    pub fn from_key_file(path: &Path) -> Result<Self, WrapKeyError> {
        let line = shared::files::read_secret_line(path, "webhooks.secret_key_file")
            .map_err(|e| WrapKeyError::KeyFileNamed(e.to_string()))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(line.as_bytes(), bytes.as_mut_slice()).map_err(|_| {
            WrapKeyError::KeyFile(
                "must hold 64 hex digits (32 random bytes), e.g. from `proxy webhooks keygen FILE`"
                    .to_owned(),
            )
        })?;
        Self::from_key(&bytes)
    }

    /// Writes a new random key file (mode 0600); refuses to overwrite.
    ///
    /// # Errors
    ///
    /// The file exists or cannot be written.
    pub fn generate_key_file(path: &Path) -> Result<(), WrapKeyError> {
        use std::io::Write;
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut_slice())
            .map_err(|_| WrapKeyError::Random)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| WrapKeyError::KeyFile(format!("{}: {e}", path.display())))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_slice())));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| WrapKeyError::KeyFile(format!("{}: {e}", path.display())))
    }

    /// The stored form of `secret` for client `client_id`.
    ///
    /// # Errors
    ///
    /// [`WrapKeyError::Random`].
    pub fn wrap(
        &self,
        secret: &WebhookSecret,
        client_id: &str,
    ) -> Result<WebhookSecret, WrapKeyError> {
        self.seal(secret.expose(), client_id)
            .map(WebhookSecret::from_stored)
    }

    /// The stored form of `plain`, bound to `bound_to` (the row's id, as AAD): AES-256-GCM with
    /// a fresh nonce, `wsk1:` and base64.
    ///
    /// # Errors
    ///
    /// [`WrapKeyError::Random`].
    pub fn seal(&self, plain: &str, bound_to: &str) -> Result<String, WrapKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| WrapKeyError::Random)?;
        let mut sealed = Zeroizing::new(plain.as_bytes().to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to.as_bytes()),
                &mut *sealed,
            )
            .map_err(|_| WrapKeyError::Random)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{WRAPPED_PREFIX}{}", STANDARD_NO_PAD.encode(blob)))
    }

    /// What [`WrapKey::seal`] sealed, if it was sealed under this key and bound to `bound_to`.
    ///
    /// # Errors
    ///
    /// [`WrapKeyError::WrongKey`].
    pub fn unseal(&self, stored: &str, bound_to: &str) -> Result<Zeroizing<String>, WrapKeyError> {
        let blob = stored
            .strip_prefix(WRAPPED_PREFIX)
            .and_then(|b| STANDARD_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(WrapKeyError::WrongKey)?;
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| WrapKeyError::WrongKey)?;
        let mut sealed = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut sealed)
            .map_err(|_| WrapKeyError::WrongKey)?;
        let text = std::str::from_utf8(plain).map_err(|_| WrapKeyError::WrongKey)?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// The secret itself, from its stored form (wrapped, or clear from an older version).
    ///
    /// # Errors
    ///
    /// [`WrapKeyError::WrongKey`].
    pub fn open(
        &self,
        stored: &WebhookSecret,
        client_id: &str,
    ) -> Result<WebhookSecret, WrapKeyError> {
        if is_clear(stored) {
            return Ok(stored.clone());
        }
        let text = self.unseal(stored.expose(), client_id)?;
        Ok(WebhookSecret::from_stored(text.as_str().to_owned()))
    }
}

/// The key this configuration names: `webhooks.secret_key_file`, or a key derived from the
/// partner private key.
///
/// # Errors
///
/// The key file or the partner key cannot be read.
pub fn for_config(config: &crate::config::ProxyConfig) -> Result<WrapKey, WrapKeyError> {
    if let Some(path) = &config.webhooks.secret_key_file {
        return WrapKey::from_key_file(path);
    }
    let signer = crate::bank131::RequestSigner::from_files(
        &config.bank131.private_key_file,
        config.bank131.private_key_passphrase_file.as_deref(),
    )
    .map_err(|e| WrapKeyError::KeyFile(format!("unset, and the partner key: {e}")))?;
    let key = signer
        .derive_key(b"app webhook secrets v1")
        .map_err(|e| WrapKeyError::KeyFile(format!("unset, and the partner key: {e}")))?;
    WrapKey::from_key(&key)
}

/// Whether a stored secret is in clear (written by a version before wrapping).
pub fn is_clear(stored: &WebhookSecret) -> bool {
    stored.expose().starts_with(CLEAR_PREFIX)
}

/// Wraps every secret an older version stored in clear; returns how many.
///
/// # Errors
///
/// Storage or random failure.
pub async fn wrap_legacy_secrets(
    store: &dyn ProxyStore,
    secrets: &WrapKey,
) -> Result<usize, WrapError> {
    let mut wrapped = 0;
    let mut unopenable = Vec::new();
    for client in store.clients().await? {
        if is_clear(&client.webhook_secret) {
            let stored = secrets.wrap(&client.webhook_secret, client.id.as_str())?;
            store.set_webhook_secret(&client.id, &stored).await?;
            wrapped += 1;
        } else if client.revoked_at.is_none()
            && secrets
                .open(&client.webhook_secret, client.id.as_str())
                .is_err()
        {
            unopenable.push(client.id);
        }
    }
    // Starting anyway would abandon every event of those apps, one by one.
    if !unopenable.is_empty() {
        return Err(WrapError::WrongKey(unopenable));
    }
    Ok(wrapped)
}

/// Why [`wrap_legacy_secrets`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Wrapping.
    #[error(transparent)]
    Box(#[from] WrapKeyError),
    /// Secrets that do not open under this key.
    #[error(
        "the webhook secrets of {} do not open under this proxy's key (was webhooks.secret_key_file or the partner key changed?); restore the key, or revoke those clients and create them again",
        .0.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(", ")
    )]
    WrongKey(Vec<crate::ids::AppClientId>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_bound_to_the_client_and_the_key() {
        let secrets = WrapKey::from_key(&[7; 32]).unwrap();
        let secret = WebhookSecret::from_stored("whsec_abcdef".to_owned());
        let stored = secrets.wrap(&secret, "app_1").unwrap();
        assert!(stored.expose().starts_with(WRAPPED_PREFIX));
        assert!(!stored.expose().contains("abcdef"));
        assert_eq!(secrets.open(&stored, "app_1").unwrap(), secret);
        // Another client's row, another key, a changed byte: refused.
        assert!(secrets.open(&stored, "app_2").is_err());
        let other = WrapKey::from_key(&[8; 32]).unwrap();
        assert!(other.open(&stored, "app_1").is_err());
        // One character of the ciphertext changed (always to a different one).
        let mut changed: Vec<char> = stored.expose().chars().collect();
        let at = changed.len() / 2;
        changed[at] = if changed[at] == 'A' { 'B' } else { 'A' };
        let changed: String = changed.into_iter().collect();
        assert!(
            secrets
                .open(&WebhookSecret::from_stored(changed), "app_1")
                .is_err()
        );
        // Two wraps of one secret differ (fresh nonces).
        assert_ne!(secrets.wrap(&secret, "app_1").unwrap(), stored);
        // A secret stored in clear by an older version still reads.
        assert_eq!(secrets.open(&secret, "app_1").unwrap(), secret);
    }

    #[test]
    fn sealed_values_open_only_bound_to_their_row_and_row_tags_catch_any_change() {
        let key = WrapKey::from_key(&[7; 32]).unwrap();
        let sealed = key.seal("css_secret", "payout_link:pl_1").unwrap();
        assert!(!sealed.contains("css_secret"));
        assert_eq!(
            key.unseal(&sealed, "payout_link:pl_1").unwrap().as_str(),
            "css_secret"
        );
        assert!(key.unseal(&sealed, "payout_link:pl_2").is_err());
        assert!(key.unseal("wsk1:AAAA", "payout_link:pl_1").is_err());
        let tag = key.row_tag(b"row");
        assert!(key.row_tag_matches(b"row", &tag));
        assert!(!key.row_tag_matches(b"rov", &tag));
        let other = WrapKey::from_key(&[8; 32]).unwrap();
        assert!(!other.row_tag_matches(b"row", &tag), "another key's tag");
        // The row key is derived, not the wrapping key itself.
        let plain = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        assert_ne!(hmac::sign(&plain, b"row").as_ref(), tag.as_slice());
    }

    #[test]
    fn key_files_are_made_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.key");
        WrapKey::generate_key_file(&path).unwrap();
        assert!(WrapKey::generate_key_file(&path).is_err(), "no overwrite");
        let a = WrapKey::from_key_file(&path).unwrap();
        let b = WrapKey::from_key_file(&path).unwrap();
        let secret = WebhookSecret::from_stored("whsec_x".to_owned());
        assert_eq!(
            b.open(&a.wrap(&secret, "app").unwrap(), "app").unwrap(),
            secret
        );
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(WrapKey::from_key_file(&path).is_err());
    }
}
