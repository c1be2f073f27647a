//! Settings: a TOML file, then `PROXY__SECTION__KEY` environment overrides (for example
//! `PROXY__VAULT__URL=http://vault:8200`), then validation (`shared::config` does the loading).
//! Unknown keys are errors. `docs/CONFIGURATION.md` lists every setting, generated from these
//! types and [`reference`]'s explanations.
//!
//! Long because each setting's check, with the message naming the setting and the fix, sits
//! beside its type; over a third of the file is the tests of those messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
pub use shared::config::{ConfigError, DatabaseConfig, LogConfig, Mode, ServerConfig};
use shared::secret::{ExposeSecret, SecretString, secret};
use zeroize::Zeroizing;

use crate::bank131::Bank131Config;

mod reference;
pub use reference::reference;

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "PROXY__";
/// The default port.
pub const DEFAULT_PORT: u16 = 8300;
/// The default database file.
pub const DEFAULT_DATABASE: &str = "proxy.db";

/// All settings.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `development` (the default) or `production`, which refuses at start what only
    /// development should do ([`ProxyConfig::production_problems`]).
    #[serde(default)]
    pub mode: Mode,
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[vault]`.
    pub vault: VaultSettings,
    /// `[bank131]`.
    pub bank131: Bank131Config,
    /// `[payouts]`.
    #[serde(default)]
    pub payouts: PayoutSettings,
    /// `[webhooks]`: delivery of app webhooks.
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// `[payout_links]`: payout links, and how often their collect sessions are looked at.
    #[serde(default)]
    pub payout_links: PayoutLinkSettings,
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
}

/// A vault API key (holds `tokens:detokenize` for one tenant).
#[derive(Clone)]
pub struct VaultKey(SecretString);

impl<'de> Deserialize<'de> for VaultKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Shown (by `proxy check`) as its prefix and length only.
impl serde::Serialize for VaultKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Only the prefix a vault key is known to have: anything else may be key material.
        let text = self.expose();
        let prefix = if text.starts_with("vk_") { "vk_" } else { "" };
        s.serialize_str(&format!("{prefix}*** ({} characters)", text.len()))
    }
}

impl VaultKey {
    /// The key text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// From text (tests and tools).
    pub fn new(text: impl Into<String>) -> Self {
        Self(secret(text.into()))
    }
}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey { .. }")
    }
}

/// `[vault]`: where the card numbers are.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// The vault's base URL.
    pub url: String,
    /// Per tenant, the vault API key the proxy detokenizes with (scope `tokens:detokenize`,
    /// created in that tenant). A tenant without a key cannot pay out. Inline keys make the
    /// config file a secret: it must then be readable by its owner only.
    #[serde(default)]
    pub api_keys: BTreeMap<String, VaultKey>,
    /// Per tenant, a file holding that key (its first line; mode 0600), instead of an inline
    /// key. Read at load and merged into `api_keys`.
    #[serde(default)]
    pub api_key_files: BTreeMap<String, PathBuf>,
    /// Timeout of one vault call.
    #[serde(default = "default_vault_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Allow `http://` to a non-loopback `url` (development only; logged loudly).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// PEM CA certificates the vault's certificate must chain to (instead of the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate the proxy presents to the vault (mutual TLS; the vault binds the
    /// proxy's keys to it).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// Its PEM private key (mode 0600).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

fn default_vault_timeout_ms() -> u64 {
    5_000
}

/// `[payouts]`: the engine.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutSettings {
    /// Manual mode: how long a payout may wait for the app's confirm or cancel.
    pub confirm_deadline_seconds: u64,
    /// How often the reconciler looks for payouts that are due.
    pub reconcile_interval_ms: u64,
    /// A payout waiting on the bank (for a webhook) is checked with `session/status` after this.
    /// Also the lease: how long a replica holds a payout it is driving, so it must outlast a
    /// bank call (checked at load).
    pub stuck_after_ms: u64,
    /// First retry delay after the vault or the bank was unavailable; doubles per attempt.
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Attempts at one step before the payout fails (before start) or is flagged for attention
    /// (after start).
    pub max_attempts: u32,
    /// `start/payout` re-sends (with the same idempotency key) when the bank shows the session
    /// still without a payout; past this, the session is cancelled and the payout flagged.
    pub max_start_resends: u32,
}

/// What a lease must outlast beyond the bank's connect and request timeouts: clock skew
/// between replicas and the time to save the answer.
pub const LEASE_MARGIN_MS: u64 = 1_000;

