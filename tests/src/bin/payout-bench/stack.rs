//! The throwaway stack: its private temporary directory, and the Bank 131 sandbox, the vault and
//! the proxy configured and started there as release processes, the way
//! `tests/tests/payouts/stack.rs` sets up its stack, with zero bank delay and quiet logs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use crate::Args;
use crate::postgres::Schemas;
use crate::service::{Binaries, Service, cli};
use tests::stack::{APP_SCOPES, AppClient, StackTls, create_app, field, free_port};

/// The tenant of every client the bench makes.
const TENANT: &str = "bench";
/// The sandbox project (`X-PARTNER-PROJECT`).
pub(crate) const PROJECT: &str = "payout-bench";
/// The sandbox wallet in minor units: far more than any run spends, so no payout fails for
/// balance (the default, 1,000,000.00, lasts under 700 payouts of 1,500.00).
pub(crate) const WALLET_BALANCE: i64 = 1_000_000_000_000_000;

/// A private temporary directory, removed on drop unless kept.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl WorkDir {
    pub(crate) fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("payout-bench-{}", crate::random_suffix()?));
        // 0700: it holds a vault master key and a partner private key, throwaway as they are.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, keep: false })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The running stack.
#[derive(Debug)]
pub(crate) struct Stack {
    vault: Service,
    proxy: Service,
    sandbox: Service,
    pub(crate) vault_url: String,
    pub(crate) proxy_url: String,
    pub(crate) sandbox_url: String,
    pub(crate) vault_app_key: String,
    pub(crate) app_key: String,
    pub(crate) webhook_secret: String,
    /// What the report says about the proxy's settings.
    pub(crate) proxy_settings: String,
    /// What the report says about the vault's settings.
    pub(crate) vault_settings: String,
}

impl Stack {
    /// Starts sandbox, vault and proxy, the proxy sending app webhooks to `app_url`.
    pub(crate) async fn start(
        args: &Args,
        bins: &Binaries,
        dir: &Path,
        schemas: Option<&Schemas>,
        tls: Option<&StackTls>,
        app_url: &str,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let path = |n: &str| dir.join(n);
        let (vault_port, proxy_port, sandbox_port) = (free_port()?, free_port()?, free_port()?);

        // Bank 131 sandbox: no bank delay, a wallet that never runs dry, warnings only.
        let sandbox = tests::stack::Sandbox::start(
            &bins.sandbox,
            dir,
            &tests::stack::SandboxSpec {
                project: PROJECT.to_owned(),
                webhook_url: format!("{scheme}://127.0.0.1:{proxy_port}/webhooks/bank131"),
                port: sandbox_port,
                flags: [
                    "--ready-delay-ms",
                    "0",
                    "--finish-delay-ms",
                    "0",
                    "--wallet-balance",
                    &WALLET_BALANCE.to_string(),
                    "--log",
                    "warn",
                ]
                .map(str::to_owned)
                .into_iter()
                .chain(tls.map(StackTls::sandbox_flags).unwrap_or_default())
                .collect(),
            },
            http,
        )
        .await?;
        let sandbox_url = sandbox.url.clone();

        // The vault: default settings, quiet logs.
        let mut vault_env = parse_env(&args.vault_env, "VAULT__")?;
        let mut proxy_env = parse_env(&args.proxy_env, "PROXY__")?;
        // The URLs (with their passwords) go in the environment, not in files or on command lines.
        if let Some(s) = schemas {
            vault_env.insert(0, ("VAULT__DATABASE__URL".to_owned(), s.url_for(&s.vault)));
            proxy_env.insert(0, ("PROXY__DATABASE__URL".to_owned(), s.url_for(&s.proxy)));
        }
        std::fs::write(
            path("vault.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{vault_port}\"\n[database]\npath = \"{}\"\n\
                 [keys]\nmaster_key_file = \"{}\"\n[log]\nfilter = \"warn\"\n\
                 [limits]\ntokenize_per_second = 10000000\ntokenize_burst = 10000000\n\
                 detokenize_per_second = 10000000\ndetokenize_burst = 10000000\n{tls}",
                path("vault.db").display(),
                path("master.key").display(),
                tls = tls.map(StackTls::vault_toml).unwrap_or_default(),
            ),
        )?;
        let vault_cli = |a: &[&str]| cli(&bins.vault, &path("vault.toml"), &vault_env, a);
        vault_cli(&["init"])?;
        vault_cli(&["migrate"])?;
        let vault_client = |name: &str, scopes: &str, cert: Option<&Path>| {
            let mut command = vec![
                "clients", "create", "--name", name, "--tenant", TENANT, "--scopes", scopes,
            ];
            let cert = cert.map(|p| p.display().to_string());
            if let Some(cert) = &cert {
                command.extend(["--cert-file", cert]);
            }
            let out = vault_cli(&command)?;
            field(&out, "api_key:")
        };
        let vault_app_key = vault_client("app", "tokens:create", None)?;
        // Under --tls the proxy's detokenize key is bound to its client certificate.
        let proxy_cert = tls.map(StackTls::proxy_cert_file);
        let proxy_vault_key = vault_client(
            "proxy",
            "tokens:detokenize,collect:create",
            proxy_cert.as_deref(),
        )?;
        let mut vault = Service::serve(&bins.vault, &path("vault.toml"), &vault_env, "vault", dir)?;
        let vault_url = format!("{scheme}://127.0.0.1:{vault_port}");

        // The proxy: production defaults (timeouts, retries, reconciler, durability, outbox),
        // quiet logs.
        let proxy_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{proxy_port}\"\n[database]\npath = \"{db}\"\n\
             {server_tls}\
             [vault]\nurl = \"{vault_url}\"\n{vault_tls}[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{sandbox_url}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{pk}\"\nbank_public_key_file = \"{bk}\"\n{bank_tls}\
             [webhooks]\nallow_private_networks = true\n{poll}\
             [log]\nfilter = \"warn\"\n",
            db = path("proxy.db").display(),
            pk = sandbox.partner_key.display(),
            bk = sandbox.bank_key.display(),
            server_tls = tls.map(StackTls::proxy_server_toml).unwrap_or_default(),
            vault_tls = tls.map(StackTls::proxy_vault_lines).unwrap_or_default(),
            bank_tls = tls.map(StackTls::bank_ca_line).unwrap_or_default(),
            // The bench's app listens on loopback.
            poll = args
                .outbox_poll_ms
                .map(|ms| format!("poll_interval_ms = {ms}\n"))
                .unwrap_or_default(),
        );
        tests::stack::write_secret(&path("proxy.toml"), proxy_toml)?;
        let proxy_cli = |a: &[&str]| cli(&bins.proxy, &path("proxy.toml"), &proxy_env, a);
        proxy_cli(&["migrate"])?;
        let AppClient {
            api_key: app_key,
            webhook_secret,
        } = create_app(
            &bins.proxy,
            &path("proxy.toml"),
            &proxy_env,
            ("app", TENANT, APP_SCOPES),
            Some(app_url),
        )?;

