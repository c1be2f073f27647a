//! A real browser for end-to-end tests: headless Chromium driven over WebDriver with
//! `fantoccini`, one [`Browser`] per test (its own chromedriver on its own port, its own profile
//! directory), so browser tests run in parallel like the rest.
//!
//! [`launch`] finds `chromedriver` and Chromium (the `CHROMEDRIVER` and `CHROMIUM` variables, or
//! `PATH`). When either is missing the test is skipped with one visible `SKIPPED:` line on stderr
//! and `Ok(None)`, so `cargo test` still passes on a machine without a browser; with
//! `REQUIRE_BROWSER=1` (CI sets it) a missing browser is an error instead, so CI can never pass
//! by skipping them all.
//!
//! chromedriver is ready when it says so on its stdout ("started successfully"), never after a
//! fixed sleep; [`DEADLINE`] only bounds a hang, and a failure shows the end of its output. It
//! picks no port of its own, so it gets a free one from port 0 and is started again on the rare
//! collision. It is killed when the [`Browser`] is dropped, so a failed test leaves no driver
//! behind; [`Browser::close`] also ends the WebDriver session, which closes Chromium.
//!
//! What fantoccini does not cover goes to chromedriver's own endpoints over plain HTTP:
//! `goog/cdp/execute` (a DevTools command, for [`Browser::set_viewport`]) and the legacy
//! `se/log` (the console and the network log). chromedriver empties a log when it is read, so the
//! [`Browser`] keeps every entry it has read and each call returns the whole log so far.
#![allow(
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long chromedriver may take to say it is ready and to open a session: a hang guard, far
/// above the second or two either takes, so a slow CI machine is never the reason a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What to run to get the browser tests on Debian, in every message about a missing browser.
pub const INSTALL: &str = "apt-get install chromium chromium-driver";

/// How many ports chromedriver is tried on: another process may take the free port between our
/// releasing it and chromedriver binding it.
const PORT_ATTEMPTS: usize = 5;

/// How many lines of chromedriver's output are kept for error messages.
const OUTPUT_LINES: usize = 200;

/// Where the browser is looked for: [`Lookup::from_env`] in tests, an explicit value in the
/// tests of the lookup itself, which then need not change the process's environment (other
/// tests in the same binary read it concurrently).
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// `CHROMEDRIVER`: the chromedriver to run, instead of looking in `path`.
    pub chromedriver: Option<PathBuf>,
    /// `CHROMIUM`: the browser binary, instead of looking in `path` for `chromium`,
    /// `chromium-browser` or `google-chrome`.
    pub chromium: Option<PathBuf>,
    /// `PATH`.
    pub path: Option<OsString>,
    /// `REQUIRE_BROWSER=1`: a missing browser fails the test instead of skipping it.
    pub require: bool,
}

impl Lookup {
    /// The lookup the process's environment asks for.
    pub fn from_env() -> Self {
        Self {
            chromedriver: std::env::var_os("CHROMEDRIVER").map(PathBuf::from),
            chromium: std::env::var_os("CHROMIUM").map(PathBuf::from),
            path: std::env::var_os("PATH"),
            require: std::env::var_os("REQUIRE_BROWSER").is_some_and(|v| v == "1"),
        }
    }

    /// chromedriver and Chromium, or why either is missing.
    fn find(&self) -> Result<(PathBuf, PathBuf), String> {
        let driver = self.binary(
            "CHROMEDRIVER",
            self.chromedriver.as_deref(),
            &["chromedriver"],
        )?;
        let chromium = self.binary(
            "CHROMIUM",
            self.chromium.as_deref(),
            &["chromium", "chromium-browser", "google-chrome"],
        )?;
        Ok((driver, chromium))
    }

