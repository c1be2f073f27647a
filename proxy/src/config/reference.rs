//! What each proxy setting means, for the generated reference (`docs/CONFIGURATION.md`, see
//! `shared::reference`): the types give the keys and defaults, this table the explanations.

use shared::reference::{Reference, Setting};

use super::{DEFAULT_DATABASE, DEFAULT_PORT, ENV_PREFIX, ProxyConfig};

const SETTINGS: &[Setting] = &[
    Setting {
        key: "mode",
        meaning: "`development` or `production`; production refuses to start (exit 78, one line \
                  per problem; `check` lists the same) on what only development should do: \
                  PostgreSQL without `sslmode=verify-full` or `verify-ca`, a plain-HTTP listener \
                  (`server.listen`, `server.webhook_listen`) off loopback, `log.filter` at debug or trace, \
                  `vault.url` or `bank131.base_url` not https, and the switches \
                  `vault.allow_insecure_http`, `bank131.allow_insecure_http`, \
                  `webhooks.allow_private_networks`",
    },
    Setting {
        key: "database.max_queued_writes",
        meaning: "SQLite: writes waiting for the writer; one more gets 503 `overloaded`",
    },
    Setting {
        key: "vault.url",
        meaning: "the vault's base URL: `https://`, or `http://` to a loopback address",
    },
    Setting {
        key: "vault.allow_insecure_http",
        meaning: "allow `http://` to a non-loopback vault (development only; warned at every \
                  start)",
    },
    Setting {
        key: "vault.ca_file",
        meaning: "PEM CA certificates the vault's certificate must chain to, and nothing else \
                  (a private CA); unset, the system's roots. Chain, expiry and host name are \
                  always checked",
    },
    Setting {
        key: "vault.client_cert_file",
        meaning: "PEM client certificate the proxy presents to the vault (mutual TLS; bind the \
                  proxy's vault keys to it with `vault clients create --cert-file`); with \
                  `client_key_file`. Re-read on SIGHUP",
    },
    Setting {
        key: "vault.client_key_file",
        meaning: "its PEM private key, mode 0600",
    },
    Setting {
        key: "vault.api_keys.<tenant>",
        meaning: "per tenant, a vault key with `tokens:detokenize` in that tenant, and \
                  `collect:create` for payout links (without it `POST /v1/payout_links` is 503 \
                  `vault_key_forbidden`); a tenant without a key cannot pay out \
                  (`tenant_not_configured`). Inline keys make the config file a secret: it must \
                  then be mode 0600",
    },
    Setting {
        key: "vault.api_key_files.<tenant>",
        meaning: "per tenant, a file (mode 0600, at most 4 KiB) whose first line is that key, \
                  instead of an inline one; a tenant may not have both",
    },
    Setting {
        key: "vault.request_timeout_ms",
        meaning: "timeout of one vault call",
    },
    Setting {
        key: "bank131.base_url",
        meaning: "the bank or the sandbox: `https://`, or `http://` to a loopback address",
    },
    Setting {
        key: "bank131.allow_insecure_http",
        meaning: "allow `http://` to a non-loopback bank URL (development only; warned at every \
                  start)",
    },
    Setting {
        key: "bank131.ca_file",
        meaning: "PEM CA certificates the bank's certificate must chain to instead of the \
                  system's roots (the sandbox served by a test CA)",
    },
    Setting {
        key: "bank131.allowed_networks",
        meaning: "CIDR networks (e.g. the bank's published ranges) the bank's name may resolve \
                  to; unset, any public address. An internal address (loopback, private, \
                  link-local, metadata) is never used unless `base_url` names a loopback host or \
                  a network here holds it",
    },
    Setting {
        key: "bank131.project",
        meaning: "`X-PARTNER-PROJECT`",
    },
    Setting {
        key: "bank131.private_key_file",
        meaning: "partner RSA private key, PEM (at most 64 KiB): PKCS#1, PKCS#8, or encrypted \
                  PKCS#8 (`BEGIN ENCRYPTED PRIVATE KEY`, e.g. `openssl pkcs8 -topk8 -v2 \
                  aes-256-cbc`)",
    },
    Setting {
        key: "bank131.private_key_passphrase_file",
        meaning: "a file (mode 0600, as `private_key_file`) whose first line is the passphrase of \
                  an encrypted `private_key_file`; a missing or wrong one stops the start with an \
                  error naming this setting",
    },
    Setting {
        key: "bank131.bank_public_key_file",
        meaning: "the bank's RSA public key (2048+ bits), PEM: `PUBLIC KEY`, `RSA PUBLIC KEY` or \
                  the `CERTIFICATE` the bank hands out (its key is used; the certificate's dates \
                  and issuer are not checked, the file pins it)",
    },
    Setting {
        key: "bank131.api_version",
        meaning: "`v1` or `v2`",
    },
    Setting {
        key: "bank131.submerchant",
        meaning: "`X-PARTNER-SUBMERCHANT`",
    },
    Setting {
        key: "bank131.connect_timeout_ms",
        meaning: "timeout of opening a connection to the bank",
    },
    Setting {
        key: "bank131.request_timeout_ms",
        meaning: "a bank call past this has an unknown outcome and is reconciled with \
                  `session/status`",
    },
    Setting {
        key: "payouts.confirm_deadline_seconds",
        meaning: "manual mode: a payout not confirmed or cancelled by then is cancelled",
    },
    Setting {
        key: "payouts.reconcile_interval_ms",
        meaning: "how often due payouts are driven",
    },
    Setting {
        key: "payouts.stuck_after_ms",
        meaning: "a payout waiting on the bank this long is checked with `session/status` (a \
                  lost webhook). Also the lease a replica holds on a payout it drives: at least \
                  `bank131.connect_timeout_ms` + `bank131.request_timeout_ms` + 1000, or the \
                  proxy refuses to start",
    },
    Setting {
        key: "payouts.max_start_resends",
        meaning: "when the bank shows no payout after a start whose answer was lost, the start is \
                  re-sent with the **same** idempotency key (a session may hold several payouts, \
                  so a new key could pay twice) at most this often; then the session is cancelled \
                  and the payout stays `cancelling` with `needs_attention` for a person",
    },
    Setting {
        key: "payouts.retry_initial_ms",
        meaning: "first retry delay when the vault or bank is unavailable (doubles)",
    },
    Setting {
        key: "payouts.retry_max_ms",
        meaning: "longest retry delay",
    },
    Setting {
        key: "payouts.max_attempts",
        meaning: "before the start: then the payout fails (`vault_unreachable`, \
                  `vault_unavailable`, `bank_unavailable`); after it: then the payout is flagged \
                  `needs_attention` and still reconciled",
    },
    Setting {
        key: "payout_links.poll_interval_ms",
        meaning: "how often each open payout link's collect session is read at the vault \
                  (`GET /v1/collect_sessions/{id}`): how soon a submitted card is paid out and an \
                  expired link is closed. Each read is one request against the proxy's vault key \
                  (rate-limited and audited by the vault), so N open links cost N reads per \
                  interval. Also the lease a replica holds on a link it reads",
    },
    Setting {
        key: "webhooks.poll_interval_ms",
        meaning: "how often the outbox is polled for retries coming due (new events are sent at \
                  once; after a full batch it claims again at once)",
    },
    Setting {
        key: "webhooks.retry_initial_ms",
        meaning: "first redelivery delay (doubles)",
    },
    Setting {
        key: "webhooks.retry_max_ms",
        meaning: "longest redelivery delay",
    },
    Setting {
        key: "webhooks.max_attempts",
        meaning: "then the event is abandoned (kept in the outbox)",
    },
    Setting {
        key: "webhooks.timeout_ms",
        meaning: "timeout of one delivery",
    },
    Setting {
        key: "webhooks.concurrency",
        meaning: "deliveries in flight at once (1–1024), so a slow app endpoint holds up only its \
                  own events",
    },
    Setting {
        key: "webhooks.ca_file",
        meaning: "PEM CA certificates app webhook endpoints' certificates must chain to \
                  instead of the system's roots (development and tests)",
    },
    Setting {
        key: "webhooks.secret_key_file",
        meaning: "the key app webhook secrets are stored wrapped under (AES-256-GCM, bound to the \
                  client), so a reader of the database cannot sign a webhook; payout links' \
                  collect secrets are sealed under it too, and their rows tagged with a key \
                  derived from it (a link written or edited outside the proxy pays nothing). 64 \
                  hex digits, mode 0600 (at most 4 KiB), from `proxy webhooks keygen FILE`. \
                  Unset, the key is derived from `bank131.private_key_file` (HKDF): set this \
                  file before you ever rotate the partner key, or existing apps' secrets and open \
                  payout links no longer open. Secrets an older version stored in clear are \
                  wrapped at start",
    },
    Setting {
        key: "webhooks.allow_private_networks",
        meaning: "let app webhook URLs point at loopback, private, link-local or metadata \
                  addresses. Off, such a URL is refused by `clients create` and, checked again on \
                  the resolved address, never sent to. Development only (warned at every start)",
    },
];

