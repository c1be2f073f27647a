//! The payout proxy: token-based card payouts through Bank 131 for applications outside the
//! card-data environment. An app sends a vault token; the proxy fetches the card from the vault,
//! drives the bank's session to a final state exactly once, and tells the app by signed webhook.
//!
//! - [`http`]: the app API and the bank's webhook receiver, over [`service`], the operations
//!   (the only way the routes reach the engine and the store); [`auth`]: app clients and scopes; [`view`]:
//!   what apps see of a payout.
//! - [`engine`]: the payout state machine and its driver; [`payout`]: the payout as stored;
//!   [`ids`]: payout, payout link and app client ids.
//! - [`link`]: the payout link as stored; [`links`]: opening links at the vault, and the poller
//!   that pays each completed one exactly once.
//! - [`bank131`]: the signed Bank 131 client; [`vault_client`]: detokenize and collect sessions
//!   over HTTP.
//! - [`store`]: SQLite and PostgreSQL; [`outbox`]: app webhook delivery; [`resolve`]: payouts
//!   a person closes by hand; [`egress`]: where outbound requests may go; [`secrets`]: webhook
//!   secrets sealed at rest.
//! - [`config`], [`startup`], [`cli`]: configuration, building and running the proxy, and the
//!   commands.
#![forbid(unsafe_code)]

pub mod auth;
pub mod bank131;
pub mod cli;
pub mod config;
pub mod egress;
pub mod engine;
pub mod http;
pub mod ids;
pub mod link;
pub mod links;
pub mod outbox;
pub mod payout;
pub mod resolve;
pub mod secrets;
pub mod service;
pub mod startup;
pub mod store;
pub mod upstream_tls;
pub mod vault_client;
pub mod view;
