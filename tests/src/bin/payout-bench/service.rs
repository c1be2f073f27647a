//! One service process: the release binaries the services come from, a service's command line
//! (`--config` plus environment overrides), and a running service with its log, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// How long a service gets to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
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

/// `bin --config <config>` with the `NAME=VALUE` environment overrides.
fn configured(bin: &Path, config: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs a service's command line (`init`, `migrate`, `clients create`) and returns its stdout.
pub(crate) fn cli(
    bin: &Path,
    config: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> anyhow::Result<String> {
    let out = configured(bin, config, env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {} {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One service process, killed on drop.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `cmd` with its stdout in `<dir>/<name>.out` and its stderr (the log) in
    /// `<dir>/<name>.log`.
    pub(crate) fn spawn(cmd: &mut Command, name: &'static str, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(dir.join(format!("{name}.out")))?;
        let err = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        Ok(Self { name, child, log })
    }

    /// Starts `bin --config <config> serve` (the vault, the proxy).
    pub(crate) fn serve(
        bin: &Path,
        config: &Path,
        env: &[(String, String)],
        name: &'static str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn(configured(bin, config, env).arg("serve"), name, dir)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error naming the log when the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(anyhow!(
                "the {} exited ({status}); see {}",
                self.name,
                self.log.display()
            )),
            Err(e) => Err(anyhow!("cannot check on the {}: {e}", self.name)),
        }
    }

    /// Checks `ready` every `every` until it holds (true) or the startup timeout passes (false),
    /// failing early when the process exits.
    pub(crate) async fn poll_until(
        &mut self,
        every: Duration,
        mut ready: impl AsyncFnMut() -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            self.check_alive()?;
            if ready().await {
                return Ok(true);
            }
            tokio::time::sleep(every).await;
        }
        Ok(false)
    }

    /// Waits until `url` answers 2xx, failing early when the service exits.
    pub(crate) async fn wait_up(
        &mut self,
        http: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<()> {
        let up = async || {
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        };
        if !self.poll_until(Duration::from_millis(30), up).await? {
            bail!(
                "the {} did not come up at {url}; see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
