//! Key lifecycle while the vault runs: a new data key version takes new writes at once, an
//! old one can be made decrypt-only, and every replica picks both up within a second without a
//! restart (DESIGN §4).
//!
//! The keyring is swapped whole ([`arc_swap`]): a request works with the keyring it loaded,
//! so a rotation never leaves one request half on each. Every key row is wrapped under the
//! master key with its purpose and version bound in, so a row written outside the vault does
//! not unwrap and is refused with the rest (the reload keeps the keyring it had).

use super::*;
use crate::crypto::{KeyState, MasterKey, WrappedKey};
use crate::store::{Refingerprinted, Resealed};

/// One stored key version, as `vault keys status` shows it.
///
/// `seals` counts what the database has been told (each vault adds its count every second).
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyStatus {
    /// `data`, `fingerprint`, `audit`, `client`.
    pub purpose: &'static str,
    /// Version within its purpose.
    pub version: u32,
    /// `active`, `decrypt_only` or `destroyed`.
    pub state: &'static str,
    /// Whether new writes use it (the newest active version of its purpose).
    pub in_use: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Tokens it seals (data) or keys (fingerprint); `None` for purposes that hold no rows.
    pub tokens: Option<u64>,
    /// Times it has sealed (data keys).
    pub seals: u64,
}

impl Vault {
    /// The keyring as it is now.
    pub(super) fn keys(&self) -> Arc<Keyring> {
        self.keys.load_full()
    }

