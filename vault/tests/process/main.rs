//! The `vault` binary as a real process: the card-data boundary over everything it writes,
//! durability across `kill -9`, the command line, and shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod anchor;
mod boundary;
mod cli;
mod durability;
mod helpers;
mod key_providers;
mod scan;
mod tls;
