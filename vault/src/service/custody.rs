//! Dual control (PCI DSS 3.6.1.2 and 3.7; test case 14): operations that cannot be undone, such
//! as destroying a key version, need two distinct vault operators. One proposes, another
//! approves within a time window, and only then does it run.
//!
//! Operators, proposals and approvals are all events in the audit chain, and are read back only
//! from a chain that verifies from its first event: a database writer without the audit key can
//! neither add an operator nor forge a proposal or an approval, and deleting one breaks the
//! chain. Operators hold a credential (`opk_…`, 256 random bits) shown once; the chain keeps its
//! SHA-256. While fewer than two operators exist, anyone who can run the command line adds one
//! (that is how a deployment starts); from then on adding an operator is itself a proposal.
//! Every refusal (unknown credential, the proposer approving, an expired or approved proposal)
//! is audited too.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::*;

/// A vault operator's credential (`VAULT_OPERATOR_KEY`).
pub type OperatorKey = ApiKey;

/// The prefix of operator credentials.
pub const OPERATOR_KEY_PREFIX: &str = "opk_";

/// An operator as the chain knows them.
#[derive(Clone, Debug, Serialize)]
pub struct Operator {
    /// `op_…`.
    pub id: String,
    /// A person's name.
    pub name: String,
    /// Unix microseconds.
    pub added_at: i64,
    /// Whether they were revoked.
    pub revoked: bool,
}

/// What a proposal does once approved.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum Operation {
    /// `vault keys destroy`.
    DestroyKey {
        /// The key's purpose (`data`).
        purpose: String,
        /// The version.
        version: u32,
        /// Destroy the rows it still seals too.
        crypto_shred: bool,
    },
    /// `vault keys rewrap-master`: every stored key wrapped under a new master key, made by
    /// the approving run (a key file, Shamir shares, or a key in the HSM).
    RotateMaster {
        /// Shamir: the new split.
        shares: Option<u8>,
        /// Shamir: the new threshold.
        threshold: Option<u8>,
        /// HSM: the label of the new key.
        new_key_label: Option<String>,
    },
    /// `vault operators revoke`: always a proposal, and never one that leaves fewer than two
    /// active operators.
    RevokeOperator {
        /// The operator revoked.
        operator: String,
    },
    /// `vault operators add` once two operators exist.
    AddOperator {
        /// The new operator's id.
        operator: String,
        /// Their name.
        name: String,
        /// SHA-256 of their credential, hex.
        credential_sha256: String,
    },
}

impl Operation {
    /// For people: what it does.
    pub fn describe(&self) -> String {
        match self {
            Self::DestroyKey {
                purpose,
                version,
                crypto_shred,
            } => format!(
                "destroy {purpose} key v{version}{}",
                if *crypto_shred {
                    " with the tokens it seals (crypto-shred)"
                } else {
                    ""
                }
            ),
            Self::AddOperator { operator, name, .. } => {
                format!("add operator {operator} ({name})")
            }
            Self::RevokeOperator { operator } => format!("revoke operator {operator}"),
            Self::RotateMaster {
                shares,
                threshold,
                new_key_label,
            } => match (shares, threshold, new_key_label) {
                (Some(n), Some(k), _) => {
                    format!("rotate the master key to new Shamir shares ({k} of {n})")
                }
                (_, _, Some(label)) => format!("rotate the master key to HSM key {label:?}"),
                _ => "rotate the master key to a new key file".to_owned(),
            },
        }
    }
}

/// A proposal as its `dual.propose` event recorded it.
// No `deny_unknown_fields`: serde does not support it beside `flatten`. The event is read back
// only from a verified chain, so its fields are the vault's own.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal {
    /// `prp_…`.
    pub id: String,
    /// What it does.
    #[serde(flatten)]
    pub operation: Operation,
    /// The proposing operator's id.
    pub proposed_by: String,
    /// Unix microseconds.
    pub proposed_at: i64,
    /// Approvals after this (Unix microseconds) are refused.
    pub expires_at: i64,
    /// Whether it was approved (and so ran); not stored in the proposal event.
    #[serde(skip_deserializing, default)]
    pub approved: bool,
}

/// The operator and proposal events of a verified chain.
#[derive(Debug, Default)]
struct Custody {
    operators: HashMap<String, Operator>,
    /// Credential hash → operator id.
    credentials: HashMap<[u8; 32], String>,
    proposals: HashMap<String, Proposal>,
    approved: HashSet<String>,
}

/// What `operator.add` events carry.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Added {
    operator: String,
    name: String,
    credential_sha256: String,
}

