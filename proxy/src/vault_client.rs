//! The vault, as the proxy uses it: detokenize with the tenant's key (when a payout is created,
//! and again when one that could not start then is resumed), and check that each configured key
//! is known, of its tenant and allowed to detokenize (`GET /v1/clients/me`: `proxy check`,
//! start-up, `/readyz`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use shared::Pan;
use zeroize::Zeroizing;

use crate::config::{VaultKey, VaultSettings};

/// Why the vault gave no card number. Nothing here carries card data.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No vault key is configured for the payout's tenant.
    #[error("no vault API key is configured for this tenant")]
    NoKeyForTenant,
    /// The token does not exist for this tenant (or expired, or was deleted).
    #[error("the card token was not found in the vault")]
    TokenNotFound,
    /// The vault refused the proxy's key (401/403): a configuration error.
    #[error("the vault refused the proxy's API key (HTTP {0})")]
    Refused(u16),
    /// No answer: the connection failed or timed out (a wrong `vault.url`, or the vault down).
    #[error("the vault could not be reached")]
    Unreachable,
    /// The vault answered that it cannot serve now (5xx: audit unavailable, overloaded).
    #[error("the vault is unavailable")]
    Unavailable,
    /// An answer that is not a detokenize response.
    #[error("unexpected answer from the vault")]
    BadResponse,
}

/// A vault client with one API key per tenant.
#[derive(Clone, Debug)]
pub struct VaultClient {
    http: reqwest::Client,
    base_url: String,
    keys: BTreeMap<String, VaultKey>,
}

#[derive(Deserialize)]
struct DetokenizeResponse {
    pan: PanField,
}

struct PanField(Pan);

impl<'de> Deserialize<'de> for PanField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PanField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a card number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PanField, E> {
                Pan::parse(v)
                    .map(PanField)
                    .map_err(|_| E::custom("not a card number"))
            }
        }
        d.deserialize_str(V)
    }
}

impl VaultClient {
    /// A client from settings.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(settings: &VaultSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(settings.request_timeout_ms))
                // Never follow a redirect with the vault key (docs/ARCHITECTURE.md §9.3).
                .redirect(reqwest::redirect::Policy::none())
                // Nor send it through a proxy the environment names.
                .no_proxy()
                .build()?,
            base_url: settings.url.trim_end_matches('/').to_owned(),
            keys: settings.api_keys.clone(),
        })
    }

    /// The card number behind `token`, for `purpose` (recorded in the vault's audit log).
    ///
    /// # Errors
    ///
    /// See [`VaultError`].
    pub async fn detokenize(
        &self,
        tenant: &str,
        token: &str,
        purpose: &str,
    ) -> Result<Pan, VaultError> {
        let key = self.keys.get(tenant).ok_or(VaultError::NoKeyForTenant)?;
        // Tokens are `tok_` + base62; anything else cannot be in the path.
        if !shared::ids::is_id("tok_", token) {
            return Err(VaultError::TokenNotFound);
        }
        let response = self
            .http
            .post(format!("{}/v1/tokens/{token}/detokenize", self.base_url))
            .bearer_auth(key.expose())
            .json(&serde_json::json!({ "purpose": purpose }))
            .send()
            .await
            .map_err(|_| VaultError::Unreachable)?;
        let status = answered(&response)?;
        let body = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|_| VaultError::Unavailable)?
                .to_vec(),
        );
        match status {
            200 => serde_json::from_slice::<DetokenizeResponse>(&body)
                .map(|r| r.pan.0)
                .map_err(|_| VaultError::BadResponse),
            _ => Err(VaultError::BadResponse),
        }
    }

    /// What the vault says each configured key is, as a list of problems (empty when every key
    /// is valid, of its tenant, and holds `tokens:detokenize`). Each names the setting and the
    /// fix; none holds a key.
    pub async fn check_keys(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (tenant, key) in &self.keys {
            let setting = format!("vault.api_keys.{tenant}");
            let answer = self
                .http
                .get(format!("{}/v1/clients/me", self.base_url))
                .bearer_auth(key.expose())
                .send()
                .await;
            let response = match answer {
                Ok(r) => r,
                Err(_) => {
                    problems.push(format!(
                        "vault.url: the vault cannot be reached to check {setting}"
                    ));
                    continue;
                }
            };
            match response.status().as_u16() {
                200 => {}
                401 => {
                    problems.push(format!(
                        "{setting}: the vault does not know this key (revoked, mistyped, or another vault's)"
                    ));
                    continue;
                }
                status => {
                    problems.push(format!(
                        "{setting}: the vault answered HTTP {status} to the key check (is vault.url the vault?)"
                    ));
                    continue;
                }
            }
            let me: serde_json::Value = response.json().await.unwrap_or_default();
            if me["tenant"].as_str() != Some(tenant.as_str()) {
                problems.push(format!(
                    "{setting}: the key belongs to another tenant; create one with `vault clients create --tenant {tenant} --scopes tokens:detokenize`"
                ));
            }
            let detokenizes = me["scopes"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "tokens:detokenize"));
            if !detokenizes {
                problems.push(format!(
                    "{setting}: the key lacks the tokens:detokenize scope the proxy needs"
                ));
            }
        }
        problems
    }
}

/// The status of a vault answer that is a success, or the error it means.
fn answered(response: &reqwest::Response) -> Result<u16, VaultError> {
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        tracing::error!(
            status,
            "the vault answered with a redirect; not followed (check vault.url)"
        );
    }
    match status {
        200..=299 => Ok(status),
        404 => Err(VaultError::TokenNotFound),
        401 | 403 => Err(VaultError::Refused(status)),
        _ => Err(VaultError::Unavailable),
    }
}
