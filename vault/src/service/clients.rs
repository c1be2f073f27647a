//! The vault's clients: creating and revoking them, authenticating a presented key, and the
//! checks that make a client row trustworthy (its MAC, and the revocations read from the audit
//! log, so a row restored from before its revocation stays refused).

use super::*;

/// Client rows whose MAC this process has checked, as they were: a row read again field for
/// field the same needs no second HMAC (a row changed in any field is checked afresh, so the
/// cache never vouches for a row the vault did not write). Bounded: cleared when full.
///
/// Also the clients known to be revoked (from the audit log at start-up, and every revoked row
/// seen since): a MAC proves the vault wrote a row once, not that it is the latest version, so
/// a row restored from before its revocation would verify. Those ids stay refused.
#[derive(Debug, Default)]
pub(super) struct VerifiedClients {
    rows: parking_lot::RwLock<std::collections::HashMap<ClientId, ClientRecord>>,
    revoked: parking_lot::RwLock<std::collections::HashSet<ClientId>>,
    /// The last `client.revoke` event read from the audit log.
    revocations_read: std::sync::atomic::AtomicU64,
}

/// Most rows [`VerifiedClients`] keeps.
const VERIFIED_CLIENTS: usize = 10_000;

impl VerifiedClients {
    /// Remembers revocations (ids that do not parse are ignored).
    fn revoked<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut revoked = self.revoked.write();
        revoked.extend(ids.into_iter().filter_map(ClientId::parse));
    }

    /// Whether client `id` is known to be revoked.
    pub(super) fn is_revoked(&self, id: &ClientId) -> bool {
        self.revoked.read().contains(id)
    }

    /// Whether an authentic row that says "active" belongs to a client known to be revoked.
    fn revocation_undone(&self, client: &ClientRecord) -> bool {
        if client.revoked_at.is_some() {
            self.revoked(std::iter::once(client.id.as_str()));
            return false;
        }
        self.revoked.read().contains(&client.id)
    }

    fn is_authentic(&self, keys: &Keyring, client: &ClientRecord) -> bool {
        if self
            .rows
            .read()
            .get(&client.id)
            .is_some_and(|known| known.same_row(client))
        {
            return true;
        }
        if !client.is_authentic(keys.client()) {
            return false;
        }
        let mut rows = self.rows.write();
        if rows.len() >= VERIFIED_CLIENTS {
            rows.clear();
        }
        rows.insert(client.id.clone(), client.clone());
        true
    }
}