impl Custody {
    fn observe(&mut self, event: &AuditEvent) {
        if event.outcome != "granted" {
            return;
        }
        let detail = event.detail.as_deref().unwrap_or_default();
        match event.action.as_str() {
            "operator.add" => {
                if let Ok(added) = serde_json::from_str::<Added>(detail) {
                    self.add(added, event.occurred_at);
                }
            }
            "operator.revoke" => {
                if let Some(op) = self.operators.get_mut(detail) {
                    op.revoked = true;
                }
            }
            "dual.propose" => {
                if let Ok(proposal) = serde_json::from_str::<Proposal>(detail) {
                    self.proposals.insert(proposal.id.clone(), proposal);
                }
            }
            "dual.approve" => {
                if let Some(id) = &event.request_id {
                    self.approved.insert(id.clone());
                    if let Some(Proposal {
                        operation: Operation::RevokeOperator { operator },
                        ..
                    }) = self.proposals.get(id)
                        && let Some(op) = self.operators.get_mut(operator)
                    {
                        op.revoked = true;
                    }
                    // An approved AddOperator proposal adds its operator.
                    if let Some(Proposal {
                        operation:
                            Operation::AddOperator {
                                operator,
                                name,
                                credential_sha256,
                            },
                        ..
                    }) = self.proposals.get(id).cloned()
                    {
                        self.add(
                            Added {
                                operator,
                                name,
                                credential_sha256,
                            },
                            event.occurred_at,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn add(&mut self, added: Added, at: i64) {
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(&added.credential_sha256, &mut hash).is_err() {
            return;
        }
        self.credentials.insert(hash, added.operator.clone());
        self.operators.insert(
            added.operator.clone(),
            Operator {
                id: added.operator,
                name: added.name,
                added_at: at,
                revoked: false,
            },
        );
    }

    fn active(&self) -> usize {
        self.operators.values().filter(|o| !o.revoked).count()
    }

    /// Operators ever added, revoked ones included: once two were, nobody is added without a
    /// proposal again (else one operator could revoke the other and add a friend).
    fn ever_added(&self) -> usize {
        self.operators.len()
    }

    /// The active operator holding `key`.
    fn who(&self, key: &OperatorKey) -> Option<&Operator> {
        self.credentials
            .get(&key.hash())
            .and_then(|id| self.operators.get(id))
            .filter(|o| !o.revoked)
    }
}

/// A new operator's credential and the `operator.add` detail recording it.
fn new_operator(name: &str) -> Result<(Added, OperatorKey), VaultError> {
    if validate_label(name).is_err() {
        return Err(VaultError::Invalid(
            "operator name: 1 to 64 printable characters",
        ));
    }
    let key = OperatorKey::generate(OPERATOR_KEY_PREFIX).map_err(CryptoError::from)?;
    let added = Added {
        operator: shared::ids::random_id("op_").map_err(CryptoError::from)?,
        name: name.to_owned(),
        credential_sha256: hex::encode(key.hash()),
    };
    Ok((added, key))
}

/// What `add_operator` did.
#[derive(Debug)]
pub enum OperatorAdded {
    /// Added at once (fewer than two operators existed).
    Added(Operator, OperatorKey),
    /// Proposed: another operator must approve it.
    Proposed(Proposal, OperatorKey),
}

impl Vault {
    /// The operators and proposals of the verified chain.
    async fn custody(&self) -> Result<Custody, VaultError> {
        let mut custody = Custody::default();
        let verdict = walk_chain(
            self.store.as_ref(),
            self.keys().audit(),
            &Expectations::default(),
            &mut |e| custody.observe(e),
        )
        .await?;
        if let Err(broken) = verdict {
            return Err(VaultError::DualControl(format!(
                "{broken}: dual control reads operators and proposals only from a chain that verifies; run `vault audit verify`"
            )));
        }
        for (id, proposal) in &mut custody.proposals {
            proposal.approved = custody.approved.contains(id);
        }
        Ok(custody)
    }

    /// Every operator the chain knows.
    ///
    /// # Errors
    ///
    /// Storage failure, or a chain that does not verify.
    pub async fn operators(&self) -> Result<Vec<Operator>, VaultError> {
        let mut operators: Vec<_> = self.custody().await?.operators.into_values().collect();
        operators.sort_by_key(|o| o.added_at);
        Ok(operators)
    }

    /// Every proposal, oldest first.
    ///
    /// # Errors
    ///
    /// Storage failure, or a chain that does not verify.
    pub async fn proposals(&self) -> Result<Vec<Proposal>, VaultError> {
        let mut proposals: Vec<_> = self.custody().await?.proposals.into_values().collect();
        proposals.sort_by_key(|p| p.proposed_at);
        Ok(proposals)
    }

    /// Adds an operator: at once while fewer than two were ever added (how a deployment
    /// starts), else as a proposal of the operator holding `by` (another must approve it).
    ///
    /// # Errors
    ///
    /// A bad name, no or an unknown credential once two operators exist, storage failure.
    pub async fn add_operator(
        &self,
        name: &str,
        by: Option<&OperatorKey>,
        window: Duration,
    ) -> Result<OperatorAdded, VaultError> {
        let custody = self.custody().await?;
        let (added, key) = new_operator(name)?;
        if custody.ever_added() < 2 {
            let mut draft = AuditDraft::new("cli", Action::OperatorAdd, Outcome::Granted);
            draft.detail = Some(
                serde_json::to_string(&added)
                    .map_err(|_| VaultError::Invalid("operator name cannot be recorded"))?,
            );
            self.audit(draft).await?;
            let operator = Operator {
                id: added.operator,
                name: added.name,
                added_at: now_micros(),
                revoked: false,
            };
            return Ok(OperatorAdded::Added(operator, key));
        }
        let Some(by) = by else {
            return Err(VaultError::DualControl(
                "two operators exist, so adding a third is a proposal: set VAULT_OPERATOR_KEY to your operator credential".to_owned(),
            ));
        };
        let operation = Operation::AddOperator {
            operator: added.operator,
            name: added.name,
            credential_sha256: added.credential_sha256,
        };
        let proposal = self.propose_in(&custody, by, operation, window).await?;
        Ok(OperatorAdded::Proposed(proposal, key))
    }

    /// Proposes revoking an operator, as the operator holding `by` (another approves, and
    /// then the credential stops working). Refused when it would leave fewer than two active
    /// operators: add one first, so that dual control never ends up with one person.
    ///
    /// # Errors
    ///
    /// Unknown operator or credential, too few operators left, storage failure.
    pub async fn revoke_operator(
        &self,
        id: &str,
        by: &OperatorKey,
        window: Duration,
    ) -> Result<Proposal, VaultError> {
        let custody = self.custody().await?;
        if custody.operators.get(id).is_none_or(|o| o.revoked) {
            return Err(VaultError::DualControl(format!(
                "no active operator {id} (`vault operators list`)"
            )));
        }
        if custody.active() <= 2 {
            return Err(VaultError::DualControl(
                "revoking would leave fewer than two active operators: add another first (`vault operators add`, a proposal)".to_owned(),
            ));
        }
        let operation = Operation::RevokeOperator {
            operator: id.to_owned(),
        };
        self.propose_in(&custody, by, operation, window).await
    }

    /// Proposes `operation` as the operator holding `by`; another operator approves it within
    /// `window`.
    ///
    /// # Errors
    ///
    /// Fewer than two operators, an unknown credential, storage failure.
    pub async fn propose(
        &self,
        by: &OperatorKey,
        operation: Operation,
        window: Duration,
    ) -> Result<Proposal, VaultError> {
        let custody = self.custody().await?;
        self.propose_in(&custody, by, operation, window).await
    }

    async fn propose_in(
        &self,
        custody: &Custody,
        by: &OperatorKey,
        operation: Operation,
        window: Duration,
    ) -> Result<Proposal, VaultError> {
        let Some(operator) = custody.who(by) else {
            return Err(self
                .refuse_custody(
                    "dual.propose",
                    None,
                    "unknown or revoked operator credential",
                )
                .await);
        };
        if custody.active() < 2 {
            return Err(VaultError::DualControl(
                "dual control needs two operators: add another with `vault operators add NAME`"
                    .to_owned(),
            ));
        }
        let now = now_micros();
        let proposal = Proposal {
            id: shared::ids::random_id("prp_").map_err(CryptoError::from)?,
            operation,
            proposed_by: operator.id.clone(),
            proposed_at: now,
            expires_at: now.saturating_add(i64::try_from(window.as_micros()).unwrap_or(i64::MAX)),
            approved: false,
        };
        let mut draft = AuditDraft::new(&operator.id, Action::DualPropose, Outcome::Granted);
        draft.request_id = Some(proposal.id.clone());
        draft.detail = Some(
            serde_json::to_string(&proposal)
                .map_err(|_| VaultError::Invalid("the proposal cannot be recorded"))?,
        );
        self.audit(draft).await?;
        Ok(proposal)
    }

    /// Approves proposal `id` as the operator holding `by`, who must not be its proposer; the
    /// approval is recorded once (of two at once, one wins), and then the operation runs, in
    /// the approver's name, naming the proposal.
    ///
    /// # Errors
    ///
    /// An unknown credential or proposal, the proposer approving, an expired or already
    /// approved proposal (each refusal audited), storage failure.
    ///
    /// `fits` says why this run cannot carry the operation out (a master-key rotation to Shamir
    /// shares approved with a configuration for a key file, say), checked before the approval
    /// is recorded, so a refused run uses no proposal up.
    pub async fn approve(
        &self,
        by: &OperatorKey,
        id: &str,
        fits: &(dyn Fn(&Operation) -> Option<String> + Sync),
    ) -> Result<(Proposal, Operator), VaultError> {
        let custody = self.custody().await?;
        let Some(approver) = custody.who(by).cloned() else {
            return Err(self
                .refuse_custody(
                    "dual.approve",
                    Some(id),
                    "unknown or revoked operator credential",
                )
                .await);
        };
        let Some(proposal) = custody.proposals.get(id).cloned() else {
            return Err(self
                .refuse_custody("dual.approve", Some(id), "no such proposal")
                .await);
        };
        if proposal.proposed_by == approver.id {
            return Err(self
                .refuse_custody(
                    "dual.approve",
                    Some(id),
                    "the operator who proposed it cannot approve it: another operator must",
                )
                .await);
        }
        if custody
            .operators
            .get(&proposal.proposed_by)
            .is_none_or(|o| o.revoked)
        {
            return Err(self
                .refuse_custody("dual.approve", Some(id), "its proposer was revoked since")
                .await);
        }
        if proposal.approved {
            return Err(self
                .refuse_custody("dual.approve", Some(id), "it was approved already")
                .await);
        }
        let destroy_purpose = match &proposal.operation {
            Operation::DestroyKey { purpose, .. } => Some(
                KeyPurpose::from_name(purpose)
                    .ok_or(VaultError::Invalid("the proposal names no key purpose"))?,
            ),
            _ => None,
        };
        if let Some(why) = fits(&proposal.operation) {
            return Err(self.refuse_custody("dual.approve", Some(id), &why).await);
        }
        if let Operation::RevokeOperator { operator } = &proposal.operation
            && (custody.active() <= 2 || custody.operators.get(operator).is_none_or(|o| o.revoked))
        {
            return Err(self
                .refuse_custody(
                    "dual.approve",
                    Some(id),
                    "revoking would leave fewer than two active operators (or they were revoked already)",
                )
                .await);
        }
        if now_micros() > proposal.expires_at {
            return Err(self
                .refuse_custody("dual.approve", Some(id), "it expired: propose it again")
                .await);
        }
        let mut draft = AuditDraft::new(&approver.id, Action::DualApprove, Outcome::Granted);
        draft.request_id = Some(id.to_owned());
        draft.detail = Some(format!(
            "{} proposed by {}",
            proposal.operation.describe(),
            proposal.proposed_by
        ));
        if !self
            .store
            .append_audit_once(self.keys().audit(), draft)
            .await
            .map_err(audited)?
        {
            return Err(self
                .refuse_custody("dual.approve", Some(id), "it was approved already")
                .await);
        }
        let actor = format!("{} (approving {})", approver.id, proposal.id);
        match &proposal.operation {
            Operation::DestroyKey {
                version,
                crypto_shred,
                ..
            } => {
                if let Some(purpose) = destroy_purpose {
                    self.destroy_key(&actor, purpose, *version, *crypto_shred)
                        .await?;
                }
            }
            // The approval event itself adds or revokes the operator (`Custody::observe`).
            Operation::AddOperator { .. } | Operation::RevokeOperator { .. } => {}
            // The new master key comes from where the command runs (a file, shares printed to
            // the approver, the HSM): the command line rotates it once approved.
            Operation::RotateMaster { .. } => {}
        }
        Ok((proposal, approver))
    }

    /// Audits a refused dual-control step and returns the error to give.
    async fn refuse_custody(&self, step: &str, proposal: Option<&str>, why: &str) -> VaultError {
        let action = if step == "dual.approve" {
            Action::DualApprove
        } else if step == "operator.revoke" {
            Action::OperatorRevoke
        } else {
            Action::DualPropose
        };
        let mut draft = AuditDraft::new("cli", action, Outcome::Denied);
        draft.request_id = proposal.map(str::to_owned);
        draft.detail = Some(why.to_owned());
        if let Err(e) = self.audit(draft).await {
            return e;
        }
        VaultError::DualControl(format!("{step} refused: {why}"))
    }
}
