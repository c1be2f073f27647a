//! `bank131-sandbox`: the Bank 131 emulator as a process (see `tests/SANDBOX.md`).
//!
//! Prints two shell-style lines on stdout once it listens:
//! `BANK131_SANDBOX_URL=http://...` and `BANK131_SANDBOX_BANK_PUBLIC_KEY=<path>`. Logs go to
//! stderr and carry method names and statuses only, never bodies or card numbers.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    reason = "the URL and key path are the program's output"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shared::telemetry::{self, LogFormat};
use tests::sandbox::{ApiVersion, FaultSpec, ProjectConfig, SandboxConfig, SandboxError, spawn};

/// Exit code for bad configuration or usage (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

/// The Bank 131 sandbox: a stateful emulator of the bank's card-payout API.
#[derive(Debug, Parser)]
#[command(
    name = "bank131-sandbox",
    version,
    about = "A stateful emulator of Bank 131's card-payout API (sessions, signed webhooks, faults, magic inputs) for developing and testing against; see tests/SANDBOX.md"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; the URL is printed).
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8131")]
    listen: SocketAddr,
    /// The bank's RSA private key (PKCS#1 or PKCS#8 PEM); a fresh 2048-bit key if absent (or
    /// the one kept in `--state-dir`).
    #[arg(long, env = "SANDBOX_BANK_KEY")]
    bank_key: Option<PathBuf>,
    /// A directory the sandbox keeps what must survive a restart in: the bank's key
    /// (`bank-private.pem`, mode 0600, made on first use), so a proxy that holds the bank's
    /// public key keeps accepting webhooks, and its projects, sessions, counters and idempotency
    /// keys (`state.json`, written on every change), so payouts in flight carry on. Without it
    /// everything lives in memory. With `--bank-key` that key is used and none is kept here.
    #[arg(long, env = "SANDBOX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where to write the bank's public key (SPKI PEM) for the partner to verify webhooks with.
    #[arg(
        long,
        env = "SANDBOX_BANK_PUBLIC_KEY_OUT",
        default_value = "bank131-sandbox-public.pem"
    )]
    bank_public_key_out: PathBuf,

    /// Register one project with this `X-PARTNER-PROJECT` id (more via the control API).
    #[arg(long, env = "SANDBOX_PROJECT_ID", requires = "partner_public_key")]
    project_id: Option<String>,
    /// The project's partner public key (SPKI PEM file).
    #[arg(long, env = "SANDBOX_PARTNER_PUBLIC_KEY", requires = "project_id")]
    partner_public_key: Option<PathBuf>,
    /// The project's webhook URL.
    #[arg(long, env = "SANDBOX_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Automatic confirmation: no ready_to_confirm.
    #[arg(long)]
    auto_confirm: bool,
    /// Single-request payouts: init/payout runs with no ready_to_confirm.
    #[arg(long)]
    single_request: bool,
    /// Webhook spelling, v1 or v2.
    #[arg(long, default_value = "v2")]
    webhook_version: ApiVersion,
    /// Wallet balance in minor units.
    #[arg(long, default_value_t = ProjectConfig::DEFAULT_WALLET_BALANCE)]
    wallet_balance: i64,
    /// Confirm timeout in milliseconds (default 240 minutes).
    #[arg(long, default_value_t = 240 * 60 * 1000)]
    confirm_timeout_ms: u64,
    /// The live bank's latitude the project shows: `both_spellings`, `amounts_as=float`,
    /// `nulls`, `other_payout_first`, `cancel_leaves_payout_pending`, `large_webhooks`
    /// (SANDBOX.md "Quirks"); repeatable or comma-separated.
    #[arg(long = "quirk")]
    quirks: Vec<String>,

    /// From start/init to ready_to_confirm, milliseconds.
    #[arg(long, default_value_t = 50)]
    ready_delay_ms: u64,
    /// From confirm/cancel (or an automatic start) to payment_finished, milliseconds.
    #[arg(long, default_value_t = 50)]
    finish_delay_ms: u64,
    /// How late SLOW_BANK answers come, milliseconds.
    #[arg(long, default_value_t = 3000)]
    slow_delay_ms: u64,
    /// How long a hang fault holds a request, milliseconds.
    #[arg(long, default_value_t = 60_000)]
    hang_ms: u64,
    /// Webhook retry delays in milliseconds, comma-separated; the last one repeats.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,400,800,1600,3200,5000"
    )]
    webhook_retry_ms: Vec<u64>,
    /// Attempts per webhook, the first included.
    #[arg(long, default_value_t = 10)]
    webhook_max_attempts: u32,
    /// Timeout of one webhook attempt, milliseconds.
    #[arg(long, default_value_t = 5000)]
    webhook_timeout_ms: u64,
    /// Put after `ps_`/`po_`/`rf_` in every id. Default: a random run tag and `_`, so ids stay
    /// unique when the sandbox restarts under a running proxy; `--id-prefix ''` gives `ps_1`.
    #[arg(long)]
    id_prefix: Option<String>,
    /// A fault active from the start, `TARGET=ACTION[:ARG[:CODE]][@COUNT]`; repeatable.
    #[arg(long = "fault")]
    faults: Vec<FaultSpec>,

    /// Serve over TLS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (mode 0600).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates the webhook endpoint's certificate must chain to, instead of the
    /// system's (a proxy served by a local CA).
    #[arg(long)]
    webhook_ca_file: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "SANDBOX_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.log_format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    if let Err(e) = telemetry::init(format, &cli.log, std::io::stderr) {
        eprintln!("bank131-sandbox: {e}");
        return ExitCode::from(EX_USAGE);
    }
    telemetry::install_panic_hook();
    let config = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    shared::server::block_on("bank131-sandbox", run(config, &cli.bank_public_key_out))
}

