//! The configuration reference (`docs/CONFIGURATION.md`), generated from the configuration
//! types: every key and its default come from serializing a service's default settings (the same
//! `Serialize` that `check` prints), and each key's meaning from the table beside its type. A
//! test in `tests/tests/config_reference.rs` regenerates the file and fails when the committed
//! one differs, and [`Reference::render`] refuses a key the types have and the table does not
//! explain (or the other way round), so the reference cannot fall behind the code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One setting's explanation.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The dotted key (`server.listen`); a map's entries as `vault.api_keys.<tenant>`.
    pub key: &'static str,
    /// What it does, for an operator.
    pub meaning: &'static str,
}

/// The settings `shared::config` defines for both services (`[server]`, `[database]`, `[log]`);
/// a service's own table may explain one differently.
pub const COMMON: &[Setting] = &[
    Setting {
        key: "server.listen",
        meaning: "address to listen on (port 0 picks one)",
    },
    Setting {
        key: "server.body_limit_bytes",
        meaning: "larger bodies get 413 (minimum 256)",
    },
    Setting {
        key: "server.request_timeout_ms",
        meaning: "slower requests get 503 `timeout`",
    },
    Setting {
        key: "server.shutdown_timeout_ms",
        meaning: "grace for in-flight requests after SIGTERM/SIGINT",
    },
    Setting {
        key: "server.header_read_timeout_ms",
        meaning: "a request head must be complete this long after the connection opened or the \
                  last response; otherwise the connection is closed (so idle keep-alive \
                  connections last this long)",
    },
    Setting {
        key: "server.idle_timeout_ms",
        meaning: "a connection moving no byte either way this long is dropped (e.g. a client \
                  that stopped reading); at least `request_timeout_ms`",
    },
    Setting {
        key: "server.max_connections",
        meaning: "connections served at once; more wait in the listen backlog",
    },
    Setting {
        key: "server.webhook_listen",
        meaning: "proxy only (the vault refuses it): a second listener serving the bank's \
                  webhook route `POST /webhooks/bank131` and `/healthz`, nothing else, so that \
                  only it faces the internet; the app API then stays on `server.listen` alone. \
                  Same `[server.tls]`",
    },
    Setting {
        key: "server.tls.cert_file",
        meaning: "PEM certificate chain (the server's first): the listener serves TLS 1.2/1.3 \
                  with AEAD suites only, ALPN `http/1.1`; re-read with `key_file` on SIGHUP \
                  (a file that does not load is logged and the old certificate stays). Unset, \
                  plain HTTP",
    },
    Setting {
        key: "server.tls.key_file",
        meaning: "its PEM private key (PKCS#8, PKCS#1 or SEC1), mode 0600; set with \
                  `cert_file`",
    },
    Setting {
        key: "server.tls.client_ca_file",
        meaning: "PEM CA certificates for mutual TLS: clients are asked for a certificate and \
                  one they give must chain to these (a client without one still connects; the \
                  service decides what needs one)",
    },
    Setting {
        key: "server.tls.client_crl_file",
        meaning: "PEM CRLs of that CA: a revoked client certificate is refused in the handshake \
                  (re-read on SIGHUP)",
    },
    Setting {
        key: "database.url",
        meaning: "`postgres://…` selects PostgreSQL (never logged); `sqlite:<path>` or absent, \
                  SQLite. TLS as libpq's `sslmode` says (`disable`, `prefer` (the default), \
                  `require`, `verify-ca`, `verify-full`), checking the server against \
                  `sslrootcert=/path/ca.crt`, which `verify-ca` and `verify-full` need: \
                  `postgres://u:p@db.internal/vault?sslmode=verify-full&sslrootcert=/etc/vault/pg-ca.crt`",
    },
    Setting {
        key: "database.max_connections",
        meaning: "PostgreSQL pool size",
    },
    Setting {
        key: "database.path",
        meaning: "SQLite file (`-wal`/`-shm` beside it); relative paths resolve against the \
                  config file's directory",
    },
    Setting {
        key: "database.read_connections",
        meaning: "reader connections",
    },
    Setting {
        key: "database.busy_timeout_ms",
        meaning: "wait for a database lock",
    },
    Setting {
        key: "database.max_queued_writes",
        meaning: "writes waiting for the writer (SQLite) or the group commit (PostgreSQL); one \
                  more gets 503 `overloaded` at once",
    },
    Setting {
        key: "log.format",
        meaning: "`text` or `json` (to stderr)",
    },
    Setting {
        key: "log.filter",
        meaning: "tracing filter, e.g. `info` or `vault=debug,info`",
    },
];

/// One service's part of the reference.
#[derive(Debug)]
pub struct Reference {
    /// `vault` or `proxy`.
    pub service: &'static str,
    /// The environment prefix of overrides (`VAULT__`).
    pub env_prefix: &'static str,
    /// What comes before the table: how the settings are read.
    pub intro: &'static str,
    /// The service's settings with their defaults, serialized (required ones filled with
    /// placeholders, listed in `required`).
    pub defaults: Value,
    /// Keys without a default: the service refuses to start without them.
    pub required: &'static [&'static str],
    /// Defaults the types leave to the service (`None` in the type, a constant in the code).
    pub computed: Vec<(&'static str, String)>,
    /// The service's own explanations, over [`COMMON`].
    pub settings: &'static [Setting],
    /// An example file.
    pub example: &'static str,
}

/// The dotted keys of a serialized configuration: its leaves, a map with no entries by default
/// counting as one key.
pub fn keys(defaults: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", defaults, &mut out);
    out
}