impl Vault {
    /// Reads the revocations the audit log gained since the last call, so that a revoked
    /// client's row restored from before its revocation is refused (start-up reads them all; the
    /// server then every second, which also covers revocations by the command line or other
    /// replicas).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn read_revocations(&self) -> Result<(), VaultError> {
        use std::sync::atomic::Ordering;
        let after = self.verified.revocations_read.load(Ordering::Acquire);
        let new = self.store.revocations_after(after).await?;
        if let Some((last, _)) = new.last() {
            self.verified
                .revocations_read
                .fetch_max(*last, Ordering::AcqRel);
        }
        self.verified.revoked(new.iter().map(|(_, id)| id.as_str()));
        Ok(())
    }

    /// Looks up the client holding `key` and checks its row's MAC. Writes nothing: the caller
    /// decides what a failure costs (a revoked client's use is audited one by one with
    /// [`Vault::record_revoked_use`]; anonymous failures are tallied, [`Vault::record_refusals`]).
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn authenticate(&self, key: Option<&ApiKey>) -> Result<AuthOutcome, VaultError> {
        let Some(key) = key else {
            return Ok(AuthOutcome::Missing);
        };
        let Some(client) = self.store.client_by_key_hash(key.hash()).await? else {
            return Ok(AuthOutcome::Unknown);
        };
        if !self.verified.is_authentic(&self.keys(), &client) {
            tracing::error!(
                client = %client.id,
                "a client row failed its integrity check (written or edited outside the vault); its key is refused"
            );
            return Ok(AuthOutcome::Tampered(client));
        }
        if self.verified.revocation_undone(&client) {
            tracing::error!(
                client = %client.id,
                "a revoked client's row says active (restored from before the revocation); its key is refused"
            );
            return Ok(AuthOutcome::Tampered(client));
        }
        Ok(if client.revoked_at.is_some() {
            AuthOutcome::Revoked(client)
        } else {
            AuthOutcome::Client(client)
        })
    }

    /// Audits a production vault's refusal of a client that may read card numbers but is bound
    /// to no client certificate (made by a command run with a development configuration).
    ///
    /// # Errors
    ///
    /// The audit write failed.
    pub async fn record_unbound_reader(
        &self,
        client: &ClientRecord,
        request_id: Option<String>,
    ) -> Result<(), VaultError> {
        let detail = "production mode: a tokens:detokenize client bound to no client certificate";
        self.record_refused_key(client, request_id, detail.to_owned())
            .await
    }

    /// Audits one use of a revoked client's key (each is worth an event: the key leaked or a
    /// deployment still holds it).
    ///
    /// # Errors
    ///
    /// The audit write failed.
    pub async fn record_revoked_use(
        &self,
        client: &ClientRecord,
        request_id: Option<String>,
    ) -> Result<(), VaultError> {
        self.record_refused_key(client, request_id, "revoked API key".to_owned())
            .await
    }

    /// Audits a use of a certificate-bound client's key over a connection without its
    /// certificate (`presented`: the one it gave instead, if any): the key was copied off the
    /// host it belongs to, or the TLS setup is wrong.
    ///
    /// # Errors
    ///
    /// The audit write failed.
    pub async fn record_unbound_use(
        &self,
        client: &ClientRecord,
        presented: Option<&[u8; 32]>,
        request_id: Option<String>,
    ) -> Result<(), VaultError> {
        // Which certificate came instead is evidence: none (the key alone was copied), or
        // another the CA issued (a key moved to another host).
        let detail = match presented {
            None => "API key without its bound client certificate: none presented".to_owned(),
            Some(h) => format!(
                "API key without its bound client certificate: presented cert_sha256={}",
                hex::encode(h)
            ),
        };
        self.record_refused_key(client, request_id, detail).await
    }

    /// One `auth.fail` event, denied, for a real client's refused key.
    async fn record_refused_key(
        &self,
        client: &ClientRecord,
        request_id: Option<String>,
        detail: String,
    ) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new(client.id.as_str(), Action::AuthFail, Outcome::Denied);
        draft.tenant = Some(client.tenant.clone());
        draft.request_id = request_id;
        draft.detail = Some(detail);
        self.audit(draft).await
    }

    /// Creates an API client; the key is returned once and stored only as a hash.
    ///
    /// # Errors
    ///
    /// [`VaultError::Invalid`] for a bad name or tenant.
    pub async fn create_client(
        &self,
        name: &str,
        tenant: &str,
        scopes: Scopes,
    ) -> Result<(ClientRecord, ApiKey), VaultError> {
        self.create_bound_client(name, tenant, scopes, None).await
    }

    /// As [`Vault::create_client`], the key bound to the TLS client certificate whose DER has
    /// SHA-256 `cert_sha256` when given: its requests must then come over mutual TLS with that
    /// certificate.
    ///
    /// # Errors
    ///
    /// As [`Vault::create_client`].
    pub async fn create_bound_client(
        &self,
        name: &str,
        tenant: &str,
        scopes: Scopes,
        cert_sha256: Option<[u8; 32]>,
    ) -> Result<(ClientRecord, ApiKey), VaultError> {
        validate_label(name).map_err(VaultError::Invalid)?;
        validate_label(tenant).map_err(VaultError::Invalid)?;
        let key =
            ApiKey::generate(crate::token::API_KEY_PREFIX).map_err(|_| CryptoError::Random)?;
        let mut client = ClientRecord {
            id: ClientId::generate().map_err(CryptoError::from)?,
            name: name.to_owned(),
            tenant: tenant.to_owned(),
            scopes,
            key_hash: key.hash(),
            created_at: now_micros(),
            revoked_at: None,
            mac: None,
            cert_sha256,
        };
        client.seal(self.keys().client());
        let mut draft = AuditDraft::new("cli", Action::ClientCreate, Outcome::Granted);
        draft.tenant = Some(client.tenant.clone());
        let binding = cert_sha256
            .map(|h| format!(" cert_sha256={}", hex::encode(h)))
            .unwrap_or_default();
        draft.detail = Some(format!(
            "{} name={} scopes={}{binding}",
            client.id, client.name, client.scopes
        ));
        self.store
            .insert_client(client.clone(), self.keys().audit(), draft)
            .await
            .map_err(audited)?;
        Ok((client, key))
    }

    /// Whether a client row's MAC holds (for listing; authentication checks it itself).
    pub fn is_authentic(&self, client: &ClientRecord) -> bool {
        client.is_authentic(self.keys().client())
    }

    /// Every client.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>, VaultError> {
        Ok(self.store.clients().await?)
    }

    /// What `mode = "production"` refuses among the clients: each active client that may read
    /// card numbers (`tokens:detokenize`) but is bound to no client certificate, and, when such
    /// clients exist, a vault that asks no client for a certificate (`asks_certificates`). One
    /// line per problem.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn production_client_problems(
        &self,
        asks_certificates: bool,
    ) -> Result<Vec<String>, VaultError> {
        let readers: Vec<ClientRecord> = self
            .clients()
            .await?
            .into_iter()
            .filter(|c| c.revoked_at.is_none() && c.scopes.contains(Scope::TokensDetokenize))
            .collect();
        let mut problems: Vec<String> = readers
            .iter()
            .filter(|c| c.cert_sha256.is_none())
            .map(|c| {
                format!(
                    "client {} ({}) holds tokens:detokenize but is bound to no client certificate: production mode wants whoever reads card numbers proven by mutual TLS; make a bound client (`vault clients create ... --cert-file proxy-client.crt`), move the proxy to its key, then `vault clients revoke {}`",
                    c.id, c.name, c.id
                )
            })
            .collect();
        if !readers.is_empty() && !asks_certificates {
            problems.push(
                "server.tls.client_ca_file: not set, so no client can present its certificate: production mode needs mutual TLS for the clients holding tokens:detokenize".to_owned(),
            );
        }
        Ok(problems)
    }

    /// Revokes a client; its key stops working at once. The row must verify: a row edited
    /// outside the vault is not acted on blindly.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`] when there is no such unrevoked client;
    /// [`VaultError::ClientTampered`] when its row fails its MAC.
    pub async fn revoke_client(&self, id: &ClientId) -> Result<(), VaultError> {
        let mut draft = AuditDraft::new("cli", Action::ClientRevoke, Outcome::Granted);
        draft.detail = Some(id.to_string());
        let current = self.store.client_by_id(id).await?;
        let (old_mac, revoked_at) = match &current {
            Some(c) if !c.is_authentic(self.keys().client()) => {
                draft.outcome = Outcome::Error;
                draft.detail = Some(format!("{id}: client row failed its integrity check"));
                self.audit(draft).await?;
                return Err(VaultError::ClientTampered(id.clone()));
            }
            Some(c) if c.revoked_at.is_none() => (c.mac, now_micros()),
            _ => (None, 0),
        };
        let (Some(current), Some(old_mac)) = (current, old_mac) else {
            draft.outcome = Outcome::NotFound;
            self.audit(draft).await?;
            return Err(VaultError::NotFound);
        };
        let mut revoked = current;
        revoked.revoked_at = Some(revoked_at);
        revoked.seal(self.keys().client());
        let Some(new_mac) = revoked.mac else {
            return Err(VaultError::Invalid("client could not be sealed"));
        };
        let revocation = ClientRevocation {
            id: id.clone(),
            revoked_at,
            old_mac,
            new_mac,
        };
        let done = self
            .store
            .revoke_client(revocation, self.keys().audit(), draft)
            .await
            .map_err(audited)?;
        if done {
            self.verified.revoked(std::iter::once(id.as_str()));
            Ok(())
        } else {
            Err(VaultError::NotFound)
        }
    }
}
