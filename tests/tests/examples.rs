//! The operator guide's separate deployment (docs/OPERATIONS.md), run as written (issue 12 §1, §5): the committed
//! `examples/vault.toml` and `examples/proxy.toml` copied as they are, every command of the
//! walk-through checked to be in docs/OPERATIONS.md word for word and then run, both services started
//! from those files against the sandbox, and a payout made through them. The only changes are
//! the ones a test machine needs: free ports (through the documented environment overrides) and
//! an app webhook receiver on loopback (`webhooks.allow_private_networks`, the guide's
//! development switch).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test"
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use testkit::http::Fetch;
use tests::stack::{Process, field, free_port, write_secret};

const GUIDE: &str = include_str!("../../docs/OPERATIONS.md");
const VAULT_TOML: &str = include_str!("../../examples/vault.toml");
const PROXY_TOML: &str = include_str!("../../examples/proxy.toml");

const VAULT_BIN: &str = env!("CARGO_BIN_EXE_e2e-vault");
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_e2e-proxy");
const SANDBOX_BIN: &str = env!("CARGO_BIN_EXE_bank131-sandbox");

/// The guide's line, asserted to be there verbatim: the walk-through cannot drift from the test.
fn readme(line: &str) -> &str {
    assert!(
        GUIDE.lines().any(|l| l.trim() == line),
        "docs/OPERATIONS.md no longer has this walk-through line: {line}"
    );
    line
}

/// A walk-through line as a command here: the guide's binaries are this build's, its ports and
/// webhook URL the test's.
struct Machine<'a> {
    dir: &'a Path,
    swaps: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

