//! The audit trail as the vault's operations see it: refusals written as aggregated events,
//! verifying the chain (against the client rows and the checkpoints), writing checkpoints, and
//! paging events for `vault audit`.

use super::*;

impl Vault {
    /// Writes one interval's refusals: one `rate.limited` event per limited client and one
    /// `auth.fail` event per reason and source address, each with its count. Returns what could
    /// not be written (the caller keeps it for the next report rather than losing it).
    pub async fn record_refusals(&self, report: Report, interval: Duration) -> Report {
        let secs = interval.as_secs().max(1);
        let mut unwritten = Report::default();
        for (client, refusals) in report.clients {
            let counts: Vec<String> = refusals
                .counts
                .iter()
                .map(|(op, n)| format!("{}={n}", op.as_str()))
                .collect();
            let mut draft = AuditDraft::new(client.as_str(), Action::RateLimited, Outcome::Denied);
            draft.tenant = Some(refusals.tenant.clone());
            draft.detail = Some(format!(
                "refused by rate limits within {secs} s: {}",
                counts.join(" ")
            ));
            if let Err(e) = self.audit(draft).await {
                tracing::warn!(error = %e, "a rate-limit event could not be written; kept for the next report");
                unwritten.clients.insert(client, refusals);
            }
        }
        for ((reason, addr), count) in report.failures {
            let from = addr.map_or_else(|| "other addresses".to_owned(), |a| a.to_string());
            let mut draft = AuditDraft::new("anonymous", Action::AuthFail, Outcome::Denied);
            draft.detail = Some(format!(
                "{}: {count} requests from {from} within {secs} s",
                reason.as_str()
            ));
            if let Err(e) = self.audit(draft).await {
                tracing::warn!(error = %e, "an authentication-failure event could not be written; kept for the next report");
                unwritten.failures.insert((reason, addr), count);
            }
        }
        unwritten
    }

    /// Walks the whole audit chain, checking every link and that the chain holds each
    /// `expected` link (from `--expect` and checkpoint files).
    ///
    /// # Errors
    ///
    /// Storage failure (outer); the inner result is the verdict.
    pub async fn verify_audit(
        &self,
        expected: &Expectations,
    ) -> Result<Result<Verifier, BrokenLink>, VaultError> {
        let mut history = ClientHistory::default();
        walk_chain(
            self.store.as_ref(),
            self.keys().audit(),
            expected,
            &mut |e| history.observe(e),
        )
        .await
    }

    /// [`Vault::verify_audit`], then every client row against what the verified chain says
    /// about it (created as it is; not revoked if it is active).
    ///
    /// # Errors
    ///
    /// Storage failure (outer); the inner result is the verdict and the rows in disagreement.
    pub async fn verify_audit_and_clients(
        &self,
        expected: &Expectations,
    ) -> Result<Result<(Verifier, Vec<Disagreement>), BrokenLink>, VaultError> {
        let mut history = ClientHistory::default();
        let verdict = walk_chain(
            self.store.as_ref(),
            self.keys().audit(),
            expected,
            &mut |e| history.observe(e),
        )
        .await?;
        let Ok(verifier) = verdict else {
            return Ok(verdict.map(|v| (v, Vec::new())));
        };
        let clients = self.store.clients().await?;
        let disagreements = clients.iter().filter_map(|c| history.check(c)).collect();
        Ok(Ok((verifier, disagreements)))
    }

    /// The checkpoints in `path`, authenticated with this vault's audit key.
    ///
    /// # Errors
    ///
    /// An unreadable file, a malformed or forged line.
    pub fn read_checkpoints(&self, path: &Path) -> Result<Vec<Checkpoint>, VaultError> {
        Ok(checkpoint::read_file(path, self.keys().audit())?)
    }

    /// Refuses to go on when the newest checkpoint in `path` is not in the stored chain
    /// (events cut off the end, or an older database restored). Start-up calls this.
    ///
    /// # Errors
    ///
    /// [`VaultError::CheckpointMismatch`], or a bad checkpoint file.
    pub async fn check_latest_checkpoint(&self, path: &Path) -> Result<(), VaultError> {
        let Some(last) = self.read_checkpoints(path)?.pop() else {
            return Ok(());
        };
        match self.store.audit_mac_at(last.link.seq).await? {
            Some(mac) if last.link.has_mac(&mac) => Ok(()),
            _ => Err(VaultError::CheckpointMismatch(last.link.seq)),
        }
    }

    /// Appends a checkpoint of the head this vault last wrote or read to `path`, unless it is
    /// `previous` (nothing new). Returns the link checkpointed.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_checkpoint(
        &self,
        path: &Path,
        previous: Option<Link>,
    ) -> Result<Option<Link>, VaultError> {
        let Some(head) = self.store.known_head() else {
            return Ok(previous);
        };
        if previous == Some(head) {
            return Ok(previous);
        }
        Checkpoint {
            link: head,
            at: now_micros(),
        }
        .append_to(path, self.keys().audit())?;
        Ok(Some(head))
    }

    /// Up to `limit` audit events after sequence number `after`, oldest first.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn audit_events(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, VaultError> {
        Ok(self.store.audit_events(after, limit).await?)
    }
}
