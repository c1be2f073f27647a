//! `devstack --exit-after-demo`, run twice in a fresh directory: the first run makes everything
//! and walks a payout through every step, the second reuses every key and client; no card number
//! reaches its output or its files. Every service answers over TLS from the CA devstack made and
//! no other, none speaks plain HTTP, and the proxy's vault key works only with the proxy's
//! certificate; the separate-process `commands.sh` runs the same stack with the same
//! certificates.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shared::pan::Pan;

const DEMO_CARD: &str = "2200000000000004";

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| tests::stack::free_port().unwrap()).collect()
}

/// A devstack process started in `cwd` (its state goes to `cwd/.devstack`) on `ports`, its
/// output in `<name>.stdout` and `<name>.stderr` there.
struct Devstack {
    child: std::process::Child,
    out_path: PathBuf,
    err_path: PathBuf,
}

/// A failed assertion must not leave a devstack serving on its four ports.
impl Drop for Devstack {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Devstack {
    fn spawn(cwd: &Path, ports: &[u16], args: &[&str], name: &str) -> Self {
        let out_path = cwd.join(format!("{name}.stdout"));
        let err_path = cwd.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_devstack"))
            .current_dir(cwd)
            .args(["--vault-port", &ports[0].to_string()])
            .args(["--proxy-port", &ports[1].to_string()])
            .args(["--sandbox-port", &ports[2].to_string()])
            .args(["--app-port", &ports[3].to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            out_path,
            err_path,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err_path).unwrap_or_default()
    }

    /// Kills it, and panics saying `why` with what it printed.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "{why}; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Polls `ready` until it holds; it fails, saying `why`, past `limit` or once devstack
    /// has exited.
    fn wait_until(&mut self, limit: Duration, why: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                self.fail(why);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for devstack to exit, within `limit` (else it fails, saying `why`); what it did.
    fn finish(mut self, limit: Duration, why: &str) -> Run {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail(why);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            status,
            stdout: std::fs::read_to_string(&self.out_path).unwrap(),
            stderr: std::fs::read_to_string(&self.err_path).unwrap(),
        }
    }
}

/// Runs devstack in `cwd` through its demo, killing it after 300 s.
fn devstack(cwd: &Path, ports: &[u16], extra: &[&str], name: &str) -> Run {
    let args = [&["--exit-after-demo", "--step-timeout", "20"], extra].concat();
    Devstack::spawn(cwd, ports, &args, name).finish(
        Duration::from_secs(300),
        &format!("devstack ({name}) did not finish in 300 s"),
    )
}

/// Runs devstack without the demo, waits until it serves, checks its transport, then sends
/// SIGTERM.
fn serve_until_sigterm(cwd: &Path, ports: &[u16], replaced_key: Option<&str>) -> Run {
    let mut devstack = Devstack::spawn(cwd, ports, &["--no-demo"], "third");
    devstack.wait_until(
        Duration::from_secs(180),
        "devstack --no-demo did not start serving",
        |d| d.stdout().contains("serving until"),
    );
    runtime().block_on(check_transport(&cwd.join(".devstack"), ports, replaced_key));
    let killed = Command::new("kill")
        .args(["-TERM", &devstack.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    devstack.finish(
        Duration::from_secs(60),
        "devstack did not stop within 60 s of SIGTERM",
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP client trusting only devstack's CA (`state/tls/ca.crt`), presenting `identity`.
fn trusting_devstack(state: &Path, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let ca = std::fs::read(state.join("tls/ca.crt")).unwrap();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

/// The proxy's client certificate and key, as the proxy presents them to the vault.
fn proxy_identity(state: &Path) -> reqwest::Identity {
    let pem = [
        std::fs::read(state.join("tls/proxy-client.crt")).unwrap(),
        std::fs::read(state.join("tls/proxy-client.key")).unwrap(),
    ]
    .concat();
    reqwest::Identity::from_pem(&pem).unwrap()
}

/// While devstack serves: each of the four services answers over TLS with a certificate from
/// devstack's CA, is not trusted by a client without that CA, and does not speak plain HTTP;
/// the proxy's vault key is refused (401) without the proxy's client certificate and accepted
/// with it.
async fn check_transport(state: &Path, ports: &[u16], replaced_key: Option<&str>) {
    let trusting = trusting_devstack(state, None);
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for (what, port, path) in [
        ("vault", ports[0], "/readyz"),
        ("proxy", ports[1], "/readyz"),
        ("sandbox", ports[2], "/__sandbox/health"),
        ("app", ports[3], "/"),
    ] {
        let https = format!("https://127.0.0.1:{port}{path}");
        let answer = trusting.get(&https).send().await;
        let status = answer
            .unwrap_or_else(|e| panic!("{what} over TLS: {e}"))
            .status();
        assert!(status.is_success(), "{what} over TLS: {status}");
        assert!(
            plain.get(&https).send().await.is_err(),
            "{what}'s certificate is trusted without devstack's CA"
        );
        assert!(
            plain
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .is_err(),
            "{what} answers plain HTTP"
        );
    }
    let credentials: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("credentials.json")).unwrap())
            .unwrap();
    let proxy_key = credentials["vault_proxy"]["key"].as_str().unwrap();
    let me = |client: reqwest::Client, key: &str| {
        let request = client
            .get(format!("https://127.0.0.1:{}/v1/clients/me", ports[0]))
            .bearer_auth(key);
        async move { request.send().await.unwrap().status() }
    };
    let with_cert = trusting_devstack(state, Some(proxy_identity(state)));
    assert_eq!(
        me(trusting.clone(), proxy_key).await,
        401,
        "the proxy's vault key was accepted without the proxy's certificate"
    );
    assert_eq!(
        me(with_cert.clone(), proxy_key).await,
        200,
        "the proxy's vault key with its certificate"
    );
    if let Some(old) = replaced_key {
        assert_ne!(old, proxy_key, "the proxy's vault client was not replaced");
        assert_eq!(
            me(with_cert, old).await,
            401,
            "the vault client bound to the replaced certificate still works"
        );
    }
}

fn assert_demo_ran(run: &Run, name: &str) {
    assert!(
        run.status.success(),
        "{name}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    for step in [
        "test card 220000******0004",
        "[1] tokenized at the vault: tok_",
        "last4 0004",
        "[2] payout created at the proxy: pay_",
        "[3] ready_to_confirm",
        "[4] confirmed",
        "[5] payment_finished",
        " succeeded (bank payout po_",
        "[6] app webhook payout.succeeded received",
        "X-Signature valid",
        "demo: succeeded",
        "curl -s --cacert $CA -X POST $PROXY/v1/payouts",
        "Idempotency-Key",
    ] {
        assert!(
            run.stdout.contains(step),
            "{name}: stdout lacks {step:?}:\n{}",
            run.stdout
        );
    }
    let pan = Pan::parse(DEMO_CARD).unwrap();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !shared::scan::contains_pan(all.as_bytes(), &pan),
        "{name}: the demo card number is in devstack's output"
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn vault_clients(cwd: &Path) -> Vec<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_e2e-vault"))
        .current_dir(cwd)
        .args(["--config", ".devstack/vault.toml", "clients", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "vault clients list failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cli_"))
        .map(str::to_owned)
        .collect()
}

/// Whether curl (which `commands.sh` waits for the vault with) is here; without it the test
/// says it skipped, unless `REQUIRE_CURL` is set (`.ci/run`), where it fails.
fn curl_present() -> bool {
    let present = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("REQUIRE_CURL").is_none(),
            "REQUIRE_CURL is set but curl is missing (apt-get install curl)"
        );
        eprintln!("SKIPPED: commands.sh needs curl (apt-get install curl)");
    }
    present
}

/// `commands.sh` as written, with the test's own binaries for `cargo build`'s: the sandbox,
/// the vault and the proxy as three processes on devstack's certificates; a payout of `token`
/// through them succeeds.
fn commands_sh_pays_out(cwd: &Path, ports: &[u16], token: &str) {
    use std::os::unix::process::CommandExt as _;
    let state = cwd.join(".devstack");
    let script = std::fs::read_to_string(state.join("commands.sh")).unwrap();
    assert!(script.contains("cargo build --release"), "{script}");
    let script = script
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "./target/release/bank131-sandbox",
            env!("CARGO_BIN_EXE_bank131-sandbox"),
        )
        .replace("./target/release/vault", env!("CARGO_BIN_EXE_e2e-vault"))
        .replace("./target/release/proxy", env!("CARGO_BIN_EXE_e2e-proxy"));
    let log = std::fs::File::create(cwd.join("commands.log")).unwrap();
    // Its own process group, so that one signal stops the script and the three services.
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime().block_on(async {
            let http = trusting_devstack(&state, None);
            let proxy = format!("https://127.0.0.1:{}", ports[1]);
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let ready = http.get(format!("{proxy}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "commands.sh: the proxy never became ready"
                );
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "commands.sh exited before the proxy was ready"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let credentials: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(state.join("credentials.json")).unwrap(),
            )
            .unwrap();
            let key = credentials["proxy_app"]["key"].as_str().unwrap();
            let created: serde_json::Value = http
                .post(format!("{proxy}/v1/payouts"))
                .bearer_auth(key)
                .header("Idempotency-Key", "commands-sh-1")
                .json(&serde_json::json!({
                    "card_token": token,
                    "amount": 10_000,
                    "currency": "RUB",
                    "recipient": {"full_name": "Ivan Petrov"},
                    "confirm": "auto",
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = created["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{created}"));
            loop {
                let payout: serde_json::Value = http
                    .get(format!("{proxy}/v1/payouts/{id}"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                match payout["status"].as_str() {
                    Some("succeeded") => break,
                    Some("failed" | "canceled") => panic!("commands.sh: the payout {payout}"),
                    _ => {}
                }
                assert!(
                    Instant::now() < deadline,
                    "commands.sh: the payout never succeeded: {payout}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }));
    let group = format!("-{}", child.id());
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    signal("-TERM");
    let _ = child.wait();
    // The services outlive the script by their shutdown: wait until the group is empty, so
    // that the files scanned next are no longer being written or removed; past a minute they
    // are killed, and the test fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lingered = false;
    while signal("-0") {
        if Instant::now() > deadline {
            signal("-KILL");
            lingered = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(panic) = outcome {
        let log = std::fs::read_to_string(cwd.join("commands.log")).unwrap_or_default();
        eprintln!("commands.sh printed:\n{log}");
        std::panic::resume_unwind(panic);
    }
    assert!(
        !lingered,
        "commands.sh's services outlived SIGTERM by a minute"
    );
}

#[test]
fn devstack_runs_the_demo_and_reuses_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let state = cwd.join(".devstack");
    let ports = free_ports(4);

    // First run: everything is made. Logs at info, so there is more output to scan.
    let first = devstack(cwd, &ports, &["--log", "info"], "first");
    assert_demo_ran(&first, "first run");
    assert!(
        first.stdout.contains("created: vault master key"),
        "{}",
        first.stdout
    );
    for port in &ports {
        assert!(
            first.stdout.contains(&format!("https://127.0.0.1:{port}")),
            "every service is printed with its https URL:\n{}",
            first.stdout
        );
    }
    assert!(
        first.stdout.contains("created: ") && first.stdout.contains("TLS certificates"),
        "{}",
        first.stdout
    );
    // The CA's key is never written: nothing on disk can mint a certificate the stack trusts.
    let mut tls_files: Vec<String> = std::fs::read_dir(state.join("tls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tls_files.sort();
    assert_eq!(
        tls_files,
        [
            "ca.crt",
            "proxy-client.crt",
            "proxy-client.key",
            "server.crt",
            "server.key"
        ]
    );
    let credentials = std::fs::read_to_string(state.join("credentials.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&credentials).unwrap();
    let vault_key = json["vault_app"]["key"].as_str().unwrap();
    let proxy_key = json["proxy_app"]["key"].as_str().unwrap();
    let secret = json["proxy_app"]["webhook_secret"].as_str().unwrap();
    assert!(vault_key.starts_with("vk_") && proxy_key.starts_with("pk_"));
    assert!(secret.starts_with("whsec_"));
    for shown in [vault_key, proxy_key, secret] {
        assert!(first.stdout.contains(shown), "the keys are printed");
    }
    for private in [
        "credentials.json",
        "master.key",
        "partner.pem",
        "bank131-sandbox.pem",
        "proxy.toml",
        "tls/server.key",
        "tls/proxy-client.key",
    ] {
        assert_eq!(mode(&state.join(private)), 0o600, "{private} is private");
    }
    let clients = vault_clients(cwd);
    assert_eq!(clients.len(), 2, "{clients:?}");

    // Second run: the same keys, no new vault client, and a payout that again succeeds (the
    // sandbox restarts its session numbering; devstack must keep the old payouts apart).
    let second = devstack(cwd, &ports, &[], "second");
    assert_demo_ran(&second, "second run");
    assert!(second.stdout.contains("reused:"), "{}", second.stdout);
    assert!(!second.stdout.contains("created:"), "{}", second.stdout);
    assert_eq!(
        std::fs::read_to_string(state.join("credentials.json")).unwrap(),
        credentials,
        "credentials changed"
    );
    for shown in [vault_key, proxy_key, secret] {
        assert!(
            second.stdout.contains(shown),
            "the same keys are printed again"
        );
    }
    assert_eq!(vault_clients(cwd), clients, "a vault client was added");
    assert!(
        !second.stdout.contains("[app] webhook"),
        "no app webhook of the first run was delivered again:\n{}",
        second.stdout
    );

    // A certificate removed (as one replaced, half-written or near expiry): the next run makes
    // a new set and a new proxy vault client bound to the new certificate, and revokes the old
    // one. Without the demo it serves until SIGTERM, then stops cleanly.
    let old_proxy_key = json["vault_proxy"]["key"].as_str().unwrap().to_owned();
    std::fs::remove_file(state.join("tls/server.crt")).unwrap();
    let third = serve_until_sigterm(cwd, &ports, Some(&old_proxy_key));
    assert!(
        third.status.success(),
        "exit {:?}\n{}",
        third.status,
        third.stderr
    );
    assert!(!third.stdout.contains("[1] tokenized"), "{}", third.stdout);
    assert!(
        third
            .stdout
            .contains("created: TLS certificates (new ones: those in"),
        "{}",
        third.stdout
    );
    assert!(
        third.stdout.contains("devstack stopped"),
        "{}",
        third.stdout
    );

    // The same stack as separate processes, from commands.sh: a payout of the demo's token.
    if curl_present() {
        let token = first
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("TOKEN="))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no TOKEN= line:\n{}", first.stdout));
        commands_sh_pays_out(cwd, &ports, token);
    }

    // No card number in any file devstack keeps (the vault holds it only as ciphertext).
    let pan = Pan::parse(DEMO_CARD).unwrap();
    let mut scanned = files_under(&state);
    assert!(scanned.iter().any(|p| p.ends_with("proxy.db")));
    assert!(scanned.iter().any(|p| p.ends_with("vault.db")));
    scanned.extend(
        [
            "first.stdout",
            "first.stderr",
            "second.stdout",
            "second.stderr",
            "third.stdout",
            "third.stderr",
        ]
        .map(|n| cwd.join(n)),
    );
    // Written when commands.sh ran (curl present).
    scanned.extend(Some(cwd.join("commands.log")).filter(|p| p.exists()));
    for file in &scanned {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !shared::scan::contains_pan_any_encoding(&bytes, &pan),
            "the demo card number is in {}",
            file.display()
        );
    }
}

/// The demo shop on the app port, in a real browser: its checkout page frames the vault's card
/// form, a card typed there becomes a token the shop's backend pays out through the proxy and
/// the sandbox, and the card number reaches neither the shop's page nor devstack's files and
/// output.
#[tokio::test]
async fn the_devstack_shop_takes_a_card_in_a_browser_and_pays_it_out() {
    use fantoccini::Locator;
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let ports = free_ports(4);
    let mut devstack = Devstack::spawn(cwd, &ports, &["--no-demo"], "shop");
    devstack.wait_until(
        Duration::from_secs(180),
        "devstack --no-demo did not start serving",
        |d| d.stdout().contains("serving until"),
    );
    let shop = format!("https://127.0.0.1:{}/", ports[3]);
    assert!(
        devstack.stdout().contains(&shop),
        "the shop's URL is printed"
    );
    // The browser trusts the stack's certificate by the flag devstack prints, and nothing else.
    const FLAG: &str = "--ignore-certificate-errors-spki-list=";
    let stdout = devstack.stdout();
    let spki = stdout
        .split(FLAG)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {FLAG} in devstack's output:\n{stdout}"))
        .to_owned();
    // (A missing browser ends the test here; dropping `devstack` stops it.)
    let Some(browser) = testkit::browser::launch_trusting(&[spki]).await.unwrap() else {
        return;
    };
    let patience = testkit::browser::DEADLINE;

    let client = browser.client();
    client.goto(&shop).await.unwrap();
    browser.wait_for("#card iframe", patience).await.unwrap();
    client.enter_frame(0).await.unwrap();
    browser
        .wait_for("#collect-form:not([hidden])", patience)
        .await
        .unwrap()
        .find(Locator::Css("#card-number"))
        .await
        .unwrap()
        .send_keys(DEMO_CARD)
        .await
        .unwrap();
    client
        .find(Locator::Css("#card-expiry"))
        .await
        .unwrap()
        .send_keys("1230")
        .await
        .unwrap();
    client
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#done:not([hidden])", patience)
        .await
        .unwrap();
    client.enter_parent_frame().await.unwrap();
    devstack.wait_until(
        Duration::from_secs(120),
        "the shop's payout never succeeded",
        |d| {
            let out = d.stdout();
            out.contains("[shop] paid out") && out.contains("webhook payout.succeeded")
        },
    );
    let result = browser
        .wait_for("#result", patience)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(result.contains("ending 0004"), "{result}");

    let pan = Pan::parse(DEMO_CARD).unwrap();
    let dom = client
        .execute("return document.documentElement.outerHTML;", vec![])
        .await
        .unwrap();
    assert!(
        !shared::scan::contains_pan_any_encoding(dom.to_string().as_bytes(), &pan),
        "the shop's page holds the card number"
    );
    let console = browser.console_log().await.unwrap().join("\n");
    assert!(!shared::scan::contains_pan_any_encoding(
        console.as_bytes(),
        &pan
    ));
    browser.close().await.unwrap();

    let killed = Command::new("kill")
        .args(["-TERM", &devstack.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = devstack.finish(
        Duration::from_secs(60),
        "devstack did not stop within 60 s of SIGTERM",
    );
    assert!(run.status.success(), "{}", run.stderr);
    let mut scanned = files_under(&cwd.join(".devstack"));
    scanned.extend(["shop.stdout", "shop.stderr"].map(|n| cwd.join(n)));
    for file in &scanned {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !shared::scan::contains_pan_any_encoding(&bytes, &pan),
            "the card number is in {}",
            file.display()
        );
    }
}
