//! The one-command local stack (`cargo run --release --bin devstack`, DESIGN §8): the vault, the
//! proxy, the Bank 131 sandbox and a small app webhook receiver on loopback, in one process, with
//! their state under one directory (`./.devstack/` by default).
//!
//! The first run makes everything: the vault master key and database, two vault clients for
//! tenant `demo` (the app's and the proxy's), the partner and sandbox-bank RSA keys, the proxy
//! database and its app client. Later runs reuse all of it and print the same API keys, which
//! are kept in `credentials.json` (mode 0600). The service configurations are written as
//! `vault.toml` and `proxy.toml` (and `commands.sh`), so the same stack can also be run as
//! separate processes.
//!
//! Then, unless told not to, one payout is walked through every step (see `demo`), each printed
//! as it happens. No card number is printed or logged: the demo names its test card masked.

mod demo;
mod files;
mod receiver;

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
const VAULT_APP_SCOPES: &str = "tokens:create,tokens:read,tokens:delete";
/// Scope of the proxy's vault client.
const VAULT_PROXY_SCOPES: &str = "tokens:detokenize";
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

/// Where devstack's report goes (stdout in the binary): whole lines, flushed at once, from any
/// task.
#[derive(Clone)]
pub struct Printer(Arc<Mutex<Box<dyn Write + Send>>>);

impl Printer {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Lines to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(writer))))
    }

    /// Writes one line. A closed output (a pipe whose reader went away) is not an error worth
    /// stopping the services for, so write errors are ignored.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut w = self.0.lock();
        let _ = writeln!(w, "{}", text.as_ref());
        let _ = w.flush();
    }
}

impl fmt::Debug for Printer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Printer")
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

/// Reads a key pair, or makes one (private key 0600) when either half is missing.
fn key_pair(private: &Path, public: &Path, made: &mut bool) -> anyhow::Result<(String, String)> {
    if let (Some(private_pem), Some(public_pem)) = (
        files::read_optional(private)?,
        files::read_optional(public)?,
    ) {
        return Ok((private_pem, public_pem));
    }
    let (private_pem, public_pem) =
        sandbox::generate_rsa_keypair_pem().context("generating an RSA key pair")?;
    files::write_secret(private, private_pem.as_bytes())?;
    files::write_file(public, public_pem.as_bytes(), 0o644)?;
    *made = true;
    Ok((private_pem, public_pem))
}

fn vault_toml(layout: &Layout, port: u16) -> String {
    format!(
        "# Written by devstack at every start. To run this vault on its own:\n\
         #   vault --config {config} serve\n\
         [server]\n\
         listen = \"{listen}\"\n\
         shutdown_timeout_ms = {SHUTDOWN_GRACE_MS}\n\
         \n\
         [database]\n\
         path = {db}\n\
         \n\
         [keys]\n\
         master_key_file = {key}\n\
         \n\
         [log]\n\
         filter = \"info\"\n",
        config = layout.vault_toml().display(),
        listen = loopback(port),
        db = files::toml_path(&layout.vault_db()),
        key = files::toml_path(&layout.master_key()),
    )
}

