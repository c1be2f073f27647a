//! The services as processes, for the end-to-end tests (`tests/tests/payouts/`,
//! `tests/tests/replicas.rs`) and the payout bench: one way to start a binary with its output
//! in files, run its command line, wait for it to be ready and stop it, so that every user gets
//! readiness from the process itself ([`crate::ready`]) and the ends of its logs on every
//! failure.
//!
//! What differs between users (settings, how many replicas, which faults) stays with them: they
//! write the configuration files; this module runs what they configured.

use std::net::TcpListener;

use anyhow::{Context, anyhow};

mod process;
mod sandbox;

pub use process::{Process, run_cli};
pub use sandbox::{Sandbox, SandboxSpec};

/// A port free on loopback now (bound and released; the service binds it next).
///
/// # Errors
///
/// No port could be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("binding a free port")?
        .local_addr()?
        .port())
}

/// The value after `name` on the line that starts with it (the `api_key:` and `webhook_secret:`
/// lines `clients create` prints).
///
/// # Errors
///
/// No such line.
pub fn field(stdout: &str, name: &str) -> anyhow::Result<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| anyhow!("no `{name}` line in the output"))
}

/// `url` with `search_path` set to `schema` (PostgreSQL tests give each run its own schemas).
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}
