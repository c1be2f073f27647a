//! The vault, as the proxy uses it: detokenize with the tenant's key (when a payout is created,
//! and again when one that could not start then is resumed); open and read the standalone
//! collect sessions behind payout links (`POST`/`GET /v1/collect_sessions`, scope
//! `collect:create`); and check that each configured key is known, of its tenant and allowed to
//! detokenize (`GET /v1/clients/me`: `proxy check`, start-up, `/readyz`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use shared::Pan;
use shared::secret::ExposeSecret;
use zeroize::Zeroizing;

use crate::config::{VaultKey, VaultSettings};
use crate::ids::{CollectSessionId, PayoutLinkId};

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

/// The HTTP client for the vault: no redirects, no environment proxy, its TLS files.
fn http_client(settings: &VaultSettings) -> Result<reqwest::Client, BuildError> {
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.request_timeout_ms))
        // Never follow a redirect with the vault key (docs/ARCHITECTURE.md §9.3).
        .redirect(reqwest::redirect::Policy::none())
        // Nor send it through a proxy the environment names.
        .no_proxy();
    let builder =
        crate::upstream_tls::trust(builder, settings.ca_file.as_deref(), "vault.ca_file")?;
    let builder = crate::upstream_tls::present(
        builder,
        settings.client_cert_file.as_ref(),
        settings.client_key_file.as_ref(),
    )?;
    Ok(builder.build()?)
}

pub use crate::upstream_tls::BuildError;

/// A vault client with one API key per tenant.
#[derive(Clone, Debug)]
pub struct VaultClient {
    /// Swapped whole by [`VaultClient::reload_tls`] (a renewed client certificate); clones
    /// share it.
    http: Arc<ArcSwap<reqwest::Client>>,
    settings: Arc<VaultSettings>,
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

/// A collect session the vault just opened for a payout link.
#[derive(Debug)]
pub struct OpenedSession {
    /// `cs_…`.
    pub id: CollectSessionId,
    /// The session's page, `…/collect/cs_…` (no secret in it).
    pub url: String,
    /// The session's client secret (`css_…`): whoever holds it may submit a card.
    pub client_secret: shared::secret::SecretString,
    /// When the session expires (Unix microseconds).
    pub expires_at: i64,
}

/// A collect session as the vault reads it back.
#[derive(Debug, Eq, PartialEq)]
pub struct SessionRead {
    /// Where it is.
    pub state: SessionState,
    /// The `payout_link` its metadata names (the link it was opened for), if any.
    pub payout_link: Option<String>,
}

/// A collect session's state, with what a completed one produced.
#[derive(Debug, Eq, PartialEq)]
pub enum SessionState {
    /// Waiting for the card.
    Open,
    /// The card was submitted and tokenized.
    Completed(CollectedCard),
    /// Expired without a card.
    Expired,
}

/// What a completed session produced: the token and the card facts (never a BIN or the card).
#[derive(Debug, Eq, PartialEq)]
pub struct CollectedCard {
    /// `tok_…`, of the session's tenant.
    pub token: String,
    /// Four digits.
    pub last4: String,
    /// A `shared::Brand` name.
    pub brand: String,
    /// The name the cardholder entered, when the session asked for one.
    pub cardholder_name: Option<String>,
}

#[derive(Deserialize)]
struct OpenedBody {
    id: String,
    url: String,
    client_secret: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct SessionBody {
    id: String,
    state: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    card: Option<CardBody>,
    #[serde(default)]
    cardholder_name: Option<String>,
}

#[derive(Deserialize)]
struct CardBody {
    last4: String,
    brand: String,
}

/// What [`VaultClient::check_keys`] found: problems (no payout can work) and notes (payout
/// links cannot work, payouts can).
#[derive(Clone, Debug, Default)]
pub struct KeyFindings {
    /// Each names the setting and the fix; none holds a key.
    pub problems: Vec<String>,
    /// As problems, for what only payout links need (`collect:create`).
    pub notes: Vec<String>,
}

impl VaultClient {
    /// A client from settings.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(settings: &VaultSettings) -> Result<Self, BuildError> {
        Ok(Self {
            http: Arc::new(ArcSwap::from_pointee(http_client(settings)?)),
            settings: Arc::new(settings.clone()),
            base_url: settings.url.trim_end_matches('/').to_owned(),
            keys: settings.api_keys.clone(),
        })
    }