const INTRO: &str = "
A TOML file, then `PROXY__SECTION__KEY` environment overrides (e.g.
`PROXY__VAULT__API_KEYS__ACME=vk_…`, `PROXY__BANK131__PROJECT=…`). `[vault]` and `[bank131]` are
required. Relative paths (the database, and every key file) resolve against the config file's
directory; every command names its database on its first line (stderr), and `clients list`,
`clients revoke` and `payouts resolve` refuse a database that does not exist instead of creating
one.
";

const EXAMPLE: &str = r#"
[vault]
url = "https://vault.internal:8200"
api_key_files = { acme = "/etc/proxy/vault-acme.key" }

[bank131]
base_url = "https://demo.bank131.ru"
project = "your-project"
private_key_file = "/etc/proxy/partner.pem"
bank_public_key_file = "/etc/proxy/bank131.pem"

[webhooks]
secret_key_file = "/etc/proxy/webhook-secrets.key"
"#;

/// Settings without a default.
const REQUIRED: &[&str] = &[
    "vault.url",
    "bank131.project",
    "bank131.private_key_file",
    "bank131.bank_public_key_file",
];

/// The proxy's part of the configuration reference.
///
/// # Errors
///
/// The defaults do not serialize (a bug).
pub fn reference() -> Result<Reference, serde_json::Error> {
    // The required settings filled with placeholders, so the rest shows its defaults.
    let minimal: ProxyConfig = serde_json::from_value(serde_json::json!({
        "vault": {"url": "https://vault.invalid"},
        "bank131": {
            "project": "p",
            "private_key_file": "partner.pem",
            "bank_public_key_file": "bank.pem",
        },
    }))?;
    Ok(Reference {
        service: "proxy",
        env_prefix: ENV_PREFIX,
        intro: INTRO,
        defaults: serde_json::to_value(minimal)?,
        required: REQUIRED,
        computed: vec![
            ("server.listen", format!("127.0.0.1:{DEFAULT_PORT}")),
            ("database.path", DEFAULT_DATABASE.to_owned()),
        ],
        settings: SETTINGS,
        example: EXAMPLE,
    })
}