fn proxy_toml(layout: &Layout, options: &Options, vault_proxy_key: &str) -> String {
    format!(
        "# Written by devstack at every start (it holds a vault key: mode 0600). To run this\n\
         # proxy on its own:\n\
         #   proxy --config {config} serve\n\
         [server]\n\
         listen = \"{listen}\"\n\
         shutdown_timeout_ms = {SHUTDOWN_GRACE_MS}\n\
         \n\
         [database]\n\
         path = {db}\n\
         \n\
         [vault]\n\
         url = \"http://{vault}\"\n\
         \n\
         [vault.api_keys]\n\
         {TENANT} = {key}\n\
         \n\
         [bank131]\n\
         base_url = \"http://{sandbox}\"\n\
         project = \"{PROJECT}\"\n\
         private_key_file = {partner}\n\
         bank_public_key_file = {bank}\n\
         api_version = \"v2\"\n\
         connect_timeout_ms = 1000\n\
         request_timeout_ms = 5000\n\
         \n\
         # Fast engine settings for a local demo. stuck_after_ms is also the lease on a payout\n\
         # being driven: at least connect + request timeouts + 1 s.\n\
         [payouts]\n\
         reconcile_interval_ms = 500\n\
         stuck_after_ms = 8000\n\
         retry_initial_ms = 200\n\
         retry_max_ms = 5000\n\
         \n\
         [webhooks]\n\
         # The devstack's apps listen on loopback; never set this in production.\n\
         allow_private_networks = true\n\
         poll_interval_ms = 100\n\
         retry_initial_ms = 200\n\
         retry_max_ms = 10000\n\
         \n\
         [log]\n\
         filter = \"info\"\n",
        config = layout.proxy_toml().display(),
        listen = loopback(options.proxy_port),
        db = files::toml_path(&layout.proxy_db()),
        vault = loopback(options.vault_port),
        key = files::toml_string(vault_proxy_key),
        sandbox = loopback(options.sandbox_port),
        partner = files::toml_path(&layout.partner_key()),
        bank = files::toml_path(&layout.bank_public_key()),
    )
}

fn commands_sh(layout: &Layout, options: &Options) -> String {
    let dir = layout.dir.display();
    format!(
        "#!/bin/sh\n\
         # Written by devstack: the same stack as separate processes, from the repository root.\n\
         # (The app webhook receiver is devstack's own; without it the proxy retries its webhooks.\n\
         # The sandbox keeps its sessions and id counters in {dir}/bank131-sandbox, as devstack's\n\
         # does, so payouts in flight carry on across restarts of either.)\n\
         cargo build --release --bin vault --bin proxy --bin bank131-sandbox || exit 1\n\
         ./target/release/bank131-sandbox --listen {sandbox} \\\n  \
           --bank-key {dir}/bank131-sandbox.pem --bank-public-key-out {dir}/bank131-sandbox.pub.pem \\\n  \
           --state-dir {dir}/bank131-sandbox \\\n  \
           --project-id {PROJECT} --partner-public-key {dir}/partner.pub.pem \\\n  \
           --webhook-url http://{proxy}/webhooks/bank131 --wallet-balance {WALLET_BALANCE} &\n\
         ./target/release/vault --config {dir}/vault.toml serve &\n\
         sleep 1\n\
         ./target/release/proxy --config {dir}/proxy.toml serve &\n\
         wait\n",
        sandbox = loopback(options.sandbox_port),
        proxy = loopback(options.proxy_port),
    )
}

/// Whether `key` is the live key of vault client `id`.
fn vault_client_live(
    vault: &vault::service::Vault,
    clients: &[vault::auth::ClientRecord],
    key: &ClientKey,
) -> bool {
    let hash = ApiKey::presented(&key.key).hash();
    clients.iter().any(|c| {
        c.id.as_str() == key.id
            && c.revoked_at.is_none()
            && vault.is_authentic(c)
            && shared::ct::bytes_eq(&c.key_hash, &hash)
    })
}

/// Makes the two vault clients unless `credentials` already holds live ones. Returns how many
/// were made.
async fn ensure_vault_clients(
    config: &vault::config::VaultConfig,
    credentials: &mut Credentials,
) -> anyhow::Result<usize> {
    let vault = match vault::startup::open_vault(config).await {
        // A `.devstack` made before client rows were MACed: upgrade it, as an operator would
        // with `vault upgrade` (it is a development stack, and its rows are its own).
        Err(vault::service::VaultError::NeedsUpgrade) => {
            let store = vault::startup::open_store(config).await?;
            let provider = vault::crypto::FileKeyProvider::new(&config.keys.master_key_file);
            vault::service::Vault::upgrade(store, &provider).await?;
            vault::startup::open_vault(config).await
        }
        other => other,
    }
    .context(
        "opening the vault (vault.db with master.key); \
         if the key or the database was replaced, delete the directory to start over",
    )?;
    let clients = vault.clients().await.context("listing vault clients")?;
    let mut made = 0;
    for (slot, name, scopes) in [
        (&mut credentials.vault_app, "demo-app", VAULT_APP_SCOPES),
        (
            &mut credentials.vault_proxy,
            "payout-proxy",
            VAULT_PROXY_SCOPES,
        ),
    ] {
        if slot
            .as_ref()
            .is_some_and(|k| vault_client_live(&vault, &clients, k))
        {
            continue;
        }
        let scopes = vault::auth::Scopes::parse(scopes).map_err(anyhow::Error::msg)?;
        let (record, key) = vault
            .create_client(name, TENANT, scopes)
            .await
            .with_context(|| format!("creating the vault client {name}"))?;
        *slot = Some(ClientKey {
            id: record.id.to_string(),
            key: key.expose().to_owned(),
        });
        made += 1;
    }
    Ok(made)
}

