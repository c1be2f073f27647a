//! Building and running the proxy: store, Bank 131 client, vault client, engine, the reconciler,
//! the app-webhook deliverer, the payout link poller, and the HTTP server until SIGTERM or
//! SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::server::Bound;

use crate::bank131::{Bank131Client, ClientBuildError, SignatureVerifier, SigningError};
use crate::config::ProxyConfig;
use crate::engine::{Engine, now_micros};
use crate::http::{AppState, Surface, router, surface_router};
use crate::links::Links;
use crate::outbox::Deliverer;
use crate::store::{PayoutClaim, PgStore, ProxyStore, SqliteStore, StoreError};
use crate::vault_client::VaultClient;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The database.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The Bank 131 client (keys).
    #[error("bank131: {0}")]
    Bank(#[from] ClientBuildError),
    /// The bank's public key.
    #[error("bank131.bank_public_key_file: {0}")]
    BankKey(#[from] SigningError),
    /// The key app webhook secrets are wrapped under.
    #[error("{0}")]
    Secrets(#[from] crate::secrets::WrapKeyError),
    /// Wrapping secrets an older version stored in clear.
    #[error("wrapping stored app webhook secrets: {0}")]
    Wrap(#[from] crate::secrets::WrapError),
    /// An HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// An outbound client's TLS files.
    #[error(transparent)]
    Upstream(#[from] crate::upstream_tls::BuildError),
    /// The listener could not bind, or serving failed.
    #[error(transparent)]
    Server(#[from] shared::server::ServeError),
}

/// Opens the configured store: PostgreSQL when `database.url` is a `postgres://` URL, else SQLite.
///
/// # Errors
///
/// The database cannot be opened or migrated.
pub async fn open_store(config: &ProxyConfig) -> Result<Arc<dyn ProxyStore>, StoreError> {
    Ok(match config.database.postgres_url() {
        Some(url) => Arc::new(PgStore::connect(url, config.database.max_connections, None).await?),
        None => Arc::new(SqliteStore::open(&config.sqlite())?),
    })
}

/// A bound, ready-to-run proxy.
#[derive(Debug)]
pub struct Application {
    server: Bound,
    /// `server.webhook_listen`: the bank's webhook route alone.
    webhooks: Option<Bound>,
    state: AppState,
    /// For the reconciler; the routes reach it only through `state.proxy`.
    engine: Engine,
    /// For the payout link poller; the routes reach links through `state.proxy`.
    links: Links,
    deliverer: Deliverer,
    body_limit: usize,
    reconcile_interval: Duration,
}

impl Application {
    /// Opens everything and binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// See [`StartupError`].
    pub async fn build(config: &ProxyConfig) -> Result<Self, StartupError> {
        let store = open_store(config).await?;
        let bank = Bank131Client::new(&config.bank131)?;
        let bank_verifier = Arc::new(SignatureVerifier::from_pem_file(
            &config.bank131.bank_public_key_file,
        )?);
        let vault = VaultClient::new(&config.vault)?;
        if config.vault.ca_file.is_some() || config.vault.client_cert_file.is_some() {
            reload_vault_tls_on_sighup(vault.clone());
        }
        let dependencies = Arc::new(crate::http::health::DependencyCheck::new(
            vault.clone(),
            bank.clone(),
        ));
        // Said at start, not found by the first payout: a broken vault key or bank setting
        // fails every payout.
        let findings = dependencies.findings().await;
        for problem in findings.problems {
            tracing::error!(problem = %problem, "configuration");
        }
        for warning in findings.warnings {
            tracing::warn!(warning = %warning, "dependency");
        }
        for note in findings.notes {
            tracing::warn!(note = %note, "configuration");
        }
        let engine = Engine::new(Arc::clone(&store), bank, vault, config.payouts.clone());
        let secrets = Arc::new(crate::secrets::for_config(config)?);
        let links = Links::new(engine.clone(), Arc::clone(&secrets), &config.payout_links);
        let wrapped = crate::secrets::wrap_legacy_secrets(store.as_ref(), &secrets).await?;
        if wrapped > 0 {
            tracing::warn!(
                clients = wrapped,
                "app webhook secrets stored in clear by an older version are now wrapped"
            );
        }
        let deliverer = Deliverer::new(store, secrets, config.webhooks.clone())?
            .wake_on(engine.outbox_signal());
        let server = Bound::bind(config.listen(), &config.server).await?;
        let webhooks = match config.server.webhook_listen {
            Some(addr) => Some(Bound::bind(addr, &config.server).await?),
            None => None,
        };
        Ok(Self {
            server,
            webhooks,
            engine: engine.clone(),
            links: links.clone(),
            state: AppState {
                proxy: crate::service::Proxy::new(engine, links, bank_verifier, dependencies),
                request_timeout: Duration::from_millis(config.server.request_timeout_ms),
            },
            deliverer,
            body_limit: config.server.body_limit_bytes,
            reconcile_interval: Duration::from_millis(config.payouts.reconcile_interval_ms),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The bank webhook listener's bound address (`server.webhook_listen`), if it has one.
    ///
    /// # Errors
    ///
    /// The socket has no local address.
    pub fn webhook_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.webhooks.as_ref().map(Bound::local_addr).transpose()
    }

    /// Serves until `shutdown` completes, then gives in-flight requests the grace period.
    ///
    /// # Errors
    ///
    /// The server failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let reconciler = tokio::spawn(reconcile(self.engine, self.reconcile_interval));
        let deliverer = tokio::spawn(self.deliverer.run());
        let links = tokio::spawn(self.links.run());
        let result = match self.webhooks {
            None => {
                self.server
                    .serve(router(self.state, self.body_limit), shutdown)
                    .await
            }
            Some(webhooks) => {
                shared::server::serve_pair(
                    (
                        self.server,
                        surface_router(self.state.clone(), self.body_limit, Surface::App),
                    ),
                    (
                        webhooks,
                        surface_router(self.state, self.body_limit, Surface::BankWebhooks),
                    ),
                    shutdown,
                )
                .await
            }
        }
        .map_err(StartupError::from);
        reconciler.abort();
        deliverer.abort();
        links.abort();
        result
    }
}

/// Re-reads the vault client's TLS files on every SIGHUP (a renewed client certificate). The
/// handler is installed now, before the proxy says it listens: a SIGHUP before it would end the
/// process.
fn reload_vault_tls_on_sighup(vault: VaultClient) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot watch SIGHUP: the vault client certificate is reloaded only by a restart"
        );
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match vault.reload_tls() {
                Ok(()) => tracing::info!("SIGHUP: the vault client's TLS files reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the vault client's TLS files did not load; the previous ones stay in use"
                ),
            }
        }
    });
}

/// The reconciler: every interval, each unfinished payout whose retry or check time has come,
/// so a restarted proxy resumes them all. Not sooner, at start-up either: a payout's
/// `next_attempt_at` may be the lease of a replica (or this one's previous run) whose bank call
/// is still in flight, and taking it over would send the call again.
async fn reconcile(engine: Engine, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_micros();
        // Claimed for a lease, so two replicas do not drive the same payout at once.
        let lease = now + i64::try_from(engine.lease().as_micros()).unwrap_or(i64::MAX / 2);
        let claim = PayoutClaim {
            due: now,
            lease_until: lease,
            owner: engine.owner(),
            limit: 100,
        };
        let claimed = engine.store().claim_due_payouts(claim).await;
        let payouts = match claimed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reconciler could not read payouts");
                continue;
            }
        };
        for p in payouts {
            if let Err(e) = engine.drive(&p.id).await {
                tracing::warn!(payout = %p.id, error = %e, "reconciling a payout failed");
            }
        }
    }
}

pub use shared::server::shutdown_signal;
