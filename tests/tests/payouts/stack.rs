//! The whole system as separate processes: the vault, the proxy and the Bank 131 sandbox, each
//! its own binary, plus an app (this test) with a webhook receiver.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tempfile::TempDir;

pub(crate) const TENANT: &str = "acme";
pub(crate) const PROJECT: &str = "e2e-project";

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

/// The stack's processes.
#[derive(Clone, Copy, Debug)]
enum Service {
    Vault,
    Proxy,
    Sandbox,
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
    vault: Option<Child>,
    proxy: Option<Child>,
    sandbox: Option<Child>,
    proxy_runs: usize,
    options: Options,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn field(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in {stdout}"))
}

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

        let (vault_port, proxy_port, sandbox_port) = (free_port(), free_port(), free_port());

        // Bank 131 sandbox.
        let (partner_private, partner_public) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
        std::fs::write(path("partner.pem"), &partner_private).unwrap();
        std::fs::write(path("partner.pub.pem"), &partner_public).unwrap();
        let mut sandbox = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"));
        sandbox
            .args(["--listen", &format!("127.0.0.1:{sandbox_port}")])
            .args(["--project-id", PROJECT])
            .arg("--partner-public-key")
            .arg(path("partner.pub.pem"))
            .arg("--bank-public-key-out")
            .arg(path("bank.pub.pem"))
            .args([
                "--webhook-url",
                &format!("http://127.0.0.1:{proxy_port}/webhooks/bank131"),
            ])
            .args(["--ready-delay-ms", "50", "--finish-delay-ms", "50"])
            .args([
                "--webhook-retry-ms",
                "100,200,400,800",
                "--webhook-max-attempts",
                "30",
            ])
            .args(["--log-format", "json"])
            .args(&options.sandbox_flags);
        let mut sandbox = spawn_logged(&mut sandbox, &path("sandbox"));
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");

