//! The audit log: what happened to which token, by whom, why, and how it ended.
//!
//! Events are append-only and chained: each carries `HMAC(audit key, previous MAC || event)`,
//! the first one chaining from 32 zero bytes. Editing, deleting, inserting or reordering rows
//! breaks the chain, and [`Verifier`] names the first broken link. The audit key is stored
//! only wrapped under the master key, so someone with the database alone cannot re-chain it.
//!
//! Events never hold card data: tokens, client ids, fixed action and outcome names, a purpose
//! that was refused if it held a long digit run, and our own request ids.

use std::fmt;

use serde::Serialize;

use crate::crypto::AuditKey;

pub mod checkpoint;
mod head;
mod history;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use head::{ChainHead, HeadMismatch, Link};
pub use history::{ClientHistory, Disagreement};

/// What was done.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub enum Action {
    /// A request failed authentication.
    #[serde(rename = "auth.fail")]
    AuthFail,
    /// An API client was created.
    #[serde(rename = "client.create")]
    ClientCreate,
    /// An API client was revoked.
    #[serde(rename = "client.revoke")]
    ClientRevoke,
    /// The vault's keys were generated.
    #[serde(rename = "keys.create")]
    KeysCreate,
    /// A new version of a key was made; it seals from now on.
    #[serde(rename = "keys.rotate")]
    KeysRotate,
    /// A key version became decrypt-only.
    #[serde(rename = "keys.retire")]
    KeysRetire,
    /// A batch of tokens was resealed under the active data key.
    #[serde(rename = "keys.rewrap")]
    KeysRewrap,
    /// A key version was destroyed.
    #[serde(rename = "keys.destroy")]
    KeysDestroy,
    /// Every stored key was wrapped again under a new master key.
    #[serde(rename = "keys.rewrap_master")]
    KeysRewrapMaster,
    /// Operators unsealed a Shamir vault: it holds its keys and serves.
    #[serde(rename = "vault.unseal")]
    VaultUnseal,
    /// An operator sealed a Shamir vault: its keys were dropped from memory.
    #[serde(rename = "vault.seal")]
    VaultSeal,
    /// A vault operator (a person who takes part in dual control) was added.
    #[serde(rename = "operator.add")]
    OperatorAdd,
    /// A vault operator was revoked.
    #[serde(rename = "operator.revoke")]
    OperatorRevoke,
    /// An operator proposed an operation that needs a second operator.
    #[serde(rename = "dual.propose")]
    DualPropose,
    /// A second operator approved a proposal (its `request_id`), which then ran.
    #[serde(rename = "dual.approve")]
    DualApprove,
    /// A PAN was tokenized.
    #[serde(rename = "token.create")]
    TokenCreate,
    /// A token was deleted.
    #[serde(rename = "token.delete")]
    TokenDelete,
    /// A PAN was read back in plaintext (or refused).
    #[serde(rename = "token.detokenize")]
    TokenDetokenize,
    /// The sweeper deleted expired tokens.
    #[serde(rename = "token.expire")]
    TokenExpire,
    /// A token's metadata was read.
    #[serde(rename = "token.read")]
    TokenRead,
    /// A client was refused by a rate limit (one event per client per interval, with counts).
    #[serde(rename = "rate.limited")]
    RateLimited,
    /// A collect session was opened.
    #[serde(rename = "collect.create")]
    CollectCreate,
    /// A collect session was read by the platform (its token, once completed).
    #[serde(rename = "collect.read")]
    CollectRead,
    /// A card was submitted through a collect session's form (or refused).
    #[serde(rename = "collect.submit")]
    CollectSubmit,
    /// The sweeper deleted collect sessions past their retention.
    #[serde(rename = "collect.expire")]
    CollectExpire,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthFail => "auth.fail",
            Self::ClientCreate => "client.create",
            Self::ClientRevoke => "client.revoke",
            Self::KeysCreate => "keys.create",
            Self::KeysRotate => "keys.rotate",
            Self::KeysRetire => "keys.retire",
            Self::KeysRewrap => "keys.rewrap",
            Self::KeysDestroy => "keys.destroy",
            Self::KeysRewrapMaster => "keys.rewrap_master",
            Self::VaultUnseal => "vault.unseal",
            Self::VaultSeal => "vault.seal",
            Self::OperatorAdd => "operator.add",
            Self::OperatorRevoke => "operator.revoke",
            Self::DualPropose => "dual.propose",
            Self::DualApprove => "dual.approve",
            Self::TokenCreate => "token.create",
            Self::TokenDelete => "token.delete",
            Self::TokenDetokenize => "token.detokenize",
            Self::TokenExpire => "token.expire",
            Self::TokenRead => "token.read",
            Self::RateLimited => "rate.limited",
            Self::CollectCreate => "collect.create",
            Self::CollectRead => "collect.read",
            Self::CollectSubmit => "collect.submit",
            Self::CollectExpire => "collect.expire",
        }
    }
}