/// `vault.api_keys.<tenant>` names the map `vault.api_keys`.
fn base_key(key: &str) -> &str {
    match key.rfind(".<") {
        Some(i) if key.ends_with('>') => &key[..i],
        _ => key,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "none".to_owned(),
        Value::Object(m) if m.is_empty() => "none".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

impl Reference {
    /// The service's section of `docs/CONFIGURATION.md`.
    ///
    /// # Errors
    ///
    /// A key of the types has no explanation, or an explanation names no key: the text says
    /// which.
    pub fn render(&self) -> Result<String, String> {
        let keys = keys(&self.defaults);
        // Rows in the order an operator reads: server and database first, the service's own
        // sections as its table lists them, the log last. A common explanation counts where the
        // service has the key; the service's own replace it in place.
        let present = |s: &&Setting| keys.contains_key(s.key);
        let mut explained: Vec<&Setting> = COMMON
            .iter()
            .filter(present)
            .filter(|s| !s.key.starts_with("log."))
            .collect();
        for own in self.settings {
            match explained.iter_mut().find(|s| s.key == own.key) {
                Some(slot) => *slot = own,
                None => explained.push(own),
            }
        }
        explained.extend(
            COMMON
                .iter()
                .filter(present)
                .filter(|s| s.key.starts_with("log.")),
        );
        let undocumented: Vec<&String> = keys
            .keys()
            .filter(|k| !explained.iter().any(|e| base_key(e.key) == k.as_str()))
            .collect();
        let unknown: Vec<&str> = self
            .settings
            .iter()
            .map(|s| s.key)
            .filter(|e| !keys.contains_key(base_key(e)))
            .collect();
        if !undocumented.is_empty() || !unknown.is_empty() {
            return Err(format!(
                "{}: settings without an explanation: {undocumented:?}; explanations of no \
                 setting: {unknown:?} (the tables are in shared/src/reference.rs and the \
                 service's config.rs)",
                self.service
            ));
        }
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n\n{}\n", self.service, self.intro.trim());
        out.push_str("| setting | env override | default | meaning |\n|---|---|---|---|\n");
        for setting in &explained {
            let key = setting.key;
            let base = base_key(key);
            let default = if self.required.contains(&base) {
                "required".to_owned()
            } else if let Some((_, v)) = self.computed.iter().find(|(k, _)| *k == base) {
                format!("`{v}`")
            } else {
                shown(&keys[base])
            };
            let env = format!(
                "{}{}",
                self.env_prefix,
                key.replace('.', "__")
                    .replace(['<', '>'], "")
                    .to_uppercase()
            );
            let meaning = setting
                .meaning
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(out, "| `{key}` | `{env}` | {default} | {meaning} |");
        }
        let _ = writeln!(
            out,
            "\nExample `{}.toml`:\n\n```toml\n{}\n```\n",
            self.service,
            self.example.trim()
        );
        Ok(out)
    }
}

/// The whole `docs/CONFIGURATION.md`.
///
/// # Errors
///
/// As [`Reference::render`].
pub fn document(services: &[Reference]) -> Result<String, String> {
    let mut out = String::from(
        "# Configuration reference\n\n<!-- Generated from the configuration types by \
         `UPDATE_DOCS=1 cargo test -p tests --test config_reference`; do not edit by hand. -->\n\n\
         Each service reads an optional TOML file (`--config`), then environment variables \
         `<PREFIX>SECTION__KEY` that override single settings. Unknown keys are errors, and no \
         error echoes a value. `vault check` and `proxy check` print the resolved settings \
         (secrets masked) and what is wrong with them.\n\n",
    );
    for s in services {
        out.push_str(&s.render()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reference(settings: &'static [Setting]) -> Reference {
        Reference {
            service: "demo",
            env_prefix: "DEMO__",
            intro: "Intro.",
            defaults: json!({"server": {"listen": null}, "vault": {"api_keys": {}, "url": "x"}}),
            required: &["vault.url"],
            computed: vec![("server.listen", "127.0.0.1:1".to_owned())],
            settings,
            example: "[server]",
        }
    }

    #[test]
    fn every_key_needs_an_explanation_and_every_explanation_a_key() {
        let err = reference(&[]).render().unwrap_err();
        assert!(
            err.contains("vault.url") && err.contains("vault.api_keys"),
            "{err}"
        );
        const EXTRA: &[Setting] = &[
            Setting {
                key: "vault.url",
                meaning: "u",
            },
            Setting {
                key: "vault.api_keys.<tenant>",
                meaning: "k",
            },
            Setting {
                key: "vault.gone",
                meaning: "g",
            },
        ];
        let err = reference(EXTRA).render().unwrap_err();
        assert!(err.contains("vault.gone"), "{err}");
    }

    #[test]
    fn a_row_names_its_override_and_its_default() {
        const OK: &[Setting] = &[
            Setting {
                key: "vault.url",
                meaning: "the   vault",
            },
            Setting {
                key: "vault.api_keys.<tenant>",
                meaning: "a key",
            },
        ];
        let text = reference(OK).render().unwrap();
        assert!(text.contains("| `vault.url` | `DEMO__VAULT__URL` | required | the vault |"));
        assert!(text.contains(
            "| `vault.api_keys.<tenant>` | `DEMO__VAULT__API_KEYS__TENANT` | none | a key |"
        ));
        assert!(text.contains("| `server.listen` | `DEMO__SERVER__LISTEN` | `127.0.0.1:1` |"));
    }
}