    fn binary(
        &self,
        variable: &str,
        chosen: Option<&Path>,
        names: &[&str],
    ) -> Result<PathBuf, String> {
        if let Some(path) = chosen {
            return if is_executable(path) {
                Ok(path.to_path_buf())
            } else {
                Err(format!(
                    "{variable} names {}, which is not an executable file",
                    path.display()
                ))
            };
        }
        let dirs: Vec<PathBuf> = self
            .path
            .as_deref()
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        names
            .iter()
            .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| format!("no {} on PATH", names.join(" or ")))
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why a browser could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// chromedriver or Chromium is missing and `REQUIRE_BROWSER=1` forbids skipping.
    #[error("{reason}, and REQUIRE_BROWSER=1 asks for the browser tests: {INSTALL}")]
    Missing {
        /// Which binary is missing.
        reason: String,
    },
    /// The profile directory could not be made, or chromedriver could not be started.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// chromedriver exited or hung before it said it was ready.
    #[error("chromedriver was not ready: {problem}; its output ends:\n{output}")]
    NotReady {
        /// Exited (with its status), or the deadline passed.
        problem: String,
        /// The end of its stdout and stderr.
        output: String,
    },
    /// chromedriver opened no session: most often Chromium failed to start.
    #[error("chromedriver opened no browser session: {source}; its output ends:\n{output}")]
    Session {
        /// fantoccini's error.
        source: NewSessionError,
        /// The end of chromedriver's stdout and stderr.
        output: String,
    },
    /// A WebDriver command failed (or [`Browser::wait_for`] ran out of time).
    #[error("WebDriver command failed: {0}")]
    Command(#[from] CmdError),
    /// A chromedriver extension endpoint (`goog/cdp/execute`, `se/log`) failed.
    #[error("chromedriver's {endpoint} failed: {problem}")]
    Endpoint {
        /// The endpoint, relative to the session.
        endpoint: &'static str,
        /// The transport error, or the error chromedriver answered.
        problem: String,
    },
    /// A screenshot could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// [`launch_with`] the lookup the environment asks for: a test starts with
/// `let Some(browser) = launch().await? else { return Ok(()) };` (or `.unwrap()`).
///
/// # Errors
///
/// As [`launch_with`].
pub async fn launch() -> Result<Option<Browser>, BrowserError> {
    launch_with(&Lookup::from_env()).await
}

/// A fresh headless Chromium under its own chromedriver, or `Ok(None)` (after one `SKIPPED:`
/// line on stderr) when either is missing and `lookup.require` is false.
///
/// # Errors
///
/// [`BrowserError::Missing`] when either is missing and `lookup.require` is set; otherwise
/// chromedriver failing to start or to open a session, with the end of its output.
pub async fn launch_with(lookup: &Lookup) -> Result<Option<Browser>, BrowserError> {
    launch_with_args(lookup, &[]).await
}

/// [`launch`] for pages served with a test CA's certificate: certificates whose public key has
/// one of these SHA-256 hashes (base64, [`crate::tls::Issued::spki_sha256_base64`]) are
/// accepted, and every other certificate error still stops the page.
///
/// # Errors
///
/// As [`launch_with`].
pub async fn launch_trusting(spki_sha256: &[String]) -> Result<Option<Browser>, BrowserError> {
    let arg = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_sha256.join(",")
    );
    launch_with_args(&Lookup::from_env(), &[arg]).await
}

async fn launch_with_args(
    lookup: &Lookup,
    extra_args: &[String],
) -> Result<Option<Browser>, BrowserError> {
    let (driver_path, chromium) = match lookup.find() {
        Ok(found) => found,
        Err(reason) if lookup.require => return Err(BrowserError::Missing { reason }),
        Err(reason) => {
            skipped(&reason);
            return Ok(None);
        }
    };
    let profile = tempfile::Builder::new()
        .prefix("testkit-chromium-")
        .tempdir()
        .map_err(|source| BrowserError::Io {
            what: "make a Chromium profile directory",
            source,
        })?;
    let driver = Driver::start(&driver_path).await?;
    let client = match tokio::time::timeout(
        DEADLINE,
        connect(&driver.url, &chromium, &profile, extra_args),
    )
    .await
    {
        Ok(Ok(client)) => client,
        Ok(Err(source)) => {
            return Err(BrowserError::Session {
                source,
                output: driver.output(),
            });
        }
        Err(_) => {
            return Err(BrowserError::NotReady {
                problem: format!("no session within {DEADLINE:?}"),
                output: driver.output(),
            });
        }
    };
    // chromedriver always names the session it opened; an empty id would only make the
    // extension endpoints answer "invalid session id", which names the problem.
    let session = client.session_id().await?.unwrap_or_default();
    Ok(Some(Browser {
        client,
        session,
        http: reqwest::Client::new(),
        console: Mutex::default(),
        network: Mutex::default(),
        driver,
        _profile: profile,
    }))
}

/// The skip line, written to /dev/stderr past the test harness's capture so that it is seen
/// even when the test passes.
fn skipped(reason: &str) {
    use std::io::Write;
    let line = format!(
        "SKIPPED: {reason} (install chromium and chromium-driver to run the browser tests: {INSTALL})"
    );
    let shown = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/stderr")
        .and_then(|mut e| writeln!(e, "{line}"));
    if shown.is_err() {
        eprintln!("{line}");
    }
}

/// The capabilities: headless Chromium on a fresh profile, nothing running in the background
/// that would add requests to the network log or make a run differ from the next, and every
/// console and network event logged.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    extra_args: &[String],
) -> serde_json::Map<String, Value> {
    let mut caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                // Tests run as root in CI, where Chromium's sandbox refuses to start.
                "--no-sandbox",
                "--disable-gpu",
                // /dev/shm is small in containers; Chromium crashes on big pages there.
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
    });
    if let Some(args) = caps["goog:chromeOptions"]["args"].as_array_mut() {
        args.extend(extra_args.iter().map(|a| Value::from(a.as_str())));
    }
    match caps {
        Value::Object(map) => map,
        // json! of an object literal is an object.
        _ => serde_json::Map::new(),
    }
}