    /// Whether the stored keys hold a newer data or fingerprint version than this vault could
    /// load at its last reload: then it makes no new tokens and is not ready.
    pub(super) fn keys_behind(&self) -> bool {
        self.keys_behind.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a request that met a key version this vault lacks may re-read the keys now (at
    /// most one such read per 100 ms, whoever asks).
    pub(super) fn may_reload_on_miss(&self) -> bool {
        take_slot(&self.reloaded_on_miss, now_micros(), 100_000)
    }

    /// The key figures `/metrics` shows.
    pub fn key_gauges(&self) -> KeyGauges {
        let keys = self.keys();
        KeyGauges {
            sealing_version: keys.sealing_version().unwrap_or(0),
            data_versions: keys.data_versions().len(),
            rewrapped: self.rewrapped.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Seals a PAN under `keys`' active data key and counts the seal against that key.
    pub(super) fn seal(
        &self,
        keys: &Keyring,
        pan: &Pan,
        token: &str,
        tenant: &str,
    ) -> Result<crate::crypto::Sealed, VaultError> {
        let sealed = keys.seal_pan(pan, token, tenant)?;
        *self.seals.lock().entry(sealed.key_version).or_default() += 1;
        Ok(sealed)
    }

    /// Adds the seals counted since the last flush to the stored counts (the watch calls this
    /// every second; counts that could not be written are kept for the next flush).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn flush_seals(&self) -> Result<(), VaultError> {
        let counted = std::mem::take(&mut *self.seals.lock());
        let mut unwritten = std::collections::BTreeMap::new();
        let mut failure = None;
        for (version, n) in counted {
            if failure.is_some() {
                unwritten.insert(version, n);
                continue;
            }
            if let Err(e) = self.store.add_seals(KeyPurpose::Data, version, n).await {
                unwritten.insert(version, n);
                failure = Some(e);
            }
        }
        if !unwritten.is_empty() {
            let mut seals = self.seals.lock();
            for (version, n) in unwritten {
                *seals.entry(version).or_default() += n;
            }
        }
        failure.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Rotates the data key when the version in use has sealed `max_seals` times or is older
    /// than `max_age`, audited as `keys.rotate` with the reason. Replicas doing this at once
    /// make one new version between them. Returns the new version, if one was made.
    ///
    /// # Errors
    ///
    /// Storage, RNG or audit failure.
    pub async fn rotate_when_due(
        &self,
        max_seals: u64,
        max_age: Duration,
    ) -> Result<Option<u32>, VaultError> {
        let wrapped = self.store.wrapped_keys().await?;
        let Some(current) = wrapped
            .iter()
            .filter(|w| w.purpose == KeyPurpose::Data && w.state == KeyState::Active)
            .max_by_key(|w| w.version)
        else {
            return Ok(None);
        };
        let Some(reason) = rotation_due(current, now_micros(), max_seals, max_age) else {
            return Ok(None);
        };
        // After every stored version (a destroyed one keeps its number), not after the one in
        // use: a row planted with the next number must not silently stop rotation.
        let next = wrapped
            .iter()
            .filter(|w| w.purpose == KeyPurpose::Data)
            .map(|w| w.version)
            .max()
            .unwrap_or(current.version)
            + 1;
        if self
            .add_version("system", KeyPurpose::Data, next, reason)
            .await?
        {
            tracing::info!(version = next, reason, "data key rotated automatically");
            Ok(Some(next))
        } else {
            // Another replica made it a moment ago; if not, the next tick says so again.
            tracing::warn!(
                version = next,
                reason,
                "a data key rotation is due and that version already exists; retried in a second"
            );
            Ok(None)
        }
    }

    /// Stores version `version` of `purpose`'s key, audited as `keys.rotate` (the detail says
    /// why, if not by hand); `false` when that version exists already (another process made it
    /// first). Reloads the keyring after.
    async fn add_version(
        &self,
        actor: &str,
        purpose: KeyPurpose,
        version: u32,
        reason: &str,
    ) -> Result<bool, VaultError> {
        // A new version is wrapped under this process's master key: refused if the stored keys
        // no longer open under it (another process rotated the master key), and stored only
        // while the audit key's row (the witness) still holds what was read here, so a master
        // rotation committed in between cannot be followed by a version under the old master.
        let stored = self.store.wrapped_keys().await?;
        if let Err(CryptoError::WrongMasterKey) = Keyring::open(&self.master, &stored) {
            return Err(VaultError::Crypto(CryptoError::WrongMasterKey));
        }
        let witness = stored
            .iter()
            .find(|w| w.purpose == KeyPurpose::Audit && w.state != KeyState::Destroyed)
            .cloned()
            .ok_or(VaultError::Crypto(CryptoError::MissingKey(
                KeyPurpose::Audit,
            )))?;
        let key = Keyring::generate_version(&self.master, purpose, version, now_micros())?;
        let mut draft = AuditDraft::new(actor, Action::KeysRotate, Outcome::Granted);
        draft.detail = Some(if reason.is_empty() {
            format!("{} v{version}", purpose.as_str())
        } else {
            format!("{} v{version} ({reason})", purpose.as_str())
        });
        match self
            .store
            .add_key_version(key, witness, self.keys().audit(), draft)
            .await
        {
            Ok(()) => {
                self.reload_keys().await?;
                Ok(true)
            }
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(audited(e)),
        }
    }

    /// Master-key rotation: wraps every stored key again under `new`, in one audited
    /// transaction, leaving the keys (and so every token) as they are. Returns how many keys
    /// were rewrapped. The caller then puts `new` where the provider finds it.
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] when the keys changed meanwhile (nothing was changed: run it
    /// again); storage failure.
    pub async fn rewrap_master(&self, actor: &str, new: &MasterKey) -> Result<usize, VaultError> {
        let from: Vec<WrappedKey> = self
            .store
            .wrapped_keys()
            .await?
            .into_iter()
            .filter(|w| w.state != KeyState::Destroyed)
            .collect();
        let to = Keyring::rewrap(&self.master, new, &from)?;
        // What will be stored opens under the new key, or nothing is stored.
        Keyring::open(new, &to)?;
        let n = to.len();
        let mut draft = AuditDraft::new(actor, Action::KeysRewrapMaster, Outcome::Granted);
        draft.detail = Some(format!(
            "{n} keys wrapped under the new master key ({})",
            new.location()
        ));
        if !self
            .store
            .rewrap_keys(from, to, self.keys().audit(), draft)
            .await
            .map_err(audited)?
        {
            return Err(VaultError::Invalid(
                "the stored keys changed while they were rewrapped (a rotation?): nothing was changed; run it again",
            ));
        }
        Ok(n)
    }

    /// Every stored key version with its state and how many tokens use it.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn key_status(&self) -> Result<Vec<KeyStatus>, VaultError> {
        let wrapped = self.store.wrapped_keys().await?;
        let used = self.store.tokens_per_key_version().await?;
        let count = |list: &[(u32, u64)], v: u32| {
            list.iter()
                .find(|(version, _)| *version == v)
                .map_or(0, |(_, n)| *n)
        };
        Ok(wrapped
            .iter()
            .map(|w| {
                // The rule the keyring seals by: the highest stored version, if it is active.
                let newest = wrapped
                    .iter()
                    .filter(|o| o.purpose == w.purpose)
                    .map(|o| o.version)
                    .max();
                KeyStatus {
                    purpose: w.purpose.as_str(),
                    version: w.version,
                    state: w.state.as_str(),
                    in_use: newest == Some(w.version) && w.state == KeyState::Active,
                    created_at: crate::clock::rfc3339(w.created_at),
                    seals: w.seals,
                    tokens: match w.purpose {
                        KeyPurpose::Data => Some(count(&used.data, w.version)),
                        KeyPurpose::Fingerprint => Some(count(&used.fingerprint, w.version)),
                        KeyPurpose::Audit | KeyPurpose::Client => None,
                    },
                }
            })
            .collect())
    }

    /// Makes the next version of `purpose`'s key, which seals every new write from now on (on
    /// every replica within a second), audited as `keys.rotate`. Returns the new version.
    ///
    /// Data and fingerprint keys rotate. After a fingerprint rotation tokenize also looks a card
    /// up under the older versions (and moves a token it finds there), and the rewrap job
    /// re-fingerprints the rest, so "same card, same token" holds throughout. The client key
    /// does not rotate yet (its rows would need sealing again in one go).
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] for another purpose; RNG, storage or audit failure.
    pub async fn rotate_key(&self, actor: &str, purpose: KeyPurpose) -> Result<u32, VaultError> {
        if purpose == KeyPurpose::Audit {
            return Err(VaultError::Invalid(
                "the audit key lives as long as its chain: rotate data, fingerprint or client",
            ));
        }
        // Two operators rotating at once both aim for the same next version; the loser sees
        // the primary key refuse it and takes the one after.
        for _ in 0..3 {
            let wrapped = self.store.wrapped_keys().await?;
            let next = wrapped
                .iter()
                .filter(|w| w.purpose == purpose)
                .map(|w| w.version)
                .max()
                .unwrap_or(0)
                + 1;
            if self.add_version(actor, purpose, next, "").await? {
                return Ok(next);
            }
        }
        Err(VaultError::Invalid(
            "another rotation of the same key was running: check `vault keys status` and try again",
        ))
    }

    /// Makes a key version decrypt-only: it opens what it sealed and seals nothing more,
    /// audited as `keys.retire`. The newest active version of a purpose cannot be retired
    /// (rotate first), so there is always one to seal with.
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] when the version is missing, not active, or the one in use;
    /// storage or audit failure.
    pub async fn retire_key(
        &self,
        actor: &str,
        purpose: KeyPurpose,
        version: u32,
    ) -> Result<(), VaultError> {
        let wrapped = self.store.wrapped_keys().await?;
        let Some(key) = wrapped
            .iter()
            .find(|w| w.purpose == purpose && w.version == version)
        else {
            return Err(VaultError::Invalid(
                "no such key version: `vault keys status` lists them",
            ));
        };
        if key.state != KeyState::Active {
            return Err(VaultError::Invalid(
                "that key version is not active (already decrypt-only, or destroyed)",
            ));
        }
        let newer_active = wrapped
            .iter()
            .any(|w| w.purpose == purpose && w.state == KeyState::Active && w.version > version);
        if !newer_active {
            return Err(VaultError::Invalid(
                "that is the key version new writes use: rotate first (`vault keys rotate`), then retire the old one",
            ));
        }
        let mut draft = AuditDraft::new(actor, Action::KeysRetire, Outcome::Granted);
        draft.detail = Some(format!("{} v{version}", purpose.as_str()));
        let moved = self
            .store
            .set_key_state(
                purpose,
                version,
                KeyState::Active,
                KeyState::DecryptOnly,
                self.keys().audit(),
                draft,
            )
            .await
            .map_err(audited)?;
        if !moved {
            return Err(VaultError::Invalid(
                "that key version changed meanwhile: check `vault keys status`",
            ));
        }
        self.reload_keys().await?;
        Ok(())
    }

    /// Re-reads the stored keys and, when a version or state changed (a rotation or retirement
    /// here, on another replica or by the command line), swaps in the keyring they make.
    /// Returns whether it changed.
    ///
    /// # Errors
    ///
    /// Storage failure, or stored keys that no longer open under the master key (the keyring in
    /// use is kept).
    pub async fn reload_keys(&self) -> Result<bool, VaultError> {
        let wrapped = self.store.wrapped_keys().await?;
        let current = self.keys();
        if same_keys(&current, &wrapped) {
            self.keys_behind
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        let ring = match Keyring::open(&self.master, &wrapped) {
            Ok(ring) => ring,
            Err(e) => {
                // Kept in use, the old keyring still opens every token; but a newer data or
                // fingerprint version it lacks would go on into new tokens (a second token for
                // a card another replica tokenizes under the newer fingerprint, seals under a
                // version about to be retired), so none are made until a reload succeeds.
                let newest = |purpose| {
                    wrapped
                        .iter()
                        .filter(|w| w.purpose == purpose)
                        .map(|w| w.version)
                        .max()
                };
                let behind = newest(KeyPurpose::Fingerprint)
                    > Some(current.fingerprint().version())
                    || newest(KeyPurpose::Data) > current.sealing_version();
                self.keys_behind
                    .store(behind, std::sync::atomic::Ordering::Relaxed);
                return Err(e.into());
            }
        };
        self.keys_behind
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            sealing = ring.sealing_version(),
            "data keys changed; new writes use the newest active version"
        );
        self.keys.store(Arc::new(ring));
        Ok(true)
    }
}

/// What `/metrics` shows of the keys.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct KeyGauges {
    /// The data key version new writes use.
    pub sealing_version: u32,
    /// Data key versions held (active and decrypt-only): more than one while a rewrap is due.
    pub data_versions: usize,
    /// Tokens this process has rewrapped since it started.
    pub rewrapped: u64,
}