        vault
            .wait_healthy(http, &format!("{vault_url}/healthz"))
            .await?;
        let mut proxy = Service::serve(&bins.proxy, &path("proxy.toml"), &proxy_env, "proxy", dir)?;
        let proxy_url = format!("{scheme}://127.0.0.1:{proxy_port}");
        proxy
            .wait_healthy(http, &format!("{proxy_url}/healthz"))
            .await?;

        let mut proxy_settings = match args.outbox_poll_ms {
            Some(ms) => format!("defaults except webhooks.poll_interval_ms = {ms}"),
            None => "defaults".to_owned(),
        };
        for pair in &args.proxy_env {
            let _ = write!(proxy_settings, ", {}", shown_setting(pair));
        }
        if tls.is_some() {
            proxy_settings
                .push_str(", TLS on its listener, mutual TLS to the vault, TLS to the sandbox");
        }
        let mut vault_settings = if tls.is_some() {
            "defaults, TLS with client certificates".to_owned()
        } else {
            "defaults".to_owned()
        };
        if !args.vault_env.is_empty() {
            let shown: Vec<String> = args.vault_env.iter().map(|p| shown_setting(p)).collect();
            let _ = write!(vault_settings, " + {}", shown.join(", "));
        }
        Ok(Self {
            vault,
            proxy,
            sandbox: sandbox.into_process(),
            vault_url,
            proxy_url,
            sandbox_url,
            vault_app_key,
            app_key,
            webhook_secret,
            proxy_settings,
            vault_settings,
        })
    }

    /// The vault, the proxy and the sandbox, in that order.
    pub(crate) fn services(&self) -> [&Service; 3] {
        [&self.vault, &self.proxy, &self.sandbox]
    }

    /// [`Self::services`], mutable.
    pub(crate) fn services_mut(&mut self) -> [&mut Service; 3] {
        [&mut self.vault, &mut self.proxy, &mut self.sandbox]
    }
}

/// `NAME=VALUE` overrides, each required to start with `prefix`.
fn parse_env(pairs: &[String], prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("`{p}` is not NAME=VALUE"))?;
            if !k.starts_with(prefix) {
                bail!("`{k}` does not start with {prefix}");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A `NAME=VALUE` override as the report shows it: keys, secrets and URLs (which may hold a
/// password) by name only.
fn shown_setting(pair: &str) -> String {
    match pair.split_once('=') {
        Some((name, _))
            if ["KEY", "SECRET", "URL", "PASSWORD"]
                .iter()
                .any(|s| name.contains(s)) =>
        {
            format!("{name}=…")
        }
        _ => pair.to_owned(),
    }
}
