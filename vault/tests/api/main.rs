//! The vault's HTTP API, in process on a real socket and a real SQLite file.

mod audit;
mod auth;
mod crypto;
mod helpers;
mod input;
mod tokens;
