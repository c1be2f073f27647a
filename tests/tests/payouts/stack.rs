//! The whole system as separate processes: the vault, the proxy and the Bank 131 sandbox, each
//! its own binary, plus an app (this test) with a webhook receiver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::http::Fetch;
use tests::stack::{
    APP_SCOPES, Process, Sandbox, SandboxSpec, create_app, field, free_port, run_cli, vault_client,
};

pub(crate) const TENANT: &str = "acme";
pub(crate) const PROJECT: &str = "e2e-project";
/// How long a payout may take to reach a state on a loaded CI machine: a ceiling, never a pace.
pub(crate) const SECS: Duration = Duration::from_secs(90);
/// The states a payout ends in.
pub(crate) const FINAL: &[&str] = &["succeeded", "failed", "cancelled", "returned"];

/// The bank session id of a payout as the app API shows it.
pub(crate) fn bank_session(payout: &Value) -> String {
    payout["bank"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no bank session: {payout}"))
        .to_owned()
}

/// One received app webhook.
#[derive(Clone, Debug)]
pub(crate) struct AppHook {
    pub(crate) body: Vec<u8>,
    pub(crate) event: Value,
    pub(crate) signature_valid: bool,
}

/// Knobs for one stack.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) sandbox_flags: Vec<String>,
    pub(crate) proxy_env: Vec<(String, String)>,
}

pub(crate) struct Stack {
    pub(crate) dir: TempDir,
    pub(crate) http: reqwest::Client,
    pub(crate) vault_url: String,
    pub(crate) proxy_url: String,
    pub(crate) sandbox_url: String,
    pub(crate) vault_app_key: String,
    pub(crate) app_key: String,
    pub(crate) hooks: Arc<Mutex<Vec<AppHook>>>,
    /// The secret the app's webhook receiver checks signatures with.
    pub(crate) webhook_secret: Arc<Mutex<String>>,
    pub(crate) app_webhook_url: String,
    vault: Option<Process>,
    proxy: Option<Process>,
    /// Stops with the stack.
    sandbox: Sandbox,
    vault_runs: usize,
    proxy_runs: usize,
    options: Options,
}

const VAULT_BIN: &str = env!("CARGO_BIN_EXE_e2e-vault");
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_e2e-proxy");