async fn connect(
    url: &str,
    chromium: &Path,
    profile: &TempDir,
    extra_args: &[String],
) -> Result<Client, NewSessionError> {
    ClientBuilder::rustls()
        .map_err(NewSessionError::Lost)?
        .capabilities(capabilities(chromium, profile.path(), extra_args))
        .connect(url)
        .await
}

/// One test's headless Chromium. Dropping it kills chromedriver; [`Browser::close`] first ends
/// the session, so Chromium exits too.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    session: String,
    /// For chromedriver's extension endpoints, which fantoccini has no call for.
    http: reqwest::Client,
    console: Mutex<Vec<String>>,
    network: Mutex<Vec<String>>,
    // Dropped after the client, so Chromium is gone before its profile is removed.
    driver: Driver,
    _profile: TempDir,
}

impl Browser {
    /// The WebDriver client: `goto`, `find`, `execute`, `enter_frame` and the rest.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The page's layout viewport is `width` × `height` CSS pixels at one device pixel per CSS
    /// pixel, as on a small phone when `width` is 320, until the tab closes (it holds across
    /// navigations).
    ///
    /// Done with the DevTools `Emulation.setDeviceMetricsOverride`, not by resizing the window:
    /// a window cannot be made narrower than Chromium's minimum width, and a window's size is
    /// not its viewport's. `mobile` is off, so the layout viewport is exactly `width` whether or
    /// not the page has a `<meta name="viewport">` (in mobile mode a page without one is laid
    /// out 980 pixels wide and scaled down).
    ///
    /// # Errors
    ///
    /// chromedriver refuses the command.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await
        .map(drop)
    }

    /// Runs the DevTools command `cmd` with `params` in the current tab, through chromedriver's
    /// `goog/cdp/execute`, and returns its result.
    ///
    /// # Errors
    ///
    /// chromedriver or DevTools refuses the command.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, BrowserError> {
        self.extension("goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    /// A PNG of the viewport, written to `path` (its parent directories made first).
    ///
    /// # Errors
    ///
    /// The screenshot fails or the file cannot be written.
    pub async fn screenshot_to(&self, path: &Path) -> Result<(), BrowserError> {
        let png = self.client.screenshot().await?;
        let write = |source| BrowserError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(path, png).map_err(write)
    }

    /// The console so far, one entry a line as `LEVEL message`: `INFO http://…/ 5:12 "marker"`
    /// for a `console.log`, `SEVERE …` for an uncaught error or a failed load.
    ///
    /// # Errors
    ///
    /// chromedriver's `se/log` fails.
    pub async fn console_log(&self) -> Result<Vec<String>, BrowserError> {
        let entries = self.read_log("browser").await?;
        let mut console = self.console.lock().unwrap_or_else(PoisonError::into_inner);
        console.extend(entries.iter().map(|entry| {
            format!(
                "{} {}",
                entry["level"].as_str().unwrap_or_default(),
                entry["message"].as_str().unwrap_or_default()
            )
        }));
        Ok(console.clone())
    }

    /// The network events so far, each a DevTools `Network.*` event as JSON
    /// (`{"method":"Network.requestWillBeSent","params":{…}}`), with URLs, headers and posted
    /// bodies: what a test scans for card data that must not reach a page or leave it.
    ///
    /// # Errors
    ///
    /// chromedriver's `se/log` fails.
    pub async fn network_log(&self) -> Result<Vec<String>, BrowserError> {
        let entries = self.read_log("performance").await?;
        let mut network = self.network.lock().unwrap_or_else(PoisonError::into_inner);
        // Each entry's message is itself JSON: {"message":{"method":…,"params":…},"webview":…}.
        network.extend(
            entries
                .iter()
                .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
                .map(|mut message| message["message"].take())
                .filter(|event| {
                    event["method"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Network."))
                })
                .map(|event| event.to_string()),
        );
        Ok(network.clone())
    }

    /// The requests the page made so far, from [`Browser::network_log`], as `METHOD URL`
    /// (`GET http://127.0.0.1:8080/ping`).
    ///
    /// # Errors
    ///
    /// As [`Browser::network_log`].
    pub async fn requests(&self) -> Result<Vec<String>, BrowserError> {
        Ok(self
            .network_log()
            .await?
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["method"] == "Network.requestWillBeSent")
            .map(|event| {
                let request = &event["params"]["request"];
                format!(
                    "{} {}",
                    request["method"].as_str().unwrap_or_default(),
                    request["url"].as_str().unwrap_or_default()
                )
            })
            .collect())
    }

    /// The element `css` selects, once it is in the page, waiting at most `at_most` (a hang
    /// guard: it answers as soon as the element is there, so make it generous, like
    /// [`DEADLINE`]).
    ///
    /// # Errors
    ///
    /// No such element within `at_most` (`CmdError::WaitTimeout`), or the lookup fails.
    pub async fn wait_for(&self, css: &str, at_most: Duration) -> Result<Element, BrowserError> {
        Ok(self
            .client
            .wait()
            .at_most(at_most)
            .for_element(Locator::Css(css))
            .await?)
    }

    /// Ends the WebDriver session (chromedriver closes Chromium) and stops chromedriver.
    ///
    /// # Errors
    ///
    /// The session could not be ended; chromedriver is killed all the same.
    pub async fn close(self) -> Result<(), BrowserError> {
        let Self {
            client, mut driver, ..
        } = self;
        let closed = client.close().await;
        driver.stop().await;
        Ok(closed?)
    }

    /// The entries of chromedriver's log `kind`, which it empties as it answers.
    async fn read_log(&self, kind: &str) -> Result<Vec<Value>, BrowserError> {
        match self.extension("se/log", json!({ "type": kind })).await? {
            Value::Array(entries) => Ok(entries),
            other => Err(BrowserError::Endpoint {
                endpoint: "se/log",
                problem: format!("answered {other} instead of a list of entries"),
            }),
        }
    }

    /// POSTs `body` to chromedriver's session endpoint `endpoint` and returns its `value`.
    async fn extension(&self, endpoint: &'static str, body: Value) -> Result<Value, BrowserError> {
        let failed = |problem: String| BrowserError::Endpoint { endpoint, problem };
        let url = format!("{}session/{}/{endpoint}", self.driver.url, self.session);
        let response = self
            .http
            .post(url)
            .json(&body)
            .timeout(DEADLINE)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let mut answer: Value = response.json().await.map_err(|e| failed(e.to_string()))?;
        let value = answer["value"].take();
        if status.is_success() {
            Ok(value)
        } else {
            Err(failed(format!("{status}: {value}")))
        }
    }
}

