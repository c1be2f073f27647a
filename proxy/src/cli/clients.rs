//! `proxy clients …`: create, list and revoke app clients, rotate their API key or webhook
//! secret (each printed once), and change where their webhooks go; a webhook URL is checked as
//! the outbox checks it before every delivery.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use super::*;
use crate::ids::AppClientId;

#[derive(Debug, Subcommand)]
pub(super) enum ClientsCommand {
    /// Create an app client; prints its API key and webhook secret (shown this once only).
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// The tenant whose vault tokens it pays out to.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: payouts:write, payouts:read.
        #[arg(long)]
        scopes: String,
        /// Where its webhooks go.
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// List clients.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client: its key stops working at once.
    Revoke {
        /// The client id (`app_…`).
        id: String,
    },
    /// Give a client a new API key (printed once). The client, its payouts and its
    /// idempotency keys stay: a request retried with the new key is still the same request.
    RotateKey {
        /// The client id (`app_…`).
        id: String,
        /// Keep the old key working this many seconds (0-604800), for a rollout without
        /// downtime; by default it stops at once.
        #[arg(long, default_value_t = 0)]
        old_key_valid_for: u32,
    },
    /// Give a client a new webhook secret (printed once); every delivery from now on is signed
    /// with it. A delivery the app refuses while it still has the old one is retried.
    RotateWebhookSecret {
        /// The client id (`app_…`).
        id: String,
    },
    /// Change a client's webhook URL.
    Update {
        /// The client id (`app_…`).
        id: String,
        /// The new webhook URL (checked as at create).
        #[arg(long, conflicts_with = "no_webhook_url")]
        webhook_url: Option<String>,
        /// Stop sending this client webhooks.
        #[arg(long)]
        no_webhook_url: bool,
    },
}

/// The longest a rotated-out key may keep working: a week.
const MAX_OLD_KEY_SECONDS: u32 = 7 * 24 * 3600;

/// What to tell the operator about a refused webhook URL, fix included.
fn webhook_refusal(e: crate::egress::EgressError) -> &'static str {
    use crate::egress::EgressError;
    match e {
        EgressError::PrivateAddress => {
            "points at a loopback, private, link-local or metadata address; an app's webhooks must be reachable on a public address (for local development only, set webhooks.allow_private_networks = true)"
        }
        EgressError::Unresolvable => {
            "the host does not resolve; check the name (it is resolved when the client is created and at every delivery)"
        }
        EgressError::NotHttp | EgressError::Insecure => {
            "must be an http:// or https:// URL with a host"
        }
    }
}