impl Default for PayoutSettings {
    fn default() -> Self {
        Self {
            confirm_deadline_seconds: 3600,
            reconcile_interval_ms: 1_000,
            // Past the default bank timeouts (10 s connect + 30 s request) and the margin.
            stuck_after_ms: 60_000,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            max_attempts: 10,
            max_start_resends: 3,
        }
    }
}

/// `[webhooks]`: app webhook delivery.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// How often the outbox is polled.
    pub poll_interval_ms: u64,
    /// First retry delay; doubles per attempt.
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Attempts before an event is abandoned.
    pub max_attempts: u32,
    /// Timeout of one delivery.
    pub timeout_ms: u64,
    /// Deliveries in flight at once (one payout's events still go one at a time, in order).
    pub concurrency: usize,
    /// Let app webhook URLs point at loopback, private, link-local or metadata addresses
    /// (development only: a non-PCI app must not make the proxy reach inside).
    pub allow_private_networks: bool,
    /// The key app webhook secrets are wrapped under at rest (64 hex digits, mode 0600; made by
    /// `proxy webhooks keygen FILE`). Unset: derived from the partner private key.
    pub secret_key_file: Option<PathBuf>,
    /// PEM CA certificates app webhook endpoints' certificates must chain to, instead of the
    /// system's (development and tests).
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 50,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            max_attempts: 15,
            timeout_ms: 5_000,
            concurrency: 16,
            allow_private_networks: false,
            secret_key_file: None,
            ca_file: None,
        }
    }
}

/// `[payout_links]`: payout links.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutLinkSettings {
    /// How often each open link's collect session is read at the vault (each read is one
    /// rate-limited, audited vault request); also how long a replica holds a link it reads.
    pub poll_interval_ms: u64,
}

impl Default for PayoutLinkSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 5_000,
        }
    }
}

