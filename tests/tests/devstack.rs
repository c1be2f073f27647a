//! `devstack --exit-after-demo`, run twice in a fresh directory: the first run makes everything
//! and walks a payout through every step, the second reuses every key and client; no card number
//! reaches its output or its files.
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

/// Runs devstack without the demo, waits until it serves, then sends SIGTERM.
fn serve_until_sigterm(cwd: &Path, ports: &[u16]) -> Run {
    let mut devstack = Devstack::spawn(cwd, ports, &["--no-demo"], "third");
    devstack.wait_until(
        Duration::from_secs(180),
        "devstack --no-demo did not start serving",
        |d| d.stdout().contains("serving until"),
    );
    // The vault answers while it serves.
    assert!(std::net::TcpStream::connect(("127.0.0.1", ports[0])).is_ok());
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
        "curl -s -X POST $PROXY/v1/payouts",
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
        assert!(first.stdout.contains(&format!("127.0.0.1:{port}")));
    }
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

    // Without the demo it serves until SIGTERM, then stops cleanly.
    let third = serve_until_sigterm(cwd, &ports);
    assert!(
        third.status.success(),
        "exit {:?}\n{}",
        third.status,
        third.stderr
    );
    assert!(!third.stdout.contains("[1] tokenized"), "{}", third.stdout);
    assert!(third.stdout.contains("reused:"), "{}", third.stdout);
    assert!(
        third.stdout.contains("devstack stopped"),
        "{}",
        third.stdout
    );

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
    let Some(browser) = testkit::browser::launch().await.unwrap() else {
        return;
    };
    let patience = testkit::browser::DEADLINE;
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let ports = free_ports(4);
    let mut devstack = Devstack::spawn(cwd, &ports, &["--no-demo"], "shop");
    devstack.wait_until(
        Duration::from_secs(180),
        "devstack --no-demo did not start serving",
        |d| d.stdout().contains("serving until"),
    );
    let shop = format!("http://127.0.0.1:{}/", ports[3]);
    assert!(
        devstack.stdout().contains(&shop),
        "the shop's URL is printed"
    );

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
