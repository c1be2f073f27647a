//! The sandbox's mutable state: projects, sessions, counters and used idempotency keys.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sandbox::config::{ApiVersion, ProjectConfig};
use crate::sandbox::error::ApiError;
use crate::sandbox::keep::{Counters, Snapshot};
use crate::sandbox::keys::{KeyError, Verifier};
use crate::sandbox::model::Session;
use crate::sandbox::quirks::Quirks;

/// A registered project with its parsed key and live balance.
#[derive(Debug)]
pub(crate) struct Project {
    pub(crate) config: ProjectConfig,
    pub(crate) verifier: Verifier,
}

impl Project {
    pub(crate) fn new(config: ProjectConfig) -> Result<Self, KeyError> {
        let verifier = Verifier::from_pem(&config.partner_public_key_pem)?;
        Ok(Self { config, verifier })
    }

    pub(crate) fn view(&self) -> ProjectView {
        self.config.clone()
    }
}

/// A project as the control API shows it and the state file keeps it: its settings and current
/// wallet balance (`confirm_timeout` in JSON as `confirm_timeout_ms`).
pub type ProjectView = ProjectConfig;

/// `POST /__sandbox/projects`: creates a project, or changes the given fields of an existing
/// one (absent fields keep their values; an empty `webhook_url` removes it).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    /// The project id (required).
    pub id: String,
    /// Required for a new project.
    pub partner_public_key_pem: Option<String>,
    /// Webhook URL; `""` removes it.
    pub webhook_url: Option<String>,
    /// Automatic confirmation.
    pub auto_confirm: Option<bool>,
    /// Single-request payouts.
    pub single_request_payouts: Option<bool>,
    /// `v1` or `v2`.
    pub webhook_api_version: Option<ApiVersion>,
    /// Sets the wallet balance (minor units).
    pub wallet_balance: Option<i64>,
    /// Confirm timeout in milliseconds.
    pub confirm_timeout_ms: Option<u64>,
    /// Replaces the project's quirks.
    pub quirks: Option<Quirks>,
}

impl ProjectUpdate {
    /// Applies the update to `base` (a new project's defaults, or the current settings).
    pub(crate) fn apply(self, mut base: ProjectConfig) -> ProjectConfig {
        if let Some(pem) = self.partner_public_key_pem {
            base.partner_public_key_pem = pem;
        }
        if let Some(url) = self.webhook_url {
            base.webhook_url = (!url.is_empty()).then_some(url);
        }
        if let Some(v) = self.auto_confirm {
            base.auto_confirm = v;
        }
        if let Some(v) = self.single_request_payouts {
            base.single_request_payouts = v;
        }
        if let Some(v) = self.webhook_api_version {
            base.webhook_api_version = v;
        }
        if let Some(v) = self.wallet_balance {
            base.wallet_balance = v;
        }
        if let Some(ms) = self.confirm_timeout_ms {
            base.confirm_timeout = Duration::from_millis(ms);
        }
        if let Some(q) = self.quirks {
            base.quirks = q;
        }
        base
    }
}

/// Everything behind the one state lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) projects: HashMap<String, Project>,
    pub(crate) sessions: HashMap<String, Session>,
    /// (project, method, key) of every idempotency key seen.
    pub(crate) idempotency: HashSet<(String, String, String)>,
    /// Put after `ps_`, `po_` and `rf_` (`ps_<prefix>1`): a run tag makes ids unique across
    /// restarts, so a proxy that outlives the sandbox never meets a session id twice.
    pub(crate) id_prefix: String,
    next_session: u64,
    next_payout: u64,
    next_refund: u64,
    next_transaction: u64,
}

impl State {
    /// No projects, no sessions; ids made after `id_prefix`.
    pub(crate) fn empty(id_prefix: String) -> Self {
        Self {
            id_prefix,
            ..Self::default()
        }
    }

    /// Everything the state file keeps.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut projects: Vec<ProjectView> = self.projects.values().map(Project::view).collect();
        projects.sort_by(|a, b| a.id.cmp(&b.id));
        let mut sessions: Vec<Session> = self.sessions.values().cloned().collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            format: Snapshot::FORMAT,
            counters: Counters {
                session: self.next_session,
                payout: self.next_payout,
                refund: self.next_refund,
                transaction: self.next_transaction,
            },
            projects,
            sessions,
            idempotency: self.idempotency.iter().cloned().collect(),
        }
    }

    /// The state a snapshot describes, with ids made after `id_prefix`.
    pub(crate) fn restored(
        snapshot: Snapshot,
        id_prefix: String,
    ) -> Result<Self, (String, KeyError)> {
        let mut projects = HashMap::new();
        for view in snapshot.projects {
            let id = view.id.clone();
            let project = Project::new(view).map_err(|e| (id.clone(), e))?;
            projects.insert(id, project);
        }
        Ok(Self {
            projects,
            sessions: snapshot
                .sessions
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            idempotency: snapshot.idempotency.into_iter().collect(),
            id_prefix,
            next_session: snapshot.counters.session,
            next_payout: snapshot.counters.payout,
            next_refund: snapshot.counters.refund,
            next_transaction: snapshot.counters.transaction,
        })
    }

    /// Session ids up to `ps_<prefix><highest>` count as handed out already.
    pub(crate) fn skip_session_ids_through(&mut self, highest: u64) {
        self.next_session = self.next_session.max(highest);
    }

    pub(crate) fn session_id(&mut self) -> String {
        self.next_session += 1;
        format!("ps_{}{}", self.id_prefix, self.next_session)
    }

    pub(crate) fn payout_id(&mut self) -> String {
        self.next_payout += 1;
        format!("po_{}{}", self.id_prefix, self.next_payout)
    }

    pub(crate) fn refund_id(&mut self) -> String {
        self.next_refund += 1;
        format!("rf_{}{}", self.id_prefix, self.next_refund)
    }

    /// A fresh `(rrn, auth_code)`: 12 and 6 digits, deterministic.
    pub(crate) fn transaction_info(&mut self) -> (String, String) {
        self.next_transaction += 1;
        let n = self.next_transaction;
        (
            format!("{:012}", 131_000_000_000 + n),
            format!("{:06}", n % 1_000_000),
        )
    }

    /// The project's session, or `invalid_request` (another project's session is as unknown as
    /// a missing one).
    pub(crate) fn session_mut(
        &mut self,
        project: &str,
        id: &str,
    ) -> Result<&mut Session, ApiError> {
        self.sessions
            .get_mut(id)
            .filter(|s| s.project == project)
            .ok_or(ApiError::unknown_session())
    }

    /// The project's quirks (none for an unknown project).
    pub(crate) fn quirks(&self, project: &str) -> Quirks {
        self.projects
            .get(project)
            .map(|p| p.config.quirks)
            .unwrap_or_default()
    }
}