/// A running chromedriver, killed on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    url: String,
    /// The end of its stdout and stderr, still being read: a pipe nobody reads fills up and
    /// stops chromedriver at its next log line.
    output: Arc<Mutex<VecDeque<String>>>,
}

/// What became of a chromedriver start.
enum Start {
    Ready,
    /// It exited before it was ready, because its port was taken.
    PortTaken,
}

impl Driver {
    async fn start(path: &Path) -> Result<Self, BrowserError> {
        for _ in 0..PORT_ATTEMPTS {
            let mut driver = Self::spawn(path)?;
            if let Start::Ready = driver.ready().await? {
                return Ok(driver);
            }
        }
        Err(BrowserError::NotReady {
            problem: format!("every one of {PORT_ATTEMPTS} ports was taken"),
            output: String::new(),
        })
    }

    fn spawn(path: &Path) -> Result<Self, BrowserError> {
        let port = free_port().map_err(|source| BrowserError::Io {
            what: "find a free port",
            source,
        })?;
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BrowserError::Io {
                what: "start chromedriver",
                source,
            })?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_lines(stderr, output.clone()));
        }
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            output,
        })
    }

    /// Reads chromedriver's stdout until it says it is ready or exits, then leaves a task
    /// reading the rest.
    async fn ready(&mut self) -> Result<Start, BrowserError> {
        let Some(stdout) = self.child.stdout.take() else {
            return Err(self.not_ready("its stdout is not piped".to_owned()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let ready = line.contains("started successfully");
                    push(&self.output, line);
                    if ready {
                        tokio::spawn(keep_lines(lines.into_inner(), self.output.clone()));
                        return Ok(Start::Ready);
                    }
                }
                Ok(Ok(None) | Err(_)) => break,
                Err(_) => return Err(self.not_ready(format!("not ready within {DEADLINE:?}"))),
            }
        }
        // Its stdout closed: it is exiting. Its stderr is read to the end by now or soon.
        let status = tokio::time::timeout_at(deadline, self.child.wait()).await;
        let output = self.output();
        if output.contains("port not available") || output.contains("Address already in use") {
            return Ok(Start::PortTaken);
        }
        let problem = match status {
            Ok(Ok(status)) => format!("it exited ({status})"),
            Ok(Err(e)) => format!("it closed its stdout and cannot be waited for: {e}"),
            Err(_) => "it closed its stdout but did not exit".to_owned(),
        };
        Err(self.not_ready(problem))
    }

    fn not_ready(&self, problem: String) -> BrowserError {
        BrowserError::NotReady {
            problem,
            output: self.output(),
        }
    }

    fn output(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    async fn stop(&mut self) {
        // Already exited is the only error, and that is what is wanted.
        let _ = self.child.kill().await;
    }
}

