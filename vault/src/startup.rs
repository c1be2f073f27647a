//! Building and running the server: open the store, unwrap the keys, check the audit
//! checkpoint, bind, serve until SIGTERM or SIGINT; in the background, sweep expired tokens,
//! pick up revocations made elsewhere (the command line, other replicas), report refusals to the
//! audit log and write checkpoints.

use crate::http::source::TrustedProxies;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::server::Bound;

use crate::audit::Link;
use crate::config::ProviderKind;
use crate::config::VaultConfig;
use crate::crypto::{FileKeyProvider, KeyProvider, Pkcs11KeyProvider};
use crate::http::{AppState, Limits, Metrics, Surface, router};
use crate::limits::Limiter;
use crate::service::{Vault, VaultError};
use crate::store::{PgStore, SqliteStore, Store};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// Keys or store.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The listener could not bind, or serving failed.
    #[error(transparent)]
    Server(#[from] shared::server::ServeError),
}

/// Opens (and migrates) the configured store: PostgreSQL when `database.url` is a `postgres://`
/// URL, else SQLite.
///
/// # Errors
///
/// The database cannot be reached, opened or migrated.
pub async fn open_store(config: &VaultConfig) -> Result<Arc<dyn Store>, crate::store::StoreError> {
    let db = &config.database;
    Ok(match db.postgres_url() {
        Some(url) => {
            Arc::new(PgStore::connect(url, db.max_connections, None, db.max_queued_writes).await?)
        }
        None => Arc::new(SqliteStore::open(&config.sqlite())?),
    })
}

/// Opens the configured store for reading only: nothing is created, migrated or written.
///
/// # Errors
///
/// No database there, a schema of another version, or the database cannot be reached.
pub async fn open_store_read_only(
    config: &VaultConfig,
) -> Result<Arc<dyn Store>, crate::store::StoreError> {
    let db = &config.database;
    Ok(match db.postgres_url() {
        Some(url) => Arc::new(PgStore::connect_read_only(url, db.max_connections, None).await?),
        None => Arc::new(SqliteStore::open_read_only(&config.sqlite())?),
    })
}

pub mod sealed;

/// The configured master-key provider for a command that runs once. With Shamir shares the
/// operators type them in on standard input (a running vault takes them through `vault operator
/// unseal` instead).
pub fn key_provider(config: &VaultConfig) -> Box<dyn KeyProvider> {
    match config.keys.provider {
        ProviderKind::File => Box::new(FileKeyProvider::new(&config.keys.master_key_file)),
        ProviderKind::Pkcs11 => Box::new(Pkcs11KeyProvider::new(config.keys.pkcs11.clone())),
        ProviderKind::Shamir => Box::new(sealed::StdinShares),
    }
}

/// Where a master-key rotation writes the new key file before it replaces the old one.
pub fn next_key_file(config: &VaultConfig) -> PathBuf {
    let mut name = config.keys.master_key_file.clone().into_os_string();
    name.push(".next");
    PathBuf::from(name)
}

/// Makes a rename in the directory of `path` durable (best effort: a failure leaves the rename
/// done, only not yet on disk).
pub fn sync_dir(path: &std::path::Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// The lock a master-key rotation of the file provider holds from writing the new key file to
/// renaming it over the old one (`File::lock`: the kernel drops it if the process dies).
pub fn rotation_lock(config: &VaultConfig) -> std::io::Result<std::fs::File> {
    let mut name = config.keys.master_key_file.clone().into_os_string();
    name.push(".lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(name))
}

/// Finishes or undoes a master-key rotation of the file provider that was interrupted between
/// rewrapping the keys and replacing the key file: whichever of the key file and the new one
/// opens the stored keys is kept as the key file. The other is never deleted, only renamed
/// aside (`.unused-<time>`), so a wrong verdict (a lagging replica, a restored backup) loses
/// no key. Skipped while a rotation holds its lock.
async fn recover_master_rotation(config: &VaultConfig) -> Result<(), VaultError> {
    let next = next_key_file(config);
    if config.keys.provider != ProviderKind::File || !next.exists() {
        return Ok(());
    }
    let lock = rotation_lock(config).map_err(crate::crypto::CryptoError::Io)?;
    if lock.try_lock().is_err() {
        // A rotation is running: its new key is not in use until it renames it.
        return Ok(());
    }
    let store = open_store_read_only(config).await?;
    let wrapped = store.wrapped_keys().await?;
    let opens = |path: &std::path::Path| {
        FileKeyProvider::new(path)
            .master_key()
            .is_ok_and(|key| crate::crypto::Keyring::open(&key, &wrapped).is_ok())
    };
    if opens(&config.keys.master_key_file) {
        let aside = aside_name(&next);
        tracing::warn!(file = %next.display(), aside = %aside.display(), "a master-key rotation did not finish: the keys are still under the old master key; the unused new key file was moved aside");
        std::fs::rename(&next, &aside).map_err(crate::crypto::CryptoError::Io)?;
    } else if opens(&next) {
        tracing::warn!(file = %config.keys.master_key_file.display(), "a master-key rotation was interrupted after the keys were rewrapped: the new key file replaces the old one now");
        std::fs::rename(&next, &config.keys.master_key_file)
            .map_err(crate::crypto::CryptoError::Io)?;
    }
    sync_dir(&config.keys.master_key_file);
    drop(lock);
    Ok(())
}

/// `path` with `.unused-<unix seconds>` added.
fn aside_name(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".unused-{}",
        crate::clock::now_micros() / 1_000_000
    ));
    PathBuf::from(name)
}