/// Makes the proxy's app client unless `credentials` holds a live one with this webhook URL.
/// Returns what was done, for the report.
async fn ensure_proxy_client(
    store: &Arc<dyn proxy::store::ProxyStore>,
    secrets: &proxy::secrets::SecretBox,
    credentials: &mut Credentials,
    webhook_url: &str,
) -> anyhow::Result<Option<&'static str>> {
    let current = match &credentials.proxy_app {
        Some(c) => store
            .client(&c.id)
            .await
            .context("reading the proxy app client")?
            .filter(|r| {
                r.revoked_at.is_none()
                    && shared::ct::bytes_eq(&*r.key_hash, &ApiKey::presented(&c.key).hash())
            }),
        None => None,
    };
    let note = match (current, credentials.proxy_app.as_mut()) {
        (Some(record), Some(stored)) if record.webhook_url.as_deref() == Some(webhook_url) => {
            // The secret the proxy signs with is the one in the database (stored wrapped).
            secrets
                .open(&record.webhook_secret, &record.id)
                .context("the proxy app client's webhook secret")?
                .expose()
                .clone_into(&mut stored.webhook_secret);
            return Ok(None);
        }
        (Some(record), _) => {
            store
                .revoke_client(&record.id, proxy::engine::now_micros())
                .await
                .context("revoking the old proxy app client")?;
            "a new proxy app client (the app port changed; the old client is revoked)"
        }
        (None, _) => "proxy app client",
    };
    let scopes = proxy::auth::Scopes::parse(PROXY_APP_SCOPES).map_err(anyhow::Error::msg)?;
    let mut new = proxy::auth::NewClient::make(
        "demo-app",
        TENANT,
        scopes,
        Some(webhook_url.to_owned()),
        proxy::engine::now_micros(),
    )
    .context("making the proxy app client")?;
    let clear = new.record.webhook_secret.clone();
    let key = ProxyClientKey {
        id: new.record.id.clone(),
        key: new.api_key.expose().to_owned(),
        webhook_url: webhook_url.to_owned(),
        webhook_secret: clear.expose().to_owned(),
    };
    new.record.webhook_secret = secrets
        .wrap(&clear, &new.record.id)
        .context("wrapping the webhook secret")?;
    store
        .insert_client(new.record)
        .await
        .context("storing the proxy app client")?;
    credentials.proxy_app = Some(key);
    Ok(Some(note))
}

