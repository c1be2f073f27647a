//! The services as processes, for the end-to-end tests (`tests/tests/payouts/`,
//! `tests/tests/replicas.rs`) and the payout bench: one way to start a binary with its output
//! in files, run its command line, wait for it to be ready and stop it, so that every user gets
//! readiness from the process itself ([`crate::ready`]) and the ends of its logs on every
//! failure. The other process tests (`hardening.rs`, `examples.rs`, `devstack.rs`) share its
//! small helpers too: free ports, output fields, per-run schemas, owner-only files.
//!
//! What differs between users (settings, how many replicas, which faults) stays with them: they
//! write the configuration files; this module runs what they configured.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, anyhow};

mod process;
mod sandbox;
mod tls;

pub use process::{Process, run_cli};
pub use sandbox::{Sandbox, SandboxSpec};
pub use tls::StackTls;

/// A port free on loopback now, for a service to bind next (and again when it restarts).
///
/// Not one the kernel hands out itself: a port from `bind(127.0.0.1:0)` is in the ephemeral
/// range, which every outgoing connection of a busy test run also draws from, so between its
/// release and the service's bind a client socket could take it ("Address already in use").
/// Ports come instead from below the ephemeral range, each at most once per test process (a
/// per-process counter, started at an offset from the pid so concurrent test binaries seldom
/// meet), and are checked free by binding them.
///
/// # Errors
///
/// No port could be bound.
pub fn free_port() -> anyhow::Result<u16> {
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 {
        let span = ephemeral_low - LOW;
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let candidate = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            let port = u16::try_from(candidate).context("port range")?;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("binding a free port")?
        .local_addr()?
        .port())
}

/// The value after `name` on the line that starts with it (the `api_key:` and `webhook_secret:`
/// lines `clients create` prints).
///
/// # Errors
///
/// No such line.
pub fn field(stdout: &str, name: &str) -> anyhow::Result<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| anyhow!("no `{name}` line in the output"))
}

/// An app's credentials, as `proxy clients create` prints them once.
#[derive(Debug)]
pub struct AppClient {
    /// The app's proxy API key.
    pub api_key: String,
    /// The secret its webhooks are signed with (a client without a webhook URL has one too).
    pub webhook_secret: String,
}

/// Runs `clients create` of either service for a client `(name, tenant, scopes)`, with `extra`
/// arguments (the proxy's `--webhook-url`, the vault's `--cert-file`); what it printed.
fn create_client(
    bin: &std::path::Path,
    config: &std::path::Path,
    env: &[(String, String)],
    (name, tenant, scopes): (&str, &str, &str),
    extra: &[&str],
) -> anyhow::Result<String> {
    let mut args = vec!["clients", "create", "--name", name, "--tenant", tenant];
    args.extend(["--scopes", scopes]);
    args.extend(extra);
    run_cli(bin, config, env, &args)
}

/// Creates, with the proxy's command line, a client `(name, tenant, scopes)`, with
/// `webhook_url` when given.
///
/// # Errors
///
/// The command failed, or did not print both credentials.
pub fn create_app(
    proxy: &std::path::Path,
    config: &std::path::Path,
    env: &[(String, String)],
    client: (&str, &str, &str),
    webhook_url: Option<&str>,
) -> anyhow::Result<AppClient> {
    let hook = webhook_url.map(|url| ["--webhook-url", url]);
    let out = create_client(
        proxy,
        config,
        env,
        client,
        hook.as_ref().map_or(&[], |h| &h[..]),
    )?;
    Ok(AppClient {
        api_key: field(&out, "api_key:")?,
        webhook_secret: field(&out, "webhook_secret:")?,
    })
}

/// Creates, with the vault's command line, a client `(name, tenant, scopes)`; its API key.
///
/// # Errors
///
/// The command failed, or printed no key.
pub fn vault_client(
    vault: &std::path::Path,
    config: &std::path::Path,
    env: &[(String, String)],
    client: (&str, &str, &str),
) -> anyhow::Result<String> {
    field(&create_client(vault, config, env, client, &[])?, "api_key:")
}

/// Creates, with the vault's command line, a client `(name, tenant, scopes)` bound to the TLS
/// client certificate in `cert_file`; its API key.
///
/// # Errors
///
/// The command failed, or printed no key.
pub fn bound_vault_client(
    vault: &std::path::Path,
    config: &std::path::Path,
    env: &[(String, String)],
    client: (&str, &str, &str),
    cert_file: &std::path::Path,
) -> anyhow::Result<String> {
    let cert = cert_file.display().to_string();
    field(
        &create_client(vault, config, env, client, &["--cert-file", &cert])?,
        "api_key:",
    )
}

/// The scopes an app that pays out and reads its payouts holds.
pub const APP_SCOPES: &str = "payouts:write,payouts:read";

/// `url` with `search_path` set to `schema` (PostgreSQL tests give each run its own schemas).
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Writes a file that holds secrets (a config with keys, a private key) as the services demand:
/// readable by its owner only (mode 0600).
///
/// # Errors
///
/// The file cannot be written.
pub fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_ref())
}
