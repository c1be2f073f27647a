//! The `vault` command line: `init`, `serve`, `clients`, `audit`.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::Scopes;
use crate::clock::{rfc3339, rfc3339_micros};
use crate::config::VaultConfig;
use crate::crypto::FileKeyProvider;
use crate::startup::{Application, open_vault, shutdown_signal};
use crate::token::ClientId;

use shared::server::EX_USAGE;

/// The card vault.
#[derive(Debug, Parser)]
#[command(name = "vault", version, about)]
pub struct Cli {
    /// TOML configuration file; `VAULT__SECTION__KEY` environment variables override it.
    #[arg(long, short, env = "VAULT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new random master key file (mode 0600). Refuses to overwrite one.
    Init {
        /// Where to write it (default: `keys.master_key_file` from the configuration).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Serve the HTTP API.
    Serve,
    /// Create or upgrade the database schema, then exit (`serve` also does this at start-up).
    Migrate,
    /// Manage API clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Create a client and print its API key (shown this once only).
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// The tenant whose tokens the client works with.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: tokens:create, tokens:read, tokens:detokenize, tokens:delete.
        #[arg(long)]
        scopes: String,
    },
    /// List clients.
    List,
    /// Revoke a client: its key stops working at once.
    Revoke {
        /// The client id (`cli_…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole HMAC chain; exit 1 and name the first broken link if it does not hold.
    Verify,
    /// Print events as JSON lines (time in RFC 3339 UTC), oldest first.
    List {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cli { config, command } = cli;
    shared::server::run_command(
        "vault",
        || VaultConfig::load(config.as_deref(), std::env::vars()),
        |c| c.log.clone(),
        |c| run(command, c),
    )
}

async fn run(command: Command, config: VaultConfig) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init { key_file } => {
            let path = key_file.unwrap_or_else(|| config.keys.master_key_file.clone());
            FileKeyProvider::create(&path)?;
            println!("wrote a new master key to {}", path.display());
            println!("keep it secret and backed up: without it no card number can be recovered");
        }
        Command::Serve => {
            shared::server::disable_core_dumps();
            let app = Application::build(&config).await?;
            tracing::info!(addr = %app.local_addr()?, "vault listening");
            app.run_until(shutdown_signal()).await?;
            tracing::info!("vault stopped");
        }
        Command::Migrate => {
            crate::startup::open_store(&config).await?;
            println!("database schema is up to date");
        }
        Command::Clients { command } => return clients(command, &config).await,
        Command::Audit {
            command: AuditCommand::List { after, limit },
        } => {
            let vault = open_vault(&config).await?;
            for event in vault.audit_events(after, limit).await? {
                let mut line = serde_json::to_value(&event)?;
                line["occurred_at"] = serde_json::Value::String(rfc3339_micros(event.occurred_at));
                println!("{line}");
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let vault = open_vault(&config).await?;
            return Ok(match vault.verify_audit().await? {
                Ok(verifier) => {
                    println!(
                        "audit chain ok: {} events, head {}",
                        verifier.checked(),
                        hex::encode(verifier.head())
                    );
                    ExitCode::SUCCESS
                }
                Err(broken) => {
                    println!("{broken}");
                    ExitCode::FAILURE
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn clients(command: ClientsCommand, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let vault = open_vault(config).await?;
    match command {
        ClientsCommand::Create {
            name,
            tenant,
            scopes,
        } => {
            let scopes = match Scopes::parse(&scopes) {
                Ok(s) => s,
                Err(message) => {
                    eprintln!("vault: --scopes: {message}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
            let (client, key) = vault.create_client(&name, &tenant, scopes).await?;
            println!("client_id: {}", client.id);
            println!("tenant:    {}", client.tenant);
            println!("scopes:    {}", client.scopes);
            println!("api_key:   {}", key.expose());
            println!("The API key is shown only now; the vault stores only its hash.");
        }
        ClientsCommand::List => {
            println!(
                "{:<26}  {:<20}  {:<16}  {:<20}  {:<10}  scopes",
                "id", "name", "tenant", "created", "status"
            );
            for c in vault.clients().await? {
                let status = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<26}  {:<20}  {:<16}  {:<20}  {:<10}  {}",
                    c.id,
                    c.name,
                    c.tenant,
                    rfc3339(c.created_at),
                    status,
                    c.scopes
                );
            }
        }
        ClientsCommand::Revoke { id } => {
            let Some(id) = ClientId::parse(&id) else {
                eprintln!("vault: not a client id (expected cli_ and 22 letters or digits)");
                return Ok(ExitCode::from(EX_USAGE));
            };
            vault.revoke_client(&id).await?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
