//! What each vault setting means, for the generated reference (`docs/CONFIGURATION.md`, see
//! `shared::reference`): the types give the keys and defaults, this table the explanations.

use shared::reference::{Reference, Setting};

use super::{DEFAULT_DATABASE, DEFAULT_PORT, ENV_PREFIX, VaultConfig};

const SETTINGS: &[Setting] = &[
    Setting {
        key: "mode",
        meaning: "`development` or `production`; production refuses to start (exit 78, one line \
                  per problem; `check` lists the same) on what only development should do: \
                  PostgreSQL without `sslmode=verify-full` or `verify-ca`, a plain-HTTP listener (`server.listen`, `collect.listen`) off loopback, \
                  `log.filter` at debug or trace, the master key in a file unless \
                  `keys.allow_file_provider`, a database whose keys were made in development \
                  mode, an active client holding `tokens:detokenize` bound to no client \
                  certificate, or such clients without `server.tls.client_ca_file`; `clients \
                  create` refuses an unbound detokenize client",
    },
    Setting {
        key: "keys.provider",
        meaning: "where the master key comes from: `file` (`keys.master_key_file`, for \
                  development), `shamir` (split into shares by `vault init`; `serve` starts \
                  sealed until `vault operator unseal` has enough) or `pkcs11` (an HSM; the key \
                  never leaves it)",
    },
    Setting {
        key: "keys.allow_file_provider",
        meaning: "in production mode, accept the file provider anyway (the startup log says so)",
    },
    Setting {
        key: "keys.master_key_file",
        meaning: "master key from `vault init` (file provider); must be mode 0600",
    },
    Setting {
        key: "keys.unseal_socket",
        meaning: "shamir provider: the Unix socket (mode 0600, the vault's own user) that \
                  `vault operator unseal`, `seal` and `status` talk to; never the API port",
    },
    Setting {
        key: "keys.pkcs11.module",
        meaning: "pkcs11 provider: the HSM's PKCS#11 library",
    },
    Setting {
        key: "keys.pkcs11.token_label",
        meaning: "pkcs11 provider: the label of the token holding the master key",
    },
    Setting {
        key: "keys.pkcs11.key_label",
        meaning: "pkcs11 provider: the label of the AES-256 key `vault init --provider pkcs11` \
                  makes (sensitive, not extractable)",
    },
    Setting {
        key: "keys.pkcs11.pin_file",
        meaning: "pkcs11 provider: a file (mode 0600) holding the token's user PIN",
    },
    Setting {
        key: "keys.approval_window_minutes",
        meaning: "dual control: how long a proposal (`vault keys destroy`, adding a third \
                  operator) waits for another operator's `vault approve` (1 to 10080)",
    },
    Setting {
        key: "keys.data_key_max_seals",
        meaning: "seals after which the data key in use is rotated automatically (1 to 2^32; \
                  AES-GCM with random nonces is safe for about 2^32 per key, so the default is \
                  far below); counted by every vault into the database each second",
    },
    Setting {
        key: "keys.data_key_max_age_days",
        meaning: "age after which the data key in use is rotated automatically: its \
                  cryptoperiod (1 to 3650)",
    },
    Setting {
        key: "keys.rewrap_in_background",
        meaning: "whether running vaults reseal tokens left under an older data key version \
                  by themselves (paced by the two settings below); false leaves it to `vault \
                  keys rewrap`",
    },
    Setting {
        key: "keys.rewrap_batch_size",
        meaning: "tokens the background rewrap job reseals under the active data key per \
                  transaction (1 to 10000), once a rotation left tokens under an older version",
    },
    Setting {
        key: "keys.rewrap_pause_ms",
        meaning: "pause between two rewrap batches, so the job leaves the database to requests",
    },
    Setting {
        key: "tokens.max_ttl_seconds",
        meaning: "largest `ttl_seconds` accepted (the default is 10 years)",
    },
    Setting {
        key: "tokens.sweep_interval_seconds",
        meaning: "how often expired tokens are deleted",
    },
    Setting {
        key: "limits.tokenize_per_second",
        meaning: "per client: tokenize requests a second, new and known cards alike",
    },
    Setting {
        key: "limits.tokenize_burst",
        meaning: "per client: tokenize requests at once above the rate",
    },
    Setting {
        key: "limits.read_per_second",
        meaning: "per client: token reads a second",
    },
    Setting {
        key: "limits.read_burst",
        meaning: "per client: token reads at once above the rate",
    },
    Setting {
        key: "limits.detokenize_per_second",
        meaning: "per client: detokenizes a second (raise it for a proxy paying out faster)",
    },
    Setting {
        key: "limits.detokenize_burst",
        meaning: "per client: detokenizes at once above the rate",
    },
    Setting {
        key: "limits.collect_submit_per_second",
        meaning: "per source address (IPv6: per /64): card submissions through hosted card \
                  forms a second, accepted or not (the form is public, so this is what keeps it \
                  from being an oracle)",
    },
    Setting {
        key: "limits.collect_submit_burst",
        meaning: "per source address: card form submissions at once above the rate",
    },
    Setting {
        key: "limits.collect_page_per_second",
        meaning: "per source address: card form page loads (`GET /collect/{id}`, one database \
                  read each) a second; beyond, 429 with `Retry-After`",
    },
    Setting {
        key: "limits.collect_page_burst",
        meaning: "per source address: card form page loads at once above the rate",
    },
    Setting {
        key: "limits.trusted_proxies",
        meaning: "load balancers or TLS terminators in front of the vault (addresses or networks, \
                  e.g. [\"10.0.0.0/8\"]): from these peers the source address of the per-address \
                  limits is the nearest address in `X-Forwarded-For` that is not itself one of \
                  them; empty (the default), the header is ignored and every request's source \
                  is its TCP peer, so behind a proxy list it here or all cardholders share one \
                  bucket",
    },
    Setting {
        key: "collect.public_url",
        meaning: "the vault's origin as cardholders' browsers reach it (`https://vault.example`): \
                  the base of each collect session's `url` and the only `Origin` a card form \
                  submission is accepted from; unset, the form's listen address (`collect.listen`, else \
                  `server.listen`) over `https` when `[server.tls]` is set, `http` otherwise",
    },
    Setting {
        key: "collect.listen",
        meaning: "a second address serving only the card form (`/collect/…`, `/collect.js`, \
                  `/healthz`), to face cardholders' browsers while the API (detokenize, \
                  `/metrics`) stays on `server.listen` inside the network; unset, the form is \
                  served on `server.listen`. `collect.public_url` then names this listener (as \
                  the browser reaches it) and defaults to it",
    },
    Setting {
        key: "collect.retention_seconds",
        meaning: "how long a collect session is kept after it expires, completed or not \
                  (3600 to 2592000: at least an hour, since a card may come in just before expiry and the platform must read it within this time); then \
                  the sweeper deletes it with its token reference, last four digits and name, \
                  audited as `collect.expire` (the token itself stays)",
    },
    Setting {
        key: "limits.unauthenticated_per_second",
        meaning: "per source address (IPv6: per /64): failed authentications a second; beyond \
                  it they get 429 instead of 401; a valid key is never limited by it",
    },
    Setting {
        key: "limits.unauthenticated_burst",
        meaning: "per source address: failed authentications at once above the rate",
    },
    Setting {
        key: "limits.report_interval_seconds",
        meaning: "how often refusals are written to the audit log as aggregated events (and at \
                  shutdown)",
    },
    Setting {
        key: "limits.max_tracked_addresses",
        meaning: "source addresses tracked at once; beyond, new ones share one bucket and one \
                  count",
    },
    Setting {
        key: "audit.checkpoint_file",
        meaning: "a file the vault appends an authenticated checkpoint of the audit head to \
                  (docs/OPERATIONS.md, audit anchoring); `serve` refuses to start when the chain \
                  no longer holds the newest one",
    },
    Setting {
        key: "audit.checkpoint_interval_seconds",
        meaning: "how often a checkpoint is written (when the head moved), besides one at \
                  shutdown",
    },
];

