//! The `vault` command line: write the master key, serve, migrate, check the configuration,
//! bring an older database up to date, manage clients, and verify or list the audit log.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::audit::{Expectations, Link};
use crate::auth::Scopes;
use crate::clock::{rfc3339, rfc3339_micros};
use crate::config::{Mode, ProviderKind, VaultConfig};
use crate::crypto::{
    FileKeyProvider, GivenKeyProvider, HsmKey, KeyProvider, KeyPurpose, MasterKey,
    Pkcs11KeyProvider, random_bytes, shamir,
};
use crate::service::{OPERATOR_KEY_PREFIX, Operation, OperatorAdded, OperatorKey, Proposal, Vault};
use crate::startup::{
    Application, key_provider, open_store, open_vault, open_vault_read_only, shutdown_signal,
};
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
    /// Make a new master key: a key file (mode 0600, the file provider); Shamir shares printed
    /// once (the shamir provider); or an AES key inside the HSM (pkcs11). With shamir and
    /// pkcs11 the database's keys are made under it at once. Refuses to overwrite anything.
    Init {
        /// Where to write the key file (default: `keys.master_key_file`).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// file, shamir or pkcs11 (default: `keys.provider`).
        #[arg(long)]
        provider: Option<String>,
        /// Shamir: how many shares to make (2 to 16).
        #[arg(long, default_value_t = 5)]
        shares: u8,
        /// Shamir: how many shares unseal (2 to --shares).
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// The people who take part in dual control: add, list, revoke; and their proposals.
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
    },
    /// Approve another operator's proposal (`VAULT_OPERATOR_KEY` is your credential); it then
    /// runs, in your name.
    Approve {
        /// The proposal (`prp_…`).
        proposal: String,
    },
    /// Unseal, seal or ask a running Shamir vault, through its local socket
    /// (`keys.unseal_socket`).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
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
    /// Serve the HTTP API.
    Serve,
    /// Create or upgrade the database schema, then exit (`serve` also does this at start-up).
    Migrate,
    /// Print the configuration in effect (secrets masked) and every problem found: the master
    /// key file, the database, whether the key opens it. Exit 1 on a problem. Writes nothing.
    Check,
    /// Bring a database an older vault made up to date: add the client key and MAC the existing
    /// client rows (audited). Check `clients list` first: the rows are trusted as they are.
    Upgrade,
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
    /// Key versions: list them, rotate the data key, retire an old version. Running vaults pick
    /// changes up within a second.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorsCommand {
    /// Add an operator and print their credential (shown once). While fewer than two exist this
    /// is immediate; then it is a proposal of the operator in `VAULT_OPERATOR_KEY`.
    Add {
        /// The person's name.
        name: String,
    },
    /// Every operator: id, name, added, revoked.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an operator (`VAULT_OPERATOR_KEY`: any active operator, themselves included).
    Revoke {
        /// The operator (`op_…`).
        id: String,
    },
    /// Every proposal, approved or pending, as JSON lines.
    Proposals,
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Enter one Shamir share, read from standard input (so it stays out of the shell
    /// history and `ps`). The vault serves once enough distinct shares are in.
    Unseal,
    /// Drop the keys from the running vault's memory: it answers 503 until unsealed again.
    Seal,
    /// Sealed or not, and how many shares are held.
    Status,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key version: purpose, version, state (active, decrypt_only, destroyed), whether new
    /// writes use it, created, and the tokens it seals.
    Status {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The cryptographic inventory PCI DSS 3.6.1.1 asks for: every key with its algorithm,
    /// strength, purpose, cryptoperiod, where it is stored and who holds it; JSON lines, or a
    /// Markdown table with --markdown.
    Inventory {
        /// A Markdown table instead of JSON lines.
        #[arg(long)]
        markdown: bool,
    },
    /// Make a new version of a key; it seals every new write from now on. Old tokens stay
    /// readable under their version.
    Rotate {
        /// Which key: `data`, `fingerprint` or `client` (the key that MACs client and collect
        /// session rows).
        #[arg(long, default_value = "data")]
        purpose: String,
    },
    /// Reseal every token still under an older data key version under the active one (and
    /// re-fingerprint and re-MAC what older fingerprint and client keys cover), now, and print
    /// how many; running vaults do the same in the background, paced. It always runs the
    /// whole pass before it returns.
    Rewrap {
        /// Accepted for scripts that ask to wait: the pass always finishes before the command
        /// does.
        #[arg(long)]
        wait: bool,
    },
    /// Propose destroying a decrypt-only data key version (dual control: another operator runs
    /// `vault approve`); its key is then wiped, so what it sealed never opens again. Refused
    /// while tokens are sealed under it, unless --crypto-shred. `VAULT_OPERATOR_KEY` is your
    /// operator credential.
    Destroy {
        /// The version to destroy.
        version: u32,
        /// Which key.
        #[arg(long, default_value = "data")]
        purpose: String,
        /// Destroy it even though tokens are still sealed under it: their card numbers are
        /// gone for good.
        #[arg(long)]
        crypto_shred: bool,
    },
    /// Propose rotating the master key (dual control: another operator's `vault approve` makes
    /// the new key and wraps every stored key under it; tokens are not touched). File provider:
    /// a new key file; shamir: new shares (--shares, --threshold); pkcs11: a new HSM key
    /// (--new-key-label).
    RewrapMaster {
        /// Shamir: how many new shares.
        #[arg(long)]
        shares: Option<u8>,
        /// Shamir: how many of them unseal.
        #[arg(long)]
        threshold: Option<u8>,
        /// HSM: the label of the new key (not the current one).
        #[arg(long)]
        new_key_label: Option<String>,
    },
    /// Make a version decrypt-only: it still opens the tokens it sealed, and seals nothing.
    /// The version new writes use cannot be retired (rotate first).
    Retire {
        /// The version to retire (`keys status` lists them).
        version: u32,
        /// Which key.
        #[arg(long, default_value = "data")]
        purpose: String,
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
        /// Comma-separated: tokens:create, tokens:read, tokens:read_bin, tokens:detokenize,
        /// tokens:delete, collect:create (open and read card form sessions; the payout proxy's
        /// key needs it with tokens:detokenize, for payout links).
        #[arg(long)]
        scopes: String,
        /// Bind the key to the TLS client certificate with this SHA-256 (64 hex digits, colons
        /// allowed: `openssl x509 -in client.crt -noout -fingerprint -sha256`): the key then
        /// works only over mutual TLS with that certificate (`server.tls.client_ca_file`).
        #[arg(long, value_name = "HEX", conflicts_with = "cert_file")]
        cert_sha256: Option<String>,
        /// As `--cert-sha256`, from the client's PEM certificate file (its first certificate).
        #[arg(long, value_name = "PATH")]
        cert_file: Option<PathBuf>,
    },
    /// List clients.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client: its key stops working at once.
    Revoke {
        /// The client id (`cli_…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole HMAC chain, and that it holds every checkpointed or expected link; exit
    /// 1 and name the first broken link if it does not. Opens the database read-only.
    Verify {
        /// A link the chain must hold, `SEQ:MAC` as `verify` prints it (repeatable): a head
        /// recorded elsewhere earlier, so cutting events off the end is caught.
        #[arg(long = "expect", value_name = "SEQ:MAC")]
        expect: Vec<String>,
        /// Checkpoint file to check against (default: `audit.checkpoint_file`), e.g. the copy
        /// shipped off the host.
        #[arg(long, value_name = "PATH")]
        checkpoint_file: Option<PathBuf>,
    },
    /// Print events as JSON lines (time in RFC 3339 UTC), oldest first. Opens the database
    /// read-only.
    List {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events (that pass the filters).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only this action (`token.detokenize`, `auth.fail`, `client.create`, …).
        #[arg(long)]
        action: Option<String>,
        /// Only events about this token.
        #[arg(long)]
        token: Option<String>,
        /// Only events at or after this time: RFC 3339 (`2026-12-01T09:00:00Z`) or an age
        /// (`24h`, `7d`).
        #[arg(long)]
        since: Option<String>,
    },
}

/// `audit list --since`: an RFC 3339 time or an age before now, as Unix microseconds.
fn parse_since(text: &str) -> Option<i64> {
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(at) => at,
        Err(_) => {
            std::time::SystemTime::now().checked_sub(humantime::parse_duration(text).ok()?)?
        }
    };
    let micros = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_micros();
    i64::try_from(micros).ok()
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cli { config, command } = cli;
    // The scanner reads no configuration: it runs on hosts that have none.
    if let Command::Scan { json, paths } = &command {
        return shared::scan::paths::run("vault", paths, *json);
    }
    shared::server::run_command(
        "vault",
        || VaultConfig::load(config.as_deref(), std::env::vars()),
        |c| c.log.clone(),
        |c| run(command, c),
    )
}

/// Where the master key comes from, for people.
fn master_key_source(config: &VaultConfig) -> String {
    match config.keys.provider {
        ProviderKind::File => config.keys.master_key_file.display().to_string(),
        ProviderKind::Shamir => "from Shamir shares".to_owned(),
        ProviderKind::Pkcs11 => format!(
            "in the HSM (token {:?}, key {:?}, module {})",
            config.keys.pkcs11.token_label,
            config.keys.pkcs11.key_label,
            config.keys.pkcs11.module.display()
        ),
    }
}

/// The first line of every command that uses the database: which database and key, so that a
/// command run against the wrong configuration says so at once. Commands that only read or
/// manage refuse to create a database that is not there.
fn state_files(command: &Command, config: &VaultConfig) -> Option<ExitCode> {
    let database = match config.database.postgres_url() {
        Some(_) => "PostgreSQL (database.url)".to_owned(),
        None => config.sqlite().path.display().to_string(),
    };
    eprintln!(
        "vault: database {database}, master key {}",
        master_key_source(config)
    );
    // `clients create` may start a new deployment; listing, revoking and auditing only make
    // sense on a database that exists.
    let manages = matches!(
        command,
        Command::Audit { .. }
            | Command::Keys { .. }
            | Command::Approve { .. }
            | Command::Operators {
                command: OperatorsCommand::List { .. } | OperatorsCommand::Proposals
            }
            | Command::Clients {
                command: ClientsCommand::List { .. } | ClientsCommand::Revoke { .. }
            }
    );
    let path = config.sqlite().path;
    if manages && config.database.postgres_url().is_none() && !path.exists() {
        eprintln!(
            "vault: no vault database at {} (it does not exist); check --config (relative paths are the config file's), or create it with `vault init` and `vault migrate`",
            path.display()
        );
        return Some(ExitCode::FAILURE);
    }
    None
}

async fn run(command: Command, config: VaultConfig) -> anyhow::Result<ExitCode> {
    if !matches!(command, Command::Init { .. } | Command::Operator { .. })
        && let Some(code) = state_files(&command, &config)
    {
        return Ok(code);
    }
    match command {
        Command::Scan { json, paths } => {
            return Ok(shared::scan::paths::run("vault", &paths, json));
        }
        Command::Init {
            key_file,
            provider,
            shares,
            threshold,
        } => return init(&config, key_file, provider.as_deref(), shares, threshold).await,
        Command::Operator { command } => return operator(&command, &config).await,
        Command::Operators { command } => return operators(command, &config).await,
        Command::Approve { proposal } => return approve(&proposal, &config).await,
        Command::Serve => {
            let problems = config.production_problems();
            if !problems.is_empty() {
                for problem in &problems {
                    eprintln!("vault: mode = \"production\" refuses to start: {problem}");
                }
                return Ok(ExitCode::from(shared::server::EX_CONFIG));
            }
            match (config.mode, config.keys.provider) {
                (Mode::Production, ProviderKind::File) => tracing::warn!(
                    file = %config.keys.master_key_file.display(),
                    "the master key is a file beside the data, accepted because keys.allow_file_provider = true"
                ),
                (_, ProviderKind::File) => tracing::info!(
                    file = %config.keys.master_key_file.display(),
                    "the master key is a file (development; production wants keys.provider = shamir or pkcs11)"
                ),
                (_, provider) => {
                    tracing::info!(provider = provider.as_str(), "master key provider")
                }
            }
            if config.keys.provider == ProviderKind::Shamir {
                crate::startup::sealed::serve(&config, shutdown_signal()).await?;
                tracing::info!("vault stopped");
                return Ok(ExitCode::SUCCESS);
            }
            let app = Application::build(&config).await?;
            tracing::info!(addr = %app.local_addr()?, tls = config.server.tls.enabled(), "vault listening");
            if let Some(form) = app.form_addr()? {
                tracing::info!(addr = %form, "card form listening (collect.listen)");
            }
            app.run_until(shutdown_signal()).await?;
            tracing::info!("vault stopped");
        }
        Command::Check => {
            let (mut notes, mut problems) = (Vec::new(), Vec::new());
            problems.extend(config.production_problems());
            let mut can_open = true;
            match config.keys.provider {
                ProviderKind::File => {
                    let key_file = &config.keys.master_key_file;
                    match std::fs::metadata(key_file) {
                        Err(_) => problems.push(format!(
                            "keys.master_key_file: {} cannot be read (`vault init` writes one)",
                            key_file.display()
                        )),
                        Ok(meta) => {
                            use std::os::unix::fs::PermissionsExt;
                            if meta.permissions().mode() & 0o077 != 0 {
                                problems.push(format!(
                                    "keys.master_key_file: {} is readable by others; chmod 600 it",
                                    key_file.display()
                                ));
                            }
                        }
                    }
                }
                ProviderKind::Pkcs11 => {
                    if let Err(e) = HsmKey::open(&config.keys.pkcs11) {
                        problems.push(format!("keys.pkcs11: {e}"));
                    }
                }
                ProviderKind::Shamir => {
                    // Opening needs the shares, which a check does not ask for.
                    can_open = false;
                    notes.push(format!(
                        "keys.provider = shamir: `serve` starts sealed; unseal through {} with `vault operator unseal`",
                        config.keys.unseal_socket.display()
                    ));
                    if config.mode == Mode::Production {
                        notes.push(
                            "mode = \"production\": the checks that read the database (how its keys were made, card readers bound to certificates) run at unseal, not here".to_owned(),
                        );
                    }
                }
            }
            let sqlite = config.database.postgres_url().is_none();
            let path = config.sqlite().path;
            if sqlite && !path.exists() {
                notes.push(format!(
                    "database.path: {} does not exist yet (`vault migrate` or the first `serve` creates it)",
                    path.display()
                ));
            } else if problems.is_empty() && can_open {
                match open_vault_read_only(&config).await {
                    Err(e) => problems.push(format!("the master key and the database: {e}")),
                    Ok(vault) if config.mode == Mode::Production => {
                        problems.extend(
                            vault
                                .production_client_problems(
                                    config.server.tls.client_ca_file.is_some(),
                                )
                                .await?,
                        );
                        let made_in = vault.keys_made_in().await?;
                        if made_in.as_deref() != Some("production") {
                            problems.push(format!(
                                "mode = \"production\": the database's keys were made {}; production starts from `vault init` with mode = \"production\"",
                                made_in.map_or_else(
                                    || "before modes were recorded".to_owned(),
                                    |m| format!("in {m} mode")
                                )
                            ));
                        }
                    }
                    Ok(_) => {}
                }
            }
            // Shown as it takes effect: the database file resolved against the config file's
            // directory.
            let mut shown = config.clone();
            if sqlite {
                shown.database.path = Some(path);
            }
            print!(
                "{}",
                shared::config::check_report("vault", &shown, &notes, &problems)?
            );
            if !problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Migrate => {
            open_store(&config).await?;
            println!("database schema is up to date");
        }
        Command::Upgrade => {
            let store = open_store(&config).await?;
            match Vault::upgrade(store, key_provider(&config).as_ref()).await? {
                Some(n) => println!("added the client key; sealed {n} client rows"),
                None => println!("nothing to upgrade"),
            }
            checkpoint_cli_write(&open_vault(&config).await?, &config)?;
        }
        Command::Clients { command } => return clients(command, &config).await,
        Command::Keys { command } => return keys(command, &config).await,
        Command::Audit {
            command:
                AuditCommand::List {
                    after,
                    limit,
                    action,
                    token,
                    since,
                },
        } => {
            let since = match since.as_deref().map(parse_since) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    eprintln!(
                        "vault: --since: expected an RFC 3339 time (2026-12-01T09:00:00Z) or an age (24h, 7d)"
                    );
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
            let vault = open_vault_read_only(&config).await?;
            // Read in pages and filtered here: the chain is read in order anyway, and a filter
            // never changes what `verify` sees.
            let (mut cursor, mut printed) = (after, 0u32);
            'pages: loop {
                let page = vault.audit_events(cursor, 1000).await?;
                let Some(last) = page.last() else { break };
                cursor = last.seq;
                for event in page {
                    let keep = action.as_deref().is_none_or(|a| event.action == a)
                        && token
                            .as_deref()
                            .is_none_or(|t| event.token.as_deref() == Some(t))
                        && since.is_none_or(|t| event.occurred_at >= t);
                    if !keep {
                        continue;
                    }
                    if printed == limit {
                        break 'pages;
                    }
                    let mut line = serde_json::to_value(&event)?;
                    line["occurred_at"] =
                        serde_json::Value::String(rfc3339_micros(event.occurred_at));
                    println!("{line}");
                    printed += 1;
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    expect,
                    checkpoint_file,
                },
        } => return verify(&config, &expect, checkpoint_file).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The inventory rows: the master key, then every stored key version.
fn inventory(keys: &[crate::service::KeyStatus], config: &VaultConfig) -> Vec<serde_json::Value> {
    let master = serde_json::json!({
        "key": "master",
        "version": 1,
        "state": "active",
        "algorithm": "AES-256-GCM (key wrapping)",
        "strength_bits": 256,
        "purpose": "wraps every stored key, nothing else",
        "cryptoperiod": "until rotated with `vault keys rewrap-master` (dual control), which rewraps every stored key under a new master key",
        "provider": config.keys.provider.as_str(),
        "stored": match config.keys.provider {
            ProviderKind::File => format!(
                "file {} (mode 0600), outside the database",
                config.keys.master_key_file.display()
            ),
            ProviderKind::Shamir => "nowhere whole: Shamir shares held by custodians, rebuilt in the vault's memory at unseal".to_owned(),
            ProviderKind::Pkcs11 => format!(
                "inside the HSM as a non-extractable AES-256 key (token {:?}, key {:?})",
                config.keys.pkcs11.token_label, config.keys.pkcs11.key_label
            ),
        },
        "custodian": match config.keys.provider {
            ProviderKind::File => "the operators who hold the master key file and its backup",
            ProviderKind::Shamir => "the share custodians: no one of them alone (threshold on the shares)",
            ProviderKind::Pkcs11 => "the HSM; the operators who hold its user PIN may use it, none can read it",
        },
    });
    let data_period = format!(
        "{} days or {} seals, whichever first; then rotated automatically",
        config.keys.data_key_max_age_days, config.keys.data_key_max_seals
    );
    std::iter::once(master)
        .chain(keys.iter().map(|k| {
            let (algorithm, purpose, period) = match k.purpose {
                "data" => (
                    "AES-256-GCM, random 96-bit nonces",
                    "seals card numbers (bound to token, tenant and version)",
                    data_period.clone(),
                ),
                "fingerprint" => (
                    "HMAC-SHA-256",
                    "per-tenant card fingerprint: same card, same token",
                    "until rotated with `vault keys rotate --purpose fingerprint`; the rewrap job then moves every token to the new version".to_owned(),
                ),
                "audit" => (
                    "HMAC-SHA-256",
                    "chains the audit log and tags checkpoints",
                    "the life of the audit chain".to_owned(),
                ),
                _ => (
                    "HMAC-SHA-256",
                    "authenticates client and collect-session rows",
                    "until rotated with `vault keys rotate --purpose client`; the rewrap job then MACs every row again under the new version".to_owned(),
                ),
            };
            serde_json::json!({
                "key": k.purpose,
                "version": k.version,
                "state": k.state,
                "algorithm": algorithm,
                "strength_bits": 256,
                "purpose": purpose,
                "cryptoperiod": period,
                "stored": "the keys table, wrapped (AES-256-GCM) under the master key, purpose and version bound in",
                "custodian": "the vault process; no person sees it unwrapped",
                "created_at": k.created_at,
                "in_use": k.in_use,
                "seals": k.seals,
                "tokens": k.tokens,
            })
        }))
        .collect()
}

/// `keys status | rotate | retire`.
async fn keys(command: KeysCommand, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let purpose_of = |name: &str| {
        // `client-mac` is what the key does; `client` what the keys table calls it.
        let purpose = KeyPurpose::from_name(if name == "client-mac" { "client" } else { name });
        if purpose.is_none() {
            eprintln!(
                "vault: --purpose: expected data, fingerprint, client (or client-mac) or audit"
            );
        }
        purpose
    };
    match command {
        KeysCommand::Status { json } => {
            let vault = open_vault_read_only(config).await?;
            let keys = vault.key_status().await?;
            if json {
                for key in &keys {
                    println!("{}", serde_json::to_string(key)?);
                }
            } else {
                println!(
                    "{:<12} {:>7}  {:<13} {:<6} {:<20} {:>10} {:>12}",
                    "PURPOSE", "VERSION", "STATE", "IN USE", "CREATED", "TOKENS", "SEALS"
                );
                for k in &keys {
                    println!(
                        "{:<12} {:>7}  {:<13} {:<6} {:<20} {:>10} {:>12}",
                        k.purpose,
                        k.version,
                        k.state,
                        if k.in_use { "yes" } else { "" },
                        k.created_at,
                        k.tokens.map_or("-".to_owned(), |n| n.to_string()),
                        if k.purpose == "data" {
                            k.seals.to_string()
                        } else {
                            "-".to_owned()
                        }
                    );
                }
            }
        }
        KeysCommand::Inventory { markdown } => {
            let vault = open_vault_read_only(config).await?;
            let keys = vault.key_status().await?;
            let rows = inventory(&keys, config);
            if markdown {
                println!(
                    "| key | version | state | algorithm | strength | purpose | cryptoperiod | stored | custodian |"
                );
                println!("|---|---|---|---|---|---|---|---|---|");
                for r in &rows {
                    println!(
                        "| {} | {} | {} | {} | {} bits | {} | {} | {} | {} |",
                        r["key"].as_str().unwrap_or_default(),
                        r["version"],
                        r["state"].as_str().unwrap_or_default(),
                        r["algorithm"].as_str().unwrap_or_default(),
                        r["strength_bits"],
                        r["purpose"].as_str().unwrap_or_default(),
                        r["cryptoperiod"].as_str().unwrap_or_default(),
                        r["stored"].as_str().unwrap_or_default(),
                        r["custodian"].as_str().unwrap_or_default(),
                    );
                }
            } else {
                for r in &rows {
                    println!("{r}");
                }
            }
        }
        KeysCommand::Rotate { purpose } => {
            let Some(purpose) = purpose_of(&purpose) else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let vault = open_vault(config).await?;
            let version = vault.rotate_key("cli", purpose).await?;
            checkpoint_cli_write(&vault, config)?;
            println!(
                "{} key version {version} made: new writes use it (running vaults within a second); older versions still open their tokens",
                purpose.as_str()
            );
        }
        KeysCommand::Rewrap { wait: _ } => {
            let vault = open_vault(config).await?;
            let done = vault
                .rewrap(
                    "cli",
                    config.keys.rewrap_batch_size,
                    std::time::Duration::from_millis(config.keys.rewrap_pause_ms),
                )
                .await?;
            vault.flush_seals().await?;
            checkpoint_cli_write(&vault, config)?;
            println!(
                "resealed {} tokens under the active data key; re-fingerprinted {} under the newest fingerprint key; MAC'd {} client and collect session rows under the newest client key; {} did not open and were left as they are",
                done.resealed, done.refingerprinted, done.remaced, done.failed
            );
            if done.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        KeysCommand::Destroy {
            version,
            purpose,
            crypto_shred,
        } => {
            let Some(purpose) = purpose_of(&purpose) else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let Some(by) = operator_key() else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let vault = custody_vault(config).await?;
            // Refused now what the destruction would refuse, so nobody approves a no-op.
            let status = vault.key_status().await?;
            let Some(key) = status
                .iter()
                .find(|k| k.purpose == purpose.as_str() && k.version == version)
            else {
                eprintln!(
                    "vault: no {} key version {version} (`vault keys status`)",
                    purpose.as_str()
                );
                return Ok(ExitCode::FAILURE);
            };
            if key.state != "decrypt_only" {
                eprintln!(
                    "vault: {} key version {version} is {}: only a decrypt-only version is destroyed (retire it first; the one in use cannot be)",
                    purpose.as_str(),
                    key.state
                );
                return Ok(ExitCode::FAILURE);
            }
            if !crypto_shred && key.tokens.is_some_and(|n| n > 0) {
                eprintln!(
                    "vault: {} tokens are still sealed under version {version}: run `vault keys rewrap` first, or add --crypto-shred to destroy them with it",
                    key.tokens.unwrap_or(0)
                );
                return Ok(ExitCode::FAILURE);
            }
            let operation = Operation::DestroyKey {
                purpose: purpose.as_str().to_owned(),
                version,
                crypto_shred,
            };
            let proposal = vault
                .propose(&by, operation, approval_window(config))
                .await?;
            checkpoint_cli_write(&vault, config)?;
            print_proposal(&proposal);
        }
        KeysCommand::RewrapMaster {
            shares,
            threshold,
            new_key_label,
        } => {
            let problem = match config.keys.provider {
                ProviderKind::File
                    if shares.is_some() || threshold.is_some() || new_key_label.is_some() =>
                {
                    Some("the file provider takes no --shares, --threshold or --new-key-label")
                }
                ProviderKind::Shamir if shares.is_none() || threshold.is_none() => {
                    Some("--shares and --threshold: the new split (the Shamir provider)")
                }
                ProviderKind::Pkcs11
                    if new_key_label
                        .as_deref()
                        .is_none_or(|l| l.is_empty() || l == config.keys.pkcs11.key_label) =>
                {
                    Some("--new-key-label: a label for the new HSM key, not the current one")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                eprintln!("vault: {problem}");
                return Ok(ExitCode::from(EX_USAGE));
            }
            if let (Some(n), Some(k)) = (shares, threshold)
                && let Err(e) = shamir::split(&zeroize::Zeroizing::new([0u8; 32]), n, k)
            {
                eprintln!("vault: --shares/--threshold: {e}");
                return Ok(ExitCode::from(EX_USAGE));
            }
            let Some(by) = operator_key() else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let vault = custody_vault(config).await?;
            let operation = Operation::RotateMaster {
                shares,
                threshold,
                new_key_label,
            };
            let proposal = vault
                .propose(&by, operation, approval_window(config))
                .await?;
            checkpoint_cli_write(&vault, config)?;
            print_proposal(&proposal);
        }
        KeysCommand::Retire { version, purpose } => {
            let Some(purpose) = purpose_of(&purpose) else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let vault = open_vault(config).await?;
            vault.retire_key("cli", purpose, version).await?;
            checkpoint_cli_write(&vault, config)?;
            println!(
                "{} key version {version} is decrypt-only: it opens its tokens and seals nothing",
                purpose.as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: the chain, `--expect` links and the checkpoint file.
async fn verify(
    config: &VaultConfig,
    expect: &[String],
    checkpoint_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut expected = Expectations::default();
    for text in expect {
        let Some(link) = parse_link(text) else {
            eprintln!(
                "vault: --expect: expected SEQ:MAC (a sequence number, a colon and 64 hex digits, as `audit verify` prints)"
            );
            return Ok(ExitCode::from(EX_USAGE));
        };
        if let Err(broken) = expected.expect(link) {
            println!("{broken}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let vault = open_vault_read_only(config).await?;
    let checkpoint_file = checkpoint_file.or_else(|| config.audit.checkpoint_file.clone());
    let mut checkpoints = 0;
    if let Some(path) = &checkpoint_file {
        let read = match vault.read_checkpoints(path) {
            Ok(read) => read,
            Err(e) => {
                println!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        };
        checkpoints = read.len();
        for cp in read {
            if let Err(broken) = expected.expect(cp.link) {
                println!("{broken}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(match vault.verify_audit_and_clients(&expected).await? {
        Ok((verifier, disagreements)) if disagreements.is_empty() => {
            let head = verifier.last_link().map_or_else(
                || "none".to_owned(),
                |l| format!("{}:{}", l.seq, hex::encode(l.mac)),
            );
            println!(
                "audit chain ok: {} events, head {head}; {} expected links held ({checkpoints} from checkpoints); client rows agree with it",
                verifier.checked(),
                expected.len(),
            );
            ExitCode::SUCCESS
        }
        Ok((_, disagreements)) => {
            println!("audit chain ok, but client rows disagree with it:");
            for d in disagreements {
                println!("  {d}");
            }
            ExitCode::FAILURE
        }
        Err(broken) => {
            println!("{broken}");
            ExitCode::FAILURE
        }
    })
}

/// `SEQ:MAC` with 64 hex digits.
fn parse_link(text: &str) -> Option<Link> {
    let (seq, mac) = text.trim().split_once(':')?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(mac, &mut bytes).ok()?;
    Some(Link {
        seq: seq.parse().ok()?,
        mac: bytes,
    })
}

/// After a command wrote audit events: with `audit.checkpoint_file` set, a checkpoint of the
/// head, so that cutting those events off (no running vault remembers them) is caught too.
/// `vault init`: a key file, Shamir shares, or a key in the HSM.
async fn init(
    config: &VaultConfig,
    key_file: Option<PathBuf>,
    provider: Option<&str>,
    shares: u8,
    threshold: u8,
) -> anyhow::Result<ExitCode> {
    let provider = match provider {
        None => config.keys.provider,
        Some("file") => ProviderKind::File,
        Some("shamir") => ProviderKind::Shamir,
        Some("pkcs11") => ProviderKind::Pkcs11,
        Some(_) => {
            eprintln!("vault: --provider: expected file, shamir or pkcs11");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    if provider != config.keys.provider {
        eprintln!(
            "vault: --provider {} but the configuration says keys.provider = {:?}: set it there too, or `serve` will look for the key elsewhere",
            provider.as_str(),
            config.keys.provider.as_str()
        );
        return Ok(ExitCode::from(EX_USAGE));
    }
    if provider == ProviderKind::File {
        let path = key_file.unwrap_or_else(|| config.keys.master_key_file.clone());
        FileKeyProvider::create(&path)?;
        println!("wrote a new master key to {}", path.display());
        println!("keep it secret and backed up: without it no card number can be recovered");
        return Ok(ExitCode::SUCCESS);
    }
    // A new master key makes the database's keys at once, so the first unseal cannot accept
    // shares of some other key; a database that has keys keeps its master key.
    let store = open_store(config).await?;
    if !store.wrapped_keys().await?.is_empty() || !store.is_empty().await? {
        eprintln!(
            "vault: this database already has keys under its master key; init makes a new vault only (to replace the master key, rotate it: `vault keys rewrap-master`)"
        );
        return Ok(ExitCode::FAILURE);
    }
    if provider == ProviderKind::Pkcs11 {
        HsmKey::create(&config.keys.pkcs11)?;
        let vault = Vault::open_in(
            store,
            &Pkcs11KeyProvider::new(config.keys.pkcs11.clone()),
            config.mode.as_str(),
        )
        .await?;
        checkpoint_cli_write(&vault, config)?;
        println!(
            "made the master key inside the HSM (token {:?}, key {:?}: AES-256, sensitive, not extractable) and this vault's keys under it",
            config.keys.pkcs11.token_label, config.keys.pkcs11.key_label
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    random_bytes(key.as_mut_slice())?;
    let texts = match shamir::split(&key, shares, threshold) {
        Ok(texts) => texts,
        Err(e) => {
            eprintln!("vault: --shares/--threshold: {e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let vault = Vault::open_in(
        store,
        &GivenKeyProvider::new_vault(key),
        config.mode.as_str(),
    )
    .await?;
    checkpoint_cli_write(&vault, config)?;
    println!(
        "made a master key split into {shares} Shamir shares, any {threshold} of which unseal this vault; its keys are made under it"
    );
    println!(
        "give each share to a different custodian now: they are shown this once, and no copy of the key is kept anywhere"
    );
    for (i, text) in texts.iter().enumerate() {
        println!("share {}: {}", i + 1, text.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// The operator credential in `VAULT_OPERATOR_KEY` (an environment variable, so it stays out
/// of the shell history and `ps`), or `None` after saying so.
fn operator_key() -> Option<OperatorKey> {
    match std::env::var("VAULT_OPERATOR_KEY") {
        Ok(text) if text.starts_with(OPERATOR_KEY_PREFIX) => {
            let text = zeroize::Zeroizing::new(text);
            Some(OperatorKey::presented(text.trim()))
        }
        Ok(_) => {
            eprintln!("vault: VAULT_OPERATOR_KEY: not an operator credential (they start opk_)");
            None
        }
        Err(_) => {
            eprintln!(
                "vault: this needs dual control: set VAULT_OPERATOR_KEY to your operator credential (`vault operators add` made it)"
            );
            None
        }
    }
}

/// The vault for a dual-control command: with `audit.checkpoint_file` set, refused when the
/// chain no longer holds its newest checkpoint, since events cut off the end (a revocation, an
/// approval) would otherwise go unnoticed by dual control, which trusts the chain it walks.
async fn custody_vault(config: &VaultConfig) -> anyhow::Result<Vault> {
    let vault = open_vault(config).await?;
    if let Some(path) = &config.audit.checkpoint_file {
        vault.check_latest_checkpoint(path).await?;
    }
    Ok(vault)
}

/// How long a proposal waits for its approval.
fn approval_window(config: &VaultConfig) -> std::time::Duration {
    std::time::Duration::from_secs(config.keys.approval_window_minutes.saturating_mul(60))
}

fn print_proposal(proposal: &Proposal) {
    println!(
        "proposal {}: {}; proposed by {}",
        proposal.id,
        proposal.operation.describe(),
        proposal.proposed_by
    );
    println!(
        "another operator approves it with `vault approve {}` before {}",
        proposal.id,
        rfc3339(proposal.expires_at)
    );
}

/// `vault operators …`.
async fn operators(command: OperatorsCommand, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let vault = custody_vault(config).await?;
    match command {
        OperatorsCommand::Add { name } => {
            let by = std::env::var_os("VAULT_OPERATOR_KEY").and_then(|_| operator_key());
            match vault
                .add_operator(&name, by.as_ref(), approval_window(config))
                .await?
            {
                OperatorAdded::Added(operator, key) => {
                    println!("operator_id: {}", operator.id);
                    println!("operator_key: {}", key.expose());
                    println!(
                        "give the key to {} alone: it is shown this once",
                        operator.name
                    );
                }
                OperatorAdded::Proposed(proposal, key) => {
                    print_proposal(&proposal);
                    println!("operator_key: {}", key.expose());
                    println!(
                        "it works once the proposal is approved; give it to the new operator alone: it is shown this once"
                    );
                }
            }
        }
        OperatorsCommand::List { json } => {
            for operator in vault.operators().await? {
                if json {
                    println!("{}", serde_json::to_string(&operator)?);
                } else {
                    println!(
                        "{}  {}  added {}{}",
                        operator.id,
                        operator.name,
                        rfc3339(operator.added_at),
                        if operator.revoked { "  REVOKED" } else { "" }
                    );
                }
            }
        }
        OperatorsCommand::Revoke { id } => {
            let Some(by) = operator_key() else {
                return Ok(ExitCode::from(EX_USAGE));
            };
            let proposal = vault
                .revoke_operator(&id, &by, approval_window(config))
                .await?;
            print_proposal(&proposal);
        }
        OperatorsCommand::Proposals => {
            for proposal in vault.proposals().await? {
                println!("{}", serde_json::to_string(&proposal)?);
            }
        }
    }
    checkpoint_cli_write(&vault, config)?;
    Ok(ExitCode::SUCCESS)
}

/// `vault approve PROPOSAL`: records the approval, then runs the operation as the approver.
async fn approve(proposal: &str, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let Some(by) = operator_key() else {
        return Ok(ExitCode::from(EX_USAGE));
    };
    let vault = custody_vault(config).await?;
    // What this run can carry out, by its configuration: refused before the approval counts.
    let fits = |operation: &Operation| match operation {
        Operation::RotateMaster {
            shares,
            threshold,
            new_key_label,
        } => {
            let wants = match (shares, threshold, new_key_label) {
                (Some(_), Some(_), None) => ProviderKind::Shamir,
                (None, None, Some(_)) => ProviderKind::Pkcs11,
                (None, None, None) => ProviderKind::File,
                _ => return Some("the proposal's new master key is malformed".to_owned()),
            };
            (wants != config.keys.provider).then(|| {
                format!(
                    "it rotates the master key for keys.provider = {:?}, but this configuration says {:?}: approve with the vault's own configuration",
                    wants.as_str(),
                    config.keys.provider.as_str()
                )
            })
        }
        _ => None,
    };
    let (proposal, approver) = match vault.approve(&by, proposal, &fits).await {
        Ok(approved) => approved,
        Err(e) => {
            checkpoint_cli_write(&vault, config)?;
            return Err(e.into());
        }
    };
    match &proposal.operation {
        Operation::DestroyKey {
            purpose,
            version,
            crypto_shred,
        } => {
            println!(
                "{} approved {}: {purpose} key version {version} destroyed: its key is wiped{}",
                approver.id,
                proposal.id,
                if *crypto_shred {
                    "; the tokens it sealed never open again"
                } else {
                    ""
                }
            );
        }
        Operation::AddOperator { operator, name, .. } => {
            println!(
                "approved {}: operator {operator} ({name}) added",
                proposal.id
            );
        }
        Operation::RevokeOperator { operator } => {
            println!(
                "approved {}: operator {operator} revoked: their credential no longer proposes or approves",
                proposal.id
            );
        }
        Operation::RotateMaster {
            shares,
            threshold,
            new_key_label,
        } => {
            let actor = format!("{} (approving {})", approver.id, proposal.id);
            rotate_master(
                &vault,
                config,
                &actor,
                (*shares, *threshold),
                new_key_label.as_deref(),
            )
            .await?;
        }
    }
    checkpoint_cli_write(&vault, config)?;
    Ok(ExitCode::SUCCESS)
}

/// Makes the new master key where the provider keeps it, wraps every stored key under it, and
/// tells the operator what changed. Running vaults keep serving with the keys they hold (the
/// keys themselves did not change); they need the new master key at their next start.
async fn rotate_master(
    vault: &Vault,
    config: &VaultConfig,
    actor: &str,
    (shares, threshold): (Option<u8>, Option<u8>),
    new_key_label: Option<&str>,
) -> anyhow::Result<()> {
    match config.keys.provider {
        ProviderKind::File => {
            // Written beside the key first; the keys are rewrapped; then it replaces the key
            // file in one rename. Interrupted in between, the next command finds which of the
            // two opens the database and keeps that one (startup::recover_master_rotation).
            let next = crate::startup::next_key_file(config);
            // Held until the rename: a command starting meanwhile leaves the new file alone.
            let lock = crate::startup::rotation_lock(config)?;
            lock.try_lock().map_err(|_| {
                anyhow::anyhow!("another master-key rotation is running on this key file")
            })?;
            FileKeyProvider::create(&next)?;
            let new = FileKeyProvider::new(&next).master_key()?;
            if let Err(e) = vault.rewrap_master(actor, &new).await {
                // Not deleted: whether the database committed is not always known (a lost
                // commit reply); the next command keeps whichever file opens the keys.
                anyhow::bail!(
                    "{e}; the new key is left at {} and the next vault command keeps whichever of the two opens the keys",
                    next.display()
                );
            }
            std::fs::rename(&next, &config.keys.master_key_file)?;
            crate::startup::sync_dir(&config.keys.master_key_file);
            drop(lock);
            println!(
                "keys wrapped under a new master key, written to {} (the old one is gone: back up the new file now)",
                config.keys.master_key_file.display()
            );
        }
        ProviderKind::Shamir => {
            let (Some(shares), Some(threshold)) = (shares, threshold) else {
                anyhow::bail!("the proposal names no Shamir split");
            };
            let mut key = zeroize::Zeroizing::new([0u8; 32]);
            random_bytes(key.as_mut_slice())?;
            let texts = shamir::split(&key, shares, threshold)?;
            // Shown before the keys move under them: a commit whose reply is lost, or a closed
            // pipe after it, must not leave a database under shares nobody saw.
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "new master key split into {shares} Shamir shares, any {threshold} of which unseal; they take effect once the line \"rotated\" follows (if it does not, the old shares still open the vault: check with `vault keys status` and either set)"
                )?;
                writeln!(
                    out,
                    "give each share to a different custodian now: they are shown this once (running vaults keep serving; they need the new shares at their next unseal)"
                )?;
                for (i, text) in texts.iter().enumerate() {
                    writeln!(out, "share {}: {}", i + 1, text.as_str())?;
                }
                out.flush()?;
            }
            let n = vault
                .rewrap_master(actor, &MasterKey::from_bytes(&key))
                .await?;
            println!(
                "rotated: {n} keys wrapped under the new master key; the old shares open nothing any more"
            );
        }
        ProviderKind::Pkcs11 => {
            let Some(label) = new_key_label else {
                anyhow::bail!("the proposal names no new HSM key label");
            };
            let mut settings = config.keys.pkcs11.clone();
            settings.key_label = label.to_owned();
            HsmKey::create(&settings)?;
            let new = MasterKey::from_hsm(HsmKey::open(&settings)?);
            let n = vault.rewrap_master(actor, &new).await?;
            println!(
                "{n} keys wrapped under the new HSM key {label:?}: set keys.pkcs11.key_label = {label:?} in every vault's configuration before its next start; destroy the old key {:?} in the HSM once they all run on the new one",
                config.keys.pkcs11.key_label
            );
        }
    }
    Ok(())
}

/// `vault operator unseal | seal | status`.
async fn operator(command: &OperatorCommand, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let socket = crate::startup::sealed::socket_path(config);
    let request = match command {
        OperatorCommand::Unseal => {
            use std::io::BufRead;
            eprint!("vault: enter your share: ");
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin().lock().read_line(&mut line)?;
            zeroize::Zeroizing::new(format!("unseal {}", line.trim()))
        }
        OperatorCommand::Seal => zeroize::Zeroizing::new("seal".to_owned()),
        OperatorCommand::Status => zeroize::Zeroizing::new("status".to_owned()),
    };
    let answer = crate::startup::sealed::ask(&socket, &request).await?;
    println!("{answer}");
    Ok(if answer["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn checkpoint_cli_write(vault: &Vault, config: &VaultConfig) -> anyhow::Result<()> {
    if let Some(path) = &config.audit.checkpoint_file {
        vault.write_checkpoint(path, None)?;
    }
    Ok(())
}

/// A certificate's SHA-256 as typed: 64 hex digits, optionally colon-separated pairs.
fn parse_cert_sha256(text: &str) -> Option<[u8; 32]> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).ok()?;
    Some(out)
}

/// The SHA-256 of the first certificate in a PEM file.
fn certificate_sha256(path: &std::path::Path) -> Result<[u8; 32], String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let first = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or("no PEM certificate (BEGIN CERTIFICATE) in it")?;
    Ok(sha2::Sha256::digest(first.as_ref()).into())
}

async fn clients(command: ClientsCommand, config: &VaultConfig) -> anyhow::Result<ExitCode> {
    let vault = open_vault(config).await?;
    match command {
        ClientsCommand::Create {
            name,
            tenant,
            scopes,
            cert_sha256,
            cert_file,
        } => {
            let scopes = match Scopes::parse(&scopes) {
                Ok(s) => s,
                Err(message) => {
                    eprintln!("vault: --scopes: {message}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
            let binding = match (cert_sha256, cert_file) {
                (Some(hex), _) => match parse_cert_sha256(&hex) {
                    Some(h) => Some(h),
                    None => {
                        eprintln!(
                            "vault: --cert-sha256: expected the certificate's SHA-256 as 64 hex digits (colons allowed), as `openssl x509 -in client.crt -noout -fingerprint -sha256` prints it"
                        );
                        return Ok(ExitCode::from(EX_USAGE));
                    }
                },
                (None, Some(path)) => match certificate_sha256(&path) {
                    Ok(h) => Some(h),
                    Err(message) => {
                        eprintln!("vault: --cert-file {}: {message}", path.display());
                        return Ok(ExitCode::from(EX_USAGE));
                    }
                },
                (None, None) => None,
            };
            // Production by this configuration, or by the database (its keys were made by a
            // production vault), whatever mode this command was run with.
            let production = config.mode == Mode::Production
                || vault.keys_made_in().await?.as_deref() == Some("production");
            if production
                && binding.is_none()
                && scopes.contains(crate::auth::Scope::TokensDetokenize)
            {
                eprintln!(
                    "vault: mode = \"production\": a client holding tokens:detokenize must be bound to its TLS client certificate: add --cert-file PATH or --cert-sha256 HEX"
                );
                return Ok(ExitCode::from(EX_USAGE));
            }
            if binding.is_some() && config.server.tls.client_ca_file.is_none() {
                eprintln!(
                    "vault: note: server.tls.client_ca_file is not set here, so this vault asks no client for a certificate and the new key works nowhere until it does"
                );
            }
            let (client, key) = vault
                .create_bound_client(&name, &tenant, scopes, binding)
                .await?;
            checkpoint_cli_write(&vault, config)?;
            println!("client_id: {}", client.id);
            println!("tenant:    {}", client.tenant);
            println!("scopes:    {}", client.scopes);
            if let Some(h) = &client.cert_sha256 {
                println!("cert_sha256: {}", hex::encode(h));
            }
            println!("api_key:   {}", key.expose());
            println!("The API key is shown only now; the vault stores only its hash.");
        }
        ClientsCommand::List { json } => {
            if !json {
                println!(
                    "{:<26}  {:<20}  {:<16}  {:<20}  {:<10}  scopes",
                    "id", "name", "tenant", "created", "status"
                );
            }
            for c in vault.clients().await? {
                let status = if !vault.is_authentic(&c) {
                    "TAMPERED"
                } else if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                if json {
                    let line = serde_json::json!({
                        "id": c.id.as_str(),
                        "name": c.name,
                        "tenant": c.tenant,
                        "scopes": c.scopes.to_string(),
                        "created_at": rfc3339(c.created_at),
                        "status": status,
                        "cert_sha256": c.cert_sha256.map(hex::encode),
                    });
                    println!("{line}");
                    continue;
                }
                let bound = c
                    .cert_sha256
                    .map(|h| format!("  cert_sha256={}", hex::encode(h)))
                    .unwrap_or_default();
                println!(
                    "{:<26}  {:<20}  {:<16}  {:<20}  {:<10}  {}{bound}",
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
            checkpoint_cli_write(&vault, config)?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