/// The highest sandbox session number (`ps_<n>`) any payout in the proxy database refers to.
async fn highest_session_number(store: &Arc<dyn proxy::store::ProxyStore>) -> anyhow::Result<u64> {
    let mut tenants: Vec<String> = store
        .clients()
        .await
        .context("listing proxy clients")?
        .into_iter()
        .map(|c| c.tenant)
        .collect();
    tenants.sort();
    tenants.dedup();
    let mut highest = 0;
    for tenant in tenants {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_payouts(&tenant, None, None, after.as_deref(), 100)
                .await
                .context("listing payouts")?;
            for p in &page {
                if let Some(n) = p
                    .bank_session_id
                    .as_deref()
                    .and_then(|s| s.strip_prefix("ps_"))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    highest = highest.max(n);
                }
            }
            match page.last() {
                Some(last) if page.len() == 100 => after = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    Ok(highest)
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

    // The vault's configuration and clients.
    files::write_file(
        &layout.vault_toml(),
        vault_toml(&layout, options.vault_port).as_bytes(),
        0o644,
    )?;
    let vault_config = vault::config::VaultConfig::load(Some(&layout.vault_toml()), no_env())
        .context("vault.toml")?;
    let vault_made = ensure_vault_clients(&vault_config, &mut credentials).await?;
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
    let app_url = format!("http://{app_addr}{}", receiver::PATH);

    // The proxy's configuration and app client.
    files::write_secret(
        &layout.proxy_toml(),
        proxy_toml(&layout, &options, &vault_proxy.key).as_bytes(),
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
        commands_sh(&layout, &options).as_bytes(),
        0o755,
    )?;

    // The bank.
    let proxy_addr = loopback(options.proxy_port);
    let sandbox_addr = loopback(options.sandbox_port);
    let mut project = ProjectConfig::new(PROJECT, partner_public);
    project.webhook_url = Some(format!("http://{proxy_addr}/webhooks/bank131"));
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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
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
        let (quiet, out) = (Arc::clone(&quiet), out.clone());
        tokio::spawn(async move {
            let r = receiver::serve(app_listener, secret, events_tx, quiet, out, until).await;
            let _ = tx.send(("app webhook receiver", r.map_err(anyhow::Error::from)));
        });
    }
    let vault_url = format!("http://{vault_addr}");
    let proxy_url = format!("http://{proxy_addr}");
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

/// The running stack, as the report and the demo see it.
#[derive(Debug)]
struct Running<'a> {
    options: &'a Options,
    out: &'a Printer,
    layout: &'a Layout,
    made: &'a [String],
    reused: bool,
    vault_url: &'a str,
    proxy_url: &'a str,
    sandbox_url: &'a str,
    app_url: &'a str,
    vault_app: &'a ClientKey,
    proxy_app: &'a ProxyClientKey,
    sandbox: &'a SandboxHandle,
    http: &'a reqwest::Client,
    proxy_store: &'a Arc<dyn proxy::store::ProxyStore>,
    quiet: &'a AtomicBool,
}

