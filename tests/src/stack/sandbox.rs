//! The Bank 131 sandbox as a process, with a fresh partner key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::Process;

/// The partner's public key, beside its private key in the stack's directory.
const PARTNER_PUBLIC: &str = "partner.pub.pem";

/// How to start the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// `X-PARTNER-PROJECT`.
    pub project: String,
    /// Where its webhooks go.
    pub webhook_url: String,
    /// The port to listen on (loopback).
    pub port: u16,
    /// Further flags (`--fault`, delays, `--log`...; `--tls-cert` makes it `https`).
    pub flags: Vec<String>,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The process (`None` only between a kill and its restart).
    process: Option<Process>,
    /// `http://127.0.0.1:<port>` (`https://` with `--tls-cert`).
    pub url: String,
    /// The partner's private key (PEM), for the proxy's `bank131.private_key_file`.
    pub partner_key: PathBuf,
    /// The bank's public key (PEM) the sandbox wrote, for `bank131.bank_public_key_file`.
    pub bank_key: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
    spec: SandboxSpec,
    runs: usize,
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
        let partner_public = dir.join(PARTNER_PUBLIC);
        let bank_key = dir.join("bank.pub.pem");
        super::write_secret(&partner_key, private)?;
        std::fs::write(&partner_public, public)?;
        let mut sandbox = Self {
            process: None,
            url: format!(
                "{}://127.0.0.1:{}",
                if spec.flags.iter().any(|f| f == "--tls-cert") {
                    "https"
                } else {
                    "http"
                },
                spec.port
            ),
            partner_key,
            bank_key,
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            spec: spec.clone(),
            runs: 0,
        };
        sandbox.launch(http).await?;
        Ok(sandbox)
    }

    /// The running process, for a caller that keeps only it.
    pub fn into_process(mut self) -> Process {
        self.process
            .take()
            .unwrap_or_else(|| unreachable!("a Sandbox exists only once launched"))
    }

    /// Kills the sandbox with SIGKILL (so nothing is written on the way out) and starts it again
    /// with the same keys and port and these `flags` in place of the first run's, waiting as
    /// [`Sandbox::start`] does.
    ///
    /// # Errors
    ///
    /// It did not come up again (with its logs).
    pub async fn restart(
        &mut self,
        http: &reqwest::Client,
        flags: Vec<String>,
    ) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
        self.spec.flags = flags;
        self.launch(http).await
    }

    async fn launch(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        self.runs += 1;
        let spec = &self.spec;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--listen", &format!("127.0.0.1:{}", spec.port)])
            .args(["--project-id", &spec.project])
            .arg("--partner-public-key")
            .arg(self.dir.join(PARTNER_PUBLIC))
            .arg("--bank-public-key-out")
            .arg(&self.bank_key)
            .args(["--webhook-url", &spec.webhook_url])
            .args(&spec.flags);
        // Each run its own log, so a restart keeps the first run's for the failure message.
        let name = match self.runs {
            1 => "sandbox".to_owned(),
            n => format!("sandbox-{n}"),
        };
        let process = self
            .process
            .insert(Process::spawn(&mut cmd, name, &self.dir)?);
        process
            .wait_for_line("BANK131_SANDBOX_BANK_PUBLIC_KEY=")
            .await?;
        process
            .wait_healthy(http, &format!("{}/__sandbox/health", self.url))
            .await
    }
}
