//! Configuration loading both services share: a TOML file, then environment overrides, then the
//! service's own validation; and the `[server]`, `[database]` and `[log]` sections both have.
//!
//! An environment variable `<PREFIX>SECTION__KEY` (e.g. `VAULT__SERVER__LISTEN`) overrides `key`
//! in `[section]`; its value is read as a TOML value when it parses as one (numbers, booleans)
//! and as a string otherwise. Unknown keys are errors, so a typo does not silently fall back to
//! a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::sqlite::SqliteOptions;
use crate::telemetry::LogFormat;

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

/// Loads `file` (if given) and applies the `prefix`ed overrides from `env`.
///
/// # Errors
///
/// An unreadable file, bad TOML, unknown keys or wrong types.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse(e.to_string()))?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(path) = name.strip_prefix(prefix) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        override_key(&mut table, &keys, parse_env_value(&value))
            .map_err(|()| ConfigError::Parse(format!("{name} does not name a setting")))?;
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))
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

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; each service has its own default port.
    pub listen: Option<SocketAddr>,
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
            listen: None,
            body_limit_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl ServerConfig {
    /// The address to listen on: the configured one, or `default_port` on loopback.
    pub fn listen_or(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
    }

    /// Checks ranges.
    ///
    /// # Errors
    ///
    /// A value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes < 256 {
            return Err(ConfigError::Invalid(
                "server.body_limit_bytes must be at least 256",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.request_timeout_ms must be positive",
            ));
        }
        Ok(())
    }
}

/// `[database]`: the SQLite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/dbname` selects PostgreSQL (never logged); absent or
    /// `sqlite:<path>`, SQLite.
    pub url: Option<String>,
    /// PostgreSQL: the most pooled connections.
    pub max_connections: usize,
    /// SQLite: the database file; each service has its own default name.
    pub path: Option<PathBuf>,
    /// Reader connections.
    pub read_connections: usize,
    /// How long to wait for a database lock.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            path: None,
            read_connections: 4,
            busy_timeout_ms: 5_000,
        }
    }
}

impl DatabaseConfig {
    /// The PostgreSQL URL, when the configuration selects PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.url
            .as_deref()
            .filter(|u| crate::postgres::is_postgres_url(u))
    }

    /// The SQLite options these settings describe: `url = "sqlite:<path>"`, else `path`, else
    /// `default_file`.
    pub fn sqlite(&self, default_file: &str) -> SqliteOptions {
        let from_url = self
            .url
            .as_deref()
            .and_then(|u| u.strip_prefix("sqlite:"))
            .map(PathBuf::from);
        SqliteOptions {
            path: from_url
                .or_else(|| self.path.clone())
                .unwrap_or_else(|| PathBuf::from(default_file)),
            read_connections: self.read_connections,
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
        }
    }

    /// Checks ranges.
    ///
    /// # Errors
    ///
    /// A value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.read_connections == 0 || self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.read_connections and database.max_connections must be at least 1",
            ));
        }
        if self
            .url
            .as_deref()
            .is_some_and(|u| !u.starts_with("sqlite:") && !crate::postgres::is_postgres_url(u))
        {
            return Err(ConfigError::Invalid(
                "database.url must start with sqlite: or postgres://",
            ));
        }
        Ok(())
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