impl Machine<'_> {
    fn command(&self, line: &str) -> Command {
        let mut line = line.to_owned();
        for (from, to) in &self.swaps {
            line = line.replace(from, to);
        }
        let mut words = line.split_whitespace();
        let bin = match words.next().unwrap() {
            "./target/release/vault" => VAULT_BIN,
            "./target/release/proxy" => PROXY_BIN,
            "./target/release/bank131-sandbox" => SANDBOX_BIN,
            other => panic!("not a binary of ours: {other}"),
        };
        let mut cmd = Command::new(bin);
        cmd.args(words)
            .current_dir(self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, line: &str) -> Output {
        self.command(readme(line)).output().unwrap()
    }

    fn ok(&self, line: &str) -> String {
        let out = self.run(line);
        assert!(
            out.status.success(),
            "{line}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn spawn(&self, line: &str, name: &str) -> Process {
        Process::spawn(&mut self.command(readme(line)), name, self.dir).unwrap()
    }
}

type Hooks = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(hooks): State<Hooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    hooks.lock().unwrap().push((headers, body));
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_deploys_both_services_from_the_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http = reqwest::Client::new();
    let (vault_port, proxy_port, sandbox_port) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );

    // The app's webhook receiver.
    let hooks: Hooks = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/webhooks/payouts", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/webhooks/payouts", axum::routing::post(receive))
        .with_state(Arc::clone(&hooks));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let machine = Machine {
        dir,
        swaps: vec![
            ("127.0.0.1:8131".into(), format!("127.0.0.1:{sandbox_port}")),
            ("127.0.0.1:8300".into(), format!("127.0.0.1:{proxy_port}")),
            ("https://shop.example/webhooks/payouts".into(), hook_url),
        ],
        env: vec![
            (
                "VAULT__SERVER__LISTEN".into(),
                format!("127.0.0.1:{vault_port}"),
            ),
            (
                "PROXY__SERVER__LISTEN".into(),
                format!("127.0.0.1:{proxy_port}"),
            ),
            (
                "PROXY__VAULT__URL".into(),
                format!("http://127.0.0.1:{vault_port}"),
            ),
            (
                "PROXY__BANK131__BASE_URL".into(),
                format!("http://127.0.0.1:{sandbox_port}"),
            ),
            (
                "PROXY__WEBHOOKS__ALLOW_PRIVATE_NETWORKS".into(),
                "true".into(),
            ),
        ],
    };

    // `mkdir vault-host proxy-host` and `cp examples/…`.
    readme("mkdir vault-host proxy-host");
    readme("cp examples/vault.toml vault-host/ && cp examples/proxy.toml proxy-host/");
    for (host, file, text) in [
        ("vault-host", "vault.toml", VAULT_TOML),
        ("proxy-host", "proxy.toml", PROXY_TOML),
    ] {
        std::fs::create_dir(dir.join(host)).unwrap();
        std::fs::write(dir.join(host).join(file), text).unwrap();
    }

    // The vault host.
    machine.ok("./target/release/vault --config vault-host/vault.toml init");
    let app_key = field(
        &machine.ok("./target/release/vault --config vault-host/vault.toml clients create --name app --tenant acme --scopes tokens:create,tokens:read,tokens:delete"),
        "api_key:",
    )
    .unwrap();
    let proxy_key = field(
        &machine.ok("./target/release/vault --config vault-host/vault.toml clients create --name payout-proxy --tenant acme --scopes tokens:detokenize,collect:create"),
        "api_key:",
    )
    .unwrap();
    let report = machine.ok("./target/release/vault --config vault-host/vault.toml check");
    assert!(report.contains("# no problems found"), "{report}");
    assert!(
        report.contains(&dir.join("vault-host/master.key").display().to_string()),
        "the key file is not the config file's: {report}"
    );
    let mut vault = machine.spawn(
        "./target/release/vault --config vault-host/vault.toml serve",
        "vault",
    );
    vault
        .wait_healthy(&http, &format!("http://127.0.0.1:{vault_port}/healthz"))
        .await
        .unwrap();

    // The proxy host. The key pair is made here as `openssl genrsa` and `openssl rsa -pubout`
    // would (PKCS#8 and SPKI PEM), so the test needs no openssl.
    readme(
        "openssl genrsa -out proxy-host/partner.pem 2048 && openssl rsa -in proxy-host/partner.pem -pubout -out proxy-host/partner.pub.pem",
    );
    let (private, public) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
    write_secret(&dir.join("proxy-host/partner.pem"), private).unwrap();
    std::fs::write(dir.join("proxy-host/partner.pub.pem"), public).unwrap();
    readme(r#"echo "$PROXY_VAULT_KEY" > proxy-host/acme.key"#);
    readme("chmod 600 proxy-host/partner.pem proxy-host/acme.key");
    write_secret(&dir.join("proxy-host/acme.key"), format!("{proxy_key}\n")).unwrap();
    machine.ok("./target/release/proxy webhooks keygen proxy-host/webhooks.key");
    let mut sandbox = machine.spawn(
        "./target/release/bank131-sandbox --listen 127.0.0.1:8131 --project-id my-project --partner-public-key proxy-host/partner.pub.pem --bank-public-key-out proxy-host/bank.pub.pem --webhook-url http://127.0.0.1:8300/webhooks/bank131",
        "sandbox",
    );
    sandbox
        .wait_for_line("BANK131_SANDBOX_BANK_PUBLIC_KEY=")
        .await
        .unwrap();
    sandbox
        .wait_healthy(
            &http,
            &format!("http://127.0.0.1:{sandbox_port}/__sandbox/health"),
        )
        .await
        .unwrap();
    let report = machine.ok("./target/release/proxy --config proxy-host/proxy.toml check");
    assert!(report.contains("# no problems found"), "{report}");
    assert!(!report.contains(&proxy_key), "a key in the check: {report}");
    assert!(report.contains("vk_***"), "{report}");
    // The proxy's vault key opens payout links too: no note about `collect:create`.
    assert!(!report.contains("lacks collect:create"), "{report}");
    let created = machine.ok("./target/release/proxy --config proxy-host/proxy.toml clients create --name shop --tenant acme --scopes payouts:write,payouts:read --webhook-url https://shop.example/webhooks/payouts");
    let shop_key = field(&created, "api_key:").unwrap();
    let webhook_secret = field(&created, "webhook_secret:").unwrap();
    let mut proxy = machine.spawn(
        "./target/release/proxy --config proxy-host/proxy.toml serve",
        "proxy",
    );
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    proxy
        .wait_healthy(&http, &format!("{proxy_url}/healthz"))
        .await
        .unwrap();
    let ready = http
        .get(format!("{proxy_url}/readyz"))
        .send()
        .await
        .unwrap();
    let ready_status = ready.status();
    let ready_body = ready.text().await.unwrap();
    assert_eq!(ready_status, 200, "{ready_body}");
    assert!(!ready_body.contains("notes"), "{ready_body}");

    // The platform: tokenize with the vault's app key, pay out with the proxy's shop key.
    let token: Value = http
        .post(format!("http://127.0.0.1:{vault_port}/v1/tokens"))
        .bearer_auth(&app_key)
        .json(&json!({"pan": "4242424242424242"}))
        .json_body()
        .await;
    let created = http
        .post(format!("{proxy_url}/v1/payouts"))
        .bearer_auth(&shop_key)
        .header("idempotency-key", "order-1001")
        .json(
            &json!({"card_token": token["token"], "amount": 150_000, "currency": "RUB",
                      "recipient": {"full_name": "Ivanov Ivan"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let payout: Value = created.json().await.unwrap();
    let id = payout["id"].as_str().unwrap().to_owned();

    // Paid, and the app hears it signed with the secret exactly as printed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (headers, body) = loop {
        let found = hooks.lock().unwrap().iter().find_map(|(h, b)| {
            let event: Value = serde_json::from_slice(b).ok()?;
            (event["type"] == "payout.succeeded" && event["data"]["payout"]["id"] == id.as_str())
                .then(|| (h.clone(), b.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        for p in [&mut vault, &mut sandbox, &mut proxy] {
            p.check_alive().unwrap();
        }
        assert!(Instant::now() < deadline, "no payout.succeeded for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let signature = headers["x-signature"].to_str().unwrap();
    let now = proxy::engine::now_micros() / 1_000_000;
    assert!(proxy::outbox::verify(
        &webhook_secret,
        signature,
        &body,
        now,
        300
    ));
}
