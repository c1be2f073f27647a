//! Two vault replicas and two proxy replicas on one PostgreSQL, the sandbox behind them, its
//! webhooks duplicated and spread over both proxies at random, one proxy killed mid-load: every
//! payout ends succeeded, paid exactly once, its app webhook delivered; the audit chain verifies.
//! Every hop is TLS, the vaults over mutual TLS ([`tests::stack::StackTls`]).
//! Runs when `TEST_DATABASE_URL` is set (`.ci/run` always sets it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use testkit::http::Fetch;
use tests::stack::{
    APP_SCOPES, Process, Sandbox, SandboxSpec, StackTls, bound_vault_client, create_app, free_port,
    run_cli, vault_client, with_schema,
};

const TENANT: &str = "acme";
const PROJECT: &str = "replicas";
const VAULT_BIN: &str = env!("CARGO_BIN_EXE_e2e-vault");
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_e2e-proxy");

/// Forwards the bank's webhooks to a random live proxy replica (over TLS, trusting the stack's
/// CA, as a balancer in front of the proxies would).
async fn balance(
    State((targets, http)): State<(Arc<Vec<String>>, reqwest::Client)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // A random first choice; the other replica when it is down.
    let start =
        shared::ids::random_id("").map_or(0, |id| usize::from(id.as_bytes()[0])) % targets.len();
    for i in 0..targets.len() {
        let target = &targets[(start + i) % targets.len()];
        let mut req = http
            .post(target)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(sig) = headers.get("x-partner-sign") {
            req = req.header("x-partner-sign", sig.clone());
        }
        if let Ok(r) = req.send().await {
            return StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        }
    }
    StatusCode::BAD_GATEWAY
}

/// `TEST_DATABASE_URL`, or `None` after saying, past the test harness's capture, that `test`
/// is skipped.
fn database_url(test: &str) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL").ok();
    if url.is_none() {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/stderr")
            .and_then(|mut e| writeln!(e, "TEST_DATABASE_URL is not set: {test} is skipped"));
    }
    url
}

/// What each test starts from: the database, a directory for its files, its TLS files, an
/// HTTP client trusting them.
struct Fixture {
    db: String,
    dir: tempfile::TempDir,
    tls: StackTls,
    http: reqwest::Client,
}

/// The [`Fixture`] of `test`, or `None` when `test` is skipped ([`database_url`]).
fn fixture(test: &str) -> Option<Fixture> {
    let db = database_url(test)?;
    let dir = tempfile::tempdir().unwrap();
    let tls = StackTls::make(dir.path());
    Some(Fixture {
        db,
        http: tls.http(Duration::from_secs(10)),
        dir,
        tls,
    })
}

/// A new schema `<prefix>_<random>` in `db`: the URL that uses it.
async fn fresh_schema(db: &str, prefix: &str) -> String {
    let suffix = shared::ids::random_id("").unwrap().to_ascii_lowercase();
    let schema = format!("{prefix}_{suffix}");
    shared::postgres::connect(db, 1, Some(&schema))
        .await
        .unwrap();
    with_schema(db, &schema)
}

