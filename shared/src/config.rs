//! Configuration loading both services share: a TOML file, then environment overrides, then the
//! service's own validation; and the `[server]`, `[database]` and `[log]` sections both have.
//!
//! An environment variable `<PREFIX>SECTION__KEY` (e.g. `VAULT__SERVER__LISTEN`) overrides `key`
//! in `[section]`; its value is read as a TOML value when it parses as one (numbers, booleans)
//! and as a string otherwise. Unknown keys are errors, so a typo does not silently fall back to
//! a default.
//!
//! Long because the loading, the shared `[server]`, `[database]` and `[log]` sections, the masked
//! `check` report and their tests belong together; both services' settings build on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::sqlite::SqliteOptions;
use crate::telemetry::LogFormat;

/// Why the configuration was refused. No variant holds a value from the file or the
/// environment: a value may be a password or an API key, so errors name the setting and the kind
/// of problem only (docs/ARCHITECTURE.md §9.7).
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
    /// The file is not valid TOML.
    #[error("config file {path}: not valid TOML at line {line}, column {column}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// An environment variable with the service's prefix names no setting.
    #[error("invalid configuration: {0} does not name a setting")]
    UnknownVariable(String),
    /// A setting is missing, unknown or has the wrong type or value.
    #[error("invalid configuration: {setting}: {problem}")]
    Setting {
        /// The setting's dotted path, e.g. `server.listen`.
        setting: String,
        /// What is wrong, in words that hold no part of the value.
        problem: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
    /// A file holding secrets is open to others, or unreadable.
    #[error("invalid configuration: {0}")]
    SecretFile(#[from] crate::files::SecretFileError),
}

/// The directory a config file's relative paths resolve against: the file's own directory, made
/// absolute (so a command run from elsewhere still finds the same files). `None` without a file:
/// paths then resolve against the working directory, as the shell's do.
pub fn config_dir(file: Option<&Path>) -> Option<PathBuf> {
    let file = file?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(std::path::absolute(&dir).unwrap_or(dir))
}

/// `path` resolved against `base` when it is relative and there is a base.
pub fn anchored(base: Option<&Path>, path: &Path) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// Whether the config file at `path` writes a password into `database.url` (so it must be
/// readable by its owner only).
pub fn file_names_database_password(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .map(zeroize::Zeroizing::new)
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            table
                .get("database")
                .and_then(|d| d.get("url"))
                .and_then(|u| u.as_str())
                .and_then(|u| url::Url::parse(u).ok())
        })
        .is_some_and(|u| u.password().is_some())
}

/// Loads `file` (if given) and applies the `prefix`ed overrides from `env`.
///
/// # Errors
///
/// An unreadable file, bad TOML, unknown keys or wrong types; see [`ConfigError`].
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    }
                })?);
            // toml's own message quotes the offending line, which may hold a password.
            toml::from_str::<toml::Table>(&text).map_err(|e| {
                let (line, column) = line_and_column(&text, e.span().map_or(0, |s| s.start));
                ConfigError::Syntax {
                    path: path.to_owned(),
                    line,
                    column,
                }
            })?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(path) = name.strip_prefix(prefix) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        override_key(&mut table, &keys, parse_env_value(&value))
            .map_err(|()| ConfigError::UnknownVariable(name.clone()))?;
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let setting = e.path().to_string();
        // The message alone: toml adds where it was, which the path already says.
        let problem = describe(e.inner().message());
        ConfigError::Setting { setting, problem }
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// What serde says was expected, in words a person configuring a service reads: Rust's own
/// type names (`usize`, `u32`, `i64`, `f64`, `bool`) never reach a message.
pub fn plain_expected(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "a boolean" => "true or false",
        "char" => "a single character",
        other => other,
    }
}

/// Rewrites a serde error message into one that names the kind of problem and what was
/// expected, and drops everything that came from the input. serde's messages have the shapes
/// `invalid type: <what> "<value>", expected <type>`, `invalid value: …, expected …`,
/// `unknown field `<name>`, expected …`, `unknown variant `<value>`, expected …` and
/// `missing field `<name>``; the text after the *last* `, expected ` is always the program's.
fn describe(message: &str) -> String {
    let expected = message
        .rfind(", expected ")
        .map(|i| plain_expected(&message[i + ", expected ".len()..]))
        .filter(|e| !e.contains('"'));
    let with_expected = |kind: &str| match expected {
        Some(e) => format!("{kind} (expected {e})"),
        None => kind.to_owned(),
    };
    let quoted_name = || {
        message
            .split('`')
            .nth(1)
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(str::to_owned)
    };
    if message.starts_with("invalid type") {
        with_expected("wrong type")
    } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
        with_expected("invalid value")
    } else if message.starts_with("invalid length") {
        with_expected("wrong number of elements")
    } else if message.starts_with("unknown field") {
        let kind = match quoted_name() {
            Some(name) => format!("`{name}` is not a setting here"),
            None => "unknown setting".to_owned(),
        };
        match expected {
            Some(e) => format!("{kind} (expected {e})"),
            None => format!("{kind} (this section has no settings)"),
        }
    } else if message.starts_with("missing field") {
        match quoted_name() {
            Some(name) => format!("`{name}` is required"),
            None => "a required setting is missing".to_owned(),
        }
    } else {
        // A message from a type's own parser (a socket address, a URL): it may quote the value.
        "invalid value".to_owned()
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

/// `mode`: how strict start-up is.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Conveniences allowed (plain HTTP, the master key in a file, debug logs).
    #[default]
    Development,
    /// Start-up refuses what only development should do.
    Production,
}

