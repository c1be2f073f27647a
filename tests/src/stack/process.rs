//! One service process: started with its stdout and stderr in files, waited for by what it
//! says or serves, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::ready::{NotReady, READY_DEADLINE, describe_logs};

/// `bin --config <config>` with environment overrides.
fn configured(bin: &Path, config: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs a service's command line (`init`, `migrate`, `clients create`, `audit verify`) to the
/// end and returns its stdout.
///
/// # Errors
///
/// It could not start, or exited unsuccessfully (the error holds its stderr).
pub fn run_cli(
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
            "{} {}: {}: {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running service: its stdout in `<dir>/<name>.out`, its stderr (the log) in
/// `<dir>/<name>.log`. Killed (`SIGKILL`) and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd`.
    ///
    /// # Errors
    ///
    /// The files cannot be created or the process cannot start.
    pub fn spawn(cmd: &mut Command, name: impl Into<String>, dir: &Path) -> anyhow::Result<Self> {
        let name = name.into();
        let out = dir.join(format!("{name}.out"));
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name,
            child,
            out,
            log,
        })
    }

    /// Starts `bin --config <config> serve` (the vault, the proxy).
    ///
    /// # Errors
    ///
    /// As [`Process::spawn`].
    pub fn serve(
        bin: &Path,
        config: &Path,
        env: &[(String, String)],
        name: impl Into<String>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn(configured(bin, config, env).arg("serve"), name, dir)
    }

    /// Its name (the file names' stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file (stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The ends of its output and log, for a failure message.
    pub fn logs(&self) -> String {
        describe_logs(&[&self.out, &self.log])
    }

    /// An error with its logs when it has exited.
    ///
    /// # Errors
    ///
    /// It exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(anyhow!("{} exited ({status})\n{}", self.name, self.logs())),
            Err(e) => Err(anyhow!("cannot check on {}: {e}", self.name)),
        }
    }

    /// Waits until `url` answers 2xx (the deadline only bounds a hang; an exit fails at once).
    ///
    /// # Errors
    ///
    /// It exited, or did not come up within [`READY_DEADLINE`]; both with its logs.
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        let logs = [self.out.clone(), self.log.clone()];
        let logs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
        crate::ready::wait_healthy(http, url, &mut self.child, &logs)
            .await
            .map_err(|e| anyhow!("{}: {e}", self.name))
    }

    /// Waits until its stdout holds a whole line containing `needle`, and returns the line.
    ///
    /// # Errors
    ///
    /// It exited, or printed no such line within [`READY_DEADLINE`]; both with its logs.
    pub async fn wait_for_line(&mut self, needle: &str) -> anyhow::Result<String> {
        let (out, log) = (self.out.clone(), self.log.clone());
        crate::ready::wait_for_line(&mut self.child, &out, needle, &self.name, &[&out, &log])
            .await
            .map_err(|e: NotReady| anyhow!("{e}"))
    }

    /// Checks `ready` every `every` until it holds, failing at once when the process exits.
    ///
    /// # Errors
    ///
    /// It exited, or `ready` did not hold within [`READY_DEADLINE`]; both with its logs.
    pub async fn poll_until(
        &mut self,
        every: Duration,
        mut ready: impl AsyncFnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            self.check_alive()?;
            if ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready after {} s\n{}",
                    self.name,
                    READY_DEADLINE.as_secs(),
                    self.logs()
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `SIGKILL`, and waits for it: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `SIGTERM`, then waits for the exit (bounded by [`READY_DEADLINE`]).
    ///
    /// # Errors
    ///
    /// The signal could not be sent, or it did not exit in time.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} ignored SIGTERM\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