const INTRO: &str = "
`vault` reads an optional TOML file (`--config`), then environment variables
`VAULT__SECTION__KEY` override single settings (e.g. `VAULT__SERVER__LISTEN=0.0.0.0:8200`).
Relative paths (and the default `vault.db` and `master.key`) resolve against the config file's
directory, not the shell's, so a command run from elsewhere uses the same files; without a config
file they resolve against the working directory. Every command names the database and master key
it uses on its first line (stderr), and `clients list`, `clients revoke` and `audit …` refuse a
database that does not exist instead of creating one.
";

const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8200"

[database]
path = "/var/lib/vault/vault.db"

[keys]
master_key_file = "/etc/vault/master.key"

[log]
format = "json"
"#;

/// The vault's part of the configuration reference.
///
/// # Errors
///
/// The defaults do not serialize (a bug).
pub fn reference() -> Result<Reference, serde_json::Error> {
    Ok(Reference {
        service: "vault",
        env_prefix: ENV_PREFIX,
        intro: INTRO,
        defaults: serde_json::to_value(VaultConfig::default())?,
        required: &[],
        computed: vec![
            ("server.listen", format!("127.0.0.1:{DEFAULT_PORT}")),
            ("database.path", DEFAULT_DATABASE.to_owned()),
        ],
        settings: SETTINGS,
        example: EXAMPLE,
    })
}