/// How it ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Refused: bad credentials or a missing scope.
    Denied,
    /// Failed inside the vault (e.g. a ciphertext failed its integrity check).
    Error,
    /// Done (for detokenize: granted).
    Granted,
    /// No such token for this tenant.
    NotFound,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Granted => "granted",
            Self::NotFound => "not_found",
        }
    }
}

/// An event before the store numbers, timestamps and chains it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuditDraft {
    /// Client id, `cli` for the command line, `anonymous` for failed authentication, `system`
    /// for background work.
    pub actor: String,
    /// The tenant acted in, when known.
    pub tenant: Option<String>,
    /// What was done.
    pub action: Action,
    /// The token concerned, when there is one (never unparsed caller input).
    pub token: Option<String>,
    /// The caller's stated purpose (detokenize).
    pub purpose: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The vault-generated request id.
    pub request_id: Option<String>,
    /// A fixed-vocabulary detail: the missing scope, the reason for an error, a count.
    pub detail: Option<String>,
}

impl AuditDraft {
    /// A draft with the required fields and nothing else.
    pub fn new(actor: impl Into<String>, action: Action, outcome: Outcome) -> Self {
        Self {
            actor: actor.into(),
            tenant: None,
            action,
            token: None,
            purpose: None,
            outcome,
            request_id: None,
            detail: None,
        }
    }
}

/// A stored, chained event.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    /// Unix microseconds, UTC.
    pub occurred_at: i64,
    /// See [`AuditDraft::actor`].
    pub actor: String,
    /// See [`AuditDraft::tenant`].
    pub tenant: Option<String>,
    /// Stored action name.
    pub action: String,
    /// See [`AuditDraft::token`].
    pub token: Option<String>,
    /// See [`AuditDraft::purpose`].
    pub purpose: Option<String>,
    /// Stored outcome name.
    pub outcome: String,
    /// See [`AuditDraft::request_id`].
    pub request_id: Option<String>,
    /// See [`AuditDraft::detail`].
    pub detail: Option<String>,
    /// The chain link, hex.
    #[serde(serialize_with = "hex_bytes")]
    pub mac: [u8; 32],
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl AuditEvent {
    /// Numbers, timestamps and chains a draft after `previous` (the MAC of event `seq - 1`).
    pub fn chain(
        key: &AuditKey,
        previous: &[u8; 32],
        seq: u64,
        occurred_at: i64,
        draft: AuditDraft,
    ) -> Self {
        let mut event = Self {
            seq,
            occurred_at,
            actor: draft.actor,
            tenant: draft.tenant,
            action: draft.action.as_str().to_owned(),
            token: draft.token,
            purpose: draft.purpose,
            outcome: draft.outcome.as_str().to_owned(),
            request_id: draft.request_id,
            detail: draft.detail,
            mac: [0; 32],
        };
        event.mac = key.link(previous, &event.encode());
        event
    }

    /// The canonical bytes the MAC covers: every field, length-prefixed, in a fixed order.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"vault.audit.v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.occurred_at.to_be_bytes());
        for field in [
            Some(self.actor.as_str()),
            self.tenant.as_deref(),
            Some(self.action.as_str()),
            self.token.as_deref(),
            self.purpose.as_deref(),
            Some(self.outcome.as_str()),
            self.request_id.as_deref(),
            self.detail.as_deref(),
        ] {
            match field {
                None => out.push(0),
                Some(text) => {
                    out.push(1);
                    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        out
    }
}

/// The first link that does not hold.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BrokenLink {
    /// The sequence number where the chain breaks (the expected one, for a gap).
    pub seq: u64,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit chain broken at event {}: {}",
            self.seq, self.reason
        )
    }
}

/// Checks events in order, one page at a time.
#[derive(Debug)]
pub struct Verifier {
    key: AuditKey,
    previous: [u8; 32],
    next_seq: u64,
}

impl Verifier {
    /// A verifier expecting event 1.
    pub fn new(key: AuditKey) -> Self {
        Self {
            key,
            previous: [0; 32],
            next_seq: 1,
        }
    }