impl Mode {
    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// What `mode = "production"` refuses in the settings both services share, one line per
/// problem, each naming the setting and the fix: PostgreSQL without a checked TLS connection
/// (`sslmode` other than `verify-ca`/`verify-full`), a plain-HTTP listener off loopback (each of
/// `listeners`, named by its setting), and debug or trace logging (request details in logs).
pub fn production_problems(
    server: &ServerConfig,
    listeners: &[(&str, SocketAddr)],
    log: &LogConfig,
    database: &DatabaseConfig,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(url) = database.postgres_url() {
        match crate::postgres::ssl_mode(url) {
            Ok(mode) if mode.verifies() => {}
            Ok(mode) => problems.push(format!(
                "database.url: sslmode={}: production mode refuses PostgreSQL without a checked TLS connection; add sslmode=verify-full&sslrootcert=/path/to/ca.crt",
                mode.as_str()
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !server.tls.enabled() {
        for (setting, addr) in listeners {
            if !addr.ip().is_loopback() {
                problems.push(format!(
                    "{setting}: {addr} is reachable from other hosts but [server.tls] is not set: production mode refuses plain HTTP off this host; set server.tls.cert_file and server.tls.key_file (or listen on 127.0.0.1 behind a TLS terminator on this host)"
                ));
            }
        }
    }
    // Judged by what the filter enables, not by its text: a bare target (`vault`), a number
    // (`5`) or a span directive turns on trace without saying so.
    let verbose = tracing_subscriber::EnvFilter::try_new(&log.filter).map_or(true, |f| {
        f.max_level_hint()
            .is_none_or(|level| level > tracing_subscriber::filter::LevelFilter::INFO)
    });
    if verbose {
        problems.push(
            "log.filter: it enables debug or trace logging (a level above info, a bare target or a number does), which production mode refuses (they record request details); use info (the default) or warn, with a level on every directive".to_owned(),
        );
    }
    problems
}

/// `[server]`: the HTTP listener.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
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
    /// A request head must be complete this long after the connection opened or the previous
    /// response was sent; otherwise the connection is closed (so idle keep-alive connections
    /// last this long too).
    pub header_read_timeout_ms: u64,
    /// A connection that moves no byte in either direction this long is dropped (a client that
    /// stopped reading its response, say). At least `request_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// TLS on the listener; none configured, plain HTTP.
    pub tls: TlsConfig,
    /// The proxy only: a second listener that serves the bank's webhook route (and
    /// `/healthz`) and nothing else, so that only it faces the internet; the app API then stays
    /// on `listen` alone. Same `[server.tls]`.
    pub webhook_listen: Option<SocketAddr>,
}

/// `[server.tls]`: the listener's certificate and, for mutual TLS, the CA its clients' come
/// from. Re-read on SIGHUP.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own first.
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key (mode 0600).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: clients are asked for a certificate, and one they give must chain
    /// to these.
    pub client_ca_file: Option<PathBuf>,
    /// PEM CRLs of that CA: a revoked client certificate is refused in the handshake.
    pub client_crl_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether the listener serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::Invalid(
                "server.tls.cert_file and server.tls.key_file go together: set both (TLS) or neither (plain HTTP)",
            ));
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(ConfigError::Invalid(
                "server.tls.client_ca_file needs server.tls.cert_file and key_file: client certificates are asked for over TLS only",
            ));
        }
        if self.client_crl_file.is_some() && self.client_ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "server.tls.client_crl_file needs server.tls.client_ca_file (the CA whose revocations it lists)",
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            body_limit_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            tls: TlsConfig::default(),
            webhook_listen: None,
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
        if self.header_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.header_read_timeout_ms must be positive",
            ));
        }
        if self.idle_timeout_ms < self.request_timeout_ms {
            return Err(ConfigError::Invalid(
                "server.idle_timeout_ms must be at least server.request_timeout_ms (a request being handled moves no bytes)",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections must be at least 1",
            ));
        }
        self.tls.validate()
    }
}