/// Opens the configured store and vault (making keys only for a new, empty database).
///
/// # Errors
///
/// The database cannot be opened, or the master key does not fit it.
pub async fn open_vault(config: &VaultConfig) -> Result<Vault, VaultError> {
    recover_master_rotation(config).await?;
    let store = open_store(config).await?;
    Vault::open_in(store, key_provider(config).as_ref(), config.mode.as_str()).await
}

/// Opens an existing vault for commands that only read (`audit verify`, `audit list`).
///
/// # Errors
///
/// No database or no keys there, or the master key does not fit it.
pub async fn open_vault_read_only(config: &VaultConfig) -> Result<Vault, VaultError> {
    recover_master_rotation(config).await?;
    let store = open_store_read_only(config).await?;
    Vault::open_existing(store, key_provider(config).as_ref()).await
}

/// Opens the vault a server runs on: with a checkpoint file, refuses an empty database where
/// checkpoints say there was a chain (before any key is made for it), and a chain that no
/// longer holds its newest checkpoint.
async fn open_serving(
    config: &VaultConfig,
    store: Arc<dyn Store>,
    provider: &dyn KeyProvider,
) -> Result<Vault, StartupError> {
    if let Some(path) = &config.audit.checkpoint_file {
        let recorded = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if recorded && store.is_empty().await.map_err(VaultError::from)? {
            return Err(VaultError::CheckpointsWithoutChain.into());
        }
    }
    let vault = Vault::open_in(store, provider, config.mode.as_str()).await?;
    if let Some(path) = &config.audit.checkpoint_file {
        vault.check_latest_checkpoint(path).await?;
    }
    if config.mode == crate::config::Mode::Production {
        let problems = vault
            .production_client_problems(config.server.tls.client_ca_file.is_some())
            .await?;
        if !problems.is_empty() {
            return Err(VaultError::ProductionRefused(problems.join("; ")).into());
        }
        let made_in = vault.keys_made_in().await?;
        if made_in.as_deref() != Some("production") {
            return Err(VaultError::ProductionRefused(format!(
                "mode = \"production\" refuses this database: its keys were made {}; a production vault starts from `vault init` with mode = \"production\" (keys made for development or tests never hold real cards)",
                made_in.map_or_else(
                    || "before modes were recorded".to_owned(),
                    |m| format!("in {m} mode")
                )
            ))
            .into());
        }
    }
    Ok(vault)
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    server: Bound,
    /// The card form's own listener (`collect.listen`).
    form: Option<Bound>,
    state: AppState,
    sweep_interval: Duration,
    collect_retention: Duration,
    rewrap: Option<(u32, Duration)>,
    /// When the data key rotates by itself: seals, age.
    rotation: (u64, Duration),
    report_interval: Duration,
    checkpoints: Option<(PathBuf, Duration)>,
}

impl Application {
    /// Opens everything and binds the listener (port 0 picks a free port). With a checkpoint
    /// file, refuses to start when the chain no longer holds its newest checkpoint.
    ///
    /// # Errors
    ///
    /// See [`StartupError`].
    pub async fn build(config: &VaultConfig) -> Result<Self, StartupError> {
        if config.keys.provider == ProviderKind::Shamir {
            return Err(VaultError::Invalid(
                "a vault on Shamir shares starts sealed: serve it with `vault serve` (startup::sealed)",
            )
            .into());
        }
        let store = open_store(config).await.map_err(VaultError::from)?;
        recover_master_rotation(config).await?;
        let vault = open_serving(config, store, key_provider(config).as_ref()).await?;
        let server = Bound::bind(config.listen(), &config.server).await?;
        let form = match config.collect.listen {
            Some(addr) => Some(Bound::bind(addr, &config.form_server()).await?),
            None => None,
        };
        Ok(Self::assemble(config, vault, server, form))
    }

