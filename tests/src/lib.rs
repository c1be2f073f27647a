//! End-to-end test helpers: [`stack`] runs the vault, the proxy and the Bank 131 sandbox as
//! separate processes for the end-to-end tests and the payout bench, with readiness from the
//! processes ([`ready`]); the vault's own process-level tests are in `vault/tests/`.
//!
//! [`sandbox`] is the Bank 131 emulator (library and the `bank131-sandbox` binary); see
//! `tests/SANDBOX.md`. [`devstack`] is the one-command local stack.
#![forbid(unsafe_code)]

pub mod devstack;
pub mod ready;
pub mod sandbox;
pub mod stack;

/// Canary card numbers for boundary tests: well-known test PANs of several brands and lengths.
pub const CANARY_PANS: &[&str] = &[
    "4242424242424242",
    "5555555555554444",
    "2200000000000004",
    "378282246310005",
    "6200000000000005",
];
