//! The clients devstack makes once and reuses: the app's and the proxy's vault clients and the
//! app's proxy client (their keys kept in `credentials.json`), checked live on every run, and
//! the sandbox's session numbering carried past what `proxy.db` already holds.

use super::*;

/// Whether `key` is the live key of vault client `id`.
pub(super) fn vault_client_live(
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

/// Makes the two vault clients unless `credentials` already holds live ones (the proxy's bound
/// to the certificate `proxy_cert_sha256`: a renewed certificate gets a new client, and the
/// old one is revoked). Returns how many were made.
pub(super) async fn ensure_vault_clients(
    config: &vault::config::VaultConfig,
    credentials: &mut Credentials,
    proxy_cert_sha256: [u8; 32],
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
    for (slot, name, scopes, binding) in [
        (
            &mut credentials.vault_app,
            "demo-app",
            VAULT_APP_SCOPES,
            None,
        ),
        (
            &mut credentials.vault_proxy,
            "payout-proxy",
            VAULT_PROXY_SCOPES,
            Some(proxy_cert_sha256),
        ),
    ] {
        let scopes = vault::auth::Scopes::parse(scopes).map_err(anyhow::Error::msg)?;
        // A client of an earlier devstack with fewer scopes (before the card form, say), or
        // bound to another certificate (or to none, before TLS), is replaced by one with
        // today's.
        let live = slot
            .as_ref()
            .filter(|k| vault_client_live(&vault, &clients, k))
            .and_then(|k| clients.iter().find(|c| c.id.as_str() == k.id));
        if live.is_some_and(|c| c.scopes == scopes && c.cert_sha256 == binding) {
            continue;
        }
        if let Some(old) = live {
            vault
                .revoke_client(&old.id)
                .await
                .with_context(|| format!("revoking the old vault client {name}"))?;
        }
        let (record, key) = vault
            .create_bound_client(name, TENANT, scopes, binding)
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
pub(super) async fn ensure_proxy_client(
    store: &Arc<dyn proxy::store::ProxyStore>,
    secrets: &proxy::secrets::WrapKey,
    credentials: &mut Credentials,
    webhook_url: &str,
) -> anyhow::Result<Option<&'static str>> {
    let current = match &credentials.proxy_app {
        // A credentials file whose id is not one names no client: a new one is made.
        Some(c) => match proxy::ids::AppClientId::parse(&c.client.id) {
            Some(id) => store
                .client(&id)
                .await
                .context("reading the proxy app client")?,
            None => None,
        }
        .filter(|r| {
            r.revoked_at.is_none()
                && shared::ct::bytes_eq(&*r.key_hash, &ApiKey::presented(&c.client.key).hash())
        }),
        None => None,
    };
    let note = match (current, credentials.proxy_app.as_mut()) {
        (Some(record), Some(stored)) if record.webhook_url.as_deref() == Some(webhook_url) => {
            // The secret the proxy signs with is the one in the database (stored wrapped).
            secrets
                .open(&record.webhook_secret, record.id.as_str())
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
            "a new proxy app client (the app's webhook URL changed; the old client is revoked)"
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
        client: ClientKey {
            id: new.record.id.to_string(),
            key: new.api_key.expose().to_owned(),
        },
        webhook_url: webhook_url.to_owned(),
        webhook_secret: clear.expose().to_owned(),
    };
    new.record.webhook_secret = secrets
        .wrap(&clear, new.record.id.as_str())
        .context("wrapping the webhook secret")?;
    store
        .insert_client(new.record)
        .await
        .context("storing the proxy app client")?;
    credentials.proxy_app = Some(key);
    Ok(Some(note))
}

/// The highest sandbox session number (`ps_<n>`) any payout in the proxy database refers to.
pub(super) async fn highest_session_number(
    store: &Arc<dyn proxy::store::ProxyStore>,
) -> anyhow::Result<u64> {
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
                .list_payouts(
                    &tenant,
                    proxy::store::PayoutFilter {
                        after: after.clone(),
                        ..Default::default()
                    },
                    100,
                )
                .await
                .context("listing payouts")?;
            for p in &page {
                if let Some(n) = p
                    .bank
                    .as_ref()
                    .map(|b| b.id.as_str())
                    .and_then(|s| s.strip_prefix("ps_"))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    highest = highest.max(n);
                }
            }
            match page.last() {
                Some(last) if page.len() == 100 => after = Some(last.id.to_string()),
                _ => break,
            }
        }
    }
    Ok(highest)
}
