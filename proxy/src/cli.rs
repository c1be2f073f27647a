//! The `proxy` command line: serve, migrate, and check the configuration against the vault and
//! the bank; manage app clients and the key their webhook secrets are wrapped under; close by
//! hand a payout the engine flagged for a person; sign and verify bank messages for support work.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::{NewClient, NewClientError, Scopes};
use crate::bank131::{RequestSigner, SignatureVerifier};
use crate::config::ProxyConfig;
use crate::engine::now_micros;
use crate::startup::{Application, open_store, shutdown_signal};
use crate::view::rfc3339;

use shared::server::EX_USAGE;

mod clients;

use clients::{ClientsCommand, clients};

/// The payout proxy.
#[derive(Debug, Parser)]
#[command(name = "proxy", version, about)]
pub struct Cli {
    /// TOML configuration file; `PROXY__SECTION__KEY` environment variables override it.
    #[arg(long, short, env = "PROXY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look for card numbers in files and directories (logs, database files and dumps,
    /// captures, exported queues; `-` reads standard input), in every encoding the scanner
    /// knows (plain, separated, Unicode digits, UTF-16, hex, base64); prints only masked values,
    /// with file and byte offset. Needs no configuration: run it on any host, the app's too.
    /// Exit 0 when clean, 1 when a card number was found, 3 when something could not be read.
    Scan {
        /// One JSON document (findings, then the summary) instead of a line per finding.
        #[arg(long)]
        json: bool,
        /// Files or directories (walked; symbolic links are never followed), or `-`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Serve the app API and the bank's webhooks.
    Serve,
    /// Create or upgrade the database schema, then exit (`serve` also does this at start-up).
    Migrate,
    /// Print the configuration in effect (secrets masked) and every problem found: key files,
    /// the vault keys against the vault, the bank's project and signature. Exit 1 on a problem.
    /// Writes nothing.
    Check,
    /// Manage app clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// The key app webhook secrets are wrapped under at rest.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Operator actions on payouts.
    Payouts {
        #[command(subcommand)]
        command: PayoutsCommand,
    },
    /// Bank 131 tools.
    Bank131 {
        #[command(subcommand)]
        command: Bank131Command,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Write a new random key file (mode 0600, never overwritten) for webhooks.secret_key_file.
    Keygen {
        /// Where to write it.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PayoutsCommand {
    /// Close a payout the proxy cannot finish by itself (a bank session in `error`, a start the
    /// bank never showed) once Bank 131 has told you its outcome. Recorded in the payout's
    /// history with the operator and the reason; the app hears the outcome as a webhook.
    Resolve {
        /// The payout id (`pay_…`).
        id: String,
        /// What the bank says happened.
        #[arg(long = "as", value_enum)]
        outcome: crate::resolve::Resolution,
        /// Why, with the bank's reference (kept in the payout's history; no card numbers).
        #[arg(long)]
        reason: String,
        /// Who decides (default: $USER).
        #[arg(long, env = "USER")]
        operator: String,
    },
}

#[derive(Debug, Subcommand)]
enum Bank131Command {
    /// Print the X-PARTNER-SIGN value for the exact bytes of BODY_FILE (or standard input).
    Sign {
        /// The partner private key, PEM (PKCS#1 or PKCS#8).
        #[arg(long)]
        key: PathBuf,
        /// The body; standard input when absent.
        body: Option<PathBuf>,
    },
    /// Check a signature over the exact bytes of BODY_FILE (or standard input): prints `valid`
    /// and exits 0, or prints `invalid` and exits 1.
    Verify {
        /// The public key, PEM (SubjectPublicKeyInfo).
        #[arg(long)]
        key: PathBuf,
        /// The base64 signature (an X-PARTNER-SIGN value).
        #[arg(long)]
        signature: String,
        /// The body; standard input when absent.
        body: Option<PathBuf>,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The scanner reads no configuration: it runs on hosts that have none.
    if let Command::Scan { json, paths } = &cli.command {
        return shared::scan::paths::run("proxy", paths, *json);
    }
    if let Command::Webhooks {
        command: WebhooksCommand::Keygen { file },
    } = &cli.command
    {
        return match crate::secrets::WrapKey::generate_key_file(file) {
            Ok(()) => {
                println!(
                    "wrote {} (mode 0600); set webhooks.secret_key_file to it",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Bank131 { command } = cli.command {
        // `sign` holds the partner's private key: the same hardening as every other command.
        if let Err(e) = shared::server::harden_process() {
            eprintln!("proxy: {e}");
            return ExitCode::FAILURE;
        }
        return match bank131(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("proxy: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let Cli { config, command } = cli;
    shared::server::run_command(
        "proxy",
        || ProxyConfig::load(config.as_deref(), std::env::vars()),
        |c| c.log.clone(),
        |c| run(command, c),
    )
}

async fn run(command: Command, config: ProxyConfig) -> anyhow::Result<ExitCode> {
    // The first line says which database this is; managing commands never create one.
    eprintln!("proxy: {}", config.describe_database());
    // `clients create` may start a new deployment; listing, revoking and resolving only make
    // sense on a database that exists.
    let manages = matches!(
        command,
        Command::Payouts { .. }
            | Command::Clients {
                command: ClientsCommand::List { .. }
                    | ClientsCommand::Revoke { .. }
                    | ClientsCommand::RotateKey { .. }
                    | ClientsCommand::RotateWebhookSecret { .. }
                    | ClientsCommand::Update { .. }
            }
    );
    let path = config.sqlite().path;
    if manages && config.database.postgres_url().is_none() && !path.exists() {
        eprintln!(
            "proxy: the database {} does not exist; check --config (relative paths are the config file's), or create it with `proxy migrate`",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    match command {
        Command::Serve => {
            let problems = config.production_problems();
            if !problems.is_empty() {
                for problem in &problems {
                    eprintln!("proxy: mode = \"production\" refuses to start: {problem}");
                }
                return Ok(ExitCode::from(shared::server::EX_CONFIG));
            }
            config.warn_about_shortcuts();
            let app = Application::build(&config).await?;
            tracing::info!(addr = %app.local_addr()?, tls = config.server.tls.enabled(), "proxy listening");
            if let Some(addr) = app.webhook_addr()? {
                tracing::info!(addr = %addr, "bank webhook listener (server.webhook_listen)");
            }
            app.run_until(shutdown_signal()).await?;
            tracing::info!("proxy stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(&config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Clients { command } => clients(command, &config).await,
        Command::Payouts { command } => payouts(command, &config).await,
        Command::Webhooks { .. } => Ok(ExitCode::SUCCESS),
        Command::Scan { json, paths } => Ok(shared::scan::paths::run("proxy", &paths, json)),
        Command::Bank131 { command } => bank131(command),
    }
}

/// `proxy check`: every problem a `serve` would meet, collected rather than stopping at the
/// first, and the dependencies asked as `/readyz` asks them.
async fn check(config: &ProxyConfig) -> anyhow::Result<ExitCode> {
    let (mut notes, mut problems) = (Vec::new(), config.production_problems());
    if config.database.postgres_url().is_none() {
        let path = config.sqlite().path;
        if !path.exists() {
            notes.push(format!(
                "database.path: {} does not exist yet (`proxy migrate` or the first `serve` creates it)",
                path.display()
            ));
        }
    }
    // Each problem starts with the setting it is about, once.
    let about = |setting: &str, e: &dyn std::fmt::Display| {
        let text = e.to_string();
        if text.starts_with(setting) {
            text
        } else {
            format!("{setting}: {text}")
        }
    };
    if let Err(e) = SignatureVerifier::from_pem_file(&config.bank131.bank_public_key_file) {
        problems.push(about("bank131.bank_public_key_file", &e));
    }
    if let Err(e) = crate::secrets::for_config(config) {
        problems.push(about("webhooks", &e));
    }
    let bank = match crate::bank131::Bank131Client::new(&config.bank131) {
        Ok(bank) => Some(bank),
        Err(e) => {
            problems.push(about("bank131", &e));
            None
        }
    };
    match (crate::vault_client::VaultClient::new(&config.vault), bank) {
        (Ok(vault), Some(bank)) => {
            let dependencies = crate::http::health::DependencyCheck::new(vault, bank);
            // Here an unreachable bank is a problem too: most often the URL is wrong.
            let findings = dependencies.findings().await;
            problems.extend(findings.problems);
            problems.extend(findings.warnings);
            notes.extend(findings.notes);
        }
        (Ok(vault), None) => {
            let keys = vault.check_keys().await;
            problems.extend(keys.problems);
            notes.extend(keys.notes);
        }
        (Err(e), _) => problems.push(about("vault", &e)),
    }
    // Shown as it takes effect: the database file resolved against the config file's directory.
    let mut shown = config.clone();
    // Credentials written into a URL are not shown either.
    shown.vault.url = shared::config::redact_password(&config.vault.url);
    shown.bank131.base_url = shared::config::redact_password(&config.bank131.base_url);
    if shown.database.postgres_url().is_none() {
        shown.database.path = Some(config.sqlite().path);
    }
    print!(
        "{}",
        shared::config::check_report("proxy", &shown, &notes, &problems)?
    );
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn payouts(command: PayoutsCommand, config: &ProxyConfig) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match command {
        PayoutsCommand::Resolve {
            id,
            outcome,
            reason,
            operator,
        } => {
            use crate::resolve::{ResolveError, resolve};
            match resolve(
                store.as_ref(),
                &id,
                outcome,
                &operator,
                &reason,
                now_micros(),
            )
            .await
            {
                Ok(p) => {
                    println!("resolved {} as {}", p.id, p.state);
                    Ok(ExitCode::SUCCESS)
                }
                Err(ResolveError::Store(e)) => Err(e.into()),
                Err(e @ (ResolveError::Reason(_) | ResolveError::Operator(_))) => {
                    eprintln!("proxy: {e}");
                    Ok(ExitCode::from(EX_USAGE))
                }
                Err(e) => {
                    eprintln!("proxy: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn bank131(command: Bank131Command) -> anyhow::Result<ExitCode> {
    match command {
        Bank131Command::Sign { key, body } => {
            let signer = RequestSigner::from_pem_file(&key)?;
            println!("{}", signer.sign(&read_body(body.as_deref())?)?);
            Ok(ExitCode::SUCCESS)
        }
        Bank131Command::Verify {
            key,
            signature,
            body,
        } => {
            let verifier = SignatureVerifier::from_pem_file(&key)?;
            if verifier.verify(&read_body(body.as_deref())?, &signature) {
                println!("valid");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("invalid");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The exact bytes: no trimming, no newline handling.
fn read_body(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(path) => Ok(std::fs::read(path)?),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            Ok(bytes)
        }
    }
}
