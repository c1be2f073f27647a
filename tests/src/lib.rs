//! End-to-end test helpers. The scenarios that drive the vault, the proxy and the Bank 131 sandbox
//! together as separate processes will live here (`spawn_vault`, `spawn_proxy`,
//! `spawn_sandbox`); the vault's own process-level tests are in `vault/tests/`.
//!
//! [`sandbox`] is the Bank 131 emulator (library and the `bank131-sandbox` binary); see
//! `tests/SANDBOX.md`.
#![forbid(unsafe_code)]

pub mod devstack;
pub mod ready;
pub mod sandbox;

/// Canary card numbers for boundary tests: well-known test PANs of several brands and lengths.
pub const CANARY_PANS: &[&str] = &[
    "4242424242424242",
    "5555555555554444",
    "2200000000000004",
    "378282246310005",
    "6200000000000005",
];
