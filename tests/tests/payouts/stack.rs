//! The whole system as separate processes: the vault, the proxy and the Bank 131 sandbox, each
//! its own binary, plus an app (this test) with a webhook receiver. What the tests do to it again
//! and again is said here once: the fixtures they start from, the polls they wait with (progress,
//! never a fixed sleep), and the requests, commands and checks they repeat.
//!
//! Every hop is TLS, as a deployment runs it ([`tests::stack::StackTls`]).

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
/// What the proxy's vault key holds: detokenize for payouts, collect sessions for payout links.
pub(crate) const PROXY_VAULT_SCOPES: &str = "tokens:detokenize,collect:create";
pub(crate) const PROJECT: &str = "e2e-project";
/// How long a payout may take to reach a state on a loaded CI machine: a ceiling, never a pace.
pub(crate) const SECS: Duration = Duration::from_secs(90);
/// The states a payout ends in.
pub(crate) const FINAL: &[&str] = &["succeeded", "failed", "cancelled", "returned"];

/// The bank session id of a payout as the app API shows it.
/// The payout id a response named, as the proxy's store takes it.
pub(crate) fn payout_id(id: &str) -> proxy::ids::PayoutId {
    proxy::ids::PayoutId::parse(id).expect("a payout id")
}

pub(crate) fn bank_session(payout: &Value) -> String {
    payout["bank"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no bank session: {payout}"))
        .to_owned()
}

/// `error` (a payout's `failure`, an answer's `error`) has `code` and a message naming
/// `setting`; `whole` is what failures show.
pub(crate) fn assert_names_setting(error: &Value, code: &str, setting: &str, whole: &Value) {
    assert_eq!(error["code"], code, "{whole}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(setting)),
        "{whole}"
    );
}

/// Polls `probe` until it gives a value. It says what it saw when it does not (`Err`), and past
/// `timeout` that is the panic: the deadline only bounds a hang, a probe that succeeds returns
/// at once.
pub(crate) async fn until<T>(
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) => assert!(Instant::now() < deadline, "{seen}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`Stack::bank_webhook`] with what it needs owned, so that it can be spawned.
pub(crate) async fn post_bank_webhook(
    http: reqwest::Client,
    proxy_url: String,
    body: String,
    signature: String,
) -> u16 {
    http.post(format!("{proxy_url}/webhooks/bank131"))
        .header("content-type", "application/json")
        .header("x-partner-sign", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Serves `app` on a loopback port of its own, for as long as the test runs; its address.
pub(crate) async fn serve_local(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
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
    /// The bank's webhooks on a listener of their own (`server.webhook_listen`).
    pub(crate) webhook_listener: bool,
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
    /// Where the bank's webhooks go: the proxy's URL, or its webhook listener's.
    pub(crate) bank_webhook_base: String,
    vault: Option<Process>,
    proxy: Option<Process>,
    /// Stops with the stack.
    sandbox: Sandbox,
    vault_runs: usize,
    proxy_runs: usize,
    options: Options,
    /// The sandbox's TLS flags, kept across its restarts.
    sandbox_tls: Vec<String>,
    /// The services' certificate's public key hash, for a browser to accept it
    /// ([`testkit::browser::launch_trusting`]).
    pub(crate) server_spki: String,
}

const VAULT_BIN: &str = env!("CARGO_BIN_EXE_e2e-vault");
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_e2e-proxy");

impl Stack {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// A stack whose sandbox runs with `flags` over the defaults.
    pub(crate) async fn with_sandbox_flags(flags: &[&str]) -> Self {
        Self::start_with(Options {
            sandbox_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            ..Options::default()
        })
        .await
    }

    /// A stack whose proxy runs with `env` (settings as `PROXY__...` overrides).
    pub(crate) async fn with_proxy_env(env: &[(&str, &str)]) -> Self {
        Self::start_with(Options {
            proxy_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Options::default()
        })
        .await
    }

    /// A stack whose sandbox signs webhooks with a key the test holds too, so the test can speak
    /// as the bank: the stack and that key.
    pub(crate) async fn signing_as_bank() -> (Self, proxy::bank131::RequestSigner) {
        let (private, _) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("bank.pem");
        std::fs::write(&key_path, &private).unwrap();
        let stack = Self::with_sandbox_flags(&["--bank-key", key_path.to_str().unwrap()]).await;
        // The sandbox has read the key at start; the directory may go.
        drop(dir);
        let bank = proxy::bank131::RequestSigner::from_pem(private.as_bytes()).unwrap();
        (stack, bank)
    }

    /// A stack and, on it, an auto-confirmed payout for `pan` that succeeded and that the app
    /// has heard of (`payout.succeeded`): its id and the final payout.
    pub(crate) async fn start_paid(pan: &str, amount: i64, name: &str) -> (Self, String, Value) {
        let stack = Self::start().await;
        let (id, done) = stack.pay_succeeded(pan, amount, name).await;
        stack.wait_hook(&id, "payout.succeeded").await;
        (stack, id, done)
    }

    /// A stack and, on it, a manual payout for `pan` awaiting confirmation: its id and the
    /// payout as read then.
    pub(crate) async fn start_awaiting(
        pan: &str,
        amount: i64,
        name: &str,
    ) -> (Self, String, Value) {
        let stack = Self::start().await;
        let (id, waiting) = stack.awaiting_confirmation(pan, amount, name).await;
        (stack, id, waiting)
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        let tls = tests::stack::StackTls::make(dir.path());
        let http = tls.http(Duration::from_secs(10));
        let sandbox_tls = tls.sandbox_flags();

        // The app's webhook receiver.
        let hooks: Arc<Mutex<Vec<AppHook>>> = Arc::default();
        let secret: Arc<Mutex<String>> = Arc::default();
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state((Arc::clone(&hooks), Arc::clone(&secret)));
        let app_url = format!("http://{}/hooks", serve_local(app).await);

        let (vault_port, proxy_port, sandbox_port) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );
        let webhook_port = if options.webhook_listener {
            free_port().unwrap()
        } else {
            proxy_port
        };
        let webhook_listen = if options.webhook_listener {
            format!("webhook_listen = \"127.0.0.1:{webhook_port}\"\n")
        } else {
            String::new()
        };

        // Bank 131 sandbox.
        let flags = sandbox_flags(&[sandbox_tls.clone(), options.sandbox_flags.clone()].concat());
        let sandbox = Sandbox::start(
            Path::new(env!("CARGO_BIN_EXE_bank131-sandbox")),
            dir.path(),
            &SandboxSpec {
                project: PROJECT.to_owned(),
                webhook_url: format!("https://127.0.0.1:{webhook_port}/webhooks/bank131"),
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
            "[server]\nlisten = \"127.0.0.1:{vault_port}\"\n{}\
             [database]\npath = \"{}\"\n[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
            tls.vault_toml(),
            path("vault.db").display(),
            path("master.key").display()
        );
        std::fs::write(path("vault.toml"), vault_toml).unwrap();
        vault_cli(&path("vault.toml"), &["init"]);
        let vault_app_key = vault_key(
            &path("vault.toml"),
            "app",
            TENANT,
            "tokens:create,tokens:read",
        );
        let proxy_vault_key = proxy_vault_key(&path("vault.toml"), "proxy", TENANT);
        let vault_url = format!("https://127.0.0.1:{vault_port}");

        // The proxy.
        let proxy_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{proxy_port}\"\n{webhook_listen}{server_tls}\
             [database]\npath = \"{db}\"\n\
             [vault]\nurl = \"{vault_url}\"\nrequest_timeout_ms = 2000\n{vault_tls}[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{sandbox_url}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{pk}\"\nbank_public_key_file = \"{bk}\"\nconnect_timeout_ms = 500\nrequest_timeout_ms = 1500\n{bank_ca}\
             [payouts]\nreconcile_interval_ms = 100\nstuck_after_ms = 3000\nretry_initial_ms = 100\nretry_max_ms = 1000\nmax_attempts = 6\n\
             [webhooks]\nallow_private_networks = true\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [payout_links]\npoll_interval_ms = 100\n\
             [log]\nformat = \"json\"\nfilter = \"debug\"\n",
            db = path("proxy.db").display(),
            server_tls = tls.proxy_server_toml(),
            vault_tls = tls.proxy_vault_lines(),
            bank_ca = tls.bank_ca_line(),
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
            proxy_url: format!("https://127.0.0.1:{proxy_port}"),
            bank_webhook_base: format!("https://127.0.0.1:{webhook_port}"),
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
            sandbox_tls,
            server_spki: tls.server_spki(),
        };
        stack.start_vault().await;
        stack.start_proxy().await;
        stack
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

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

    /// Starts (again) the proxy and waits until it answers; it logs to `proxy-<run>.log`.
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

    /// Kills the sandbox (SIGKILL) and starts it again on its port with the same partner key,
    /// with `flags` over the defaults in place of the first run's.
    pub(crate) async fn restart_sandbox(&mut self, flags: &[String]) {
        self.sandbox
            .restart(
                &self.http,
                sandbox_flags(&[self.sandbox_tls.clone(), flags.to_vec()].concat()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL: no chance to finish anything.
    pub(crate) fn kill9_proxy(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            p.kill();
        }
    }

    /// SIGKILL, then a start that reads the configuration again.
    pub(crate) async fn restart_proxy(&mut self) {
        self.kill9_proxy();
        self.start_proxy().await;
    }

    /// Writes `toml` as the proxy's configuration and restarts the proxy on it.
    pub(crate) async fn reconfigure_proxy(&mut self, toml: String) {
        tests::stack::write_secret(&self.path("proxy.toml"), toml).unwrap();
        self.restart_proxy().await;
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

    /// `POST /v1/payouts` with `idempotency_key`, not yet authenticated.
    pub(crate) fn payout_request(
        &self,
        idempotency_key: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/payouts", self.proxy_url))
            .header("idempotency-key", idempotency_key)
            .json(body)
    }

    /// POST /v1/payouts as the app; returns (status, body bytes).
    pub(crate) async fn create_payout(
        &self,
        idempotency_key: &str,
        body: &Value,
    ) -> (u16, Vec<u8>) {
        self.create_payout_as(&self.app_key, idempotency_key, body)
            .await
    }

    /// POST /v1/payouts with an app key; returns (status, body bytes).
    pub(crate) async fn create_payout_as(
        &self,
        key: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> (u16, Vec<u8>) {
        let r = self
            .payout_request(idempotency_key, body)
            .bearer_auth(key)
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
        let done = self.wait_final(&id).await;
        (id, done)
    }

    /// An auto-confirmed payout for `pan` that succeeded: its id and the final payout.
    pub(crate) async fn pay_succeeded(
        &self,
        pan: &str,
        amount: i64,
        name: &str,
    ) -> (String, Value) {
        let (id, done) = self.pay_to_end(pan, amount, "auto", name).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        (id, done)
    }

    /// A webhook posted to the proxy as the bank would, signed with `signature`; the status.
    pub(crate) async fn bank_webhook(
        &self,
        body: impl Into<String>,
        signature: impl Into<String>,
    ) -> u16 {
        post_bank_webhook(
            self.http.clone(),
            self.bank_webhook_base.clone(),
            body.into(),
            signature.into(),
        )
        .await
    }

    /// [`Stack::bank_webhook`], a failed send returned rather than a panic.
    pub(crate) async fn try_bank_webhook(
        &self,
        body: impl Into<String>,
        signature: impl Into<String>,
    ) -> reqwest::Result<u16> {
        let resp = self
            .http
            .post(format!("{}/webhooks/bank131", self.bank_webhook_base))
            .header("content-type", "application/json")
            .header("x-partner-sign", signature.into())
            .body(body.into())
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    pub(crate) async fn payout(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payouts/{id}", self.proxy_url))
            .bearer_auth(&self.app_key)
            .json_body()
            .await
    }

    /// Polls until `done` holds for the payout (`what` says what it waits for), within `timeout`.
    pub(crate) async fn wait_payout(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        until(timeout, async || {
            let p = self.payout(id).await;
            if done(&p) {
                Ok(p)
            } else {
                Err(format!("payout {id} never {what}: {p}"))
            }
        })
        .await
    }

    /// Polls until the payout's status is one of `want`.
    pub(crate) async fn wait_status(&self, id: &str, want: &[&str], timeout: Duration) -> Value {
        self.wait_payout(id, timeout, &format!("reached {want:?}"), |p| {
            want.iter().any(|w| p["status"] == *w)
        })
        .await
    }

    /// Polls until the payout has ended ([`FINAL`]), within [`SECS`].
    pub(crate) async fn wait_final(&self, id: &str) -> Value {
        self.wait_status(id, FINAL, SECS).await
    }

    pub(crate) async fn action(&self, id: &str, what: &str) -> (u16, Value) {
        let (status, body) = self
            .post_as(&self.app_key, &format!("/v1/payouts/{id}/{what}"))
            .await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// `what` (`confirm`, `cancel`) on payout `id` is refused with `status` and error `code`.
    pub(crate) async fn refuses(&self, id: &str, what: &str, status: u16, code: &str) {
        let (answered, body) = self.action(id, what).await;
        assert_eq!(answered, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
    }

    /// `what` (`confirm`, `cancel`) on payout `id` is taken (200), the payout then `state`; the
    /// payout as answered.
    pub(crate) async fn takes(&self, id: &str, what: &str, state: &str) -> Value {
        let (status, body) = self.action(id, what).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(state)),
            "{what}: {body}"
        );
        body
    }

    /// A bodiless request to a proxy path with an app key: the status and the body as text.
    async fn call_as(&self, method: reqwest::Method, key: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.proxy_url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `GET` a proxy path with an app key: the status and the body as JSON.
    pub(crate) async fn get_json(&self, key: &str, path: &str) -> (u16, Value) {
        let (status, body) = self.get_as(key, path).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// `POST` to a proxy path, without a body, with an app key: the status and the body as JSON.
    pub(crate) async fn post_json(&self, key: &str, path: &str) -> (u16, Value) {
        let (status, body) = self.post_as(key, path).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// `GET` a proxy path with an app key: the status and the body as text.
    pub(crate) async fn get_as(&self, key: &str, path: &str) -> (u16, String) {
        self.call_as(reqwest::Method::GET, key, path).await
    }

    /// `POST` to a proxy path, without a body, with an app key: the status and the body as text.
    pub(crate) async fn post_as(&self, key: &str, path: &str) -> (u16, String) {
        self.call_as(reqwest::Method::POST, key, path).await
    }

    /// The app webhooks received so far about `payout`, oldest first.
    pub(crate) fn hooks_about(&self, payout: &str) -> Vec<AppHook> {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.event["data"]["payout"]["id"] == payout)
            .cloned()
            .collect()
    }

    /// Waits for an app webhook of `kind` about `payout`.
    pub(crate) async fn wait_hook(&self, payout: &str, kind: &str) -> AppHook {
        until(Duration::from_secs(60), async || {
            self.hooks_about(payout)
                .into_iter()
                .find(|h| h.event["type"] == kind)
                .ok_or_else(|| format!("no {kind} webhook for {payout}"))
        })
        .await
    }

    pub(crate) async fn journal(&self) -> Vec<Value> {
        let v = self.sandbox_get("journal").await;
        v["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Bank API requests (journal entries) for `method`, e.g. `session/start/payout`.
    pub(crate) async fn requests(&self, method: &str) -> Vec<Value> {
        self.journal()
            .await
            .into_iter()
            .filter(|e| e["kind"] == "request")
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(method)))
            .collect()
    }

    /// Bank API requests for `method` whose body holds `text`.
    pub(crate) async fn requests_holding(&self, method: &str, text: &str) -> Vec<Value> {
        self.requests(method)
            .await
            .into_iter()
            .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(text)))
            .collect()
    }

    /// Bank API requests (journal entries) for `method`, e.g. `session/start/payout`, about
    /// `session_id` (by the request body).
    pub(crate) async fn bank_calls(&self, method: &str, session_id: &str) -> Vec<Value> {
        self.requests_holding(method, &format!("\"{session_id}\""))
            .await
    }

    /// Bank API requests for `method` in the session of `payout` (as the app API shows it).
    pub(crate) async fn calls_for(&self, method: &str, payout: &Value) -> Vec<Value> {
        self.bank_calls(method, &bank_session(payout)).await
    }

    /// How many payouts the bank holds for our payout `id`: over every session a start request
    /// for it went to, the payouts the sandbox has in those sessions. Exactly-once means 1.
    pub(crate) async fn payouts_at_bank(&self, id: &str) -> usize {
        let mut sessions = std::collections::BTreeSet::new();
        for start in self.requests_holding("session/start/payout", id).await {
            let body = start["body"].as_str().unwrap_or_default();
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            if let Some(s) = v["session_id"].as_str() {
                sessions.insert(s.to_owned());
            }
        }
        let mut count = 0;
        for s in sessions {
            let v = self.sandbox_session(&s).await;
            count += v["session"]["payout_list"].as_array().map_or(0, Vec::len);
        }
        count
    }

    /// `GET /__sandbox/<path>`; the answer as JSON.
    pub(crate) async fn sandbox_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/__sandbox/{path}", self.sandbox_url))
            .json_body()
            .await
    }

    /// `method /__sandbox/<path>`, with a JSON body if there is one; the answer, a success.
    async fn sandbox_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(
            method.clone(),
            format!("{}/__sandbox/{path}", self.sandbox_url),
        );
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.unwrap();
        let what = body.map(Value::to_string).unwrap_or_default();
        assert!(
            r.status().is_success(),
            "{method} {path} {what}: {}",
            r.status()
        );
        r
    }

    /// A fault on the next call to `on` (a bank method or `webhook:<type>`) only.
    pub(crate) async fn fault_once(&self, on: &str, action: &str) {
        self.fault(json!({"on": on, "action": action, "count": 1}))
            .await;
    }

    pub(crate) async fn fault(&self, spec: Value) {
        self.sandbox_call(reqwest::Method::POST, "faults", Some(&spec))
            .await;
    }

    /// Drops every fault the sandbox still holds.
    pub(crate) async fn clear_faults(&self) {
        self.sandbox_call(reqwest::Method::DELETE, "faults", None)
            .await;
    }

    /// The sandbox's own view of a session (the truth, v2 spelling, never reshaped by quirks).
    pub(crate) async fn sandbox_session(&self, session: &str) -> Value {
        self.sandbox_get(&format!("sessions/{session}")).await
    }

    /// Runs a `vault` command against this stack's vault; its standard output.
    pub(crate) fn vault_cli(&self, args: &[&str]) -> String {
        vault_cli(&self.path("vault.toml"), args)
    }

    /// Creates an app client of the proxy; its API key.
    pub(crate) fn proxy_client(&self, name: &str, tenant: &str, scopes: &str) -> String {
        let out = self.proxy_cli_ok(&[
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
        field(&out, "api_key:").unwrap()
    }

    /// Gives the proxy a vault key for one more tenant, and restarts it.
    pub(crate) async fn add_vault_tenant(&mut self, tenant: &str) {
        let key = proxy_vault_key(&self.path("vault.toml"), &format!("proxy-{tenant}"), tenant);
        let toml = std::fs::read_to_string(self.path("proxy.toml")).unwrap();
        let toml = toml.replacen(
            "[vault.api_keys]\n",
            &format!("[vault.api_keys]\n{tenant} = \"{key}\"\n"),
            1,
        );
        self.reconfigure_proxy(toml).await;
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

    /// Runs a `proxy` command that must succeed; its standard output.
    pub(crate) fn proxy_cli_ok(&self, args: &[&str]) -> String {
        let out = self.proxy_cli(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `POST /__sandbox/<path>` with a JSON body; the answer.
    pub(crate) async fn control(&self, path: &str, body: Value) -> Value {
        self.sandbox_call(reqwest::Method::POST, path, Some(&body))
            .await
            .json()
            .await
            .unwrap()
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

/// Runs a `vault` command with `config`; its standard output.
fn vault_cli(config: &Path, args: &[&str]) -> String {
    run_cli(Path::new(VAULT_BIN), config, &[], args).unwrap_or_else(|e| panic!("{e}"))
}

/// A new vault API key for client `name` of `tenant`.
fn vault_key(config: &Path, name: &str, tenant: &str, scopes: &str) -> String {
    vault_client(Path::new(VAULT_BIN), config, &[], (name, tenant, scopes))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A new vault API key for the proxy in `tenant`, bound to the proxy's client certificate.
fn proxy_vault_key(config: &Path, name: &str, tenant: &str) -> String {
    let cert = config.with_file_name("proxy-client.crt");
    tests::stack::bound_vault_client(
        Path::new(VAULT_BIN),
        config,
        &[],
        (name, tenant, PROXY_VAULT_SCOPES),
        &cert,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

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
