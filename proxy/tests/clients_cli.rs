//! `proxy clients create` refuses a webhook URL that would make the proxy reach inside
//! (docs/ARCHITECTURE.md §9.3), names the flag and the fix, never echoes the URL, and stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Output};

use testkit::output::{assert_success, failed_with, run_in, stderr, stdout};

/// The `proxy` binary under test.
const PROXY: &str = env!("CARGO_BIN_EXE_proxy");

fn write_config(dir: &Path, allow_private: bool) -> std::path::PathBuf {
    let key = dir.join("webhook.key");
    assert_success(&keygen(&key));
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[database]\npath = \"{}\"\n[vault]\nurl = \"http://127.0.0.1:9\"\n\
             [bank131]\nbase_url = \"http://127.0.0.1:9\"\nproject = \"p\"\n\
             private_key_file = \"k.pem\"\nbank_public_key_file = \"b.pem\"\n\
             [webhooks]\nallow_private_networks = {allow_private}\nsecret_key_file = \"{}\"\n",
            dir.join("proxy.db").display(),
            key.display()
        ),
    )
    .unwrap();
    file
}

/// `proxy webhooks keygen`: a webhook secret key at `key`.
fn keygen(key: &Path) -> Output {
    Command::new(PROXY)
        .args(["webhooks", "keygen"])
        .arg(key)
        .output()
        .unwrap()
}

fn proxy(config: &Path, args: &[&str]) -> Output {
    Command::new(PROXY)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn create(config: &Path, name: &str, url: &str) -> Output {
    proxy(
        config,
        &[
            "clients",
            "create",
            "--name",
            name,
            "--tenant",
            "acme",
            "--scopes",
            "payouts:write",
            "--webhook-url",
            url,
        ],
    )
}

#[test]
fn webhook_urls_pointing_inside_are_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), false);
    for (i, url) in [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://127.0.0.1:8200/v1/detokenize",
        "http://localhost:8300/",
        "https://10.1.2.3/hooks",
        "http://[::1]:8300/",
        "http://2130706433/",
        "http://user:s3cret@192.168.0.10/",
    ]
    .into_iter()
    .enumerate()
    {
        let out = create(&config, &format!("app{i}"), url);
        let stderr = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{url}: {stderr}");
        assert!(stderr.contains("--webhook-url"), "{stderr}");
        assert!(
            stderr.contains("webhooks.allow_private_networks"),
            "{stderr}"
        );
        let host = url::Url::parse(url).unwrap().host_str().unwrap().to_owned();
        assert!(!stderr.contains(&host), "the URL was echoed: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    let listed = proxy(&config, &["clients", "list"]);
    assert!(listed.status.success());
    assert!(
        !stdout(&listed).contains("app"),
        "a refused client was stored"
    );

    let out = create(&config, "ftp", "ftp://shop.example/hooks");
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("http:// or https://"));

    // Development: the explicit setting lets a loopback app be registered.
    let dev = tempfile::tempdir().unwrap();
    let config = write_config(dev.path(), true);
    let out = create(&config, "local", "http://127.0.0.1:9000/hooks");
    assert_success(&out);
    // The secret shown once is not what the database holds: a reader of proxy.db cannot sign
    // a webhook the app would trust.
    let shown = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("webhook_secret:"))
        .unwrap()
        .trim()
        .to_owned();
    let db = std::fs::read(dev.path().join("proxy.db")).unwrap();
    let wal = std::fs::read(dev.path().join("proxy.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(shown.len()).any(|w| w == shown.as_bytes()),
            "the webhook secret is stored in clear"
        );
    }
}

/// Issue 12 §1: relative paths in a config file are the file's, whatever the working directory;
/// every command names its database first; listing never creates a database.
#[test]
fn relative_paths_are_the_config_files_and_listing_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("deploy");
    std::fs::create_dir(&sub).unwrap();
    assert!(keygen(&sub.join("webhook.key")).status.success());
    let config = sub.join("proxy.toml");
    std::fs::write(
        &config,
        "[database]\npath = \"proxy.db\"\n[vault]\nurl = \"http://127.0.0.1:9\"\n\
         [bank131]\nbase_url = \"http://127.0.0.1:9\"\nproject = \"p\"\n\
         private_key_file = \"k.pem\"\nbank_public_key_file = \"b.pem\"\n\
         [webhooks]\nallow_private_networks = true\nsecret_key_file = \"webhook.key\"\n",
    )
    .unwrap();
    // Run from the parent directory, as the trap had it.
    let run = |args: &[&str]| run_in(dir.path(), PROXY, "deploy/proxy.toml", args);
    let stderr = failed_with(&run(&["clients", "list"]), 1);
    assert!(
        stderr.lines().next().unwrap().contains("deploy/proxy.db"),
        "{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        !dir.path().join("proxy.db").exists(),
        "a database appeared in the working directory"
    );
    assert!(!sub.join("proxy.db").exists(), "listing created a database");

    let created = run(&[
        "clients",
        "create",
        "--name",
        "shop",
        "--tenant",
        "acme",
        "--scopes",
        "payouts:read",
        "--webhook-url",
        "http://127.0.0.1:9000/hooks",
    ]);
    assert_success(&created);
    assert!(
        sub.join("proxy.db").exists(),
        "the database is the config file's"
    );
    assert!(!dir.path().join("proxy.db").exists());
    let listed = run(&["clients", "list"]);
    assert!(listed.status.success());
    assert!(stdout(&listed).contains("shop"));
}