pub(super) async fn clients(
    command: ClientsCommand,
    config: &ProxyConfig,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match command {
        ClientsCommand::Create {
            name,
            tenant,
            scopes,
            webhook_url,
        } => {
            let scopes = match Scopes::parse(&scopes) {
                Ok(s) => s,
                Err(message) => {
                    eprintln!("proxy: --scopes: {message}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
            };
            if let Some(url) = webhook_url.as_deref() {
                let allow_private = config.webhooks.allow_private_networks;
                if let Err(e) = crate::egress::check_webhook_url(url, allow_private).await {
                    // The URL is not echoed: it may carry credentials.
                    eprintln!("proxy: --webhook-url: {}", webhook_refusal(e));
                    return Ok(ExitCode::from(EX_USAGE));
                }
            }
            let new = match NewClient::make(&name, &tenant, scopes, webhook_url, now_micros()) {
                Ok(new) => new,
                Err(NewClientError::Invalid(message)) => {
                    eprintln!("proxy: {message}");
                    return Ok(ExitCode::from(EX_USAGE));
                }
                Err(e) => return Err(e.into()),
            };
            let mut client = new.record;
            let (key, secret) = (new.api_key, client.webhook_secret.clone());
            // Stored wrapped: a reader of the database cannot sign for the proxy.
            let secrets = crate::secrets::for_config(config)?;
            client.webhook_secret = secrets.wrap(&secret, client.id.as_str())?;
            store.insert_client(client.clone()).await?;
            println!("client_id:      {}", client.id);
            println!("tenant:         {}", client.tenant);
            println!("scopes:         {}", client.scopes);
            println!(
                "webhook_url:    {}",
                client.webhook_url.as_deref().unwrap_or("-")
            );
            println!("api_key:        {}", key.expose());
            println!("webhook_secret: {}", secret.expose());
            println!("The API key and webhook secret are shown only now.");
        }
        ClientsCommand::List { json: true } => {
            for c in store.clients().await? {
                let line = serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "tenant": c.tenant,
                    "scopes": c.scopes.to_string(),
                    "created_at": rfc3339(c.created_at),
                    "revoked_at": c.revoked_at.map(rfc3339),
                    "old_key_valid_until": c.previous_key
                        .filter(|k| k.expires_at > now_micros())
                        .map(|k| rfc3339(k.expires_at)),
                    "webhook_url": c.webhook_url,
                });
                println!("{line}");
            }
        }
        ClientsCommand::List { json: false } => {
            println!(
                "{:<26}  {:<20}  {:<16}  {:<20}  {:<8}  {:<28}  webhook",
                "id", "name", "tenant", "created", "status", "scopes"
            );
            for c in store.clients().await? {
                let status = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<26}  {:<20}  {:<16}  {:<20}  {:<8}  {:<28}  {}",
                    c.id,
                    c.name,
                    c.tenant,
                    rfc3339(c.created_at),
                    status,
                    c.scopes.to_string(),
                    c.webhook_url.as_deref().unwrap_or("-")
                );
            }
        }
        ClientsCommand::Revoke { id } => {
            let Some(client) = AppClientId::parse(&id) else {
                return Ok(no_such_client());
            };
            if !store.revoke_client(&client, now_micros()).await? {
                return Ok(no_such_client());
            }
            println!("revoked {id}");
        }
        ClientsCommand::RotateKey {
            id,
            old_key_valid_for,
        } => {
            if old_key_valid_for > MAX_OLD_KEY_SECONDS {
                eprintln!(
                    "proxy: --old-key-valid-for: at most {MAX_OLD_KEY_SECONDS} seconds (a week)"
                );
                return Ok(ExitCode::from(EX_USAGE));
            }
            let Some(client) = AppClientId::parse(&id) else {
                return Ok(no_such_client());
            };
            let key = shared::ids::ApiKey::generate(crate::auth::API_KEY_PREFIX)?;
            let until = (old_key_valid_for > 0)
                .then(|| now_micros() + i64::from(old_key_valid_for) * 1_000_000);
            if !store.rotate_client_key(&client, key.hash(), until).await? {
                return Ok(no_such_client());
            }
            println!("client_id:      {id}");
            println!("api_key:        {}", key.expose());
            match until {
                Some(t) => println!("old key valid until {}", rfc3339(t)),
                None => println!("the old key no longer works"),
            }
            println!("The API key is shown only now.");
        }
        ClientsCommand::RotateWebhookSecret { id } => {
            let Some(client) = AppClientId::parse(&id) else {
                return Ok(no_such_client());
            };
            if store
                .client(&client)
                .await?
                .is_none_or(|c| c.revoked_at.is_some())
            {
                return Ok(no_such_client());
            }
            let secret = crate::auth::WebhookSecret::generate()?;
            let secrets = crate::secrets::for_config(config)?;
            store
                .set_webhook_secret(&client, &secrets.wrap(&secret, &id)?)
                .await?;
            println!("client_id:      {id}");
            println!("webhook_secret: {}", secret.expose());
            println!(
                "The webhook secret is shown only now; deliveries are signed with it from now on."
            );
        }
        ClientsCommand::Update {
            id,
            webhook_url,
            no_webhook_url,
        } => {
            if webhook_url.is_none() && !no_webhook_url {
                eprintln!("proxy: nothing to change: give --webhook-url URL or --no-webhook-url");
                return Ok(ExitCode::from(EX_USAGE));
            }
            if let Some(url) = webhook_url.as_deref() {
                let shape_ok = url.starts_with("http://") || url.starts_with("https://");
                let checked = if shape_ok {
                    crate::egress::check_webhook_url(url, config.webhooks.allow_private_networks)
                        .await
                } else {
                    Err(crate::egress::EgressError::NotHttp)
                };
                if let Err(e) = checked {
                    // The URL is not echoed: it may carry credentials.
                    eprintln!("proxy: --webhook-url: {}", webhook_refusal(e));
                    return Ok(ExitCode::from(EX_USAGE));
                }
            }
            let Some(client) = AppClientId::parse(&id) else {
                return Ok(no_such_client());
            };
            if !store
                .set_webhook_url(&client, webhook_url.as_deref())
                .await?
            {
                return Ok(no_such_client());
            }
            println!(
                "client_id:      {id}\nwebhook_url:    {}",
                webhook_url.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What every command on one client says when there is no such active client (an id that is
/// not one included: it is not echoed).
fn no_such_client() -> ExitCode {
    eprintln!("proxy: no such active client");
    ExitCode::FAILURE
}
