//! Opening the vault on a store: a new database gets its keys generated and stored; an existing
//! one has its keys unwrapped with the master key and its audit head remembered; an older
//! vault's database is upgraded in place.

use super::*;
use crate::crypto::{MasterKey, WrappedKey};

impl Vault {
    /// Opens the vault: unwraps the stored keys with the master key or, on a new database
    /// (no tokens, clients or audit events), generates and stores them. Remembers the stored
    /// audit head, which the chain must keep holding.
    ///
    /// # Errors
    ///
    /// [`CryptoError::WrongMasterKey`] when the master key is not this database's;
    /// [`VaultError::KeysMissing`] when the database has content but no keys;
    /// [`VaultError::NeedsUpgrade`] for a database an older vault made.
    pub async fn open(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Self, VaultError> {
        Self::open_in(store, provider, "development").await
    }

    /// [`Vault::open`], recording `mode` (`development` or `production`) with keys it makes,
    /// so that production can refuse a database whose keys were made for development.
    ///
    /// # Errors
    ///
    /// As [`Vault::open`].
    pub async fn open_in(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
        mode: &str,
    ) -> Result<Self, VaultError> {
        let (master, wrapped) = stored_keys(store.as_ref(), provider).await?;
        let keys = if wrapped.is_empty() {
            if !store.is_empty().await? {
                return Err(VaultError::KeysMissing);
            }
            if !provider.may_make_keys() {
                // An emptied database must not get keys under a key from typed-in shares.
                return Err(VaultError::NoKeysForShares);
            }
            let (ring, wrapped) = Keyring::generate(&master, now_micros())?;
            let mut draft = AuditDraft::new("system", Action::KeysCreate, Outcome::Granted);
            draft.detail = Some(format!(
                "data v1, fingerprint v1, audit v1, client v1; {MADE_IN}{mode} mode"
            ));
            match store.insert_keys(wrapped, ring.audit(), draft).await {
                Ok(()) => ring,
                // Another process initialised the database at the same moment: use its keys.
                Err(StoreError::Duplicate) => unwrap_keys(&master, &store.wrapped_keys().await?)?,
                Err(e) => return Err(e.into()),
            }
        } else {
            unwrap_keys(&master, &wrapped)?
        };
        let vault = Self::holding_head(store, master, keys).await?;
        vault.read_revocations().await?;
        Ok(vault)
    }

    /// Opens an existing vault for reading (a store opened read-only): never makes keys.
    ///
    /// # Errors
    ///
    /// As [`Vault::open`], and [`VaultError::NoKeys`] for a database without keys.
    pub async fn open_existing(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Self, VaultError> {
        let (master, wrapped) = stored_keys(store.as_ref(), provider).await?;
        if wrapped.is_empty() {
            return Err(if store.is_empty().await? {
                VaultError::NoKeys
            } else {
                VaultError::KeysMissing
            });
        }
        let keys = unwrap_keys(&master, &wrapped)?;
        Self::holding_head(store, master, keys).await
    }

    /// The vault on `store` with `keys`, once it has remembered the stored audit head (which
    /// the chain must keep holding from then on).
    async fn holding_head(
        store: Arc<dyn Store>,
        master: MasterKey,
        keys: Keyring,
    ) -> Result<Self, VaultError> {
        store.adopt_head().await?;
        Ok(Self {
            store,
            keys: Arc::new(arc_swap::ArcSwap::from_pointee(keys)),
            master: Arc::new(master),
            verified: Arc::default(),
            seals: Arc::default(),
            rewrapped: Arc::default(),
            reloaded_on_miss: Arc::default(),
            keys_behind: Arc::default(),
        })
    }

    /// Brings a database an older vault made up to date: adds the client key and MACs every
    /// client row that has none (trusting the rows as they are now: check them first).
    /// Returns how many rows were sealed, or `None` when there was nothing to do.
    ///
    /// # Errors
    ///
    /// A wrong master key, or storage failure.
    pub async fn upgrade(
        store: Arc<dyn Store>,
        provider: &dyn KeyProvider,
    ) -> Result<Option<usize>, VaultError> {
        let (master, mut wrapped) = stored_keys(store.as_ref(), provider).await?;
        if wrapped.is_empty() {
            return Err(VaultError::NoKeys);
        }
        if wrapped.iter().any(|w| w.purpose == KeyPurpose::Client) {
            Keyring::open(&master, &wrapped)?;
            return Ok(None);
        }
        let client_key = Keyring::generate_one(&master, KeyPurpose::Client, now_micros())?;
        wrapped.push(client_key.clone());
        let ring = Keyring::open(&master, &wrapped)?;
        store.adopt_head().await?;
        // Sealing trusts the rows: only those the verified audit chain vouches for are sealed,
        // so a row slipped into the database (with the client key deleted to force an upgrade)
        // is not.
        let mut history = ClientHistory::default();
        let verdict = walk_chain(
            store.as_ref(),
            ring.audit(),
            &Expectations::default(),
            &mut |e| history.observe(e),
        )
        .await?;
        if let Err(broken) = verdict {
            return Err(VaultError::UpgradeRefused(format!(
                "{broken}; run `vault audit verify` and restore the database from a backup"
            )));
        }
        if history.client_key_made() {
            return Err(VaultError::UpgradeRefused(
                "the audit log shows this database already had a client key, which is gone: someone deleted it; restore the database from a backup".to_owned(),
            ));
        }
        let mut macs = Vec::new();
        for mut client in store.clients().await? {
            if client.mac.is_none() {
                if let Some(wrong) = history.check(&client) {
                    return Err(VaultError::UpgradeRefused(format!(
                        "{wrong}; nothing was changed"
                    )));
                }
                client.seal(ring.client());
                if let Some(mac) = client.mac {
                    macs.push((client.id.clone(), mac));
                }
            }
        }
        let sealed = macs.len();
        let mut draft = AuditDraft::new("cli", Action::KeysCreate, Outcome::Granted);
        draft.detail = Some(format!("client v1 (upgrade); {sealed} client rows sealed"));
        store
            .add_key_and_seal_clients(client_key, macs, ring.audit(), draft)
            .await
            .map_err(audited)?;
        Ok(Some(sealed))
    }
}

/// How the `keys.create` event says which mode made the keys.
const MADE_IN: &str = "made in ";

impl Vault {
    /// The mode the database's keys were made in, as its first `keys.create` event says
    /// (`None` for a database made before modes were recorded).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn keys_made_in(&self) -> Result<Option<String>, VaultError> {
        let first = self.store.audit_events(0, 1).await?;
        Ok(first
            .into_iter()
            .find(|e| e.action == "keys.create")
            .and_then(|e| e.detail)
            .and_then(|d| {
                d.split_once(MADE_IN)
                    .and_then(|(_, rest)| rest.strip_suffix(" mode").map(str::to_owned))
            }))
    }
}

/// The master key, then the keys stored wrapped under it (none yet on a new database).
async fn stored_keys(
    store: &dyn Store,
    provider: &dyn KeyProvider,
) -> Result<(MasterKey, Vec<WrappedKey>), VaultError> {
    let master = provider.master_key()?;
    Ok((master, store.wrapped_keys().await?))
}

/// Unwraps the stored keys; a database without a client key was made by an older vault.
fn unwrap_keys(master: &MasterKey, wrapped: &[WrappedKey]) -> Result<Keyring, VaultError> {
    match Keyring::open(master, wrapped) {
        Err(CryptoError::MissingKey(KeyPurpose::Client)) => Err(VaultError::NeedsUpgrade),
        other => Ok(other?),
    }
}
