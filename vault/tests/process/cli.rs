//! The command line: init, clients, audit verify against a tampered log, bad keys and config.

use testkit::http::Fetch;
use testkit::output::{assert_success, failed_with, run_in};

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{ALL_SCOPES, VAULT, VaultDir, create_client};

#[test]
fn init_writes_a_private_key_and_refuses_to_overwrite() {
    let vault = VaultDir::new();
    let mode = std::fs::metadata(vault.path("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(vault.path("master.key")).unwrap();
    let again = vault.run(&["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(vault.path("master.key")).unwrap(), before);
}

#[tokio::test]
async fn clients_are_listed_and_revoked_keys_stop_working() {
    let vault = VaultDir::new();
    let (id, key) = vault.client("acme", ALL_SCOPES);
    let list = vault.run(&["clients", "list"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains(&id) && listed.contains("active"));
    assert!(!listed.contains(&key), "list shows the API key");

    let server = vault.serve();
    let missing = "tok_0000000000000000000000";
    assert_eq!(server.read_status(&key, missing).await, 404);
    assert!(vault.run(&["clients", "revoke", &id]).status.success());
    assert_eq!(
        server.read_status(&key, missing).await,
        401,
        "a revoked key still works"
    );
    let listed = String::from_utf8(vault.run(&["clients", "list"]).stdout).unwrap();
    assert!(listed.contains("revoked"));
    assert!(
        !vault.run(&["clients", "revoke", &id]).status.success(),
        "revoking twice succeeded"
    );

    // Bad scopes and labels are refused without creating anything.
    let bad = vault.run(&create_client("x", "acme", "tokens:all"));
    assert_eq!(bad.status.code(), Some(64));
    let bad = vault.run(&create_client("4242424242424242", "acme", "tokens:read"));
    assert!(!bad.status.success());
    let all = vault.run(&["clients", "list"]);
    assert_eq!(String::from_utf8(all.stdout).unwrap().lines().count(), 2);
}

/// Copies the vault's database for one tampering experiment. The copy goes through SQLite's
/// backup API, never a file copy: a stopped vault can leave committed events in its WAL file,
/// which a copy of `vault.db` alone would silently drop.
fn tampered(vault: &VaultDir, name: &str, sql: &str) -> (bool, String) {
    let copy = vault.path(name);
    rusqlite::Connection::open(vault.path("vault.db"))
        .unwrap()
        .backup(rusqlite::MAIN_DB, &copy, None)
        .unwrap();
    rusqlite::Connection::open(&copy)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    let out = vault
        .command(&["audit", "verify"])
        .env("VAULT__DATABASE__PATH", &copy)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn audit_verify_finds_edits_deletions_and_reordering() {
    let vault = VaultDir::new();
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    for pan in ["4242424242424242", "5555555555554444", "2200000000000004"] {
        let token = server.token_for(&key, pan).await;
        server.detokenize(&key, &token, "payout").await;
    }
    assert!(server.terminate().success());

    let ok = vault.run(&["audit", "verify"]);
    let text = String::from_utf8(ok.stdout).unwrap();
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("audit chain ok: 8 events"), "{text}");
    let events = vault.json_lines(&["audit", "list"]);
    assert_eq!(events.len(), 8);
    let detokenize = events
        .iter()
        .find(|e| e["action"] == "token.detokenize")
        .unwrap();
    assert_eq!(detokenize["outcome"], "granted");
    assert_eq!(detokenize["purpose"], "payout");
    assert!(detokenize["token"].as_str().unwrap().starts_with("tok_"));
    assert!(detokenize["actor"].as_str().unwrap().starts_with("cli_"));
    assert!(
        detokenize["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(detokenize["occurred_at"].as_str().unwrap().ends_with('Z'));

    let cases = [
        (
            "edit",
            "UPDATE audit_events SET outcome = 'denied' WHERE seq = 4;",
            4,
        ),
        (
            "edit-time",
            "UPDATE audit_events SET occurred_at = occurred_at + 1 WHERE seq = 6;",
            6,
        ),
        ("delete", "DELETE FROM audit_events WHERE seq = 3;", 3),
        (
            "reorder",
            "UPDATE audit_events SET seq = 100 WHERE seq = 5; UPDATE audit_events SET seq = 5 WHERE seq = 6; UPDATE audit_events SET seq = 6 WHERE seq = 100;",
            5,
        ),
        ("delete-first", "DELETE FROM audit_events WHERE seq = 1;", 1),
        (
            "insert",
            "INSERT INTO audit_events SELECT 100, occurred_at, actor, tenant, action, token, purpose, outcome, request_id, detail, mac FROM audit_events WHERE seq = 2; UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3 AND seq < 100; UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000; UPDATE audit_events SET seq = 3 WHERE seq = 100;",
            3,
        ),
    ];
    for (name, sql, seq) in cases {
        let (ok, out) = tampered(&vault, &format!("{name}.db"), sql);
        assert!(!ok, "{name}: tampering not detected: {out}");
        assert!(
            out.contains(&format!("broken at event {seq}")),
            "{name}: {out}"
        );
    }
}

#[test]
fn a_wrong_master_key_or_bad_config_stops_startup() {
    let vault = VaultDir::new();
    let _ = vault.client("acme", ALL_SCOPES);
    std::fs::remove_file(vault.path("master.key")).unwrap();
    assert!(vault.run(&["init"]).status.success());
    let stderr = VaultDir::refused(vault.command(&["serve"]));
    assert!(stderr.contains("master key does not unwrap"), "{stderr}");

    // A setting that does not parse, and one that does not exist: a configuration error (64).
    for (name, value) in [
        ("VAULT__SERVER__LISTEN", "not an address"),
        ("VAULT__SERVER__TYPO", "1"),
    ] {
        let out = vault.command(&["serve"]).env(name, value).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let vault = VaultDir::new();
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    // Hold the write lock so a tokenize is in flight when SIGTERM arrives.
    let blocker = rusqlite::Connection::open(vault.path("vault.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (base, http) = (server.base.clone(), reqwest::Client::new());
    let in_flight = tokio::spawn({
        let (base, http) = (base.clone(), http.clone());
        async move {
            http.post(format!("{base}/v1/tokens"))
                .bearer_auth(key)
                .json(&serde_json::json!({ "pan": "4242424242424242" }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    // The vault itself says when the request is in flight.
    let deadline = std::time::Instant::now() + crate::helpers::READY_DEADLINE;
    loop {
        let metrics = http.get(format!("{base}/metrics")).text_body().await;
        if metrics.contains("vault_http_requests_in_flight{route=\"/v1/tokens\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tokenize never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // While we are here: the server runs with core dumps disabled.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    server.signal_term();
    server.wait_for_log("shutting down: finishing in-flight requests");
    blocker.execute_batch("COMMIT;").unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        201,
        "the in-flight request was cut off"
    );
    assert!(
        tokio::task::spawn_blocking(move || server.terminate_wait())
            .await
            .unwrap()
            .success()
    );
}

/// Issue 12 §1: relative paths in a config file are the file's, whatever the working directory:
/// `audit verify` run from elsewhere neither finds "a missing key" nor creates a fresh, empty
/// vault to call healthy; every command names its database and key first.
#[test]
fn relative_paths_are_the_config_files_and_audit_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("deploy");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("vault.toml"),
        "[database]\npath = \"vault.db\"\n[keys]\nmaster_key_file = \"master.key\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| run_in(dir.path(), VAULT, "deploy/vault.toml", args);
    let stderr = failed_with(&run(&["audit", "verify"]), 1);
    let first = stderr.lines().next().unwrap();
    assert!(
        first.contains("deploy/vault.db") && first.contains("deploy/master.key"),
        "{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!sub.join("vault.db").exists() && !dir.path().join("vault.db").exists());

    assert!(run(&["init"]).status.success());
    assert!(
        sub.join("master.key").exists(),
        "the key is the config file's"
    );
    assert!(!dir.path().join("master.key").exists());
    assert_success(&run(&create_client("app", "acme", "tokens:create")));
    assert!(sub.join("vault.db").exists());
    assert_success(&run(&["audit", "verify"]));
}

/// Issue 12 §2: a startup failure is one line saying what failed and how to fix it, with the
/// documented exit code; a command line that does not parse exits 2.
#[test]
fn a_startup_failure_is_one_line_with_the_documented_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vault.toml"),
        "[database]\npath = \"vault.db\"\n[keys]\nmaster_key_file = \"missing.key\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(VAULT)
        .arg("--config")
        .arg(dir.path().join("vault.toml"))
        .arg("serve")
        .output()
        .unwrap();
    let stderr = failed_with(&out, 1);
    let failures: Vec<&str> = stderr.lines().filter(|l| l.contains("key file")).collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    assert!(failures[0].contains("vault init"), "{stderr}");
    assert_eq!(
        failures[0].matches("not found").count(),
        1,
        "the cause said more than once: {stderr}"
    );
    let out = std::process::Command::new(VAULT)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 12 §3: listings have `--json`; `audit list` filters by action, token and time.
#[tokio::test]
async fn listings_speak_json_and_audit_list_filters() {
    let vault = VaultDir::new();
    let (id, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    let mut tokens = Vec::new();
    for pan in ["4242424242424242", "5555555555554444"] {
        tokens.push(server.token_for(&key, pan).await);
    }
    assert_eq!(server.read_status(&key, &tokens[0]).await, 200);

    let lines = |args: &[&str]| vault.json_lines(args);
    let clients = lines(&["clients", "list", "--json"]);
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["id"], id.as_str());
    assert_eq!(clients[0]["status"], "active");
    assert!(!clients[0].to_string().contains(&key));

    let actions = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    };
    let about_first = lines(&["audit", "list", "--token", &tokens[0]]);
    assert_eq!(actions(&about_first), ["token.create", "token.read"]);
    let reads = lines(&["audit", "list", "--action", "token.read"]);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["token"], tokens[0].as_str());
    let creates = lines(&["audit", "list", "--action", "token.create", "--limit", "1"]);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["token"], tokens[0].as_str());
    let recent = lines(&["audit", "list", "--since", "1h", "--action", "token.create"]);
    assert_eq!(recent.len(), 2);
    assert!(lines(&["audit", "list", "--since", "2999-01-01T00:00:00Z"]).is_empty());
    let bad = vault.run(&["audit", "list", "--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--since"),
        "{bad:?}"
    );
}

/// Issue 12 §1: `vault check` names a master key others can read and a key that does not open
/// the database, exits 1, and creates nothing.
#[test]
fn check_names_key_problems_and_creates_nothing() {
    let vault = VaultDir::new();
    let ok = vault.run(&["check"]);
    assert!(ok.status.success(), "{ok:?}");
    let report = String::from_utf8_lossy(&ok.stdout);
    assert!(report.contains("# no problems found"), "{report}");
    assert!(report.contains("max_ttl_seconds"), "{report}");
    vault.client("acme", ALL_SCOPES);
    std::fs::set_permissions(
        vault.path("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let open = vault.run(&["check"]);
    assert_eq!(open.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&open.stdout).contains("# - keys.master_key_file"),
        "{open:?}"
    );
    // Another key over the same database.
    std::fs::remove_file(vault.path("master.key")).unwrap();
    assert!(vault.run(&["init"]).status.success());
    let wrong = vault.run(&["check"]);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stdout).contains("# - the master key and the database"),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn keys_rotate_and_retire_from_the_command_line_while_the_vault_serves() {
    let vault = VaultDir::new();
    vault.unlimited();
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    let old = server.token_for(&key, "4242424242424242").await;

    let (code, out, err) = vault.outcome(&["keys", "rotate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("data key version 2"), "{out}");
    // The running vault takes it up by itself: a new card lands under v2.
    let db = rusqlite::Connection::open(vault.path("vault.db")).unwrap();
    let version_of = |token: &str| -> i64 {
        db.query_row(
            "SELECT key_version FROM tokens WHERE token = ?1",
            [token],
            |r| r.get(0),
        )
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for n in 0.. {
        let token = server.token_for(&key, &testkit::numbered_card(n)).await;
        if version_of(&token) == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sealed under v2"
        );
    }
    server.detokenize(&key, &old, "after rotation").await;

    let refused = vault.outcome(&["keys", "retire", "2"]);
    assert_ne!(refused.0, Some(0));
    assert!(refused.2.contains("rotate first"), "{}", refused.2);
    let (code, out, err) = vault.outcome(&["keys", "retire", "1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let wrong = vault.outcome(&["keys", "rotate", "--purpose", "secret"]);
    assert_eq!(wrong.0, Some(64), "{}", wrong.2);

    let status = vault.json_lines(&["keys", "status", "--json"]);
    let data: Vec<_> = status.iter().filter(|k| k["purpose"] == "data").collect();
    assert_eq!(data.len(), 2, "{status:?}");
    assert_eq!(data[0]["state"], "decrypt_only");
    assert_eq!(data[1]["state"], "active");
    assert_eq!(data[1]["in_use"], true);
    let table = vault.outcome(&["keys", "status"]).1;
    assert!(
        table.contains("decrypt_only") && table.contains("PURPOSE"),
        "{table}"
    );
    server.detokenize(&key, &old, "after retirement").await;
    // Move what is left under v1 (the serving vault may have done it already), then destroy v1.
    let (code, out, err) = vault.outcome(&["keys", "rewrap", "--wait"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("resealed"), "{out}");
    // The client key rotates too, by either name.
    let (code, out, err) = vault.outcome(&["keys", "rotate", "--purpose", "client-mac"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("client key version 2"), "{out}");
    // Destroying needs dual control: no operator, no proposal; the proposer cannot approve.
    let (code, _, err) = vault.outcome(&["keys", "destroy", "1"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("VAULT_OPERATOR_KEY"), "{err}");
    let (alice, bob) = vault.two_operators();
    let proposed = vault.as_operator(&alice, &["keys", "destroy", "1"]);
    assert_success(&proposed);
    let text = testkit::output::stdout(&proposed);
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("prp_"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let own = vault.as_operator(&alice, &["approve", &id]);
    assert!(!own.status.success());
    assert!(testkit::output::stderr(&own).contains("cannot approve it"));
    let approved = vault.as_operator(&bob, &["approve", &id]);
    assert_success(&approved);
    assert!(testkit::output::stdout(&approved).contains("destroyed"));
    let refused = vault.as_operator(&alice, &["keys", "destroy", "2"]);
    assert!(
        !refused.status.success(),
        "the version in use is not destroyed"
    );
    assert!(
        testkit::output::stderr(&refused).contains("only a decrypt-only version"),
        "{}",
        testkit::output::stderr(&refused)
    );
    server.detokenize(&key, &old, "after destroying v1").await;
    // The inventory an assessor asks for (PCI 3.6.1.1): every key, algorithm, strength,
    // cryptoperiod, storage and custodian, and never a key's bytes.
    let inventory = vault.json_lines(&["keys", "inventory"]);
    let kinds: Vec<_> = inventory
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "master");
    for kind in ["data", "fingerprint", "audit", "client"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    assert!(
        inventory
            .iter()
            .all(|k| k["strength_bits"] == 256 && k["cryptoperiod"].is_string())
    );
    let table = vault.outcome(&["keys", "inventory", "--markdown"]).1;
    assert!(table.starts_with("| key | version |"), "{table}");
    assert!(table.contains("AES-256-GCM, random 96-bit nonces") && table.contains("| destroyed |"));
    let master = std::fs::read(vault.path("master.key")).unwrap();
    let printed = format!("{inventory:?}{table}");
    let master_text = String::from_utf8_lossy(&master);
    assert!(
        !printed.contains(master_text.trim()),
        "the inventory printed the master key"
    );
    assert!(vault.run(&["audit", "verify"]).status.success());
}