/// The bank's private key kept in `dir` (which exists): read when there, else made and written
/// (0600, never overwritten).
fn kept_bank_key(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("bank-private.pem");
    if path.exists() {
        return std::fs::read_to_string(&path)
            .with_context(|| format!("--state-dir: {}", path.display()));
    }
    let pem = tests::sandbox::Signer::generate()
        .and_then(|s| s.private_key_pem())
        .map_err(|e| anyhow::anyhow!("--state-dir: cannot make the bank key: {e}"))?;
    tests::stack::write_secret(&path, &pem)
        .with_context(|| format!("--state-dir: {}", path.display()))?;
    Ok(pem)
}

fn config(cli: &Cli) -> anyhow::Result<SandboxConfig> {
    let ms = Duration::from_millis;
    if let Some(dir) = &cli.state_dir {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("--state-dir: {}", dir.display()))?;
    }
    let mut config = SandboxConfig {
        listen: cli.listen,
        bank_private_key_pem: match (&cli.bank_key, &cli.state_dir) {
            (Some(p), _) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("--bank-key {}", p.display()))?,
            ),
            (None, Some(dir)) => Some(kept_bank_key(dir)?),
            (None, None) => None,
        },
        webhook_retry: cli.webhook_retry_ms.iter().copied().map(ms).collect(),
        webhook_max_attempts: cli.webhook_max_attempts,
        webhook_timeout: ms(cli.webhook_timeout_ms),
        ready_delay: ms(cli.ready_delay_ms),
        finish_delay: ms(cli.finish_delay_ms),
        slow_delay: ms(cli.slow_delay_ms),
        hang_limit: ms(cli.hang_ms),
        faults: cli.faults.clone(),
        state_file: cli.state_dir.as_ref().map(|d| d.join("state.json")),
        tls: shared::config::TlsConfig {
            cert_file: cli.tls_cert.clone(),
            key_file: cli.tls_key.clone(),
            ..shared::config::TlsConfig::default()
        },
        webhook_ca_file: cli.webhook_ca_file.clone(),
        id_prefix: match &cli.id_prefix {
            Some(p) => p.clone(),
            None => format!(
                "{}_",
                shared::ids::random_id("")
                    .map_err(|_| anyhow::anyhow!("no randomness"))?
                    .chars()
                    .filter(char::is_ascii_alphabetic)
                    .take(6)
                    .collect::<String>()
            ),
        },
        ..SandboxConfig::default()
    };
    if let (Some(id), Some(key)) = (&cli.project_id, &cli.partner_public_key) {
        let pem = std::fs::read_to_string(key).with_context(|| format!("{}", key.display()))?;
        config.projects.push(ProjectConfig {
            webhook_url: cli.webhook_url.clone(),
            auto_confirm: cli.auto_confirm,
            single_request_payouts: cli.single_request,
            webhook_api_version: cli.webhook_version,
            wallet_balance: cli.wallet_balance,
            confirm_timeout: ms(cli.confirm_timeout_ms),
            quirks: cli
                .quirks
                .join(",")
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--quirk: {e}"))?,
            ..ProjectConfig::new(id.clone(), pem)
        });
    }
    Ok(config)
}

async fn run(config: SandboxConfig, public_key_out: &PathBuf) -> ExitCode {
    // Before the URL line that tells a waiting test the sandbox is up.
    let shutdown = shared::server::shutdown_signal();
    let sandbox = match spawn(config).await {
        Ok(s) => s,
        // Keys and faults are configuration; only a failure to listen is not.
        Err(e @ (SandboxError::Bind(_) | SandboxError::Client(_))) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = std::fs::write(public_key_out, sandbox.bank_public_key_pem()) {
        tracing::error!(error = %e, path = %public_key_out.display(), "cannot write the bank public key");
        return ExitCode::from(EX_USAGE);
    }
    let key_path = std::path::absolute(public_key_out).unwrap_or_else(|_| public_key_out.clone());
    println!("BANK131_SANDBOX_URL={}", sandbox.base_url());
    println!("BANK131_SANDBOX_BANK_PUBLIC_KEY={}", key_path.display());
    shutdown.await;
    tracing::info!("shutting down");
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}
