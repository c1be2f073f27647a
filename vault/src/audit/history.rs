//! What a verified audit chain says about clients: which were created (tenant, name, scopes),
//! which were revoked, and whether a client key was ever made.
//!
//! Client rows carry MACs, but a MAC proves only that the vault wrote a row once, not that it is
//! the row's latest version: a row restored from before its revocation verifies. The chain
//! remembers the revocation, so `audit verify` compares the rows with it, and `upgrade` seals
//! only rows the chain vouches for.

use std::collections::{HashMap, HashSet};

use super::AuditEvent;
use crate::auth::ClientRecord;

/// A client as its `client.create` event recorded it.
#[derive(Clone, Debug, Eq, PartialEq)]
struct Created {
    tenant: Option<String>,
    name: String,
    scopes: String,
}

/// The clients' story, read from events (feed it only events that verified).
#[derive(Debug, Default)]
pub struct ClientHistory {
    created: HashMap<String, Created>,
    revoked: HashSet<String>,
    client_key_made: bool,
}

/// A client row the chain does not vouch for.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Disagreement {
    /// No `client.create` event matches the row's id, tenant, name and scopes.
    NotCreated(String),
    /// The chain revoked the client but its row is active (restored from before the revocation).
    RevocationUndone(String),
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotCreated(id) => write!(
                f,
                "client {id}: no client.create event in the audit chain matches its row (written outside the vault?)"
            ),
            Self::RevocationUndone(id) => write!(
                f,
                "client {id}: revoked in the audit chain, but its row is active (restored from before the revocation?)"
            ),
        }
    }
}

impl ClientHistory {
    /// Takes in one verified event.
    pub fn observe(&mut self, event: &AuditEvent) {
        if event.outcome != "granted" {
            return;
        }
        let detail = event.detail.as_deref().unwrap_or_default();
        match event.action.as_str() {
            "client.create" => {
                // "<id> name=<name> scopes=<scopes>" (labels cannot hold spaces or '=').
                let mut parts = detail.split(' ');
                let (Some(id), Some(name), Some(scopes)) = (
                    parts.next(),
                    parts.next().and_then(|p| p.strip_prefix("name=")),
                    parts.next().and_then(|p| p.strip_prefix("scopes=")),
                ) else {
                    return;
                };
                self.created.insert(
                    id.to_owned(),
                    Created {
                        tenant: event.tenant.clone(),
                        name: name.to_owned(),
                        scopes: scopes.to_owned(),
                    },
                );
            }
            "client.revoke" => {
                self.revoked.insert(detail.to_owned());
            }
            "keys.create" if detail.contains("client v1") => self.client_key_made = true,
            _ => {}
        }
    }

    /// Whether the chain records a client key being made.
    pub fn client_key_made(&self) -> bool {
        self.client_key_made
    }

    /// Whether the chain revoked client `id`.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains(id)
    }

    /// What is wrong with `row` by the chain's account, if anything.
    pub fn check(&self, row: &ClientRecord) -> Option<Disagreement> {
        let id = row.id.as_str();
        let created = Created {
            tenant: Some(row.tenant.clone()),
            name: row.name.clone(),
            scopes: row.scopes.to_string(),
        };
        if self.created.get(id) != Some(&created) {
            return Some(Disagreement::NotCreated(id.to_owned()));
        }
        if self.revoked.contains(id) && row.revoked_at.is_none() {
            return Some(Disagreement::RevocationUndone(id.to_owned()));
        }
        None
    }
}
