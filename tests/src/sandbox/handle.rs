//! Starting the sandbox, and the handle in-process tests drive it with. The control API
//! (`control`) calls the same operations over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sandbox::config::{ProjectConfig, SandboxConfig};
use crate::sandbox::faults::{ActiveFault, FaultSpec, Faults};
use crate::sandbox::journal::{Journal, JournalEntry};
use crate::sandbox::keep::{self, StateCell};
use crate::sandbox::keys::{KeyError, Signer};
use crate::sandbox::lifecycle::{self, Step};
use crate::sandbox::model::Phase;
use crate::sandbox::state::{Project, ProjectUpdate, ProjectView, State};
use crate::sandbox::{Core, Sandbox, api, control};

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The bank key could not be loaded or generated.
    #[error("bank key: {0}")]
    BankKey(#[source] KeyError),
    /// A project's partner key was unusable.
    #[error("project {id}: partner public key: {source}")]
    PartnerKey {
        /// The project.
        id: String,
        /// Why.
        source: KeyError,
    },
    /// An initial fault was invalid.
    #[error("fault {0}")]
    Fault(String),
    /// The listen address could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[source] std::io::Error),
    /// The state file could not be read.
    #[error("state file {0}")]
    StateFile(#[source] keep::StateFileError),
    /// The webhook HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(#[source] reqwest::Error),
    /// The TLS files did not load.
    #[error("{0}")]
    Tls(String),
}

/// Why a control operation was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No such session, project or fault (HTTP 404).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The operation does not fit the current state (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The input was invalid (HTTP 400).
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Which step `advance` forces.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvanceStep {
    /// Send `ready_to_confirm` now.
    ReadyToConfirm,
    /// Time the confirmation out now.
    ConfirmTimeout,
    /// Execute the confirm, cancel or automatic decision now and send `payment_finished`.
    Finish,
}

/// A running sandbox. Dropping it stops the server, its timers and webhook retries.
#[derive(Debug)]
pub struct SandboxHandle {
    sandbox: Sandbox,
    addr: SocketAddr,
    scheme: &'static str,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// Starts the sandbox on `config.listen`. Must be called inside a Tokio runtime.
///
/// # Errors
///
/// A bad key, project or fault in the configuration, or an address that cannot be bound.
pub async fn spawn(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
    let bank = match &config.bank_private_key_pem {
        Some(pem) => Signer::from_pem(pem),
        None => Signer::generate(),
    }
    .map_err(SandboxError::BankKey)?;
    let kept = match &config.state_file {
        Some(path) => keep::load(path).map_err(SandboxError::StateFile)?,
        None => None,
    };
    let mut state = match kept {
        Some(snapshot) => State::restored(snapshot, config.id_prefix.clone())
            .map_err(|(id, source)| SandboxError::PartnerKey { id, source })?,
        None => State::empty(config.id_prefix.clone()),
    };
    for p in &config.projects {
        let mut p = p.clone();
        // A kept project's balance is state (payouts moved it); its settings come from here.
        if let Some(kept) = state.projects.get(&p.id) {
            p.wallet_balance = kept.config.wallet_balance;
        }
        let project = Project::new(p.clone()).map_err(|source| SandboxError::PartnerKey {
            id: p.id.clone(),
            source,
        })?;
        state.projects.insert(p.id.clone(), project);
    }
    let delays = lifecycle::Delays {
        ready: config.ready_delay,
        finish: config.finish_delay,
    };
    let resumed = lifecycle::Effects {
        timers: state
            .sessions
            .values()
            .filter_map(|s| {
                let project = state.projects.get(&s.project)?;
                lifecycle::resume(s, delays, project.config.confirm_timeout)
            })
            .collect(),
        events: Vec::new(),
    };
    let faults = Faults::default();
    for f in &config.faults {
        faults
            .add(f.clone())
            .map_err(|why| SandboxError::Fault(format!("{f}: {why}")))?;
    }
    // No redirects: a webhook URL that redirects is a misconfiguration the partner should see.
    let mut http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.webhook_timeout);
    if let Some(ca) = &config.webhook_ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| SandboxError::Tls(format!("--webhook-ca-file {}: {e}", ca.display())))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(SandboxError::Client)?;
        http = http.tls_certs_only(roots);
    }
    let http = http.build().map_err(SandboxError::Client)?;
    let tls = shared::server::ServerTls::load(&config.tls)
        .map_err(|e| SandboxError::Tls(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(SandboxError::Bind)?;
    let addr = listener.local_addr().map_err(SandboxError::Bind)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let hang_limit = config.hang_limit;
    let (stop, shutdown) = watch::channel(false);
    let sandbox = Sandbox(Arc::new(Core {
        journal: Journal::new(config.journal_limit),
        state: StateCell::new(state, config.state_file.clone()),
        config,
        faults,
        bank,
        http,
        held: Mutex::new(None),
        shutdown: shutdown.clone(),
        runtime: tokio::runtime::Handle::current(),
    }));
    let app = Router::new()
        .nest("/__sandbox", control::router())
        .fallback(api::bank_api)
        .with_state(sandbox.clone());
    // The services' own server loop: it serves TLS the same way theirs does. Its timers are
    // far out of the way of the faults (a `hang` holds a request for `hang_limit`).
    let options = shared::server::ServeOptions {
        grace: std::time::Duration::from_secs(5),
        header_read_timeout: std::time::Duration::from_secs(60),
        idle_timeout: hang_limit.max(std::time::Duration::from_secs(60)) * 2,
        max_connections: 4096,
    };
    let server = tokio::spawn(async move {
        let mut shutdown = shutdown;
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let result = shared::server::serve(listener, app, stopped, options, tls).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "sandbox server failed");
        }
    });
    if !resumed.timers.is_empty() {
        tracing::info!(sessions = resumed.timers.len(), "resuming kept sessions");
    }
    sandbox.run(resumed);
    tracing::info!(%addr, "bank131 sandbox listening");
    Ok(SandboxHandle {
        sandbox,
        addr,
        scheme,
        stop,
        server: Some(server),
    })
}