    /// Re-reads `vault.ca_file`, `vault.client_cert_file` and `vault.client_key_file` (on
    /// SIGHUP): calls made from now on use them; on failure the ones in use stay.
    ///
    /// # Errors
    ///
    /// [`BuildError`].
    pub fn reload_tls(&self) -> Result<(), BuildError> {
        self.http.store(Arc::new(http_client(&self.settings)?));
        Ok(())
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
            .load()
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

    /// Opens a standalone collect session (no allowed origins: the vault's own page, not
    /// framed) for payout link `link`, living `ttl_seconds`, asking the cardholder's name when
    /// `ask_name`. The link id goes into the session's metadata, and is checked on every read.
    ///
    /// # Errors
    ///
    /// See [`VaultError`]: [`VaultError::Refused`] for a key without `collect:create`,
    /// [`VaultError::BadResponse`] for an answer that is not a session of the shape asked for.
    pub async fn create_collect_session(
        &self,
        tenant: &str,
        link: &PayoutLinkId,
        ttl_seconds: u64,
        ask_name: bool,
    ) -> Result<OpenedSession, VaultError> {
        let key = self.keys.get(tenant).ok_or(VaultError::NoKeyForTenant)?;
        let response = self
            .http
            .load()
            .post(format!("{}/v1/collect_sessions", self.base_url))
            .bearer_auth(key.expose())
            .json(&serde_json::json!({
                "allowed_origins": [],
                "ttl_seconds": ttl_seconds,
                "require_cardholder_name": ask_name,
                "metadata": { "payout_link": link },
            }))
            .send()
            .await
            .map_err(|_| VaultError::Unreachable)?;
        let status = session_answer(&response)?;
        // The body holds the session's secret.
        let body = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|_| VaultError::Unavailable)?
                .to_vec(),
        );
        if status != 201 {
            return Err(VaultError::BadResponse);
        }
        let opened: OpenedBody =
            serde_json::from_slice(&body).map_err(|_| VaultError::BadResponse)?;
        let id = CollectSessionId::parse(&opened.id).ok_or(VaultError::BadResponse)?;
        let secret = shared::secret::secret(opened.client_secret);
        if !is_session_url(&opened.url, &id) || !is_client_secret(secret.expose_secret()) {
            return Err(VaultError::BadResponse);
        }
        Ok(OpenedSession {
            url: opened.url,
            client_secret: secret,
            expires_at: rfc3339_micros(&opened.expires_at).ok_or(VaultError::BadResponse)?,
            id,
        })
    }