impl Stack {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        // The app's webhook receiver.
        let hooks: Arc<Mutex<Vec<AppHook>>> = Arc::default();
        let secret: Arc<Mutex<String>> = Arc::default();
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state((Arc::clone(&hooks), Arc::clone(&secret)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let (vault_port, proxy_port, sandbox_port) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );

        // Bank 131 sandbox.
        let flags = sandbox_flags(&options.sandbox_flags);
        let sandbox = Sandbox::start(
            Path::new(env!("CARGO_BIN_EXE_bank131-sandbox")),
            dir.path(),
            &SandboxSpec {
                project: PROJECT.to_owned(),
                webhook_url: format!("http://127.0.0.1:{proxy_port}/webhooks/bank131"),
                port: sandbox_port,
                flags,
            },
            &http,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let sandbox_url = sandbox.url.clone();

        // The vault.
        let vault_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{vault_port}\"\n[database]\npath = \"{}\"\n[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
            path("vault.db").display(),
            path("master.key").display()
        );
        std::fs::write(path("vault.toml"), vault_toml).unwrap();
        let vault_cli = |args: &[&str]| {
            run_cli(Path::new(VAULT_BIN), &path("vault.toml"), &[], args)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        vault_cli(&["init"]);
        let key = |name: &str, scopes: &str| {
            vault_client(
                Path::new(VAULT_BIN),
                &path("vault.toml"),
                &[],
                (name, TENANT, scopes),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let vault_app_key = key("app", "tokens:create,tokens:read");
        let proxy_vault_key = key("proxy", "tokens:detokenize");
        let vault_url = format!("http://127.0.0.1:{vault_port}");

        // The proxy.
        let proxy_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{proxy_port}\"\n[database]\npath = \"{db}\"\n\
             [vault]\nurl = \"{vault_url}\"\nrequest_timeout_ms = 2000\n[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{sandbox_url}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{pk}\"\nbank_public_key_file = \"{bk}\"\nconnect_timeout_ms = 500\nrequest_timeout_ms = 1500\n\
             [payouts]\nreconcile_interval_ms = 100\nstuck_after_ms = 3000\nretry_initial_ms = 100\nretry_max_ms = 1000\nmax_attempts = 6\n\
             [webhooks]\nallow_private_networks = true\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [log]\nformat = \"json\"\nfilter = \"debug\"\n",
            db = path("proxy.db").display(),
            pk = sandbox.partner_key.display(),
            bk = sandbox.bank_key.display(),
        );
        tests::stack::write_secret(&path("proxy.toml"), proxy_toml).unwrap();
        let app = create_app(
            Path::new(PROXY_BIN),
            &path("proxy.toml"),
            &[],
            ("app", TENANT, APP_SCOPES),
            Some(&app_url),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let app_key = app.api_key;
        *secret.lock().unwrap() = app.webhook_secret;

        let mut stack = Self {
            dir,
            http,
            vault_url,
            proxy_url: format!("http://127.0.0.1:{proxy_port}"),
            sandbox_url,
            vault_app_key,
            app_key,
            hooks,
            webhook_secret: secret,
            app_webhook_url: app_url,
            vault: None,
            proxy: None,
            sandbox,
            vault_runs: 0,
            proxy_runs: 0,
            options,
        };
        stack.start_vault().await;
        stack.start_proxy().await;
        stack
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts (again) the proxy and waits until it answers; it logs to `proxy-<run>.log`.
    /// Starts the vault (again, after [`Stack::kill9_vault`]) and waits for its health check.
    pub(crate) async fn start_vault(&mut self) {
        self.vault_runs += 1;
        let name = format!("vault-{}", self.vault_runs);
        let health = format!("{}/healthz", self.vault_url);
        self.vault = Some(
            self.serve(VAULT_BIN, "vault.toml", &[], name, &health)
                .await,
        );
    }

    pub(crate) async fn start_proxy(&mut self) {
        self.proxy_runs += 1;
        let name = format!("proxy-{}", self.proxy_runs);
        let health = format!("{}/healthz", self.proxy_url);
        let env = self.options.proxy_env.clone();
        self.proxy = Some(
            self.serve(PROXY_BIN, "proxy.toml", &env, name, &health)
                .await,
        );
    }

    /// `bin --config <dir>/<config> serve`, once its health check answers.
    async fn serve(
        &self,
        bin: &str,
        config: &str,
        env: &[(String, String)],
        name: String,
        health: &str,
    ) -> Process {
        let mut process = Process::serve(
            Path::new(bin),
            &self.path(config),
            env,
            name,
            self.dir.path(),
        )
        .unwrap();
        process
            .wait_healthy(&self.http, health)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        process
    }

    /// SIGKILL: no chance to finish anything.
    /// Kills the sandbox (SIGKILL) and starts it again on its port with the same partner key,
    /// with `flags` over the defaults in place of the first run's.
    pub(crate) async fn restart_sandbox(&mut self, flags: &[String]) {
        self.sandbox
            .restart(&self.http, sandbox_flags(flags))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub(crate) fn kill9_proxy(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            p.kill();
        }
    }

    pub(crate) fn kill9_vault(&mut self) {
        if let Some(mut p) = self.vault.take() {
            p.kill();
        }
    }

    pub(crate) async fn tokenize(&self, pan: &str) -> String {
        let r: Value = self
            .http
            .post(format!("{}/v1/tokens", self.vault_url))
            .bearer_auth(&self.vault_app_key)
            .json(&json!({ "pan": pan }))
            .json_body()
            .await;
        r["token"].as_str().unwrap().to_owned()
    }

    /// POST /v1/payouts; returns (status, body bytes).
    pub(crate) async fn create_payout(&self, key: &str, body: &Value) -> (u16, Vec<u8>) {
        let r = self
            .http
            .post(format!("{}/v1/payouts", self.proxy_url))
            .bearer_auth(&self.app_key)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    /// A payout for `pan` (tokenized first); returns its id.
    pub(crate) async fn pay(&self, pan: &str, amount: i64, confirm: &str, name: &str) -> String {
        let token = self.tokenize(pan).await;
        let key = shared::ids::random_id("idem_").unwrap();
        let (status, body) = self
            .create_payout(
                &key,
                &json!({"card_token": token, "amount": amount, "currency": "RUB",
                        "recipient": {"full_name": name}, "confirm": confirm, "metadata": {"order": "o-1"}}),
            )
            .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// A manual payout for `pan`, once it awaits confirmation: its id and the payout as read
    /// then.
    pub(crate) async fn awaiting_confirmation(
        &self,
        pan: &str,
        amount: i64,
        name: &str,
    ) -> (String, Value) {
        let id = self.pay(pan, amount, "manual", name).await;
        let waiting = self
            .wait_status(&id, &["awaiting_confirmation"], SECS)
            .await;
        (id, waiting)
    }

    /// A payout for `pan`, once it has ended: its id and the final payout.
    pub(crate) async fn pay_to_end(
        &self,
        pan: &str,
        amount: i64,
        confirm: &str,
        name: &str,
    ) -> (String, Value) {
        let id = self.pay(pan, amount, confirm, name).await;
        let done = self.wait_status(&id, FINAL, SECS).await;
        (id, done)
    }

    pub(crate) async fn payout(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payouts/{id}", self.proxy_url))
            .bearer_auth(&self.app_key)
            .json_body()
            .await
    }

    /// Polls until the payout's status is one of `want`.
    pub(crate) async fn wait_status(&self, id: &str, want: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.payout(id).await;
            if want.iter().any(|w| p["status"] == *w) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "payout {id} never reached {want:?}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn action(&self, id: &str, what: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/payouts/{id}/{what}", self.proxy_url))
            .bearer_auth(&self.app_key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `GET` a proxy path with an app key: the status and the body as text.
    pub(crate) async fn get_as(&self, key: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.proxy_url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `POST` to a proxy path, without a body, with an app key: the status and the body as text.
    pub(crate) async fn post_as(&self, key: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.proxy_url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Waits for an app webhook of `kind` about `payout`.
    pub(crate) async fn wait_hook(&self, payout: &str, kind: &str) -> AppHook {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .hooks
                .lock()
                .unwrap()
                .iter()
                .find(|h| h.event["type"] == kind && h.event["data"]["payout"]["id"] == payout)
                .cloned();
            if let Some(h) = found {
                return h;
            }
            assert!(Instant::now() < deadline, "no {kind} webhook for {payout}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn journal(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/__sandbox/journal", self.sandbox_url))
            .json_body()
            .await;
        v["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Bank API requests (journal entries) for `method`, e.g. `session/start/payout`, about
    /// `session_id` (by the request body).
    pub(crate) async fn bank_calls(&self, method: &str, session_id: &str) -> Vec<Value> {
        self.journal()
            .await
            .into_iter()
            .filter(|e| e["kind"] == "request")
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(method)))
            .filter(|r| {
                r["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(&format!("\"{session_id}\"")))
            })
            .collect()
    }

    /// How many payouts the bank holds for our payout `id`: over every session a start request
    /// for it went to, the payouts the sandbox has in those sessions. Exactly-once means 1.
    pub(crate) async fn payouts_at_bank(&self, id: &str) -> usize {
        let mut sessions = std::collections::BTreeSet::new();
        for e in self.journal().await {
            let (Some(path), Some(body)) = (e["path"].as_str(), e["body"].as_str()) else {
                continue;
            };
            if e["kind"] == "request" && path.ends_with("session/start/payout") && body.contains(id)
            {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                if let Some(s) = v["session_id"].as_str() {
                    sessions.insert(s.to_owned());
                }
            }
        }
        let mut count = 0;
        for s in sessions {
            let v: Value = self
                .http
                .get(format!("{}/__sandbox/sessions/{s}", self.sandbox_url))
                .json_body()
                .await;
            count += v["session"]["payout_list"].as_array().map_or(0, Vec::len);
        }
        count
    }

    pub(crate) async fn fault(&self, spec: Value) {
        let r = self
            .http
            .post(format!("{}/__sandbox/faults", self.sandbox_url))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "fault {spec}: {}", r.status());
    }

    /// Drops every fault the sandbox still holds.
    pub(crate) async fn clear_faults(&self) {
        let r = self
            .http
            .delete(format!("{}/__sandbox/faults", self.sandbox_url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "clearing faults: {}", r.status());
    }

    /// The sandbox's own view of a session (the truth, v2 spelling, never reshaped by quirks).
    pub(crate) async fn sandbox_session(&self, session: &str) -> Value {
        self.http
            .get(format!("{}/__sandbox/sessions/{session}", self.sandbox_url))
            .json_body()
            .await
    }

    /// Runs a `vault` command against this stack's vault; its standard output.
    pub(crate) fn vault_cli(&self, args: &[&str]) -> String {
        run_cli(Path::new(VAULT_BIN), &self.path("vault.toml"), &[], args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates an app client of the proxy; its API key.
    pub(crate) fn proxy_client(&self, name: &str, tenant: &str, scopes: &str) -> String {
        let out = self.proxy_cli(&[
            "clients",
            "create",
            "--name",
            name,
            "--tenant",
            tenant,
            "--scopes",
            scopes,
            "--webhook-url",
            &self.app_webhook_url,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        field(&String::from_utf8_lossy(&out.stdout), "api_key:").unwrap()
    }

    /// Gives the proxy a vault key for one more tenant, and restarts it.
    pub(crate) async fn add_vault_tenant(&mut self, tenant: &str) {
        let key = vault_client(
            Path::new(VAULT_BIN),
            &self.path("vault.toml"),
            &[],
            (&format!("proxy-{tenant}"), tenant, "tokens:detokenize"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let toml = std::fs::read_to_string(self.path("proxy.toml")).unwrap();
        let toml = toml.replacen(
            "[vault.api_keys]\n",
            &format!("[vault.api_keys]\n{tenant} = \"{key}\"\n"),
            1,
        );
        std::fs::write(self.path("proxy.toml"), toml).unwrap();
        self.kill9_proxy();
        self.start_proxy().await;
    }

    /// Runs a `proxy` command against this stack's configuration.
    pub(crate) fn proxy_cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(PROXY_BIN)
            .arg("--config")
            .arg(self.path("proxy.toml"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// `POST /__sandbox/<path>` with a JSON body; the answer.
    pub(crate) async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/__sandbox/{path}", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The proxy's database, opened beside the running proxy (WAL: readers do not block it).
    pub(crate) fn proxy_store(&self) -> proxy::store::SqliteStore {
        let config: proxy::config::ProxyConfig =
            proxy::config::ProxyConfig::load(Some(&self.path("proxy.toml")), std::iter::empty())
                .unwrap();
        proxy::store::SqliteStore::open(&config.sqlite()).unwrap()
    }

    /// Every file the stack wrote: databases, WAL files, logs.
    pub(crate) fn files(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap_or_default(),
                )
            })
            .collect()
    }
}

type Receiver = (Arc<Mutex<Vec<AppHook>>>, Arc<Mutex<String>>);

/// The sandbox's flags: fast delays and retries, replaced flag by flag by the test's own (the
/// sandbox takes each flag once).
fn sandbox_flags(own: &[String]) -> Vec<String> {
    let mut flags: Vec<String> = [
        ("--ready-delay-ms", "50"),
        ("--finish-delay-ms", "50"),
        ("--webhook-retry-ms", "100,200,400,800"),
        ("--webhook-max-attempts", "30"),
        ("--log-format", "json"),
    ]
    .into_iter()
    .filter(|(flag, _)| !own.iter().any(|f| f == flag))
    .flat_map(|(flag, value)| [flag.to_owned(), value.to_owned()])
    .collect();
    flags.extend(own.iter().cloned());
    flags
}

async fn receive(
    State((hooks, secret)): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let secret = secret.lock().unwrap().clone();
    let header = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = proxy::engine::now_micros() / 1_000_000;
    let signature_valid = proxy::outbox::verify(&secret, header, &body, now, 300);
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    hooks.lock().unwrap().push(AppHook {
        body: body.to_vec(),
        event,
        signature_valid,
    });
    StatusCode::OK
}