/// A `database.url`. It may hold a password, so its `Debug` shows the URL with the password
/// replaced, and the text itself is reached only through [`DatabaseUrl::expose`].
#[derive(Clone)]
pub struct DatabaseUrl(crate::secret::SecretString);

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Shown (by `check`) with the password replaced, as `Debug` shows it.
impl serde::Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_password(self.expose()))
    }
}

impl DatabaseUrl {
    /// The URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        crate::secret::ExposeSecret::expose_secret(&self.0)
    }

    /// From text (tests and tools).
    pub fn new(url: impl Into<String>) -> Self {
        Self(crate::secret::secret(url.into()))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", redact_password(self.expose()))
    }
}

/// `scheme://user:password@host/…` with the password (and any query string, which may carry
/// one too) replaced by `***`; anything it cannot read is shown as `***` whole.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            "***".to_owned()
        };
    };
    // The credentials run to the *last* `@` (a password may hold `/`, `?` or `@`, and the
    // driver reads it so); a user name that is not plain is hidden too.
    let (user, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let plain = !user.contains(['/', '?', '#']);
            (Some(if plain { user } else { "***" }), after)
        }
        None => (None, rest),
    };
    let (host, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
    let authority = match user {
        Some(user) => format!("{user}:***@{host}"),
        None => host.to_owned(),
    };
    let path = tail.split('?').next().unwrap_or_default();
    let query = if tail.contains('?') { "?***" } else { "" };
    format!("{scheme}://{authority}{path}{query}")
}

/// `[database]`: the SQLite file or the PostgreSQL server.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/dbname` selects PostgreSQL (never logged); absent or
    /// `sqlite:<path>`, SQLite.
    pub url: Option<DatabaseUrl>,
    /// PostgreSQL: the most pooled connections.
    pub max_connections: usize,
    /// SQLite: the database file; each service has its own default name.
    pub path: Option<PathBuf>,
    /// Reader connections.
    pub read_connections: usize,
    /// How long to wait for a database lock.
    pub busy_timeout_ms: u64,
    /// Writes waiting for the writer (SQLite) or the group commit (PostgreSQL); a write
    /// arriving when this many wait is refused at once (503) instead of queueing without bound.
    pub max_queued_writes: usize,
    /// The directory relative SQLite paths (and the default file) resolve against: the config
    /// file's, set by the service when it loads one. Not a setting.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
            path: None,
            read_connections: 4,
            busy_timeout_ms: 5_000,
            max_queued_writes: 4_096,
            base_dir: None,
        }
    }
}