impl SandboxHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (`https://` over TLS), the value for the client's base URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The bank's public key (SPKI PEM): what the partner verifies webhooks with.
    pub fn bank_public_key_pem(&self) -> &str {
        self.sandbox.bank.public_key_pem()
    }

    /// Every journal entry, oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.sandbox.journal.entries()
    }

    /// Empties the journal.
    pub fn clear_journal(&self) {
        self.sandbox.journal.clear();
    }

    /// Adds a fault; returns its id.
    ///
    /// # Errors
    ///
    /// [`ControlError::Invalid`] when the action does not fit the target.
    pub fn set_fault(&self, spec: FaultSpec) -> Result<String, ControlError> {
        self.sandbox.faults.add(spec).map_err(ControlError::Invalid)
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<ActiveFault> {
        self.sandbox.faults.list()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.sandbox.faults.clear();
    }

    /// Registers a project, or replaces one with the same id (its balance included).
    ///
    /// # Errors
    ///
    /// [`ControlError::Invalid`] for an unusable partner key.
    pub fn add_project(&self, config: ProjectConfig) -> Result<ProjectView, ControlError> {
        let project = Project::new(config).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let view = project.view();
        let mut state = self.sandbox.state.lock();
        state.projects.insert(view.id.clone(), project);
        Ok(view)
    }

    /// Creates or changes a project, as `POST /__sandbox/projects` does.
    ///
    /// # Errors
    ///
    /// [`ControlError::Invalid`] for a new project without a key, or an unusable key.
    pub fn upsert_project(&self, update: ProjectUpdate) -> Result<ProjectView, ControlError> {
        self.sandbox.upsert_project(update).map(|(view, _)| view)
    }

    /// A project's settings and current wallet balance.
    pub fn project(&self, id: &str) -> Option<ProjectView> {
        self.sandbox
            .state
            .lock()
            .projects
            .get(id)
            .map(Project::view)
    }

    /// A session as the control API shows it (v2 spelling, plus its project and phase).
    pub fn session(&self, id: &str) -> Option<Value> {
        self.sandbox.session_view(id)
    }

    /// Forces the session's next step now (or the given one); returns the session view.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], or [`ControlError::Conflict`] when the step does not fit.
    pub fn advance(&self, id: &str, step: Option<AdvanceStep>) -> Result<Value, ControlError> {
        self.sandbox.advance(id, step)
    }

    /// Refunds a succeeded payout (all that is left, or `amount`) and sends `payment_refunded`.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], or [`ControlError::Conflict`] when nothing can be refunded.
    pub fn refund(&self, id: &str, amount: Option<i64>) -> Result<Value, ControlError> {
        self.sandbox.refund(id, amount)
    }

    /// Counts session ids up to `ps_<prefix><highest>` as handed out, so the next session gets
    /// a higher number: for a partner that holds sessions from an earlier run (with or without a
    /// state file, whichever is further on wins).
    pub fn skip_session_ids_through(&self, highest: u64) {
        self.sandbox.state.lock().skip_session_ids_through(highest);
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Sandbox {
    pub(crate) fn upsert_project(
        &self,
        update: ProjectUpdate,
    ) -> Result<(ProjectView, bool), ControlError> {
        let mut state = self.state.lock();
        let existing = state.projects.get(&update.id).map(|p| p.config.clone());
        let created = existing.is_none();
        let base = match existing {
            Some(config) => config,
            None if update.id.is_empty() => {
                return Err(ControlError::Invalid("id is required".into()));
            }
            None if update.partner_public_key_pem.is_none() => {
                return Err(ControlError::Invalid(
                    "partner_public_key_pem is required for a new project".into(),
                ));
            }
            None => ProjectConfig::new(update.id.clone(), String::new()),
        };
        let project = Project::new(update.apply(base))
            .map_err(|e| ControlError::Invalid(format!("partner_public_key_pem: {e}")))?;
        let view = project.view();
        state.projects.insert(view.id.clone(), project);
        Ok((view, created))
    }

    pub(crate) fn session_view(&self, id: &str) -> Option<Value> {
        let state = self.state.lock();
        let s = state.sessions.get(id)?;
        let phase = match s.phase {
            Phase::Created => "created",
            Phase::Preparing { silent: false } => "preparing",
            Phase::Preparing { silent: true } => "preparing_silently",
            Phase::AwaitingConfirm => "awaiting_confirm",
            Phase::Executing(_) => "executing",
            Phase::Finished => "finished",
        };
        Some(json!({
            "project": s.project,
            "phase": phase,
            "session": s.render(crate::sandbox::ApiVersion::V2),
        }))
    }

    pub(crate) fn advance(
        &self,
        id: &str,
        step: Option<AdvanceStep>,
    ) -> Result<Value, ControlError> {
        let fx = {
            let mut state = self.state.lock();
            let session = state
                .sessions
                .get(id)
                .ok_or(ControlError::NotFound("session"))?;
            let step = match step {
                None => lifecycle::next_step(session).map_err(ControlError::Conflict)?,
                Some(AdvanceStep::ReadyToConfirm) => Step::Ready,
                Some(AdvanceStep::ConfirmTimeout) => Step::ConfirmTimeout,
                Some(AdvanceStep::Finish) => Step::Execute,
            };
            lifecycle::apply(&mut state, id, None, step).map_err(ControlError::Conflict)?
        };
        self.run(fx);
        self.session_view(id)
            .ok_or(ControlError::NotFound("session"))
    }

    /// Makes the session's payout show another amount or card than the partner asked for, as a
    /// bank bug or someone else's start with the partner's key would: what the proxy's check
    /// before confirming exists for.
    pub(crate) fn tamper(
        &self,
        id: &str,
        amount: Option<i64>,
        last4: Option<String>,
    ) -> Result<Value, ControlError> {
        if last4
            .as_deref()
            .is_some_and(|l| l.len() != 4 || !l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ControlError::Invalid(
                "last4 must be four digits".to_owned(),
            ));
        }
        {
            let mut state = self.state.lock();
            let session = state
                .sessions
                .get_mut(id)
                .ok_or(ControlError::NotFound("session"))?;
            let payout = session
                .payout
                .as_mut()
                .ok_or(ControlError::Conflict("the session has no payout"))?;
            if let Some(a) = amount {
                payout.amount.amount = a;
            }
            if let Some(l) = last4 {
                payout.card.last4 = l;
            }
        }
        self.session_view(id)
            .ok_or(ControlError::NotFound("session"))
    }

    pub(crate) fn refund(&self, id: &str, amount: Option<i64>) -> Result<Value, ControlError> {
        let fx = {
            let mut state = self.state.lock();
            if !state.sessions.contains_key(id) {
                return Err(ControlError::NotFound("session"));
            }
            lifecycle::refund(&mut state, id, amount).map_err(ControlError::Conflict)?
        };
        self.run(fx);
        self.session_view(id)
            .ok_or(ControlError::NotFound("session"))
    }
}
