//! Runs the `vault` binary in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shared::Pan;
use tempfile::TempDir;
use testkit::http::Fetch;
use testkit::output::assert_success;

/// How long a process may take to start or stop before the test gives up: long, because it only
/// bounds a hang on a loaded CI machine.
pub(crate) const READY_DEADLINE: Duration = Duration::from_secs(180);

/// The `vault` binary under test.
pub(crate) const VAULT: &str = env!("CARGO_BIN_EXE_vault");

pub(crate) const ALL_SCOPES: &str = "tokens:create,tokens:read,tokens:detokenize,tokens:delete";

/// A vault's files: config, master key, database, logs.
pub(crate) struct VaultDir {
    pub(crate) dir: TempDir,
    /// Environment every command of this vault gets (e.g. `SOFTHSM2_CONF`).
    pub(crate) env: Vec<(String, String)>,
}

impl VaultDir {
    /// A directory with a config file and a master key made by `vault init`.
    pub(crate) fn new() -> Self {
        let this = Self::uninitialised("", Vec::new());
        assert_success(&this.run(&["init"]));
        this
    }

    /// A directory with a config file whose `[keys]` section also holds `keys` (TOML lines),
    /// and no master key yet; every command gets `env`.
    pub(crate) fn uninitialised(keys: &str, env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[database]\npath = \"{}\"\n\n[keys]\nmaster_key_file = \"{}\"\n{keys}\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
            dir.path().join("vault.db").display(),
            dir.path().join("master.key").display(),
        );
        std::fs::write(dir.path().join("vault.toml"), config).unwrap();
        Self { dir, env }
    }

    /// Adds two operators (dual control) and returns their credentials.
    pub(crate) fn two_operators(&self) -> (String, String) {
        self.two_operators_with_stdin("")
    }

    /// [`Self::two_operators`], with `input` on each command's standard input.
    pub(crate) fn two_operators_with_stdin(&self, input: &str) -> (String, String) {
        let mut keys = ["Alice", "Bob"].map(|name| {
            let out = self.run_with_stdin(&["operators", "add", name], input);
            assert_success(&out);
            testkit::output::stdout(&out)
                .lines()
                .find_map(|l| l.strip_prefix("operator_key:"))
                .unwrap()
                .trim()
                .to_owned()
        });
        (std::mem::take(&mut keys[0]), std::mem::take(&mut keys[1]))
    }

    /// Runs a command as the operator holding `key` (`VAULT_OPERATOR_KEY`).
    pub(crate) fn as_operator(&self, key: &str, args: &[&str]) -> Output {
        self.as_operator_with_stdin(key, args, "")
    }

    /// Runs a command as the operator holding `key`, with `input` on its standard input (the
    /// Shamir shares a command needs).
    pub(crate) fn as_operator_with_stdin(&self, key: &str, args: &[&str], input: &str) -> Output {
        let mut cmd = self.command(args);
        cmd.env("VAULT_OPERATOR_KEY", key);
        self.run_command_with_stdin(cmd, input)
    }

    /// Proposes with `proposer`'s credential and approves with `approver`'s (both with `input`
    /// on standard input); returns the approving run's output.
    pub(crate) fn propose_and_approve(
        &self,
        (proposer, approver): (&str, &str),
        args: &[&str],
        input: &str,
    ) -> Output {
        let proposed = self.as_operator_with_stdin(proposer, args, input);
        assert_success(&proposed);
        let text = testkit::output::stdout(&proposed);
        let id = text
            .split_whitespace()
            .find(|w| w.starts_with("prp_"))
            .unwrap_or_else(|| panic!("no proposal in {text}"))
            .trim_end_matches(':')
            .to_owned();
        let approved = self.as_operator_with_stdin(approver, &["approve", &id], input);
        assert_success(&approved);
        approved
    }

    /// Runs a command with `input` on its standard input (shares typed by operators).
    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        self.run_command_with_stdin(self.command(args), input)
    }

    /// Runs `cmd` (one of [`Self::command`]'s) to completion with `input` on its standard
    /// input, appending its stderr to `cli.log`.
    fn run_command_with_stdin(&self, mut cmd: Command, input: &str) -> Output {
        use std::io::Write;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        append(&self.path("cli.log"), &out.stderr);
        out
    }

    /// Appends TOML to the config file (new sections, e.g. `[audit]`).
    pub(crate) fn configure(&self, toml: &str) {
        let path = self.path("vault.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push('\n');
        text.push_str(toml);
        std::fs::write(path, text).unwrap();
    }

    /// Raises every rate limit out of the way, for tests that load the vault on purpose.
    pub(crate) fn unlimited(&self) {
        self.configure(
            "[limits]\ntokenize_per_second = 1000000\ntokenize_burst = 1000000\n\
             read_per_second = 1000000\nread_burst = 1000000\n\
             detokenize_per_second = 1000000\ndetokenize_burst = 1000000\n",
        );
    }

    /// Runs SQL on the (stopped) vault's database, as someone with write access to it.
    pub(crate) fn sql(&self, sql: &str) {
        rusqlite::Connection::open(self.path("vault.db"))
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// Runs a command and returns (exit code, stdout, stderr).
    pub(crate) fn outcome(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.run(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(VAULT);
        cmd.arg("--config").arg(self.path("vault.toml")).args(args);
        cmd.env_remove("VAULT_CONFIG");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs a command to completion, appending its output to `cli.log`.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        append(&self.path("cli.log"), &out.stdout);
        append(&self.path("cli.log"), &out.stderr);
        out
    }

    /// Creates a client and returns `(id, api key)`.
    pub(crate) fn client(&self, tenant: &str, scopes: &str) -> (String, String) {
        let out = self.run(&create_client("app", tenant, scopes));
        assert_success(&out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap()
        };
        (field("client_id:"), field("api_key:"))
    }

    /// Runs `cmd` (one of [`Self::command`]'s), which must fail, and returns its stderr.
    pub(crate) fn refused(mut cmd: Command) -> String {
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{cmd:?} succeeded");
        testkit::output::stderr(&out)
    }

    /// Runs a command that prints one JSON value a line (`--json` listings, `audit list`),
    /// and returns the values.
    pub(crate) fn json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        testkit::output::stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Starts `vault serve`, logs to `serve-N.log`, and waits until it listens.
    pub(crate) fn serve(&self) -> Server {
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let log = self.path(&format!("serve-{n}.log"));
        let child = self
            .command(&["serve"])
            .stdout(Stdio::from(
                std::fs::File::create(self.path(&format!("serve-{n}.out"))).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        // Owned by `Server` at once, so a failed start is still killed and reaped on drop.
        let mut server = Server {
            child,
            base: String::new(),
            http: reqwest::Client::new(),
            log: log.clone(),
        };
        // Readiness is the line the vault prints once it listens. The deadline only bounds a
        // hang (a loaded 2-core CI machine can be slow); a vault that exits fails at once.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text
                .split_inclusive('\n')
                .find(|l| l.ends_with('\n') && l.contains("vault listening"))
            {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let scheme = if v["tls"] == true { "https" } else { "http" };
                server.base = format!("{scheme}://{}", v["addr"].as_str().unwrap());
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("vault serve exited ({status}) before it listened; its log:\n{text}");
            }
            assert!(Instant::now() < deadline, "vault did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every file in the directory (database, WAL, logs, config), concatenated.
    pub(crate) fn all_bytes(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n != "master.key"))
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// `vault clients create`'s arguments.
pub(crate) fn create_client<'a>(name: &'a str, tenant: &'a str, scopes: &'a str) -> [&'a str; 8] {
    [
        "clients", "create", "--name", name, "--tenant", tenant, "--scopes", scopes,
    ]
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// A running `vault serve`.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    /// A client for its API.
    pub(crate) http: reqwest::Client,
    /// The server's log file.
    pub(crate) log: PathBuf,
}

impl Server {
    /// Tokenizes `pan` with `key`; returns the token.
    pub(crate) async fn token_for(&self, key: &str, pan: &str) -> String {
        let created: serde_json::Value = self
            .http
            .post(format!("{}/v1/tokens", self.base))
            .bearer_auth(key)
            .json(&serde_json::json!({ "pan": pan }))
            .json_body()
            .await;
        created["token"].as_str().unwrap().to_owned()
    }

    /// Detokenizes `token` with `key` for `purpose`, which must succeed.
    pub(crate) async fn detokenize(&self, key: &str, token: &str, purpose: &str) {
        let status = self
            .http
            .post(format!("{}/v1/tokens/{token}/detokenize", self.base))
            .bearer_auth(key)
            .json(&serde_json::json!({ "purpose": purpose }))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "detokenize: {status}");
    }

    /// The status `GET /v1/tokens/{token}` answers `key`.
    pub(crate) async fn read_status(&self, key: &str, token: &str) -> u16 {
        self.http
            .get(format!("{}/v1/tokens/{token}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Sends SIGTERM without waiting.
    pub(crate) fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the server's log has a line containing `needle` (a hang fails after
    /// [`READY_DEADLINE`]).
    pub(crate) fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.lines().any(|l| l.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit.
    pub(crate) fn terminate(self) -> ExitStatus {
        self.signal_term();
        self.terminate_wait()
    }

    /// Waits for the exit of a server already told to stop.
    pub(crate) fn terminate_wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "vault ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `pan` appears in `haystack` in any encoding the scanner knows.
pub(crate) fn contains(haystack: &[u8], pan: &str) -> bool {
    shared::scan::contains_pan_any_encoding(haystack, &Pan::parse(pan).unwrap())
}
