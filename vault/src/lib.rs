//! The card vault: the only place a card number rests.
//!
//! A PAN goes in ([`service::Vault::tokenize`]), a random token comes out; only an
//! authenticated client holding `tokens:detokenize`, in the token's tenant, can get the PAN back,
//! and only after the access is durably audited.
//!
//! Layout: [`crypto`] (key hierarchy, AES-256-GCM), [`token`] (token, client id and API key
//! formats), [`store`] (the storage trait, SQLite and PostgreSQL), [`audit`] (the HMAC-chained
//! log, its head check and checkpoints), [`auth`] (clients, scopes, row MACs), [`limits`] (rate
//! limits and refusal tallies), [`clock`] (time as stored: Unix µs), [`service`] (the operations), [`http`] (routes and the error
//! mapping), [`config`], [`startup`] (serving, shutdown, background work) and [`cli`].
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod config;
pub mod crypto;
pub mod http;
pub mod limits;
pub mod service;
pub mod startup;
pub mod store;
pub mod token;