    /// The server for `vault` on listeners already bound.
    fn assemble(config: &VaultConfig, vault: Vault, server: Bound, form: Option<Bound>) -> Self {
        // Unset, the public origin is the address actually bound (port 0 picks one): the
        // form's own listener when it has one.
        let form_listener = form.as_ref().unwrap_or(&server);
        let scheme = if form_listener.is_tls() {
            "https"
        } else {
            "http"
        };
        let public_origin = match (&config.collect.public_url, form_listener.local_addr()) {
            (Some(url), _) => url.clone(),
            (None, Ok(addr)) => format!("{scheme}://{addr}"),
            (None, Err(_)) => config.public_origin(),
        };
        // Checked when the configuration was loaded; were it not, trusting none is the safe side.
        let trusted_proxies =
            TrustedProxies::parse(&config.limits.trusted_proxies).unwrap_or_default();
        if trusted_proxies.is_empty()
            && public_origin.starts_with("https://")
            && !form_listener.is_tls()
        {
            tracing::warn!(
                "collect.public_url is https, so browsers reach the vault through a TLS terminator, but limits.trusted_proxies is empty: every cardholder shares the terminator's rate-limit bucket; list it there"
            );
        }
        Self {
            server,
            form,
            state: AppState {
                vault,
                limits: Arc::new(Limits {
                    body_limit_bytes: config.server.body_limit_bytes,
                    request_timeout: Duration::from_millis(config.server.request_timeout_ms),
                    max_ttl_seconds: config.tokens.max_ttl_seconds,
                    public_origin,
                    trusted_proxies,
                    production: config.mode == crate::config::Mode::Production,
                }),
                metrics: Arc::new(Metrics::default()),
                limiter: Arc::new(Limiter::new(&config.limits)),
                readiness: Arc::default(),
            },
            sweep_interval: Duration::from_secs(config.tokens.sweep_interval_seconds),
            collect_retention: Duration::from_secs(config.collect.retention_seconds),
            rotation: (
                config.keys.data_key_max_seals,
                Duration::from_secs(config.keys.data_key_max_age_days.saturating_mul(86_400)),
            ),
            rewrap: config.keys.rewrap_in_background.then(|| {
                (
                    config.keys.rewrap_batch_size,
                    Duration::from_millis(config.keys.rewrap_pause_ms),
                )
            }),
            report_interval: Duration::from_secs(config.limits.report_interval_seconds),
            checkpoints: config.audit.checkpoint_file.clone().map(|path| {
                (
                    path,
                    Duration::from_secs(config.audit.checkpoint_interval_seconds),
                )
            }),
        }
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The socket has no local address (not expected after a successful bind).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The card form's own bound address (`collect.listen`), if it has one.
    ///
    /// # Errors
    ///
    /// The socket has no local address (not expected after a successful bind).
    pub fn form_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.form.as_ref().map(Bound::local_addr).transpose()
    }

