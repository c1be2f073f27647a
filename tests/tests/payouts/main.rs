//! End to end: the vault, the proxy and the Bank 131 sandbox as separate processes, driven the
//! way a platform would drive them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod bank_quirks;
mod boundary;
mod crash;
mod egress;
mod exactly_once;
mod faults;
mod flows;
mod inputs;
mod operations;
mod payout_link_browser;
mod payout_links;
mod pci;
mod stack;