impl ProxyConfig {
    /// Loads `file` (if given), applies `PROXY__…` overrides from `env`, and validates.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML, unknown keys, missing sections, out-of-range values.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config: Self = shared::config::load(file, env, ENV_PREFIX)?;
        config.anchor_paths(shared::config::config_dir(file).as_deref());
        if let Some(path) = file
            && file_holds_secrets(path)
        {
            shared::files::ensure_private(
                path,
                "the config file (it holds vault.api_keys or a database password)",
            )?;
        }
        for (tenant, path) in std::mem::take(&mut config.vault.api_key_files) {
            if config.vault.api_keys.contains_key(&tenant) {
                return Err(ConfigError::Setting {
                    setting: format!("vault.api_key_files.{tenant}"),
                    problem: "the tenant also has an inline vault.api_keys entry; keep one"
                        .to_owned(),
                });
            }
            let what = format!("vault.api_key_files.{tenant}");
            let key = shared::files::read_secret_line(&path, &what)?;
            if key.is_empty() {
                return Err(ConfigError::Setting {
                    setting: what,
                    problem: "the file is empty; put the tenant's vault API key on its first line"
                        .to_owned(),
                });
            }
            config
                .vault
                .api_keys
                .insert(tenant, VaultKey::new(key.as_str()));
        }
        config.server.validate()?;
        config.database.validate()?;
        let p = &config.payouts;
        if p.reconcile_interval_ms == 0 || p.retry_initial_ms == 0 || p.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "payouts.reconcile_interval_ms, retry_initial_ms and max_attempts must be positive",
            ));
        }
        let call = config
            .bank131
            .connect_timeout_ms
            .saturating_add(config.bank131.request_timeout_ms)
            .saturating_add(LEASE_MARGIN_MS);
        if p.stuck_after_ms < call {
            // A lease that ends while a bank call may still be in flight lets another replica
            // take the payout over and send the call again.
            return Err(ConfigError::Setting {
                setting: "payouts.stuck_after_ms".to_owned(),
                problem: format!(
                    "is {} ms, but it is also the lease a replica holds on a payout while it calls the bank, \
                     so it must be at least bank131.connect_timeout_ms + bank131.request_timeout_ms + {LEASE_MARGIN_MS} \
                     = {call} ms; raise it or lower the bank timeouts",
                    p.stuck_after_ms
                ),
            });
        }
        let w = &config.webhooks;
        if w.poll_interval_ms == 0 || w.retry_initial_ms == 0 || w.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "webhooks.poll_interval_ms, retry_initial_ms and max_attempts must be positive",
            ));
        }
        if config.payout_links.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "payout_links.poll_interval_ms must be positive",
            ));
        }
        if !(1..=1024).contains(&w.concurrency) {
            return Err(ConfigError::Invalid(
                "webhooks.concurrency must be between 1 and 1024",
            ));
        }
        config
            .bank131
            .checked_base_url()
            .map_err(ConfigError::Invalid)?;
        config.bank131.networks().map_err(ConfigError::Invalid)?;
        crate::egress::check_upstream(&config.vault.url, config.vault.allow_insecure_http)
            .map_err(|e| {
                ConfigError::Invalid(match e {
                    crate::egress::EgressError::Insecure => {
                        "vault.url must be https (http only to loopback, or with vault.allow_insecure_http = true)"
                    }
                    _ => "vault.url must be an http:// or https:// URL with a host",
                })
            })?;
        if config.vault.client_cert_file.is_some() != config.vault.client_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "vault.client_cert_file and vault.client_key_file go together: set both (mutual TLS to the vault) or neither",
            ));
        }
        Ok(config)
    }

    /// What `mode = "production"` refuses, one line per problem naming the setting and the fix
    /// (empty in development): a plain-HTTP listener off loopback, debug logging, an upstream
    /// (vault, bank) over `http://`, and the development switches `allow_insecure_http` and
    /// `webhooks.allow_private_networks`.
    pub fn production_problems(&self) -> Vec<String> {
        if self.mode != Mode::Production {
            return Vec::new();
        }
        let mut listeners = vec![("server.listen", self.listen())];
        if let Some(addr) = self.server.webhook_listen {
            listeners.push(("server.webhook_listen", addr));
        }
        let mut problems = shared::config::production_problems(
            &self.server,
            &listeners,
            &self.log,
            &self.database,
        );
        for (setting, url) in [
            ("vault.url", &self.vault.url),
            ("bank131.base_url", &self.bank131.base_url),
        ] {
            if !url.starts_with("https://") {
                problems.push(format!(
                    "{setting}: not https: production mode refuses plain HTTP to an upstream of the card data (card numbers travel on it); use the https:// URL"
                ));
            }
        }
        for (setting, on) in [
            ("vault.allow_insecure_http", self.vault.allow_insecure_http),
            (
                "bank131.allow_insecure_http",
                self.bank131.allow_insecure_http,
            ),
            (
                "webhooks.allow_private_networks",
                self.webhooks.allow_private_networks,
            ),
        ] {
            if on {
                problems.push(format!(
                    "{setting}: a development switch, refused in production mode; remove it"
                ));
            }
        }
        problems
    }

    /// Warns, loudly, about every development shortcut in force.
    pub fn warn_about_shortcuts(&self) {
        if self.bank131.allow_insecure_http && !self.bank131.base_url.starts_with("https://") {
            tracing::warn!(
                "INSECURE: bank131.allow_insecure_http is set: card numbers go to the bank over plain http"
            );
        }
        if self.vault.allow_insecure_http && !self.vault.url.starts_with("https://") {
            tracing::warn!(
                "INSECURE: vault.allow_insecure_http is set: card numbers come from the vault over plain http"
            );
        }
        if self.webhooks.allow_private_networks {
            tracing::warn!(
                "INSECURE: webhooks.allow_private_networks is set: apps may point webhooks at internal addresses"
            );
        }
    }

    /// The address to listen on.
    pub fn listen(&self) -> std::net::SocketAddr {
        self.server.listen_or(DEFAULT_PORT)
    }

    /// The SQLite options.
    pub fn sqlite(&self) -> shared::sqlite::SqliteOptions {
        self.database.sqlite(DEFAULT_DATABASE)
    }

    /// Relative paths of a config file are the file's, not the shell's: a command run from
    /// another directory must not open (or create) another database or read another key.
    fn anchor_paths(&mut self, base: Option<&Path>) {
        use shared::config::anchored;
        self.database.base_dir = base.map(Path::to_path_buf);
        shared::server::tls::anchor(&mut self.server.tls, base);
        let b = &mut self.bank131;
        b.private_key_file = anchored(base, &b.private_key_file);
        b.bank_public_key_file = anchored(base, &b.bank_public_key_file);
        b.private_key_passphrase_file = b
            .private_key_passphrase_file
            .as_deref()
            .map(|p| anchored(base, p));
        self.webhooks.secret_key_file = self
            .webhooks
            .secret_key_file
            .as_deref()
            .map(|p| anchored(base, p));
        for path in self.vault.api_key_files.values_mut() {
            *path = anchored(base, path);
        }
        let v = &mut self.vault;
        for p in [
            &mut v.ca_file,
            &mut v.client_cert_file,
            &mut v.client_key_file,
        ] {
            *p = p.as_deref().map(|p| anchored(base, p));
        }
        self.bank131.ca_file = self.bank131.ca_file.as_deref().map(|p| anchored(base, p));
        self.webhooks.ca_file = self.webhooks.ca_file.as_deref().map(|p| anchored(base, p));
    }

    /// Where this configuration keeps its data, for the first line of every command.
    pub fn describe_database(&self) -> String {
        match self.database.postgres_url() {
            Some(_) => "database: PostgreSQL (database.url)".to_owned(),
            None => format!("database: {}", self.sqlite().path.display()),
        }
    }
}

