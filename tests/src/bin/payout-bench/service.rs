//! The release binaries the services come from. Running them (command lines, processes with
//! their logs, readiness) is `tests::stack`'s, shared with the end-to-end tests.

use std::path::PathBuf;

use anyhow::{Context, bail};

pub(crate) use tests::stack::{Process as Service, run_cli as cli};
/// The build command named when a binary is missing.
const BUILD: &str =
    "cargo build --release --bin vault --bin proxy --bin bank131-sandbox --bin payout-bench";

/// The release binaries next to this one.
#[derive(Debug)]
pub(crate) struct Binaries {
    pub(crate) dir: PathBuf,
    pub(crate) vault: PathBuf,
    pub(crate) proxy: PathBuf,
    pub(crate) sandbox: PathBuf,
}

impl Binaries {
    pub(crate) fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot locate this executable")?;
        let dir = exe
            .parent()
            .context("this executable has no parent directory")?
            .to_owned();
        let bins = Self {
            vault: dir.join("vault"),
            proxy: dir.join("proxy"),
            sandbox: dir.join("bank131-sandbox"),
            dir,
        };
        let missing: Vec<String> = [&bins.vault, &bins.proxy, &bins.sandbox]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing {}: build them first with `{BUILD}` (bench/payouts.sh does)",
                missing.join(", ")
            );
        }
        if bins.dir.file_name().is_none_or(|n| n != "release") {
            eprintln!(
                "payout-bench: warning: {} is not a release directory; numbers from debug builds \
                 mean little (`{BUILD}`)",
                bins.dir.display()
            );
        }
        Ok(bins)
    }
}
