//! The one-command local stack (`cargo run --release --bin devstack`): the vault, the
//! proxy, the Bank 131 sandbox and a small app webhook receiver on loopback, in one process, with
//! their state under one directory (`./.devstack/` by default).
//!
//! The first run makes everything: the vault master key and database, a local CA and the
//! certificates every service serves over TLS (`tls`), two vault clients for tenant `demo` (the
//! app's, and the proxy's, bound to the proxy's client certificate), the partner and
//! sandbox-bank RSA keys, the proxy database and its app client. Later runs reuse all of it and print the same API keys, which
//! are kept in `credentials.json` (mode 0600). The service configurations are written as
//! `vault.toml` and `proxy.toml` (and `commands.sh`), so the same stack can also be run as
//! separate processes.
//!
//! Then, unless told not to, one payout is walked through every step (see `demo`), each printed
//! as it happens. No card number is printed or logged: the demo names its test card masked.
//!
//! The parts: this file starts and stops the services ([`run`]); `files` is the state on disk,
//! `configs` the files written for running the services separately, `tls` the certificates,
//! `clients` the clients made once and reused, `receiver` the app's webhook endpoint, `demo` the walked-through payout and
//! `report` what is printed.

mod clients;
mod configs;
mod demo;
mod files;
mod receiver;
mod report;
mod shop;
mod tls;

use clients::{ensure_proxy_client, ensure_vault_clients, highest_session_number};
use configs::{commands_sh, key_pair, proxy_toml, vault_toml};
pub use report::Printer;
use report::Running;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use parking_lot::Mutex;
use shared::ids::ApiKey;
use tokio::sync::{mpsc, watch};

use crate::sandbox::{self, ProjectConfig, SandboxConfig, SandboxHandle};
use files::{ClientKey, Credentials, Layout, ProxyClientKey};

/// The tenant of every client devstack makes.
pub const TENANT: &str = "demo";
/// The sandbox project (`X-PARTNER-PROJECT`).
pub const PROJECT: &str = "devstack";
/// The sandbox wallet: 1,000,000,000.00 in minor units, more than any demo will spend.
const WALLET_BALANCE: i64 = 100_000_000_000;
/// Scopes of the app's vault client.
const VAULT_APP_SCOPES: &str = "tokens:create,tokens:read,tokens:delete,collect:create";
/// Scopes of the proxy's vault client: detokenize for payouts, collect sessions for payout links.
const VAULT_PROXY_SCOPES: &str = "tokens:detokenize,collect:create";
/// Scopes of the app's proxy client.
const PROXY_APP_SCOPES: &str = crate::stack::APP_SCOPES;
/// How long the services get to finish in-flight requests when devstack stops.
const SHUTDOWN_GRACE_MS: u64 = 2_000;

/// What to run, and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the state lives; created if missing.
    pub dir: PathBuf,
    /// The vault's port on 127.0.0.1.
    pub vault_port: u16,
    /// The proxy's port.
    pub proxy_port: u16,
    /// The Bank 131 sandbox's port.
    pub sandbox_port: u16,
    /// The app webhook receiver's port. It is stored in the proxy's app client: changing it
    /// later makes a new app client (new key and secret).
    pub app_port: u16,
    /// Walk one payout through every step after start.
    pub demo: bool,
    /// Stop after the demo (exit status tells whether it succeeded) instead of serving.
    pub exit_after_demo: bool,
    /// How long each demo step may take.
    pub step_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".devstack"),
            vault_port: vault::config::DEFAULT_PORT,
            proxy_port: proxy::config::DEFAULT_PORT,
            sandbox_port: 8131,
            app_port: 8400,
            demo: true,
            exit_after_demo: false,
            step_timeout: Duration::from_secs(30),
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn no_env() -> std::iter::Empty<(String, String)> {
    std::iter::empty()
}

/// Fails early, before anything is created or changed, when a port is taken (most likely by
/// another devstack).
fn probe_ports(options: &Options) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(4);
    for (what, flag, port) in [
        ("vault", "--vault-port", options.vault_port),
        ("proxy", "--proxy-port", options.proxy_port),
        ("Bank 131 sandbox", "--sandbox-port", options.sandbox_port),
        ("app webhook receiver", "--app-port", options.app_port),
    ] {
        let addr = loopback(port);
        // Held until all are bound, so two flags naming the same port fail here too.
        held.push(std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "the {what} cannot listen on {addr} (in use: another devstack, or two flags \
                 naming one port? see {flag})"
            )
        })?);
    }
    Ok(())
}

/// Waits until `url` answers 200.
async fn wait_ready(http: &reqwest::Client, what: &str, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if Instant::now() >= deadline => bail!("the {what} did not become ready at {url}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits (up to 3 s) until the proxy has no app webhook due for delivery.
async fn outbox_settled(store: &Arc<dyn proxy::store::ProxyStore>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match store.undelivered_events().await {
            Ok(0) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the proxy outbox");
                return;
            }
        }
    }
}