    /// Serves until `shutdown` completes, then gives in-flight requests the configured grace
    /// period. Background work: the sweeper, the revocation watch, the refusal reports, the
    /// checkpoints. At the end
    /// the last refusals are reported and a last checkpoint is written.
    ///
    /// # Errors
    ///
    /// The server failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let vault = self.state.vault.clone();
        let limiter = Arc::clone(&self.state.limiter);
        let sweeper = tokio::spawn(sweep(
            vault.clone(),
            self.sweep_interval,
            self.collect_retention,
        ));
        let revocations = tokio::spawn(watch_revocations(vault.clone(), self.rotation));
        let rewrapper = self
            .rewrap
            .map(|pace| tokio::spawn(rewrap(vault.clone(), pace)));
        // The reporter is told to stop, not aborted: cut mid-report, it would lose the counts
        // it had taken.
        let (stop_reporting, reporting) = tokio::sync::watch::channel(false);
        let reporter = tokio::spawn(report(
            vault.clone(),
            Arc::clone(&limiter),
            self.report_interval,
            reporting,
        ));
        let last_checkpoint = Arc::new(parking_lot::Mutex::new(None));
        let checkpointer = self.checkpoints.clone().map(|(path, every)| {
            tokio::spawn(checkpoint(
                vault.clone(),
                path,
                every,
                Arc::clone(&last_checkpoint),
            ))
        });
        let result = match self.form {
            None => self
                .server
                .serve(router(self.state, Surface::All), shutdown)
                .await
                .map_err(StartupError::from),
            Some(form) => shared::server::serve_pair(
                (self.server, router(self.state.clone(), Surface::Api)),
                (form, router(self.state, Surface::Form)),
                shutdown,
            )
            .await
            .map_err(StartupError::from),
        };
        // Aborted and then awaited: once this returns no task holds the vault (and its keys),
        // which is what sealing a Shamir vault promises.
        sweeper.abort();
        revocations.abort();
        let _ = sweeper.await;
        let _ = revocations.await;
        if let Some(task) = rewrapper {
            task.abort();
            let _ = task.await;
        }
        let _ = stop_reporting.send(true);
        let _ = reporter.await;
        if let Some(task) = checkpointer {
            task.abort();
            let _ = task.await;
        }
        let unwritten = vault
            .record_refusals(limiter.drain(), self.report_interval)
            .await;
        if !unwritten.is_empty() {
            tracing::error!(
                clients = unwritten.clients.len(),
                failures = unwritten.failures.len(),
                "could not write the last rate-limit and authentication-failure events"
            );
        }
        if let Err(e) = vault.flush_seals().await {
            tracing::error!(error = %e, "could not write the last seal counts");
        }
        if let Some((path, _)) = &self.checkpoints {
            let previous = *last_checkpoint.lock();
            if let Err(e) = vault.write_checkpoint(path, previous) {
                tracing::error!(error = %e, "could not write the shutdown audit checkpoint");
            }
        }
        result
    }
}

/// How often the audit log is asked for revocations made elsewhere (the command line, other
/// replicas): one indexed query that usually finds nothing.
const REVOCATION_POLL: Duration = Duration::from_secs(1);

async fn watch_revocations(vault: Vault, (max_seals, max_age): (u64, Duration)) {
    let mut ticker = tokio::time::interval(REVOCATION_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = vault.read_revocations().await {
            tracing::warn!(error = %e, "reading revocations from the audit log failed");
        }
        // Key rotations and retirements by the command line or another replica take effect
        // here within a second, without a restart.
        if let Err(e) = vault.reload_keys().await {
            tracing::error!(error = %e, "reloading the stored keys failed; the keys in use are kept");
        }
        // The seal counts, then the rotation they (or the key's age) may call for.
        if let Err(e) = vault.flush_seals().await {
            tracing::warn!(error = %e, "writing the data key's seal count failed; kept for the next try");
        }
        if let Err(e) = vault.rotate_when_due(max_seals, max_age).await {
            tracing::error!(error = %e, "rotating the data key automatically failed; retried in a second");
        }
    }
}

/// Moves tokens still sealed under an older data key version to the active one, in the
/// background: a pass every second finds nothing to do until a rotation leaves old rows (an
/// index seek per old version), then works through them in paced batches. Aborted at
/// shutdown, it loses at most the batch in flight, which the next start redoes.
async fn rewrap(vault: Vault, (batch, pause): (u32, Duration)) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match vault.rewrap("system", batch, pause).await {
            Ok(done) if done.resealed > 0 => {
                tracing::info!(
                    resealed = done.resealed,
                    "rewrapped tokens under the active data key"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rewrapping tokens failed; retried in a second"),
        }
    }
}

async fn sweep(vault: Vault, every: Duration, collect_retention: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match vault.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "swept expired tokens"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired tokens failed"),
        }
        match vault.sweep_collect_sessions(collect_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "swept collect sessions past their retention"),
            Err(e) => tracing::warn!(error = %e, "sweeping collect sessions failed"),
        }
    }
}

/// Every interval, the refusals counted since the last one become audit events.
async fn report(
    vault: Vault,
    limiter: Arc<Limiter>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let report = limiter.drain();
        if report.is_empty() {
            continue;
        }
        let unwritten = vault.record_refusals(report, every).await;
        if !unwritten.is_empty() {
            limiter.restore(unwritten);
        }
    }
}

/// Every interval, a checkpoint of the head (when it moved).
async fn checkpoint(
    vault: Vault,
    path: PathBuf,
    every: Duration,
    last: Arc<parking_lot::Mutex<Option<Link>>>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let previous = *last.lock();
        match vault.write_checkpoint(&path, previous) {
            Ok(written) => *last.lock() = written,
            Err(e) => tracing::error!(error = %e, "could not write an audit checkpoint"),
        }
    }
}

pub use shared::server::shutdown_signal;