/// A port nothing listens on now: bound on port 0, then released for chromedriver, which cannot
/// be asked to choose one itself.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn keep_lines(from: impl AsyncRead + Unpin, output: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        push(&output, line);
    }
}

fn push(output: &Mutex<VecDeque<String>>, line: String) {
    let mut lines = output.lock().unwrap_or_else(PoisonError::into_inner);
    if lines.len() == OUTPUT_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// Where browser tests leave screenshots and the like for a person to look at:
/// `<target dir>/artifacts/browser`, the target directory being `CARGO_TARGET_DIR` when it is
/// set, else `target` beside the workspace's `Cargo.lock`.
pub fn artifacts_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        // Cargo reads a relative one from where it was started, most often the workspace.
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("artifacts").join("browser")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nowhere(require: bool) -> Lookup {
        let empty = tempfile::tempdir().unwrap();
        Lookup {
            chromedriver: None,
            chromium: None,
            path: Some(empty.path().as_os_str().to_owned()),
            require,
        }
    }

    #[tokio::test]
    async fn a_missing_browser_is_a_skip_unless_it_is_required() {
        assert!(launch_with(&nowhere(false)).await.unwrap().is_none());
        let err = launch_with(&nowhere(true)).await.unwrap_err();
        assert!(
            matches!(&err, BrowserError::Missing { reason } if reason.contains("chromedriver")),
            "{err}"
        );
        assert!(err.to_string().contains(INSTALL), "{err}");
    }

    #[tokio::test]
    async fn a_named_binary_that_is_not_executable_is_reported_by_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chromedriver");
        std::fs::write(&file, "not a program").unwrap();
        let lookup = Lookup {
            chromedriver: Some(file),
            require: true,
            ..nowhere(true)
        };
        let err = launch_with(&lookup).await.unwrap_err();
        assert!(err.to_string().contains("CHROMEDRIVER names"), "{err}");
    }
}
