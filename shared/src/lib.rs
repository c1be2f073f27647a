//! What both services need, and nothing else.
//!
//! - [`Pan`]: the card number as a secret type. The only constructor parses (digits, length,
//!   Luhn); the digits are zeroized on drop; `Debug`/`Display` show `****4242`; there is no
//!   `Serialize`, so a PAN cannot reach JSON by accident.
//! - [`card`]: brand detection from the BIN and masking helpers.
//! - [`scan`]: the PAN scanner every boundary test uses: finds Luhn-valid runs of 13–19 digits in
//!   bytes or text and reports offsets and masked values only.
//! - [`error_body`]: the JSON error body both services answer with; [`http`]: the HTTP edge
//!   every request passes (deadline, headers, fallbacks, access log, `/healthz`).
//! - [`telemetry`]: tracing setup and a panic hook that never prints panic payloads.
//! - [`secret`]: secret strings, all `secrecy::SecretString`; [`ct`]: constant-time equality for
//!   MACs, key hashes and secrets; [`scopes`]: a client's set
//!   of permissions, whichever service's names.
//! - [`ids`]: random prefixed ids and API keys; [`sqlite`] and [`postgres`]: the durable
//!   storage set-ups both services use; [`row`]: a row of either backend read one way, so each
//!   store maps rows to domain values once; [`store_error`]: what each store's error converts
//!   from, whichever backend failed.
//! - [`config`]: loading and checking configuration (values never echoed); [`reference`]: the
//!   configuration reference generated from the configuration types; [`json`]: decoding
//!   that never echoes input; [`files`]: owner-only secret files; [`server`]: the accept loop
//!   with its timers and limits.
#![forbid(unsafe_code)]

pub mod card;
pub mod config;
pub mod ct;
pub mod error_body;
pub mod files;
pub mod http;
pub mod ids;
pub mod json;
pub mod pan;
pub mod postgres;
pub mod reference;
pub mod row;
pub mod scan;
pub mod scopes;
pub mod secret;
pub mod server;
pub mod sqlite;
pub mod store_error;
pub mod telemetry;

pub use card::Brand;
pub use pan::{Pan, PanError};