/// A service task's end: its name and result.
type Exit = (&'static str, anyhow::Result<()>);

/// Runs the stack: sets up or reuses the state, starts everything, runs the demo, then serves
/// until `stop` completes (or, with [`Options::exit_after_demo`], returns after the demo).
///
/// # Errors
///
/// Set-up failed (a port taken, a key unreadable, a database made with another key), a
/// service stopped on its own, or the demo failed under `exit_after_demo` (the error names the
/// step).
pub async fn run(
    options: Options,
    out: Printer,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    probe_ports(&options)?;
    let layout = Layout::open(&options.dir)?;
    let mut made: Vec<String> = Vec::new();
    let mut credentials = Credentials::load(&layout.credentials())?;
    let before = credentials.clone();

    // Keys.
    if !layout.master_key().exists() {
        vault::crypto::FileKeyProvider::create(&layout.master_key())
            .context("writing the vault master key")?;
        made.push("vault master key".to_owned());
    }
    let mut fresh = false;
    // The proxy reads the private half from its file; only the public half is needed here.
    let (_, partner_public) = key_pair(
        &layout.partner_key(),
        &layout.partner_public_key(),
        &mut fresh,
    )?;
    if fresh {
        made.push("partner RSA key pair".to_owned());
    }
    let mut fresh = false;
    let (bank_private, _) = key_pair(&layout.bank_key(), &layout.bank_public_key(), &mut fresh)?;
    if fresh {
        made.push("sandbox bank RSA key pair".to_owned());
    }
    let tls = tls::DevTls::ensure(&layout, &mut made)?;

    // The vault's configuration and clients.
    files::write_file(
        &layout.vault_toml(),
        vault_toml(&layout, options.vault_port, &tls).as_bytes(),
        0o644,
    )?;
    let vault_config = vault::config::VaultConfig::load(Some(&layout.vault_toml()), no_env())
        .context("vault.toml")?;
    let vault_made =
        ensure_vault_clients(&vault_config, &mut credentials, tls.proxy_cert_sha256).await?;
    if vault_made > 0 {
        made.push(format!("vault clients ({vault_made})"));
    }
    credentials.save(&layout.credentials())?;
    let (Some(vault_app), Some(vault_proxy)) = (
        credentials.vault_app.clone(),
        credentials.vault_proxy.clone(),
    ) else {
        bail!("the vault clients are missing from the credentials");
    };

    // The app webhook receiver's port, taken early: its URL goes into the proxy's app client.
    let app_addr = loopback(options.app_port);
    let app_listener = tokio::net::TcpListener::bind(app_addr)
        .await
        .with_context(|| {
            format!("the app webhook receiver cannot listen on {app_addr} (see --app-port)")
        })?;
    let app_url = format!("https://{app_addr}{}", receiver::PATH);

    // The proxy's configuration and app client.
    files::write_secret(
        &layout.proxy_toml(),
        proxy_toml(&layout, &options, &vault_proxy.key, &tls).as_bytes(),
    )?;
    let proxy_config = proxy::config::ProxyConfig::load(Some(&layout.proxy_toml()), no_env())
        .context("proxy.toml")?;
    let proxy_store = proxy::startup::open_store(&proxy_config)
        .await
        .context("opening proxy.db")?;
    let secrets = proxy::secrets::for_config(&proxy_config).context("the webhook secret key")?;
    if let Some(note) =
        ensure_proxy_client(&proxy_store, &secrets, &mut credentials, &app_url).await?
    {
        made.push(note.to_owned());
    }
    credentials.save(&layout.credentials())?;
    let used_sessions = highest_session_number(&proxy_store).await?;
    let Some(proxy_app) = credentials.proxy_app.clone() else {
        bail!("the proxy app client is missing from the credentials");
    };
    files::write_file(
        &layout.commands(),
        commands_sh(&layout, &options, &tls).as_bytes(),
        0o755,
    )?;

    // The bank.
    let proxy_addr = loopback(options.proxy_port);
    let sandbox_addr = loopback(options.sandbox_port);
    let mut project = ProjectConfig::new(PROJECT, partner_public);
    project.webhook_url = Some(format!("https://{proxy_addr}/webhooks/bank131"));
    project.wallet_balance = WALLET_BALANCE;
    project.webhook_api_version = sandbox::ApiVersion::V2;
    let state_dir = layout.sandbox_state_dir();
    files::make_private_dir(&state_dir)?;
    let state_file = state_dir.join("state.json");
    let sandbox = sandbox::spawn(SandboxConfig {
        listen: sandbox_addr,
        bank_private_key_pem: Some(bank_private),
        projects: vec![project],
        state_file: Some(state_file),
        tls: tls.server_config(false),
        webhook_ca_file: Some(tls.ca_file()),
        ..SandboxConfig::default()
    })
    .await
    .with_context(|| {
        format!("the Bank 131 sandbox cannot start on {sandbox_addr} (see --sandbox-port)")
    })?;
    if files::read_optional(&layout.bank_public_key())?.as_deref()
        != Some(sandbox.bank_public_key_pem())
    {
        files::write_file(
            &layout.bank_public_key(),
            sandbox.bank_public_key_pem().as_bytes(),
            0o644,
        )?;
    }
    let http = tls.http_client(Duration::from_secs(10))?;
    // The proxy database keeps the payouts of earlier runs: a bank webhook for a reused
    // session id would be matched to an old payout, so the sandbox numbers on past them (its
    // state file usually has it further on already; a failed state write would not).
    sandbox.skip_session_ids_through(used_sessions);

    // The services.
    let vault_addr = loopback(options.vault_port);
    let vault_app_server = vault::startup::Application::build(&vault_config)
        .await
        .with_context(|| format!("the vault cannot start on {vault_addr} (see --vault-port)"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (exit_tx, mut exits) = mpsc::unbounded_channel::<Exit>();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let quiet = Arc::new(AtomicBool::new(false));
    {
        let tx = exit_tx.clone();
        let until = stopped();
        tokio::spawn(async move {
            let r = vault_app_server.run_until(until).await;
            let _ = tx.send(("vault", r.map_err(anyhow::Error::from)));
        });
        let tx = exit_tx.clone();
        let until = stopped();
        let secret = proxy_app.webhook_secret.clone();
        let shop = shop::Shop {
            origin: format!("https://{app_addr}"),
            vault_url: format!("https://{vault_addr}"),
            vault_key: vault_app.key.clone(),
            proxy_url: format!("https://{proxy_addr}"),
            proxy_key: proxy_app.client.key.clone(),
            http: http.clone(),
            out: out.clone(),
        };
        let (quiet, out) = (Arc::clone(&quiet), out.clone());
        let app_tls = shared::server::ServerTls::load(&tls.server_config(false))
            .context("the app's TLS certificate")?;
        tokio::spawn(async move {
            let r = receiver::serve(
                app_listener,
                app_tls,
                receiver::Receiver {
                    secret,
                    events: events_tx,
                    quiet,
                    out,
                },
                shop,
                until,
            )
            .await;
            let _ = tx.send(("app webhook receiver", r.map_err(anyhow::Error::from)));
        });
    }
    let vault_url = format!("https://{vault_addr}");
    let proxy_url = format!("https://{proxy_addr}");
    let sandbox_url = sandbox.base_url();
    // The proxy checks its vault keys against the vault as it starts: the vault must answer
    // by then, or the proxy's first verdict is "vault unreachable".
    let ready = async {
        wait_ready(&http, "vault", &format!("{vault_url}/readyz")).await?;
        let proxy_app_server = proxy::startup::Application::build(&proxy_config)
            .await
            .with_context(|| {
                format!("the proxy cannot start on {proxy_addr} (see --proxy-port)")
            })?;
        let tx = exit_tx.clone();
        let until = stopped();
        tokio::spawn(async move {
            let r = proxy_app_server.run_until(until).await;
            let _ = tx.send(("proxy", r.map_err(anyhow::Error::from)));
        });
        wait_ready(&http, "proxy", &format!("{proxy_url}/readyz")).await?;
        wait_ready(&http, "sandbox", &format!("{sandbox_url}/__sandbox/health")).await
    }
    .await;
    // Each service task holds its own sender: the channel closes when the last one ends.
    drop(exit_tx);

    let result = match ready {
        Err(e) => Err(e),
        Ok(()) => {
            let running = Running {
                options: &options,
                out: &out,
                layout: &layout,
                made: &made,
                reused: credentials.same_as(&before),
                vault_url: &vault_url,
                proxy_url: &proxy_url,
                sandbox_url: &sandbox_url,
                app_url: &app_url,
                tls: &tls,
                vault_app: &vault_app,
                proxy_app: &proxy_app,
                sandbox: &sandbox,
                http: &http,
                proxy_store: &proxy_store,
                quiet: &quiet,
            };
            running.present(&mut events, &mut exits, stop).await
        }
    };

    // Stop everything, whatever happened.
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS + 3_000);
    while let Ok(Some((name, r))) = tokio::time::timeout_at(deadline, exits.recv()).await {
        if let Err(e) = r {
            tracing::warn!(service = name, error = %format!("{e:#}"), "stopped with an error");
        }
    }
    sandbox.shutdown().await;
    if result.is_ok() && !options.exit_after_demo {
        out.line("devstack stopped");
    }
    result
}
