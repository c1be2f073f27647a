//! Settings: a TOML file, then `VAULT__SECTION__KEY` environment overrides (for example
//! `VAULT__SERVER__LISTEN=0.0.0.0:8200`), then validation (`shared::config` does the loading).
//! Every setting has a default, so an empty file works for development; unknown keys are errors.
//! `docs/CONFIGURATION.md` lists every setting, generated from these types and [`reference`]'s
//! explanations.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::config::{ConfigError, DatabaseConfig, LogConfig, Mode, ServerConfig};

pub use crate::limits::LimitsConfig;

mod reference;
pub use reference::reference;

/// All settings.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// `development` (the default) or `production`: production refuses at start-up what
    /// development allows for convenience (see [`VaultConfig::production_problems`]).
    pub mode: Mode,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[keys]`.
    pub keys: KeysConfig,
    /// `[tokens]`.
    pub tokens: TokensConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[audit]`.
    pub audit: AuditConfig,
    /// `[collect]`.
    pub collect: CollectConfig,
    /// `[log]`.
    pub log: LogConfig,
}

/// `[audit]`: where the chain's head is anchored outside the database.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A file the vault appends an authenticated checkpoint of the chain head to, every
    /// `checkpoint_interval_seconds` and at shutdown; `audit verify` checks the chain against
    /// it. Ship its lines elsewhere as they are written.
    pub checkpoint_file: Option<PathBuf>,
    /// How often a checkpoint is written (when the head moved).
    pub checkpoint_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_file: None,
            checkpoint_interval_seconds: 60,
        }
    }
}

/// `[collect]`: the hosted card form.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// The vault's address as the cardholder's browser reaches it (`https://vault.example`,
    /// no path): the base of every session's `url`, and the only `Origin` a card submission is
    /// accepted from. Unset, it is the form's listen address (`collect.listen`, else
    /// `server.listen`) over `https` when `[server.tls]` serves TLS (`http` when not), which
    /// only a browser on the same machine reaches.
    pub public_url: Option<String>,
    /// A second address serving only the card form (`/collect/…`, `/collect.js`, `/healthz`),
    /// so that the public side faces the internet while the API (detokenize, metrics) stays on
    /// `server.listen`, inside the network. Unset, the form is served on `server.listen` too.
    pub listen: Option<std::net::SocketAddr>,
    /// How long a session is kept once it has expired, completed or not, before the sweeper
    /// deletes it (its token, last four digits and the name typed go with it; the token
    /// itself stays). The platform reads a completed session within this time.
    pub retention_seconds: u64,
}

/// Shortest `collect.retention_seconds`: an hour. A card may come in a second before its
/// session expires, and the platform (the proxy's poller, a backend back from a restart) must
/// still find it.
pub const MIN_COLLECT_RETENTION_SECONDS: u64 = 3600;

/// Longest `collect.retention_seconds`: 30 days.
pub const MAX_COLLECT_RETENTION_SECONDS: u64 = 30 * 24 * 3600;

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            listen: None,
            retention_seconds: 24 * 3600,
        }
    }
}

/// `keys.provider`: where the master key comes from.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// A key file beside the vault (`keys.master_key_file`): development.
    #[default]
    File,
    /// Split knowledge: `vault init --provider shamir` prints shares; `vault serve` starts sealed
    /// until enough are entered with `vault operator unseal`.
    Shamir,
    /// An HSM through PKCS#11 (`[keys.pkcs11]`); the key never leaves it.
    Pkcs11,
}

impl ProviderKind {
    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Shamir => "shamir",
            Self::Pkcs11 => "pkcs11",
        }
    }
}