impl DatabaseConfig {
    /// The PostgreSQL URL, when the configuration selects PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.url
            .as_ref()
            .map(DatabaseUrl::expose)
            .filter(|u| crate::postgres::is_postgres_url(u))
    }

    /// The SQLite options these settings describe: `url = "sqlite:<path>"`, else `path`, else
    /// `default_file`.
    pub fn sqlite(&self, default_file: &str) -> SqliteOptions {
        let from_url = self
            .url
            .as_ref()
            .and_then(|u| u.expose().strip_prefix("sqlite:"))
            .map(PathBuf::from);
        let path = from_url
            .or_else(|| self.path.clone())
            .unwrap_or_else(|| PathBuf::from(default_file));
        SqliteOptions {
            path: anchored(self.base_dir.as_deref(), &path),
            read_connections: self.read_connections,
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            max_queued_writes: self.max_queued_writes,
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
        if self.max_queued_writes == 0 {
            return Err(ConfigError::Invalid(
                "database.max_queued_writes must be at least 1",
            ));
        }
        if self
            .url
            .as_ref()
            .map(DatabaseUrl::expose)
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
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
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

/// `check`'s report: the resolved configuration as TOML (secrets shown masked by their own
/// `Serialize`), then notes (what is fine but worth knowing), then each problem or a verdict.
///
/// # Errors
///
/// The configuration could not be written as TOML.
pub fn check_report<C: serde::Serialize>(
    name: &str,
    config: &C,
    notes: &[String],
    problems: &[String],
) -> Result<String, toml::ser::Error> {
    let mut out = format!(
        "# {name}: the configuration in effect (defaults filled in, relative paths resolved, secrets masked)\n"
    );
    out.push_str(&toml::to_string(config)?);
    out.push('\n');
    for n in notes {
        out.push_str(&format!("# note: {n}\n"));
    }
    if problems.is_empty() {
        out.push_str("# no problems found\n");
    } else {
        out.push_str(&format!("# {} problem(s):\n", problems.len()));
        for p in problems {
            out.push_str(&format!("# - {p}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn production_refuses_every_filter_that_logs_below_info() {
        let problems = |filter: &str| {
            production_problems(
                &ServerConfig::default(),
                &[],
                &LogConfig {
                    filter: filter.to_owned(),
                    ..LogConfig::default()
                },
                &DatabaseConfig::default(),
            )
        };
        for verbose in [
            "debug",
            "TRACE",
            "vault",
            "5",
            "vault::http=4",
            "[x]",
            "info,vault=debug",
            "not a filter==",
        ] {
            assert_eq!(problems(verbose).len(), 1, "{verbose}");
        }
        for quiet in [
            "info",
            "warn",
            "vault=info,warn",
            "error",
            "off",
            "tokio_postgres=warn,info",
        ] {
            assert!(problems(quiet).is_empty(), "{quiet}");
        }
    }

    use super::*;

    #[test]
    fn a_shown_database_url_never_holds_the_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/vault",
                "postgres://app:***@db:5432/vault",
            ),
            (
                "postgres://app:ab/cd@db/vault",
                "postgres://app:***@db/vault",
            ),
            (
                "postgres://app:a@b?c/d@db/vault?sslmode=require",
                "postgres://app:***@db/vault?***",
            ),
            (
                "postgres://db/vault?password=s3cret@x",
                "postgres://***:***@x",
            ),
            (
                "postgres://db/vault?password=s3cret",
                "postgres://db/vault?***",
            ),
        ] {
            assert_eq!(redact_password(url), shown, "{url}");
            let debug = format!("{:?}", DatabaseUrl::new(url));
            assert!(
                !debug.contains("s3cret") && !debug.contains("cd@"),
                "{debug}"
            );
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "decoded only")]
    struct Settings {
        #[serde(default)]
        database: DatabaseConfig,
        #[serde(default)]
        server: ServerConfig,
        #[serde(default)]
        keys: std::collections::BTreeMap<String, u32>,
    }

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.toml");
        std::fs::write(&path, text).unwrap();
        load(
            Some(&path),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            "SVC__",
        )
    }

    /// docs/ARCHITECTURE.md §9.7: an error names the setting and the kind of problem, never the value.
    #[test]
    fn errors_name_the_setting_and_never_quote_the_value() {
        let secret = "SuperSecret-vk_3f9a";
        // (file text, environment, what the error must say)
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case<'_>> = vec![
            // A syntax error on the line holding a password.
            (
                format!("[database]\nurl = \"postgres://app:{secret}@db/vault\" trailing\n"),
                vec![],
                "line 2",
            ),
            // A string where a number goes, in the file and from the environment.
            (
                format!("[server]\nbody_limit_bytes = \"{secret}\"\n"),
                vec![],
                "server.body_limit_bytes: wrong type (expected a whole number, 0 or more)",
            ),
            (
                String::new(),
                vec![("SVC__SERVER__MAX_CONNECTIONS", secret)],
                "server.max_connections: wrong type",
            ),
            // A table where a string goes; a value for an unknown variant of a map.
            (
                format!("[database]\nurl = {{ password = \"{secret}\" }}\n"),
                vec![],
                "database.url: wrong type",
            ),
            (
                format!("[keys]\nacme = \"{secret}\"\n"),
                vec![],
                "keys.acme: wrong type (expected a whole number, 0 or more)",
            ),
            (
                format!("[server]\nlisten = \"{secret}\"\n"),
                vec![],
                "server.listen: invalid value",
            ),
            (
                "[server]\nlistn = 1\n".to_owned(),
                vec![],
                "`listn` is not a setting here",
            ),
        ];
        for (text, env, want) in cases {
            let err = load_text(&text, &env).unwrap_err().to_string();
            assert!(!err.contains("SuperSecret"), "{err}");
            assert!(!err.contains("3f9a"), "{err}");
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn a_database_url_debugs_without_its_password() {
        let config = load_text(
            "[database]\nurl = \"postgres://vault:S3cret-pw@db.internal:5432/vault?options=-c%20search_path%3Dx&password=S3cret-pw\"\n",
            &[],
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("S3cret"), "{debug}");
        assert!(
            debug.contains("postgres://vault:***@db.internal:5432/vault?***"),
            "{debug}"
        );
        assert_eq!(
            config.database.postgres_url(),
            Some(
                "postgres://vault:S3cret-pw@db.internal:5432/vault?options=-c%20search_path%3Dx&password=S3cret-pw"
            )
        );
        for (url, shown) in [
            ("sqlite:/var/lib/vault.db", "sqlite:/var/lib/vault.db"),
            ("postgres://db/vault", "postgres://db/vault"),
            ("host=db password=x", "***"),
        ] {
            assert!(
                format!("{:?}", DatabaseUrl::new(url)).contains(shown),
                "{url}"
            );
        }
    }
}