impl Running<'_> {
    /// Prints the banner, runs the demo, prints the curl examples, then serves until `stop`
    /// (or returns at once under `exit_after_demo`).
    async fn present(
        &self,
        events: &mut mpsc::UnboundedReceiver<receiver::AppEvent>,
        exits: &mut mpsc::UnboundedReceiver<Exit>,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let out = self.out;
        let exit_after_demo = self.options.exit_after_demo;
        let mut stop = std::pin::pin!(stop);
        self.banner();
        let mut outcome = None;
        if self.options.demo {
            self.quiet.store(true, Ordering::SeqCst);
            let demo = demo::Demo {
                http: self.http.clone(),
                vault_url: self.vault_url,
                vault_key: &self.vault_app.key,
                proxy_url: self.proxy_url,
                proxy_key: &self.proxy_app.key,
                sandbox: self.sandbox,
                events,
                out,
                step_timeout: self.options.step_timeout,
            };
            let result = tokio::select! {
                result = demo.run() => result,
                () = &mut stop => {
                    out.line("stopped during the demo");
                    return if exit_after_demo {
                        Err(anyhow!("stopped during the demo"))
                    } else {
                        Ok(())
                    };
                }
            };
            self.quiet.store(false, Ordering::SeqCst);
            match result {
                Ok(o) => outcome = Some(o),
                Err(e) if exit_after_demo => return Err(e),
                Err(e) => {
                    out.line(format!("demo FAILED: {e:#}"));
                    out.line("(the services keep running, so you can look into it)");
                }
            }
        }
        self.try_it(outcome.as_ref());
        if exit_after_demo {
            // The app may have its webhook a moment before the proxy has marked it delivered;
            // stopping in between would deliver it again on the next run.
            outbox_settled(self.proxy_store).await;
            return Ok(());
        }
        out.line("serving until Ctrl-C (SIGINT) or SIGTERM");
        tokio::select! {
            () = &mut stop => {
                out.line("stopping");
                Ok(())
            }
            exit = exits.recv() => Err(match exit {
                Some((name, Ok(()))) => anyhow!("the {name} stopped on its own"),
                Some((name, Err(e))) => e.context(format!("the {name} failed")),
                None => anyhow!("every service stopped"),
            }),
        }
    }

    fn banner(&self) {
        let out = self.out;
        let dir = self.layout.dir.display();
        out.line(format!("devstack: state in {dir}"));
        if self.made.is_empty() && self.reused {
            out.line(
                "  reused: every key, client and database from an earlier run (no new clients)",
            );
        } else {
            out.line(format!("  created: {}", self.made.join(", ")));
        }
        out.line("");
        out.line(format!("  vault    {}", self.vault_url));
        out.line(format!("  proxy    {}", self.proxy_url));
        out.line(format!(
            "  bank131  {}   (sandbox, project {PROJECT}; bank webhooks go to {}/webhooks/bank131)",
            self.sandbox_url, self.proxy_url
        ));
        out.line(format!(
            "  app      {}   (demo webhook receiver; checks X-Signature)",
            self.app_url
        ));
        out.line("");
        out.line(format!(
            "  vault app key    {}   (tenant {TENANT}: {VAULT_APP_SCOPES})",
            self.vault_app.key
        ));
        out.line(format!(
            "  proxy app key    {}   (tenant {TENANT}: {PROXY_APP_SCOPES})",
            self.proxy_app.key
        ));
        out.line(format!(
            "  webhook secret   {}   (X-Signature: t=<unix>,v1=<hex HMAC-SHA-256(secret, \"t.body\")>)",
            self.proxy_app.webhook_secret
        ));
        out.line(format!(
            "  kept in {dir}/credentials.json; configs {dir}/vault.toml, {dir}/proxy.toml; \
             separate processes: {dir}/commands.sh"
        ));
        out.line("");
    }

    fn try_it(&self, outcome: Option<&demo::Outcome>) {
        const TOKENIZE: &str = r#"  curl -s -X POST $VAULT/v1/tokens -H "Authorization: Bearer $VAULT_KEY" -H 'Content-Type: application/json' -d '{"pan":"4242 4242 4242 4242","exp_month":12,"exp_year":2030}'"#;
        const PAY: &str = r#"  curl -s -X POST $PROXY/v1/payouts -H "Authorization: Bearer $PROXY_KEY" -H 'Content-Type: application/json' -H "Idempotency-Key: try-$(date +%s)" -d '{"card_token":"'$TOKEN'","amount":10000,"currency":"RUB","recipient":{"full_name":"Ivan Petrov"},"confirm":"auto"}'"#;
        const READ: &str =
            r#"  curl -s $PROXY/v1/payouts/$PAYOUT -H "Authorization: Bearer $PROXY_KEY""#;
        let out = self.out;
        let (token, payout, note) = match outcome {
            Some(o) => (
                o.token.as_str(),
                o.payout_id.as_str(),
                " (this one is the demo's)",
            ),
            None => ("tok_...", "pay_...", ""),
        };
        out.line("");
        out.line("try it (paste into a shell):");
        out.line(format!(
            "  export VAULT={} PROXY={} VAULT_KEY={} PROXY_KEY={}",
            self.vault_url, self.proxy_url, self.vault_app.key, self.proxy_app.key
        ));
        out.line("  # tokenize a test card at the vault");
        out.line(TOKENIZE);
        out.line(format!(
            "  TOKEN={token}   # the \"token\" from the answer{note}"
        ));
        out.line("  # create a payout at the proxy (the Idempotency-Key makes retries safe)");
        out.line(PAY);
        out.line(format!(
            "  PAYOUT={payout}   # the \"id\" from the answer{note}"
        ));
        out.line("  # read it");
        out.line(READ);
        out.line("");
    }
}
