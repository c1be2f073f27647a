//! Waiting for a child process to be ready, the way a loaded 2-core CI machine needs it.
//!
//! Readiness comes from the process itself: a line it prints, or its health endpoint answering.
//! The deadline is generous ([`READY_DEADLINE`]) because it only bounds a hang: a process that
//! exits instead of coming up fails the wait at once, and every failure shows the end of the
//! child's logs, so a slow start never turns into a mystery.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// How long a process may take to come up before the test gives up on it. Long on purpose: on a
/// loaded 2-core machine a whole test suite runs beside it, and a process that dies is reported
/// at once anyway.
pub const READY_DEADLINE: Duration = Duration::from_secs(180);

/// How often the process's output or health endpoint is looked at.
const POLL: Duration = Duration::from_millis(25);

/// The last `chars` characters of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, chars: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

/// The ends of `logs`, each under its file name, for a failure message.
pub fn describe_logs(logs: &[&Path]) -> String {
    logs.iter()
        .map(|p| format!("--- {} ---\n{}", p.display(), log_tail(p, 4000)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a wait failed.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The process exited first.
    #[error("{what} exited ({status}) before it was ready\n{logs}")]
    Exited {
        /// What was waited for.
        what: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The ends of its logs.
        logs: String,
    },
    /// The deadline passed.
    #[error("{what} was not ready after {secs} s\n{logs}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline, in seconds.
        secs: u64,
        /// The ends of its logs.
        logs: String,
    },
}

fn check_alive(child: &mut Child, what: &str, logs: &[&Path]) -> Result<(), NotReady> {
    match child.try_wait() {
        Ok(Some(status)) => Err(NotReady::Exited {
            what: what.to_owned(),
            status,
            logs: describe_logs(logs),
        }),
        _ => Ok(()),
    }
}

fn timeout(what: &str, logs: &[&Path]) -> NotReady {
    NotReady::Timeout {
        what: what.to_owned(),
        secs: READY_DEADLINE.as_secs(),
        logs: describe_logs(logs),
    }
}

/// Waits until `file` (the child's output) holds a line containing `needle`, and returns that
/// line.
///
/// # Errors
///
/// The child exited first, or [`READY_DEADLINE`] passed; both carry the ends of `logs`.
pub async fn wait_for_line(
    child: &mut Child,
    file: &Path,
    needle: &str,
    what: &str,
    logs: &[&Path],
) -> Result<String, NotReady> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Only whole lines: the process may be half-way through writing one.
        if let Some(line) = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .find(|l| l.contains(needle))
        {
            return Ok(line.trim_end().to_owned());
        }
        check_alive(child, what, logs)?;
        if Instant::now() > deadline {
            return Err(timeout(what, logs));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `url` answers 2xx.
///
/// # Errors
///
/// The child exited first, or [`READY_DEADLINE`] passed; both carry the ends of `logs`.
pub async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    child: &mut Child,
    logs: &[&Path],
) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        check_alive(child, url, logs)?;
        if Instant::now() > deadline {
            return Err(timeout(url, logs));
        }
        tokio::time::sleep(POLL).await;
    }
}
