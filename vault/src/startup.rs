//! Building and running the server: open the store, unwrap the keys, bind, serve until SIGTERM
//! or SIGINT, and sweep expired tokens in the background.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::VaultConfig;
use crate::crypto::FileKeyProvider;
use crate::http::{AppState, Limits, Metrics, router};
use crate::service::{Vault, VaultError};
use crate::store::{PgStore, SqliteStore, Store};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// Keys or store.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Opens (and migrates) the configured store: PostgreSQL when `database.url` is a `postgres://`
/// URL, else SQLite.
///
/// # Errors
///
/// The database cannot be reached, opened or migrated.
pub async fn open_store(config: &VaultConfig) -> Result<Arc<dyn Store>, crate::store::StoreError> {
    Ok(match config.database.postgres_url() {
        Some(url) => Arc::new(PgStore::connect(url, config.database.max_connections, None).await?),
        None => Arc::new(SqliteStore::open(&config.sqlite())?),
    })
}

/// Opens the configured store and vault.
///
/// # Errors
///
/// The database cannot be opened, or the master key does not fit it.
pub async fn open_vault(config: &VaultConfig) -> Result<Vault, VaultError> {
    let store = open_store(config).await?;
    let provider = FileKeyProvider::new(&config.keys.master_key_file);
    Vault::open(store, &provider).await
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown_timeout: Duration,
    sweep_interval: Duration,
}

impl Application {
    /// Opens everything and binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// See [`StartupError`].
    pub async fn build(config: &VaultConfig) -> Result<Self, StartupError> {
        let vault = open_vault(config).await?;
        let listener =
            TcpListener::bind(config.listen())
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.listen(),
                    source,
                })?;
        Ok(Self {
            listener,
            state: AppState {
                vault,
                limits: Arc::new(Limits {
                    body_limit_bytes: config.server.body_limit_bytes,
                    request_timeout: Duration::from_millis(config.server.request_timeout_ms),
                    max_ttl_seconds: config.tokens.max_ttl_seconds,
                }),
                metrics: Arc::new(Metrics::default()),
            },
            shutdown_timeout: Duration::from_millis(config.server.shutdown_timeout_ms),
            sweep_interval: Duration::from_secs(config.tokens.sweep_interval_seconds),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The socket has no local address (not expected after a successful bind).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then gives in-flight requests the configured grace
    /// period.
    ///
    /// # Errors
    ///
    /// The server failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let sweeper = tokio::spawn(sweep(self.state.vault.clone(), self.sweep_interval));
        let result = shared::server::serve(
            self.listener,
            router(self.state),
            shutdown,
            self.shutdown_timeout,
        )
        .await
        .map_err(StartupError::Serve);
        sweeper.abort();
        result
    }
}

async fn sweep(vault: Vault, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match vault.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "swept expired tokens"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired tokens failed"),
        }
    }
}

pub use shared::server::shutdown_signal;