/// `[keys]`: where the master key comes from.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Where the master key comes from: `file`, `shamir` or `pkcs11`.
    pub provider: ProviderKind,
    /// In production mode the file provider is refused unless this says it is meant.
    pub allow_file_provider: bool,
    /// The master key file written by `vault init` (mode 0600), for the file provider.
    pub master_key_file: PathBuf,
    /// The Unix socket (mode 0600) `vault operator unseal` and `seal` talk to, for the Shamir
    /// provider. Local only: never the API port.
    pub unseal_socket: PathBuf,
    /// `[keys.pkcs11]`: the HSM, for the pkcs11 provider.
    pub pkcs11: crate::crypto::Pkcs11Settings,
    /// How long a dual-control proposal waits for a second operator's approval.
    pub approval_window_minutes: u64,
    /// Seals after which a data key is rotated automatically (AES-GCM with random nonces is
    /// safe for about 2^32 per key; the default is far below).
    pub data_key_max_seals: u64,
    /// Age after which a data key is rotated automatically (its cryptoperiod).
    pub data_key_max_age_days: u64,
    /// Whether running vaults move tokens to the active data key by themselves (else only
    /// `vault keys rewrap` does, when the operator runs it).
    pub rewrap_in_background: bool,
    /// Tokens the rewrap job reseals per transaction.
    pub rewrap_batch_size: u32,
    /// Pause between two rewrap batches, so the job never crowds out requests.
    pub rewrap_pause_ms: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::File,
            allow_file_provider: false,
            master_key_file: PathBuf::from("master.key"),
            unseal_socket: PathBuf::from("unseal.sock"),
            pkcs11: crate::crypto::Pkcs11Settings::default(),
            approval_window_minutes: 60,
            data_key_max_seals: 100_000_000,
            data_key_max_age_days: 365,
            rewrap_in_background: true,
            rewrap_batch_size: 200,
            rewrap_pause_ms: 50,
        }
    }
}

/// `[tokens]`: lifetimes.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Longest `ttl_seconds` a tokenize request may ask for.
    pub max_ttl_seconds: u64,
    /// How often the sweeper deletes expired tokens.
    pub sweep_interval_seconds: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            max_ttl_seconds: 10 * 365 * 24 * 3600,
            sweep_interval_seconds: 60,
        }
    }
}

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "VAULT__";

/// The default port.
pub const DEFAULT_PORT: u16 = 8200;
/// The default database file.
pub const DEFAULT_DATABASE: &str = "vault.db";

impl VaultConfig {
    /// The address to listen on.
    pub fn listen(&self) -> std::net::SocketAddr {
        self.server.listen_or(DEFAULT_PORT)
    }