    /// The collect session `id` of `tenant`, as the vault reads it; `None` when the vault has
    /// no such session for the key's tenant.
    ///
    /// # Errors
    ///
    /// See [`VaultError`].
    pub async fn collect_session(
        &self,
        tenant: &str,
        id: &CollectSessionId,
    ) -> Result<Option<SessionRead>, VaultError> {
        let key = self.keys.get(tenant).ok_or(VaultError::NoKeyForTenant)?;
        let response = self
            .http
            .load()
            .get(format!("{}/v1/collect_sessions/{id}", self.base_url))
            .bearer_auth(key.expose())
            .send()
            .await
            .map_err(|_| VaultError::Unreachable)?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        session_answer(&response)?;
        let body: SessionBody = response.json().await.map_err(|_| VaultError::BadResponse)?;
        if body.id != id.as_str() {
            return Err(VaultError::BadResponse);
        }
        let state = match (body.state.as_str(), body.token, body.card) {
            ("open", _, _) => SessionState::Open,
            ("expired", _, _) => SessionState::Expired,
            ("completed", Some(token), Some(card))
                if shared::ids::is_id("tok_", &token)
                    && card.last4.len() == 4
                    && card.last4.bytes().all(|b| b.is_ascii_digit()) =>
            {
                SessionState::Completed(CollectedCard {
                    token,
                    last4: card.last4,
                    brand: shared::Brand::from_name(&card.brand).as_str().to_owned(),
                    cardholder_name: body.cardholder_name,
                })
            }
            _ => return Err(VaultError::BadResponse),
        };
        let payout_link = body
            .metadata
            .as_ref()
            .and_then(|m| m.get("payout_link"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Some(SessionRead { state, payout_link }))
    }

    /// What the vault says each configured key is: problems (empty when every key is valid, of
    /// its tenant, and holds `tokens:detokenize`), and notes for keys without `collect:create`
    /// (payout links of that tenant are refused). Each names the setting and the fix; none
    /// holds a key.
    pub async fn check_keys(&self) -> KeyFindings {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for (tenant, key) in &self.keys {
            let setting = format!("vault.api_keys.{tenant}");
            let answer = self
                .http
                .load()
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
                    "{setting}: the key belongs to another tenant; create one with `vault clients create --tenant {tenant} --scopes tokens:detokenize,collect:create`"
                ));
            }
            let holds = |scope: &str| {
                me["scopes"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s == scope))
            };
            if !holds("tokens:detokenize") {
                problems.push(format!(
                    "{setting}: the key lacks the tokens:detokenize scope the proxy needs"
                ));
            }
            if !holds("collect:create") {
                notes.push(format!(
                    "{setting}: the key lacks collect:create, so this tenant's payout links are refused (503 vault_key_forbidden); grant it with `vault clients create --tenant {tenant} --scopes tokens:detokenize,collect:create`"
                ));
            }
        }
        KeyFindings { problems, notes }
    }
}

/// The status of a collect session answer that is a success, or the error it means (a 404 is
/// no session, or a vault without collect sessions: not ours to read as a missing token).
fn session_answer(response: &reqwest::Response) -> Result<u16, VaultError> {
    match answered(response) {
        Err(VaultError::TokenNotFound) => Err(VaultError::Unavailable),
        other => other,
    }
}

/// Whether `url` is the page of session `id` as the vault serves it: `http(s)://host/collect/cs_…`
/// and nothing more (no query, fragment or credentials: the link appends `#secret=`).
fn is_session_url(url: &str, id: &CollectSessionId) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "https" | "http")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.path() == format!("/collect/{id}")
            && u.as_str() == url
    })
}

/// Whether `secret` is a collect session secret as the vault makes them (`css_` and base64url),
/// so it can go into a URL fragment as it is.
fn is_client_secret(secret: &str) -> bool {
    secret.len() <= 128
        && secret.strip_prefix("css_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// RFC 3339 (as the vault writes times) as Unix microseconds.
fn rfc3339_micros(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_micros()).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_answers_are_read_strictly() {
        let id = CollectSessionId::parse("cs_0000000000000000000001").unwrap();
        for good in [
            "https://vault.example/collect/cs_0000000000000000000001",
            "http://127.0.0.1:8200/collect/cs_0000000000000000000001",
        ] {
            assert!(is_session_url(good, &id), "{good}");
        }
        for bad in [
            "https://vault.example/collect/cs_0000000000000000000002",
            "https://vault.example/collect/cs_0000000000000000000001?x=1",
            "https://vault.example/collect/cs_0000000000000000000001#secret=x",
            "https://u:p@vault.example/collect/cs_0000000000000000000001",
            "javascript://vault.example/collect/cs_0000000000000000000001",
            "https://vault.example/other/collect/cs_0000000000000000000001",
            "HTTPS://vault.example/collect/cs_0000000000000000000001",
        ] {
            assert!(!is_session_url(bad, &id), "{bad}");
        }
        assert!(is_client_secret("css_abcDEF012-_"));
        for bad in [
            "css_",
            "abc",
            "css_a&b=c",
            "css_a#b",
            &format!("css_{}", "a".repeat(200)),
        ] {
            assert!(!is_client_secret(bad), "{bad}");
        }
        assert_eq!(rfc3339_micros("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(rfc3339_micros("tomorrow"), None);
    }
}