/// What a rewrap pass did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, serde::Serialize)]
pub struct Rewrapped {
    /// Tokens resealed under the active data key.
    pub resealed: u64,
    /// Tokens re-fingerprinted under the newest fingerprint key.
    pub refingerprinted: u64,
    /// Client and collect session rows MAC'd again under the newest client key.
    pub remaced: u64,
    /// Tokens whose ciphertext did not open (tampered, or their key destroyed): left as they
    /// are, and logged.
    pub failed: u64,
}

impl Vault {
    /// Reseals every token under an older data key version (active or decrypt-only, not
    /// destroyed) under the version new writes use, `batch` at a time with `pause` between
    /// batches, each batch one transaction with one `keys.rewrap` event. Online and
    /// resumable: a crash loses at most the batch in flight, which the next pass redoes (it
    /// picks up whatever is still under an old version); replicas racing on a row change it
    /// once.
    ///
    /// # Errors
    ///
    /// Storage or audit failure (what was committed stays).
    pub async fn rewrap(
        &self,
        actor: &str,
        batch: u32,
        pause: Duration,
    ) -> Result<Rewrapped, VaultError> {
        let mut done = Rewrapped::default();
        let keys = self.keys();
        let Some(target) = keys.sealing_version() else {
            return Ok(done);
        };
        for (version, _) in keys.data_versions() {
            if version == target {
                continue;
            }
            let mut after = None;
            loop {
                // Each batch with the keyring as it is now: a pass takes minutes, and the key it
                // moves rows into may have been rotated away (or retired as suspect) meanwhile.
                // Then this pass stops; the next one moves rows to the new key.
                let keys = self.keys();
                if keys.sealing_version() != Some(target) {
                    return Ok(done);
                }
                let rows = self
                    .store
                    .tokens_sealed_under(version, after.clone(), batch)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.token.clone());
                let full = rows.len() == usize::try_from(batch).unwrap_or(usize::MAX);
                let mut resealed = Vec::with_capacity(rows.len());
                for row in &rows {
                    match keys.open_pan(&row.sealed, row.token.as_str(), &row.tenant) {
                        Ok(pan) => resealed.push(Resealed {
                            token: row.token.clone(),
                            from_version: version,
                            sealed: self.seal(&keys, &pan, row.token.as_str(), &row.tenant)?,
                        }),
                        Err(_) => done.failed += 1,
                    }
                }
                if !resealed.is_empty() {
                    let n = resealed.len();
                    let mut draft = AuditDraft::new(actor, Action::KeysRewrap, Outcome::Granted);
                    draft.detail = Some(format!("data v{version} to v{target}: {n} tokens"));
                    let moved = self
                        .store
                        .reseal_tokens(resealed, keys.audit(), draft)
                        .await
                        .map_err(audited)?;
                    done.resealed += moved;
                    self.rewrapped
                        .fetch_add(moved, std::sync::atomic::Ordering::Relaxed);
                }
                if !full {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
        self.refingerprint(actor, batch, pause, &mut done).await?;
        self.remac(actor, batch, &mut done).await?;
        if done.failed > 0 {
            tracing::error!(
                failed = done.failed,
                "rewrap: some tokens did not open (tampered, or sealed under a destroyed key); they were left as they are"
            );
        }
        Ok(done)
    }

    /// The re-fingerprint pass: every token still fingerprinted under an older fingerprint key
    /// version moves to its fingerprint under the newest, in batches like the reseal pass (its
    /// PAN is opened for it, and never leaves this function).
    async fn refingerprint(
        &self,
        actor: &str,
        batch: u32,
        pause: Duration,
        done: &mut Rewrapped,
    ) -> Result<(), VaultError> {
        let start = self.keys();
        let target = start.fingerprint().version();
        let versions: Vec<u32> = start
            .earlier_fingerprints()
            .iter()
            .map(|k| k.version())
            .collect();
        for version in versions {
            let mut after = None;
            loop {
                let keys = self.keys();
                if keys.fingerprint().version() != target {
                    return Ok(());
                }
                let rows = self
                    .store
                    .tokens_fingerprinted_under(version, after.clone(), batch)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.token.clone());
                let full = rows.len() == usize::try_from(batch).unwrap_or(usize::MAX);
                let mut moved = Vec::with_capacity(rows.len());
                for row in &rows {
                    match keys.open_pan(&row.sealed, row.token.as_str(), &row.tenant) {
                        Ok(pan) => moved.push(Refingerprinted {
                            token: row.token.clone(),
                            tenant: row.tenant.clone(),
                            from_version: version,
                            fingerprint: keys.fingerprint().fingerprint(&row.tenant, &pan),
                            unmatched: keys.fingerprint().unmatched(row.token.as_str()),
                            version: target,
                        }),
                        Err(_) => done.failed += 1,
                    }
                }
                if !moved.is_empty() {
                    let n = moved.len();
                    let mut draft = AuditDraft::new(actor, Action::KeysRewrap, Outcome::Granted);
                    draft.detail = Some(format!("fingerprint v{version} to v{target}: {n} tokens"));
                    done.refingerprinted += self
                        .store
                        .refingerprint_tokens(moved, keys.audit(), draft)
                        .await
                        .map_err(audited)?;
                }
                if !full {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    /// After a client key rotation: MACs every client row and collect session that verifies
    /// only under an older client key again under the newest (a row that verifies under none
    /// was written outside the vault and is left as it is, for `clients list` to show).
    async fn remac(&self, actor: &str, batch: u32, done: &mut Rewrapped) -> Result<(), VaultError> {
        let keys = self.keys();
        let key = keys.client();
        if key.versions().len() < 2 {
            return Ok(());
        }
        let newest = key.versions().last().copied().unwrap_or(0);
        let clients: Vec<_> = self
            .store
            .clients()
            .await?
            .into_iter()
            .filter_map(|mut c| {
                let old = c.mac?;
                let encoded = c.encode();
                (key.verify(&encoded, &old) && !key.verify_newest(&encoded, &old)).then(|| {
                    c.seal(key);
                    c.mac.map(|new| (c.id.clone(), old, new))
                })?
            })
            .collect();
        let mut sessions = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .collect_sessions_after(after.clone(), batch)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for mut session in page {
                let encoded = session.encode();
                let old = session.mac;
                if key.verify_session(&encoded, &old) && !key.verify_session_newest(&encoded, &old)
                {
                    session.seal(key);
                    sessions.push((session.id.clone(), old, session.mac));
                }
            }
        }
        if clients.is_empty() && sessions.is_empty() {
            return Ok(());
        }
        let mut draft = AuditDraft::new(actor, Action::KeysRewrap, Outcome::Granted);
        draft.detail = Some(format!(
            "client rows to v{newest}: {} clients, {} collect sessions",
            clients.len(),
            sessions.len()
        ));
        done.remaced += self
            .store
            .remac_rows(clients, sessions, keys.audit(), draft)
            .await
            .map_err(audited)?;
        Ok(())
    }

    /// Whether every authentic client row and collect session is MAC'd under the newest client
    /// key (so an older version may be destroyed).
    async fn rows_on_newest_client_key(&self) -> Result<bool, VaultError> {
        let keys = self.keys();
        let key = keys.client();
        for c in self.store.clients().await? {
            if let Some(mac) = c.mac {
                let encoded = c.encode();
                if key.verify(&encoded, &mac) && !key.verify_newest(&encoded, &mac) {
                    return Ok(false);
                }
            }
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .collect_sessions_after(after.clone(), 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for s in page {
                let encoded = s.encode();
                if key.verify_session(&encoded, &s.mac)
                    && !key.verify_session_newest(&encoded, &s.mac)
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Destroys a decrypt-only data key version, audited as `keys.destroy`: its wrapped key is
    /// wiped from the database, so what it sealed never opens again. Refused while any token
    /// is still sealed under it (rewrap first), unless `shred`, which destroys those tokens'
    /// card numbers with it (crypto-shredding).
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] when the version is not decrypt-only or still seals tokens;
    /// storage or audit failure.
    pub async fn destroy_key(
        &self,
        actor: &str,
        purpose: KeyPurpose,
        version: u32,
        shred: bool,
    ) -> Result<(), VaultError> {
        match purpose {
            KeyPurpose::Data => {}
            KeyPurpose::Fingerprint if !shred => {}
            KeyPurpose::Fingerprint => {
                return Err(VaultError::Invalid(
                    "a fingerprint key seals no card: --crypto-shred is for data keys; run `vault keys rewrap` until no token is fingerprinted under the version",
                ));
            }
            KeyPurpose::Client if !shred => {
                if !self.rows_on_newest_client_key().await? {
                    return Err(VaultError::Invalid(
                        "client or collect session rows are still MAC'd under an older client key: run `vault keys rewrap` first",
                    ));
                }
            }
            KeyPurpose::Client | KeyPurpose::Audit => {
                return Err(VaultError::Invalid(
                    "the audit key is never destroyed, and --crypto-shred is for data keys only",
                ));
            }
        }
        let wrapped = self.store.wrapped_keys().await?;
        let state = wrapped
            .iter()
            .find(|w| w.purpose == purpose && w.version == version)
            .map(|w| w.state);
        if state != Some(KeyState::DecryptOnly) {
            return Err(VaultError::Invalid(
                "only a decrypt-only key version can be destroyed: retire it first (`vault keys retire`)",
            ));
        }
        let mut draft = AuditDraft::new(actor, Action::KeysDestroy, Outcome::Granted);
        draft.detail = Some(format!(
            "{} v{version}{}",
            purpose.as_str(),
            if shred { " (crypto-shred)" } else { "" }
        ));
        let destroyed = self
            .store
            .destroy_key(purpose, version, shred, self.keys().audit(), draft)
            .await
            .map_err(audited)?;
        if !destroyed {
            return Err(VaultError::Invalid(if purpose == KeyPurpose::Fingerprint {
                "tokens are still fingerprinted under that version: run `vault keys rewrap` first"
            } else {
                "tokens are still sealed under that version: run `vault keys rewrap` first, or destroy them with it (--crypto-shred)"
            }));
        }
        self.reload_keys().await?;
        Ok(())
    }
}

/// Takes the slot `last` guards if `every` microseconds have passed since it was last taken:
/// one caller per interval, however many ask at once.
fn take_slot(last: &std::sync::atomic::AtomicI64, now: i64, every: i64) -> bool {
    use std::sync::atomic::Ordering;
    let previous = last.load(Ordering::Relaxed);
    now.saturating_sub(previous) >= every
        && last
            .compare_exchange(previous, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
}

/// Why the data key in use must rotate now, if it must: it has sealed `max_seals` times
/// (random 96-bit nonces stay safe for about 2^32 messages per key; the limit is set far
/// below), or it is older than `max_age` (its cryptoperiod).
pub fn rotation_due(
    key: &WrappedKey,
    now: i64,
    max_seals: u64,
    max_age: Duration,
) -> Option<&'static str> {
    let age = Duration::from_micros(u64::try_from(now.saturating_sub(key.created_at)).unwrap_or(0));
    if key.seals >= max_seals {
        Some("seal limit")
    } else if age >= max_age {
        Some("cryptoperiod")
    } else {
        None
    }
}

/// Whether `ring` already holds exactly the data key versions and states of `wrapped` (the
/// other purposes do not change while the vault runs yet).
fn same_keys(ring: &Keyring, wrapped: &[WrappedKey]) -> bool {
    let stored: Vec<(u32, KeyState)> = wrapped
        .iter()
        .filter(|w| w.purpose == KeyPurpose::Data && w.state != KeyState::Destroyed)
        .map(|w| (w.version, w.state))
        .collect();
    let fingerprints: Vec<u32> = wrapped
        .iter()
        .filter(|w| w.purpose == KeyPurpose::Fingerprint && w.state != KeyState::Destroyed)
        .map(|w| w.version)
        .collect();
    let clients: Vec<u32> = wrapped
        .iter()
        .filter(|w| w.purpose == KeyPurpose::Client && w.state != KeyState::Destroyed)
        .map(|w| w.version)
        .collect();
    ring.data_versions() == stored
        && ring.fingerprint_versions() == fingerprints
        && ring.client().versions() == clients
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use zeroize::Zeroizing;

    #[test]
    fn key_reads_on_a_missing_version_are_one_per_interval() {
        // A flood of detokenizes of a token whose key was destroyed: one re-read per 100 ms.
        let last = std::sync::atomic::AtomicI64::new(0);
        let now = 1_000_000_000;
        assert!(take_slot(&last, now, 100_000));
        assert!((0..1000).all(|i| !take_slot(&last, now + i * 99, 100_000)));
        assert!(take_slot(&last, now + 100_000, 100_000));
    }

    #[test]
    fn a_key_rotates_at_its_seal_limit_or_its_cryptoperiod() {
        let master = MasterKey::from_bytes(&Zeroizing::new([3; 32]));
        let day = Duration::from_secs(86_400);
        let mut key = Keyring::generate_version(&master, KeyPurpose::Data, 1, 0).unwrap();
        key.seals = 99;
        let now = 10 * 86_400 * 1_000_000;
        assert_eq!(rotation_due(&key, now, 100, 365 * day), None);
        key.seals = 100;
        assert_eq!(rotation_due(&key, now, 100, 365 * day), Some("seal limit"));
        key.seals = 0;
        assert_eq!(rotation_due(&key, now, 100, 10 * day), Some("cryptoperiod"));
        assert_eq!(rotation_due(&key, now, 100, 11 * day), None);
    }
}
