//! The vault's HTTP API, in process on a real socket and a real SQLite file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod audit;
mod auth;
mod collect;
mod collect_browser;
mod crypto;
mod custody;
mod database;
mod flood;
mod helpers;
mod input;
mod keys;
mod oracle;
mod pci;
mod tokens;
