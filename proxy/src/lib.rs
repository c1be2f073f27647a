//! The payout proxy: token-based card payouts through Bank 131 for applications outside the
//! card-data environment. So far: the Bank 131 client ([`bank131`]) and the support command line
//! ([`cli`]).
#![forbid(unsafe_code)]

pub mod auth;
pub mod bank131;
pub mod cli;
pub mod config;
pub mod egress;
pub mod engine;
pub mod http;
pub mod outbox;
pub mod payout;
pub mod resolve;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod vault_client;
pub mod view;
