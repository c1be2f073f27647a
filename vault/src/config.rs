//! Settings: a TOML file, then environment overrides, then validation.
//!
//! Every setting has a default, so an empty file works for development. An environment variable
//! `VAULT__SECTION__KEY` overrides `key` in `[section]` (for example
//! `VAULT__SERVER__LISTEN=0.0.0.0:8200`); its value is read as a TOML value when it parses as
//! one (numbers, booleans) and as a string otherwise. Unknown keys are errors, so a typo does not
//! silently fall back to a default. The README lists every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared::telemetry::LogFormat;

use crate::store::SqliteOptions;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

/// All settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[keys]`.
    pub keys: KeysConfig,
    /// `[tokens]`.
    pub tokens: TokensConfig,
    /// `[log]`.
    pub log: LogConfig,
}

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// A request taking longer is answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests get to finish.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            body_limit_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
        }
    }
}

/// `[database]`: the SQLite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The database file.
    pub path: PathBuf,
    /// Reader connections.
    pub read_connections: usize,
    /// How long to wait for a database lock.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("vault.db"),
            read_connections: 4,
            busy_timeout_ms: 5_000,
        }
    }
}

impl DatabaseConfig {
    /// The SQLite options these settings describe.
    pub fn sqlite(&self) -> SqliteOptions {
        SqliteOptions {
            path: self.path.clone(),
            read_connections: self.read_connections,
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
        }
    }
}

/// `[keys]`: where the master key comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The master key file written by `vault init` (mode 0600).
    pub master_key_file: PathBuf,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            master_key_file: PathBuf::from("master.key"),
        }
    }
}

/// `[tokens]`: lifetimes.
#[derive(Clone, Debug, Deserialize)]
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

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `vault=debug,info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "VAULT__";

impl VaultConfig {
    /// Loads `file` (if given), applies `VAULT__…` overrides from `env`, and validates.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML, unknown keys, wrong types or out-of-range values.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| ConfigError::Parse(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            override_key(&mut table, &keys, parse_env_value(&value))
                .map_err(|()| ConfigError::Parse(format!("{name} does not name a setting")))?;
        }
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.body_limit_bytes < 256 {
            return Err(ConfigError::Invalid(
                "server.body_limit_bytes must be at least 256",
            ));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.request_timeout_ms must be positive",
            ));
        }
        if self.database.read_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.read_connections must be at least 1",
            ));
        }
        if self.tokens.sweep_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "tokens.sweep_interval_seconds must be positive",
            ));
        }
        if self.tokens.max_ttl_seconds == 0 {
            return Err(ConfigError::Invalid(
                "tokens.max_ttl_seconds must be positive",
            ));
        }
        Ok(())
    }
}

fn parse_env_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

fn override_key(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), ()> {
    match keys {
        [] => Err(()),
        [last] if !last.is_empty() => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] if !first.is_empty() && !rest.is_empty() => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => override_key(inner, rest, value),
                _ => Err(()),
            }
        }
        _ => Err(()),
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
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.server.body_limit_bytes, 8192);
        assert_eq!(config.database.path, PathBuf::from("/tmp/x.db"));
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.tokens.sweep_interval_seconds, 60);
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
    }
}