        // The vault.
        let vault_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{vault_port}\"\n[database]\npath = \"{}\"\n[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\nfilter = \"debug\"\n",
            path("vault.db").display(),
            path("master.key").display()
        );
        std::fs::write(path("vault.toml"), vault_toml).unwrap();
        let vault_cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_e2e-vault"))
                .arg("--config")
                .arg(path("vault.toml"))
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "vault {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        vault_cli(&["init"]);
        let vault_app_key = field(
            &vault_cli(&[
                "clients",
                "create",
                "--name",
                "app",
                "--tenant",
                TENANT,
                "--scopes",
                "tokens:create,tokens:read",
            ]),
            "api_key:",
        );
        let proxy_vault_key = field(
            &vault_cli(&[
                "clients",
                "create",
                "--name",
                "proxy",
                "--tenant",
                TENANT,
                "--scopes",
                "tokens:detokenize",
            ]),
            "api_key:",
        );
        let mut vault = Command::new(env!("CARGO_BIN_EXE_e2e-vault"));
        vault.arg("--config").arg(path("vault.toml")).arg("serve");
        let vault = spawn_logged(&mut vault, &path("vault"));
        let vault_url = format!("http://127.0.0.1:{vault_port}");

        // The proxy.
        let proxy_toml = format!(
            "[server]\nlisten = \"127.0.0.1:{proxy_port}\"\n[database]\npath = \"{db}\"\n\
             [vault]\nurl = \"{vault_url}\"\nrequest_timeout_ms = 2000\n[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{sandbox_url}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{pk}\"\nbank_public_key_file = \"{bk}\"\nrequest_timeout_ms = 1500\n\
             [payouts]\nreconcile_interval_ms = 100\nstuck_after_ms = 1500\nretry_initial_ms = 100\nretry_max_ms = 1000\nmax_attempts = 6\n\
             [webhooks]\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [log]\nformat = \"json\"\nfilter = \"debug\"\n",
            db = path("proxy.db").display(),
            pk = path("partner.pem").display(),
            bk = path("bank.pub.pem").display(),
        );
        std::fs::write(path("proxy.toml"), proxy_toml).unwrap();
        // The sandbox prints the key's path once it has written the key and listens.
        tests::ready::wait_for_line(
            &mut sandbox,
            &path("sandbox.out"),
            "BANK131_SANDBOX_BANK_PUBLIC_KEY=",
            "the bank131 sandbox",
            &[&path("sandbox.out"), &path("sandbox.log")],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(env!("CARGO_BIN_EXE_e2e-proxy"))
            .arg("--config")
            .arg(path("proxy.toml"))
            .args([
                "clients",
                "create",
                "--name",
                "app",
                "--tenant",
                TENANT,
                "--scopes",
                "payouts:write,payouts:read",
                "--webhook-url",
                &app_url,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let app_key = field(&stdout, "api_key:");
        let webhook_secret = field(&stdout, "webhook_secret:");
        *secret.lock().unwrap() = webhook_secret;

        let mut stack = Self {
            dir,
            http,
            vault_url,
            proxy_url: format!("http://127.0.0.1:{proxy_port}"),
            sandbox_url,
            vault_app_key,
            app_key,
            hooks,
            vault: Some(vault),
            proxy: None,
            sandbox: Some(sandbox),
            proxy_runs: 0,
            options,
        };
        stack.wait_healthy(Service::Vault).await;
        stack.wait_healthy(Service::Sandbox).await;
        stack.start_proxy().await;
        stack
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) async fn start_proxy(&mut self) {
        self.proxy_runs += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_e2e-proxy"));
        cmd.arg("--config")
            .arg(self.path("proxy.toml"))
            .arg("serve");
        for (k, v) in &self.options.proxy_env {
            cmd.env(k, v);
        }
        self.proxy = Some(spawn_logged(
            &mut cmd,
            &self.path(&format!("proxy-{}", self.proxy_runs)),
        ));
        self.wait_healthy(Service::Proxy).await;
    }

    /// SIGKILL: no chance to finish anything.
    pub(crate) fn kill9_proxy(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    pub(crate) fn kill9_vault(&mut self) {
        if let Some(mut p) = self.vault.take() {
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    /// Waits for a service's health endpoint; fails at once, with its logs, if it exits.
    async fn wait_healthy(&mut self, service: Service) {
        let (url, log, child) = match service {
            Service::Vault => (
                format!("{}/healthz", self.vault_url),
                "vault".to_owned(),
                self.vault.as_mut(),
            ),
            Service::Proxy => (
                format!("{}/healthz", self.proxy_url),
                format!("proxy-{}", self.proxy_runs),
                self.proxy.as_mut(),
            ),
            Service::Sandbox => (
                format!("{}/__sandbox/health", self.sandbox_url),
                "sandbox".to_owned(),
                self.sandbox.as_mut(),
            ),
        };
        let child = child.unwrap_or_else(|| panic!("{url}: the process is not running"));
        let (out, err) = (
            self.dir.path().join(format!("{log}.out")),
            self.dir.path().join(format!("{log}.log")),
        );
        tests::ready::wait_healthy(&self.http, &url, child, &[&out, &err])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub(crate) async fn tokenize(&self, pan: &str) -> String {
        let r: Value = self
            .http
            .post(format!("{}/v1/tokens", self.vault_url))
            .bearer_auth(&self.vault_app_key)
            .json(&json!({ "pan": pan }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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

    pub(crate) async fn payout(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payouts/{id}", self.proxy_url))
            .bearer_auth(&self.app_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
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

impl Drop for Stack {
    fn drop(&mut self) {
        for child in [self.proxy.take(), self.vault.take(), self.sandbox.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_logged(cmd: &mut Command, base: &std::path::Path) -> Child {
    cmd.stdout(Stdio::from(
        std::fs::File::create(base.with_extension("out")).unwrap(),
    ))
    .stderr(Stdio::from(
        std::fs::File::create(base.with_extension("log")).unwrap(),
    ))
    .spawn()
    .unwrap()
}

type Receiver = (Arc<Mutex<Vec<AppHook>>>, Arc<Mutex<String>>);

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
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let signature_valid = proxy::outbox::verify(&secret, header, &body, now, 300);
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    hooks.lock().unwrap().push(AppHook {
        body: body.to_vec(),
        event,
        signature_valid,
    });
    StatusCode::OK
}
