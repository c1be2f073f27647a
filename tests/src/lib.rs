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