    /// Checks the next event.
    ///
    /// # Errors
    ///
    /// The first broken link: a gap or repeat in the sequence (deleted or duplicated rows), or a
    /// MAC that does not match (an edited, inserted or reordered row).
    pub fn check(&mut self, event: &AuditEvent) -> Result<(), BrokenLink> {
        if event.seq != self.next_seq {
            return Err(BrokenLink {
                seq: self.next_seq,
                reason: "missing or out-of-order event (sequence gap)",
            });
        }
        let expected = self.key.link(&self.previous, &event.encode());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &event.mac[..])) {
            return Err(BrokenLink {
                seq: event.seq,
                reason: "MAC mismatch (event edited, inserted or reordered)",
            });
        }
        self.previous = event.mac;
        self.next_seq += 1;
        Ok(())
    }

    /// Events checked so far.
    pub fn checked(&self) -> u64 {
        self.next_seq - 1
    }

    /// The MAC of the last checked event: record it elsewhere to detect later truncation.
    pub fn head(&self) -> [u8; 32] {
        self.previous
    }

    /// The last checked link (`None` before the first event).
    pub fn last_link(&self) -> Option<Link> {
        (self.next_seq > 1).then(|| Link {
            seq: self.next_seq - 1,
            mac: self.previous,
        })
    }
}

/// Links the chain must hold, from `--expect` and the checkpoint file, checked as a
/// [`Verifier`] walks past them.
#[derive(Debug, Default)]
pub struct Expectations {
    links: std::collections::BTreeMap<u64, [u8; 32]>,
}

impl Expectations {
    /// Expects the chain to hold `link`.
    ///
    /// # Errors
    ///
    /// Two expectations disagree about the same event.
    pub fn expect(&mut self, link: Link) -> Result<(), BrokenLink> {
        match self.links.get(&link.seq) {
            Some(mac) if !link.has_mac(mac) => Err(BrokenLink {
                seq: link.seq,
                reason: "two expected links disagree about this event",
            }),
            _ => {
                self.links.insert(link.seq, link.mac);
                Ok(())
            }
        }
    }

    /// How many links are expected.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Checks a verified event against the expectation for its sequence number.
    ///
    /// # Errors
    ///
    /// The event is not the expected one.
    pub fn check(&self, event: &AuditEvent) -> Result<(), BrokenLink> {
        match self.links.get(&event.seq) {
            Some(mac) if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &event.mac[..])) => {
                Err(BrokenLink {
                    seq: event.seq,
                    reason: "not the event an external checkpoint recorded (the log was replaced)",
                })
            }
            _ => Ok(()),
        }
    }

    /// After the walk: an expected link past the chain's end means events were cut off.
    ///
    /// # Errors
    ///
    /// The first expected link the chain does not reach.
    pub fn finish(&self, checked: u64) -> Result<(), BrokenLink> {
        match self.links.range(checked + 1..).next() {
            Some((&seq, _)) => Err(BrokenLink {
                seq,
                reason: "the chain ends before this event, which an external checkpoint recorded (events were cut off the end)",
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn chain(key: &AuditKey, n: u64) -> Vec<AuditEvent> {
        let mut prev = [0; 32];
        (1..=n)
            .map(|seq| {
                let mut draft = AuditDraft::new("cli_x", Action::TokenRead, Outcome::Granted);
                draft.token = Some(format!("tok_{seq}"));
                let e =
                    AuditEvent::chain(key, &prev, seq, 1_000 + i64::try_from(seq).unwrap(), draft);
                prev = e.mac;
                e
            })
            .collect()
    }

    fn verify(key: &AuditKey, events: &[AuditEvent]) -> Result<u64, BrokenLink> {
        let mut v = Verifier::new(key.clone());
        for e in events {
            v.check(e)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn detects_edits_deletions_and_reordering() {
        let key = AuditKey::from_bytes(Zeroizing::new([3; 32]));
        let events = chain(&key, 5);
        assert_eq!(verify(&key, &events), Ok(5));

        let mut edited = events.clone();
        edited[2].outcome = "denied".to_owned();
        assert_eq!(verify(&key, &edited).unwrap_err().seq, 3);

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(verify(&key, &deleted).unwrap_err().seq, 2);

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&key, &swapped).unwrap_err().seq, 2);

        // Swap contents but keep sequence numbers in place.
        let mut renumbered = events.clone();
        renumbered.swap(1, 2);
        renumbered[1].seq = 2;
        renumbered[2].seq = 3;
        assert_eq!(verify(&key, &renumbered).unwrap_err().seq, 2);

        let other = AuditKey::from_bytes(Zeroizing::new([4; 32]));
        assert_eq!(verify(&other, &events).unwrap_err().seq, 1);
    }
}