/// Exponential backoff: `initial * 2^(attempt-1)`, capped at `max`.
pub fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1).min(40))
        .unwrap_or(u64::MAX);
    Duration::from_millis(initial_ms.saturating_mul(factor).min(max_ms))
}

/// Whether the file itself (not the environment) holds secrets: inline `vault.api_keys`, or a
/// `database.url` with a password.
fn file_holds_secrets(path: &Path) -> bool {
    let Some(table) = std::fs::read_to_string(path)
        .ok()
        .map(Zeroizing::new)
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return false;
    };
    let keys = table
        .get("vault")
        .and_then(|v| v.get("api_keys"))
        .and_then(|k| k.as_table())
        .is_some_and(|k| !k.is_empty());
    keys || shared::config::file_names_database_password(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Config files with inline keys must be the owner's only.
    fn write_private(path: &Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
        std::fs::write(path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// The `[bank131]` section a loadable config needs.
    const BANK: &str = "[bank131]\nproject = \"p\"\nprivate_key_file = \"k.pem\"\nbank_public_key_file = \"b.pem\"\n";

    /// A config file holding `text`, the owner's only, in a directory of its own (removed when
    /// the returned handle is dropped).
    fn private_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        write_private(&file, text).unwrap();
        (dir, file)
    }

    /// The message loading `file` (with no environment overrides) is refused with.
    fn refusal(file: &Path) -> String {
        ProxyConfig::load(Some(file), []).unwrap_err().to_string()
    }

    #[cfg(unix)]
    #[test]
    fn inline_keys_need_a_private_file_and_key_files_are_read_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        let open = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // Inline keys in a world-readable file: refused, with the fix, without the key.
        std::fs::write(
            &file,
            format!("[vault]\nurl = \"http://127.0.0.1:8200\"\n[vault.api_keys]\nacme = \"vk_inline\"\n{BANK}"),
        )
        .unwrap();
        open(&file, 0o644);
        let e = refusal(&file);
        assert!(e.contains("chmod 600") && !e.contains("vk_inline"), "{e}");
        open(&file, 0o600);
        assert!(ProxyConfig::load(Some(&file), std::iter::empty()).is_ok());

        // A key file instead: the config may be world-readable, the key file may not.
        let key = dir.path().join("acme.key");
        std::fs::write(&key, "vk_from_file\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "[vault]\nurl = \"http://127.0.0.1:8200\"\n[vault.api_key_files]\nacme = \"{}\"\n{BANK}",
                key.display()
            ),
        )
        .unwrap();
        open(&file, 0o644);
        open(&key, 0o644);
        let e = refusal(&file);
        assert!(
            e.contains("vault.api_key_files.acme") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(!e.contains("vk_from_file"));
        open(&key, 0o600);
        let config = ProxyConfig::load(Some(&file), std::iter::empty()).unwrap();
        assert_eq!(config.vault.api_keys["acme"].expose(), "vk_from_file");
        // Both for one tenant: refused, naming it.
        let both = dir.path().join("both.toml");
        write_private(
            &both,
            format!(
                "[vault]\nurl = \"http://127.0.0.1:8200\"\n[vault.api_keys]\nacme = \"vk_x\"\n[vault.api_key_files]\nacme = \"{}\"\n{BANK}",
                key.display()
            ),
        )
        .unwrap();
        let e = refusal(&both);
        assert!(e.contains("vault.api_key_files.acme"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(100, 1000, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 1000, 2), Duration::from_millis(200));
        assert_eq!(backoff(100, 1000, 4), Duration::from_millis(800));
        assert_eq!(backoff(100, 1000, 5), Duration::from_millis(1000));
        assert_eq!(backoff(100, 1000, 500), Duration::from_millis(1000));
    }

    #[test]
    fn loads_with_env_overrides_and_requires_vault_and_bank() {
        let (_dir, file) = private_config(&format!(
            "[vault]\nurl = \"http://127.0.0.1:8200\"\n[vault.api_keys]\nacme = \"vk_x\"\n{BANK}"
        ));
        let config = ProxyConfig::load(
            Some(&file),
            [("PROXY__PAYOUTS__MAX_ATTEMPTS".to_owned(), "5".to_owned())],
        )
        .unwrap();
        assert_eq!(config.payouts.max_attempts, 5);
        assert_eq!(config.listen().port(), 8300);
        assert_eq!(config.vault.api_keys["acme"].expose(), "vk_x");
        assert!(!format!("{config:?}").contains("vk_x"));
        assert!(ProxyConfig::load(None, []).is_err());
    }

    /// The lease (`payouts.stuck_after_ms`) must outlast a bank call: shorter, another replica
    /// could take a payout over while its start is in flight and send it again.
    #[test]
    fn a_lease_shorter_than_a_bank_call_is_refused() {
        let vault = "[vault]\nurl = \"http://127.0.0.1:8200\"\n";
        let (_dir, file) = private_config(&format!(
            "{vault}{BANK}connect_timeout_ms = 2000\nrequest_timeout_ms = 10000\n\
             [payouts]\nstuck_after_ms = 3000\n"
        ));
        let err = refusal(&file);
        assert!(
            err.contains("payouts.stuck_after_ms")
                && err.contains("bank131.connect_timeout_ms + bank131.request_timeout_ms")
                && err.contains("13000 ms"),
            "{err}"
        );
        let env = |v: &str| [("PROXY__PAYOUTS__STUCK_AFTER_MS".to_owned(), v.to_owned())];
        assert!(ProxyConfig::load(Some(&file), env("12999")).is_err());
        assert!(ProxyConfig::load(Some(&file), env("13000")).is_ok());
        // The defaults hold together.
        write_private(&file, format!("{vault}{BANK}")).unwrap();
        assert!(ProxyConfig::load(Some(&file), []).is_ok());
    }

    /// The bank and the vault are reached over https; plain http only to loopback or with the
    /// explicit development setting; the bank's address within its allowed networks. Each
    /// refusal names the setting and never the URL.
    #[test]
    fn upstreams_must_be_https_unless_loopback_or_explicitly_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        let load = |vault: &str, bank: &str| {
            write_private(
                &file,
                format!("[vault]\n{vault}\n[vault.api_keys]\nacme = \"vk_x\"\n{BANK}{bank}\n"),
            )
            .unwrap();
            ProxyConfig::load(Some(&file), []).map_err(|e| e.to_string())
        };
        let https = "url = \"https://vault.internal:8200\"";
        assert!(load(https, "").is_ok(), "the default bank URL is https");
        let accepted = [
            (
                "url = \"http://127.0.0.1:8200\"",
                "base_url = \"http://[::1]:8131\"",
            ),
            (
                "url = \"http://vault.internal\"\nallow_insecure_http = true",
                "",
            ),
            (
                https,
                "base_url = \"http://bank.example\"\nallow_insecure_http = true",
            ),
            (
                https,
                "allowed_networks = [\"185.71.76.0/24\", \"2a00::1\"]",
            ),
        ];
        for (vault, bank) in accepted {
            assert!(load(vault, bank).is_ok(), "{vault} {bank}");
        }
        // (vault settings, bank settings, what the refusal says, what it must not echo)
        let refused: [(&str, &str, &[&str], Option<&str>); 5] = [
            (
                "url = \"http://vault.secret-host:8200\"",
                "",
                &["vault.url must be https", "vault.allow_insecure_http"],
                Some("secret-host"),
            ),
            (
                https,
                "base_url = \"http://bank.secret-host\"",
                &[
                    "bank131.base_url must be https",
                    "bank131.allow_insecure_http",
                ],
                Some("secret-host"),
            ),
            (
                https,
                "base_url = \"gopher://bank.example\"",
                &["bank131.base_url must be an http:// or https:// URL"],
                None,
            ),
            (
                https,
                "allowed_networks = [\"not-a-network\"]",
                &["bank131.allowed_networks must hold CIDR networks"],
                Some("not-a-network"),
            ),
            (
                https,
                "base_url = \"https://10.0.0.7\"\nallowed_networks = [\"185.71.76.0/24\"]",
                &["outside bank131.allowed_networks"],
                None,
            ),
        ];
        for (vault, bank, says, hidden) in refused {
            let err = load(vault, bank).unwrap_err();
            for part in says {
                assert!(err.contains(part), "{err}");
            }
            if let Some(hidden) = hidden {
                assert!(!err.contains(hidden), "{err}");
            }
        }
    }
}
