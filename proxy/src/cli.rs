//! The `proxy` command line. So far: `proxy bank131 sign|verify` for support work.
#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bank131::{RequestSigner, SignatureVerifier};

/// The payout proxy.
#[derive(Debug, Parser)]
#[command(name = "proxy", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bank 131 tools.
    Bank131 {
        #[command(subcommand)]
        command: Bank131Command,
    },
}

#[derive(Debug, Subcommand)]
enum Bank131Command {
    /// Print the X-PARTNER-SIGN value for the exact bytes of BODY_FILE (or standard input).
    Sign {
        /// The partner private key, PEM (PKCS#1 or PKCS#8).
        #[arg(long)]
        key: PathBuf,
        /// The body; standard input when absent.
        body: Option<PathBuf>,
    },
    /// Check a signature over the exact bytes of BODY_FILE (or standard input): prints `valid`
    /// and exits 0, or prints `invalid` and exits 1.
    Verify {
        /// The public key, PEM (SubjectPublicKeyInfo).
        #[arg(long)]
        key: PathBuf,
        /// The base64 signature (an X-PARTNER-SIGN value).
        #[arg(long)]
        signature: String,
        /// The body; standard input when absent.
        body: Option<PathBuf>,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bank131 {
            command: Bank131Command::Sign { key, body },
        } => {
            let signer = RequestSigner::from_pem_file(&key)?;
            println!("{}", signer.sign(&read_body(body.as_deref())?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bank131 {
            command:
                Bank131Command::Verify {
                    key,
                    signature,
                    body,
                },
        } => {
            let verifier = SignatureVerifier::from_pem_file(&key)?;
            if verifier.verify(&read_body(body.as_deref())?, &signature) {
                println!("valid");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("invalid");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The exact bytes: no trimming, no newline handling.
fn read_body(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(path) => Ok(std::fs::read(path)?),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            Ok(bytes)
        }
    }
}
