//! The Bank 131 sandbox as a process, with a fresh partner key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::Process;

/// How to start the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// `X-PARTNER-PROJECT`.
    pub project: String,
    /// Where its webhooks go.
    pub webhook_url: String,
    /// The port to listen on (loopback).
    pub port: u16,
    /// Further flags (`--fault`, delays, `--log`...).
    pub flags: Vec<String>,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The process.
    pub process: Process,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The partner's private key (PEM), for the proxy's `bank131.private_key_file`.
    pub partner_key: PathBuf,
    /// The bank's public key (PEM) the sandbox wrote, for `bank131.bank_public_key_file`.
    pub bank_key: PathBuf,
}

impl Sandbox {
    /// Writes a partner key pair into `dir`, starts `bin` and waits until it has written the
    /// bank's public key (it prints the path once it has, and listens) and answers its health
    /// check.
    ///
    /// # Errors
    ///
    /// A key could not be made or written, or the sandbox did not come up (with its logs).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        spec: &SandboxSpec,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let (private, public) =
            crate::sandbox::generate_rsa_keypair_pem().context("generating the partner key")?;
        let partner_key = dir.join("partner.pem");
        let partner_public = dir.join("partner.pub.pem");
        let bank_key = dir.join("bank.pub.pem");
        super::write_secret(&partner_key, private)?;
        std::fs::write(&partner_public, public)?;
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &format!("127.0.0.1:{}", spec.port)])
            .args(["--project-id", &spec.project])
            .arg("--partner-public-key")
            .arg(&partner_public)
            .arg("--bank-public-key-out")
            .arg(&bank_key)
            .args(["--webhook-url", &spec.webhook_url])
            .args(&spec.flags);
        let mut process = Process::spawn(&mut cmd, "sandbox", dir)?;
        process
            .wait_for_line("BANK131_SANDBOX_BANK_PUBLIC_KEY=")
            .await?;
        let url = format!("http://127.0.0.1:{}", spec.port);
        process
            .wait_healthy(http, &format!("{url}/__sandbox/health"))
            .await?;
        Ok(Self {
            process,
            url,
            partner_key,
            bank_key,
        })
    }
}