/// Issue 12 §1: `proxy check` prints the configuration in effect with the vault key masked and
/// every problem (not only the first), each naming its setting; it exits 1 and writes nothing.
#[test]
fn check_masks_secrets_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let key = "vk_SuperSecretKeyMaterial0123456";
    let other = "SuperSecretNoPrefix";
    std::fs::write(
        &config,
        format!(
            "[vault]\nurl = \"http://user:SuperSecretPw@127.0.0.1:9\"\n[vault.api_keys]\nacme = \"{key}\"\nglobex = \"{other}\"\n\
             [bank131]\nbase_url = \"http://127.0.0.1:9\"\nproject = \"p\"\n\
             private_key_file = \"missing.pem\"\nbank_public_key_file = \"missing-bank.pem\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = proxy(&config, &["check"]);
    let stdout = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains("SuperSecret"),
        "a key in the report: {stdout}"
    );
    assert!(
        stdout.contains("acme = \"vk_*** (32 characters)\""),
        "{stdout}"
    );
    for setting in [
        "bank131.bank_public_key_file",
        "bank131.private_key_file",
        "vault.url",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("# - {setting}"))),
            "{setting}: {stdout}"
        );
    }
    // Defaults filled in, the database resolved against the config file's directory.
    assert!(stdout.contains("max_attempts = 10"), "{stdout}");
    assert!(
        stdout.contains(&dir.path().join("proxy.db").display().to_string()),
        "{stdout}"
    );
    assert!(
        !dir.path().join("proxy.db").exists(),
        "check created the database"
    );
}

/// `mode = "production"` refuses, each on its own line naming the setting, what only
/// development should do: plain HTTP off loopback, debug logs, `http://` upstreams and the
/// development switches; `check` lists the same and exits 1, `serve` exits 78 before it opens
/// anything. The same configuration in development mode starts past these checks.
#[test]
fn production_mode_refuses_each_development_shortcut_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        "mode = \"production\"\n[server]\nlisten = \"0.0.0.0:0\"\n\
         [database]\nurl = \"postgres://proxy:Hunter2Secret@db.internal/proxy?sslmode=require\"\n\
         [vault]\nurl = \"http://10.0.0.5:8200\"\nallow_insecure_http = true\n\
         [bank131]\nbase_url = \"http://10.0.0.6\"\nallow_insecure_http = true\nproject = \"p\"\n\
         private_key_file = \"missing.pem\"\nbank_public_key_file = \"missing-bank.pem\"\n\
         [webhooks]\nallow_private_networks = true\n[log]\nfilter = \"proxy=debug,info\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let expected = [
        "database.url",
        "server.listen",
        "log.filter",
        "vault.url",
        "bank131.base_url",
        "vault.allow_insecure_http",
        "bank131.allow_insecure_http",
        "webhooks.allow_private_networks",
    ];
    let out = proxy(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let said = stderr(&out);
    for setting in expected {
        assert!(
            said.lines().any(|l| l.starts_with(&format!(
                "proxy: mode = \"production\" refuses to start: {setting}"
            ))),
            "{setting}: {said}"
        );
    }
    assert!(
        !dir.path().join("proxy.db").exists(),
        "serve opened the database"
    );
    let out = proxy(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    for setting in expected {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("# - {setting}"))),
            "{setting}: {report}"
        );
    }
    // In development mode none of these is a refusal (the missing key files still are).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("mode = \"production\"", "mode = \"development\""),
    )
    .unwrap();
    let out = proxy(&config, &["serve"]);
    assert_ne!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("refuses to start"),
        "{}",
        stderr(&out)
    );
}