    /// The vault's origin as browsers reach it (`[collect] public_url`, else the address
    /// the form is served on, `collect.listen` or `server.listen`, over `https` when the
    /// listeners serve TLS and `http` otherwise).
    pub fn public_origin(&self) -> String {
        self.collect.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.server.tls.enabled() {
                "https"
            } else {
                "http"
            };
            let form = self.collect.listen.unwrap_or_else(|| self.listen());
            format!("{scheme}://{form}")
        })
    }

    /// The SQLite options.
    pub fn sqlite(&self) -> shared::sqlite::SqliteOptions {
        self.database.sqlite(DEFAULT_DATABASE)
    }

    /// `[server]` for the card form's own listener (`collect.listen`): the same, but it never
    /// asks for client certificates. Cardholders' browsers have none to give, and the request
    /// would show them the names of the CA the vault's clients come from.
    pub fn form_server(&self) -> ServerConfig {
        let mut server = self.server.clone();
        server.tls.client_ca_file = None;
        server.tls.client_crl_file = None;
        server
    }

    /// Loads `file` (if given), applies `VAULT__…` overrides from `env`, and validates.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML, unknown keys, wrong types or out-of-range values.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config: Self = shared::config::load(file, env, ENV_PREFIX)?;
        if let Some(path) = file
            && shared::config::file_names_database_password(path)
        {
            shared::files::ensure_private(
                path,
                "the config file (it holds a database password in database.url)",
            )?;
        }
        // Relative paths of a config file are the file's, not the shell's.
        let base = shared::config::config_dir(file);
        config.database.base_dir.clone_from(&base);
        shared::server::tls::anchor(&mut config.server.tls, base.as_deref());
        config.keys.master_key_file =
            shared::config::anchored(base.as_deref(), &config.keys.master_key_file);
        config.keys.unseal_socket =
            shared::config::anchored(base.as_deref(), &config.keys.unseal_socket);
        config.keys.pkcs11.pin_file =
            shared::config::anchored(base.as_deref(), &config.keys.pkcs11.pin_file);
        config.audit.checkpoint_file = config
            .audit
            .checkpoint_file
            .as_deref()
            .map(|p| shared::config::anchored(base.as_deref(), p));
        config.server.validate()?;
        if config.server.webhook_listen.is_some() {
            return Err(ConfigError::Invalid(
                "server.webhook_listen is the proxy's setting (its bank webhook listener); the vault's second listener is collect.listen",
            ));
        }
        config.database.validate()?;
        if config.tokens.sweep_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "tokens.sweep_interval_seconds must be positive",
            ));
        }
        if config.tokens.max_ttl_seconds == 0 {
            return Err(ConfigError::Invalid(
                "tokens.max_ttl_seconds must be positive",
            ));
        }
        config.limits.validate().map_err(ConfigError::Invalid)?;
        if let Some(url) = &config.collect.public_url {
            crate::collect::Origin::parse(url).map_err(|_| {
                ConfigError::Invalid(
                    "collect.public_url must be the vault's origin as browsers write it: https://host[:port], no path or trailing slash (http only for localhost and 127.0.0.1)",
                )
            })?;
        }
        if !(1..=1 << 32).contains(&config.keys.data_key_max_seals) {
            return Err(ConfigError::Invalid(
                "keys.data_key_max_seals must be from 1 to 4294967296 (2^32, the AES-GCM bound for random nonces); the default is 100000000",
            ));
        }
        if !(1..=10_080).contains(&config.keys.approval_window_minutes) {
            return Err(ConfigError::Invalid(
                "keys.approval_window_minutes must be from 1 to 10080 (a week); the default is 60",
            ));
        }
        if !(1..=3650).contains(&config.keys.data_key_max_age_days) {
            return Err(ConfigError::Invalid(
                "keys.data_key_max_age_days must be from 1 to 3650; the default is 365",
            ));
        }
        if !(1..=10_000).contains(&config.keys.rewrap_batch_size) {
            return Err(ConfigError::Invalid(
                "keys.rewrap_batch_size must be from 1 to 10000; the default is 200",
            ));
        }
        if let Some(form) = config.collect.listen
            && form.port() != 0
            && form == config.listen()
        {
            return Err(ConfigError::Invalid(
                "collect.listen must be another address than server.listen (it serves only the card form; leave it unset to serve the form on server.listen)",
            ));
        }
        if !(MIN_COLLECT_RETENTION_SECONDS..=MAX_COLLECT_RETENTION_SECONDS)
            .contains(&config.collect.retention_seconds)
        {
            return Err(ConfigError::Invalid(
                "collect.retention_seconds must be from 3600 (an hour: a card may come in just before expiry, and the platform reads it after) to 2592000 (30 days); the default is 86400",
            ));
        }
        if config.audit.checkpoint_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_interval_seconds must be positive",
            ));
        }
        if config.keys.pkcs11.token_label.is_empty() || config.keys.pkcs11.key_label.is_empty() {
            return Err(ConfigError::Invalid(
                "keys.pkcs11.token_label and keys.pkcs11.key_label must not be empty",
            ));
        }
        Ok(config)
    }

    /// What production mode refuses in this configuration, one line each (empty in development
    /// mode, and when nothing is wrong).
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mode != Mode::Production {
            return problems;
        }
        let mut listeners = vec![("server.listen", self.listen())];
        if let Some(form) = self.collect.listen {
            listeners.push(("collect.listen", form));
        }
        problems.extend(shared::config::production_problems(
            &self.server,
            &listeners,
            &self.log,
            &self.database,
        ));
        if self.keys.provider == ProviderKind::File && !self.keys.allow_file_provider {
            problems.push(
                "keys.provider: the master key is a file beside the data, which production mode refuses; use shamir or pkcs11, or set keys.allow_file_provider = true to accept it".to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_file_and_env_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vault.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9000\"\nbody_limit_bytes = 4096\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let config = VaultConfig::load(
            Some(&file),
            env(&[
                ("VAULT__SERVER__BODY_LIMIT_BYTES", "8192"),
                ("VAULT__DATABASE__PATH", "/tmp/x.db"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen().port(), 9000);
        assert_eq!(config.server.body_limit_bytes, 8192);
        assert_eq!(config.sqlite().path, PathBuf::from("/tmp/x.db"));
        assert_eq!(config.log.format, shared::telemetry::LogFormat::Json);
        assert_eq!(config.tokens.sweep_interval_seconds, 60);
    }

    #[test]
    fn the_default_public_origin_follows_the_listener_scheme() {
        let plain =
            VaultConfig::load(None, env(&[("VAULT__SERVER__LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(plain.public_origin(), "http://127.0.0.1:9001");
        let tls = VaultConfig::load(
            None,
            env(&[
                ("VAULT__SERVER__LISTEN", "127.0.0.1:9001"),
                ("VAULT__SERVER__TLS__CERT_FILE", "/etc/vault/server.crt"),
                ("VAULT__SERVER__TLS__KEY_FILE", "/etc/vault/server.key"),
            ]),
        )
        .unwrap();
        assert_eq!(tls.public_origin(), "https://127.0.0.1:9001");
        // The form on its own listener: sessions point there, not at the API.
        let apart = VaultConfig::load(
            None,
            env(&[
                ("VAULT__SERVER__LISTEN", "127.0.0.1:9001"),
                ("VAULT__COLLECT__LISTEN", "127.0.0.1:9002"),
            ]),
        )
        .unwrap();
        assert_eq!(apart.public_origin(), "http://127.0.0.1:9002");
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(VaultConfig::load(None, env(&[("VAULT__SERVER__LISTEN_ADDR", "x")])).is_err());
        assert!(
            VaultConfig::load(None, env(&[("VAULT__SERVER__BODY_LIMIT_BYTES", "ten")])).is_err()
        );
        assert!(VaultConfig::load(None, env(&[("VAULT__SERVER__BODY_LIMIT_BYTES", "1")])).is_err());
        assert!(VaultConfig::load(None, env(&[("VAULT__", "1")])).is_err());
        assert!(VaultConfig::load(Some(Path::new("/nonexistent/vault.toml")), env(&[])).is_err());
        for bad in [
            "vault.example",
            "https://vault.example/",
            "http://vault.example",
        ] {
            let err = VaultConfig::load(None, env(&[("VAULT__COLLECT__PUBLIC_URL", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("collect.public_url"), "{bad}: {err}");
        }
        for bad in ["0", "59", "3599", "2592001"] {
            let err = VaultConfig::load(None, env(&[("VAULT__COLLECT__RETENTION_SECONDS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("collect.retention_seconds"), "{bad}: {err}");
        }
        let err = VaultConfig::load(
            None,
            env(&[
                ("VAULT__SERVER__LISTEN", "127.0.0.1:8300"),
                ("VAULT__COLLECT__LISTEN", "127.0.0.1:8300"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("collect.listen"), "{err}");
        let config =
            VaultConfig::load(None, env(&[("VAULT__COLLECT__RETENTION_SECONDS", "3600")])).unwrap();
        assert_eq!(config.collect.retention_seconds, 3600);
        assert_eq!(
            VaultConfig::load(None, env(&[]))
                .unwrap()
                .collect
                .retention_seconds,
            86_400
        );
    }

    #[test]
    fn the_public_origin_defaults_to_the_listen_address() {
        let config = VaultConfig::load(None, env(&[])).unwrap();
        assert_eq!(
            config.public_origin(),
            format!("http://{}", config.listen())
        );
        let config = VaultConfig::load(
            None,
            env(&[("VAULT__COLLECT__PUBLIC_URL", "https://vault.example")]),
        )
        .unwrap();
        assert_eq!(config.public_origin(), "https://vault.example");
    }
}