/// The sandbox for [`PROJECT`], fast, over TLS, sending its webhooks to `webhook_url`, with
/// `flags` too.
async fn sandbox(
    (dir, tls): (&Path, &StackTls),
    webhook_url: String,
    flags: &[&str],
    http: &reqwest::Client,
) -> Sandbox {
    let fast = ["--ready-delay-ms", "20", "--finish-delay-ms", "20"];
    let tls_flags = tls.sandbox_flags();
    Sandbox::start(
        Path::new(env!("CARGO_BIN_EXE_bank131-sandbox")),
        dir,
        &SandboxSpec {
            project: PROJECT.to_owned(),
            webhook_url,
            port: free_port().unwrap(),
            flags: fast
                .iter()
                .chain(flags)
                .map(|f| (*f).to_owned())
                .chain(tls_flags)
                .collect(),
        },
        http,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `bin --config <config> serve` in `dir`, once `<url>/healthz` answers.
async fn serve(
    bin: &str,
    config: &Path,
    env: &[(String, String)],
    name: String,
    dir: &Path,
    http: &reqwest::Client,
    url: &str,
) -> Process {
    let mut process = Process::serve(Path::new(bin), config, env, name, dir).unwrap();
    process
        .wait_healthy(http, &format!("{url}/healthz"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    process
}

/// Runs a `vault` command; its standard output.
fn vault_cli(config: &Path, env: &[(String, String)], args: &[&str]) -> String {
    run_cli(Path::new(VAULT_BIN), config, env, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The vault API keys of the app (`tokens:create`) and of the proxy (`tokens:detokenize`, and
/// `collect:create` for payout links), the proxy's bound to its client certificate.
fn vault_keys(config: &Path, env: &[(String, String)], tls: &StackTls) -> (String, String) {
    let vault = Path::new(VAULT_BIN);
    let app = vault_client(vault, config, env, ("app", TENANT, "tokens:create"));
    let proxy = bound_vault_client(
        vault,
        config,
        env,
        ("proxy", TENANT, "tokens:detokenize,collect:create"),
        &tls.proxy_cert_file(),
    );
    (
        app.unwrap_or_else(|e| panic!("{e}")),
        proxy.unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A payout of `amount` for `pan` (tokenized at `vault_url` first), created at `proxy_url`;
/// its id.
async fn create_payout(
    http: &reqwest::Client,
    (vault_url, vault_key): (&str, &str),
    (proxy_url, app_key): (&str, &str),
    idempotency_key: &str,
    (pan, amount): (&str, usize),
) -> String {
    let token: Value = http
        .post(format!("{vault_url}/v1/tokens"))
        .bearer_auth(vault_key)
        .json(&json!({"pan": pan}))
        .json_body()
        .await;
    let r = http
        .post(format!("{proxy_url}/v1/payouts"))
        .bearer_auth(app_key)
        .header("idempotency-key", idempotency_key)
        .json(&json!({"card_token": token["token"], "amount": amount, "currency": "RUB", "recipient": {"full_name": "Ivanov Ivan"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn payout(http: &reqwest::Client, proxy_url: &str, app_key: &str, id: &str) -> Value {
    http.get(format!("{proxy_url}/v1/payouts/{id}"))
        .bearer_auth(app_key)
        .json_body()
        .await
}

fn is_final(payout: &Value) -> bool {
    ["succeeded", "failed", "cancelled"]
        .iter()
        .any(|s| payout["status"] == *s)
}

async fn journal(http: &reqwest::Client, sandbox_url: &str) -> Vec<Value> {
    let v: Value = http
        .get(format!("{sandbox_url}/__sandbox/journal"))
        .json_body()
        .await;
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// The `ids` that are not `done` yet.
fn missing(ids: &[String], done: impl Fn(&String) -> bool) -> Vec<&String> {
    ids.iter().filter(|id| !done(id)).collect()
}

/// The journal's bank API requests for `method` whose body holds `text`.
fn requests<'a>(entries: &'a [Value], method: &str, text: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| {
            e["kind"] == "request"
                && e["path"].as_str().is_some_and(|p| p.ends_with(method))
                && e["body"].as_str().is_some_and(|b| b.contains(text))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_vaults_and_two_proxies_on_one_postgres_pay_exactly_once() {
    let Some(Fixture { db, dir, tls, http }) = fixture("the multi-replica PostgreSQL test") else {
        return;
    };
    let path = |n: &str| dir.path().join(n);
    let mut procs: Vec<Process> = Vec::new();
    let vault_db = fresh_schema(&db, "rv").await;
    let proxy_db = fresh_schema(&db, "rp").await;

    // App webhook receiver.
    let hooks: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&hooks);
    let app = axum::Router::new().route(
        "/hooks",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}/hooks", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });

    // The bank's webhooks go through a balancer to either proxy.
    let proxy_ports = [free_port().unwrap(), free_port().unwrap()];
    let targets: Arc<Vec<String>> = Arc::new(
        proxy_ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}/webhooks/bank131"))
            .collect(),
    );
    let lb = axum::Router::new()
        .route("/", post(balance))
        .with_state((targets, http.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb_url = format!("http://{}/", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, lb).await });

    // Sandbox, duplicating every webhook.
    let sandbox = sandbox(
        (dir.path(), &tls),
        lb_url.clone(),
        &[
            "--webhook-retry-ms",
            "100,200,400",
            "--webhook-max-attempts",
            "30",
            "--fault",
            "webhook:*=duplicate",
            // Held mid-flight long enough that the kill below lands on unfinished payouts.
            "--fault",
            "webhook:ready_to_confirm=delay:1500",
        ],
        &http,
    )
    .await;
    let sandbox_url = sandbox.url.clone();

    // Two vault replicas, one database, one master key.
    std::fs::write(
        path("vault.toml"),
        format!(
            "{}[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\n",
            tls.vault_toml(),
            path("master.key").display()
        ),
    )
    .unwrap();
    let vault_env = vec![("VAULT__DATABASE__URL".to_owned(), vault_db.clone())];
    let vault = |args: &[&str]| vault_cli(&path("vault.toml"), &vault_env, args);
    vault(&["init"]);
    vault(&["migrate"]);
    let (app_vault_key, proxy_vault_key) = vault_keys(&path("vault.toml"), &vault_env, &tls);
    let vault_urls: Vec<String> = (0..2)
        .map(|_| format!("https://127.0.0.1:{}", free_port().unwrap()))
        .collect();
    for (i, url) in vault_urls.iter().enumerate() {
        let mut env = vault_env.clone();
        env.push((
            "VAULT__SERVER__LISTEN".to_owned(),
            url.trim_start_matches("https://").to_owned(),
        ));
        let name = format!("vault-{i}");
        procs.push(
            serve(
                VAULT_BIN,
                &path("vault.toml"),
                &env,
                name,
                dir.path(),
                &http,
                url,
            )
            .await,
        );
    }

    // Two proxy replicas, one database, each with its own vault replica.
    tests::stack::write_secret(
        &path("proxy.toml"),
        format!(
            "{}[vault]\nurl = \"{}\"\n{}[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{sandbox_url}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{}\"\nbank_public_key_file = \"{}\"\nconnect_timeout_ms = 500\nrequest_timeout_ms = 2000\n{}\
             [payouts]\nreconcile_interval_ms = 100\nstuck_after_ms = 3500\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [webhooks]\nallow_private_networks = true\npoll_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 500\n[log]\nformat = \"json\"\n",
            tls.proxy_server_toml(),
            vault_urls[0],
            tls.proxy_vault_lines(),
            sandbox.partner_key.display(),
            sandbox.bank_key.display(),
            tls.bank_ca_line()
        ),
    )
    .unwrap();
    let proxy_env = vec![("PROXY__DATABASE__URL".to_owned(), proxy_db.clone())];
    let app_key = create_app(
        Path::new(PROXY_BIN),
        &path("proxy.toml"),
        &proxy_env,
        ("app", TENANT, APP_SCOPES),
        Some(&app_url),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .api_key;
    let mut proxies: Vec<Process> = Vec::new();
    for (i, port) in proxy_ports.iter().enumerate() {
        let mut env = proxy_env.clone();
        env.push(("PROXY__VAULT__URL".to_owned(), vault_urls[i].clone()));
        env.push((
            "PROXY__SERVER__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ));
        let (name, url) = (format!("proxy-{i}"), format!("https://127.0.0.1:{port}"));
        proxies.push(
            serve(
                PROXY_BIN,
                &path("proxy.toml"),
                &env,
                name,
                dir.path(),
                &http,
                &url,
            )
            .await,
        );
    }

    // Load: payouts created on both proxies at once; the second proxy is killed midway.
    let cards = [
        "4242424242424242",
        "5555555555554444",
        "2200000000000004",
        "4000056655665556",
    ];
    let mut tasks = Vec::new();
    for i in 0..24usize {
        let (http, app_key) = (http.clone(), app_key.clone());
        let vault_url = vault_urls[i % 2].clone();
        let app_vault_key = app_vault_key.clone();
        let proxy = format!("https://127.0.0.1:{}", proxy_ports[i % 2]);
        let card = cards[i % cards.len()];
        tasks.push(tokio::spawn(async move {
            create_payout(
                &http,
                (&vault_url, &app_vault_key),
                (&proxy, &app_key),
                &format!("load-{i}"),
                (card, 1000 + i),
            )
            .await
        }));
        if i == 12 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    proxies.remove(1).kill();
    // The kill landed mid-load: some payouts the dead replica was driving were not finished.
    let survivor = format!("https://127.0.0.1:{}", proxy_ports[0]);
    let mut unfinished_at_kill = 0;
    for id in ids.iter().skip(1).step_by(2) {
        if !is_final(&payout(&http, &survivor, &app_key, id).await) {
            unfinished_at_kill += 1;
        }
    }
    assert!(
        unfinished_at_kill > 0,
        "the proxy was killed after its payouts had finished"
    );

    // Every payout ends succeeded, read through the surviving proxy.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut finals = BTreeMap::new();
    while finals.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "unfinished: {:?}",
            missing(&ids, |id| finals.contains_key(id))
        );
        for id in &ids {
            if finals.contains_key(id) {
                continue;
            }
            let p = payout(&http, &survivor, &app_key, id).await;
            if is_final(&p) {
                finals.insert(id.clone(), p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, p) in &finals {
        assert_eq!(p["status"], "succeeded", "{id}: {p}");
    }

    // The bank: exactly one payout per payout, at most one processed confirm per session.
    let entries = journal(&http, &sandbox_url).await;
    for (id, p) in &finals {
        let session = p["bank"]["session_id"].as_str().unwrap();
        let started: BTreeSet<String> = requests(&entries, "session/start/payout", id)
            .into_iter()
            .map(|e| {
                serde_json::from_str::<Value>(e["body"].as_str().unwrap()).unwrap()["session_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(started.len(), 1, "{id}: starts went to {started:?}");
        let s: Value = http
            .get(format!("{sandbox_url}/__sandbox/sessions/{session}"))
            .json_body()
            .await;
        assert_eq!(
            s["session"]["payout_list"].as_array().map_or(0, Vec::len),
            1,
            "{id}"
        );
        let confirms = requests(&entries, "session/confirm", &format!("\"{session}\""))
            .into_iter()
            .filter(|e| e["status"] == 200)
            .count();
        assert!(confirms <= 1, "{id}: {confirms} confirms");
    }

    // Every payout's outcome reached the app.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let told: BTreeSet<String> = hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h["type"] == "payout.succeeded")
            .filter_map(|h| h["data"]["payout"]["id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().all(|id| told.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "app webhooks missing: {:?}",
            missing(&ids, |id| told.contains(id))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The audit chain written by two vault replicas is one valid chain.
    let verified = vault(&["audit", "verify"]);
    assert!(verified.contains("audit chain ok"), "{verified}");
}

/// A replica that starts while another's `start/payout` is still in flight at a slow
/// bank must not take the payout over. It respects the lease (the in-flight call's owner holds
/// the payout until its call must have ended), so the bank sees one start for the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_restarted_while_a_start_is_in_flight_does_not_send_it_again() {
    let Some(Fixture { db, dir, tls, http }) = fixture("the lease test on PostgreSQL") else {
        return;
    };
    let path = |n: &str| dir.path().join(n);
    let proxy_db = fresh_schema(&db, "rl").await;
    let proxy_ports = [free_port().unwrap(), free_port().unwrap()];

    // The bank holds the first start 20 s before it gets to it (its key taken on arrival).
    let sandbox = sandbox(
        (dir.path(), &tls),
        format!("https://127.0.0.1:{}/webhooks/bank131", proxy_ports[0]),
        &["--fault", "session/start/payout=delay:20000@1"],
        &http,
    )
    .await;

    // One vault (SQLite): the race is between the proxies.
    let vault_port = free_port().unwrap();
    std::fs::write(
        path("vault.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{vault_port}\"\n{}[database]\npath = \"{}\"\n[keys]\nmaster_key_file = \"{}\"\n[log]\nformat = \"json\"\n",
            tls.vault_toml(),
            path("vault.db").display(),
            path("master.key").display()
        ),
    )
    .unwrap();
    vault_cli(&path("vault.toml"), &[], &["init"]);
    let (app_vault_key, proxy_vault_key) = vault_keys(&path("vault.toml"), &[], &tls);
    let vault_url = format!("https://127.0.0.1:{vault_port}");
    let _vault = serve(
        VAULT_BIN,
        &path("vault.toml"),
        &[],
        "vault".to_owned(),
        dir.path(),
        &http,
        &vault_url,
    )
    .await;

    // Two proxies whose bank calls may take 30 s: the lease outlasts that.
    tests::stack::write_secret(
        &path("proxy.toml"),
        format!(
            "{}[vault]\nurl = \"{vault_url}\"\n{}[vault.api_keys]\n{TENANT} = \"{proxy_vault_key}\"\n\
             [bank131]\nbase_url = \"{}\"\nproject = \"{PROJECT}\"\nprivate_key_file = \"{}\"\nbank_public_key_file = \"{}\"\n\
             connect_timeout_ms = 500\nrequest_timeout_ms = 30000\n{}\
             [payouts]\nreconcile_interval_ms = 100\nstuck_after_ms = 31500\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [log]\nformat = \"json\"\n",
            tls.proxy_server_toml(),
            tls.proxy_vault_lines(),
            sandbox.url,
            sandbox.partner_key.display(),
            sandbox.bank_key.display(),
            tls.bank_ca_line()
        ),
    )
    .unwrap();
    let proxy_env = vec![("PROXY__DATABASE__URL".to_owned(), proxy_db)];
    let app_key = create_app(
        Path::new(PROXY_BIN),
        &path("proxy.toml"),
        &proxy_env,
        ("app", TENANT, APP_SCOPES),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .api_key;
    let proxy_urls = proxy_ports.map(|port| format!("https://127.0.0.1:{port}"));
    let root = dir.path();
    let serve_proxy = |i: usize, run: usize| {
        let mut env = proxy_env.clone();
        env.push((
            "PROXY__SERVER__LISTEN".to_owned(),
            format!("127.0.0.1:{}", proxy_ports[i]),
        ));
        let (config, name, http, url) = (
            path("proxy.toml"),
            format!("proxy-{i}-{run}"),
            &http,
            &proxy_urls[i],
        );
        async move { serve(PROXY_BIN, &config, &env, name, root, http, url).await }
    };
    let mut proxies = Vec::new();
    for i in 0..proxy_ports.len() {
        proxies.push(serve_proxy(i, 0).await);
    }

    // A payout on the first proxy; its start reaches the bank and is held there.
    let first = &proxy_urls[0];
    let id = create_payout(
        &http,
        (&vault_url, &app_vault_key),
        (first, &app_key),
        "slow-start",
        ("4242424242424242", 1000),
    )
    .await;
    let starts = async || -> Vec<Value> {
        let entries = journal(&http, &sandbox.url).await;
        requests(&entries, "session/start/payout", &id)
            .into_iter()
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while starts().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the start never reached the bank"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        starts().await[0]["status"].is_null(),
        "the start was answered before the restart: the bank's delay did not hold it"
    );

    // The other proxy restarts while the start is held.
    proxies.remove(1).kill();
    let mut restarted = serve_proxy(1, 1).await;

    // The held start is answered, and the payout completes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let p = payout(&http, first, &app_key, &id).await;
        if is_final(&p) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "unfinished: {p}\n{}",
            restarted.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let sent = starts().await;
    assert_eq!(
        sent.len(),
        1,
        "the restarted replica sent the start again: {sent:?}\n{}",
        restarted.logs()
    );
    restarted.check_alive().unwrap();
}
