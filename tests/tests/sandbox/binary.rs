//! The `bank131-sandbox` binary: flags, printed URL and key path, and logs without card data.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::json;
use shared::Pan;
use shared::scan::contains_pan;
use testkit::http::Fetch;

use crate::helpers::{PROJECT, Partner, VISA, partner_keys, payout_body, session_id};

#[tokio::test]
async fn binary_serves_a_project_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let partner_key = dir.path().join("partner.pem");
    std::fs::write(&partner_key, &partner_keys().1).unwrap();
    let bank_out = dir.path().join("bank.pem");

    let mut child = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--project-id",
            PROJECT,
            "--auto-confirm",
        ])
        .args(["--webhook-version", "v1", "--wallet-balance", "777"])
        .args(["--fault", "session/status=error@1", "--log", "debug"])
        .arg("--partner-public-key")
        .arg(&partner_key)
        .arg("--bank-public-key-out")
        .arg(&bank_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url_line = lines.next().unwrap().unwrap();
    let key_line = lines.next().unwrap().unwrap();
    let url = url_line
        .strip_prefix("BANK131_SANDBOX_URL=")
        .unwrap()
        .to_owned();
    let key_path = key_line
        .strip_prefix("BANK131_SANDBOX_BANK_PUBLIC_KEY=")
        .unwrap();
    let pem = std::fs::read_to_string(key_path).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let p = Partner::new(&url, PROJECT, &partner_keys().0);
    let served: String = p
        .http
        .get(format!("{url}/__sandbox/bank-public-key"))
        .text_body()
        .await;
    assert_eq!(served, pem);
    let project: serde_json::Value = p
        .http
        .get(format!("{url}/__sandbox/projects/{PROJECT}"))
        .json_body()
        .await;
    assert_eq!(
        (
            project["wallet_balance"].as_i64(),
            project["auto_confirm"].as_bool()
        ),
        (Some(777), Some(true))
    );
    let (s, b) = p
        .init("v1", payout_body("payment_method", VISA, 100, "I"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = p.on_session("v1", "status", "ps_1").await;
    assert_eq!(s, 500, "the --fault flag is active");

    child.kill().unwrap();
    child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("bank api request"), "{logs}");
    assert!(
        !contains_pan(logs.as_bytes(), &Pan::parse(VISA).unwrap()),
        "{logs}"
    );
}

#[test]
fn bad_flags_exit_64_or_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--partner-public-key",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap: --partner-public-key needs --project-id"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--project-id",
            "x",
            "--partner-public-key",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn unusable_keys_and_faults_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    for args in [
        vec!["--bank-key", junk.to_str().unwrap()],
        vec![
            "--project-id",
            "x",
            "--partner-public-key",
            junk.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--fault", "webhook:*=hang"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects a bad --fault");
}

/// A state file the sandbox did not write stops the start (exit 64) with the place in the file,
/// never its content.
#[test]
fn a_foreign_state_file_exits_64_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        format!(r#"{{"format":1,"counters":{{"session":"{VISA}"}}}}"#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .arg("--bank-public-key-out")
        .arg(dir.path().join("bank.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("counters.session"), "{stderr}");
    assert!(
        !contains_pan(&out.stderr, &Pan::parse(VISA).unwrap()),
        "{stderr}"
    );
}

/// Issue 12 §4: a restarted sandbox never hands out a session id it gave before (a proxy that
/// outlives it would meet a "duplicate" session), unless stable ids are asked for.
#[tokio::test]
async fn session_ids_stay_unique_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let partner_key = dir.path().join("partner.pem");
    std::fs::write(&partner_key, &partner_keys().1).unwrap();
    let run = |extra: &[&str]| {
        let (child, mut lines) = listening(
            Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
                .args(["--project-id", PROJECT])
                .arg("--partner-public-key")
                .arg(&partner_key)
                .arg("--bank-public-key-out")
                .arg(dir.path().join("bank.pem"))
                .args(extra),
        );
        let url = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("BANK131_SANDBOX_URL=")
            .unwrap()
            .to_owned();
        // The key line comes once it listens; the reader stays open (a closed pipe would end
        // the sandbox at its next line).
        let key = lines.next().unwrap().unwrap();
        assert!(key.starts_with("BANK131_SANDBOX_BANK_PUBLIC_KEY="));
        (child, url, lines)
    };
    let mut ids = Vec::new();
    for extra in [&[][..], &[][..], &["--id-prefix", ""][..]] {
        let (mut child, url, _lines) = run(extra);
        let p = Partner::new(&url, PROJECT, &partner_keys().0);
        let (s, b) = p.post("/api/v2/session/create", json!({})).await;
        assert_eq!(s, 200, "{b}");
        ids.push(session_id(&b));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(
        ids[0].starts_with("ps_") && ids[1].starts_with("ps_"),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1], "a restart repeated a session id");
    assert!(
        !shared::scan::has_digit_run(ids[0].as_bytes(), 6),
        "{ids:?}"
    );
    assert_eq!(ids[2], "ps_1");
}

/// Issue 12 §4: with `--state-dir` the bank's key survives a restart, so a proxy holding its
/// public key keeps accepting webhooks; without it each start makes a new one.
#[tokio::test]
async fn the_bank_key_survives_a_restart_with_a_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let public_key = |extra: &[&std::ffi::OsStr]| {
        let out = dir.path().join("bank.pem");
        let (mut child, mut lines) = listening(
            Command::new(env!("CARGO_BIN_EXE_bank131-sandbox"))
                .arg("--bank-public-key-out")
                .arg(&out)
                .args(extra),
        );
        // The key is written before its line is printed.
        for _ in 0..2 {
            lines.next().unwrap().unwrap();
        }
        let pem = std::fs::read_to_string(&out).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        pem
    };
    let state = dir.path().join("state");
    let kept = [std::ffi::OsStr::new("--state-dir"), state.as_os_str()];
    let first = public_key(&kept);
    let again = public_key(&kept);
    assert_eq!(first, again, "the bank key changed across a restart");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("bank-private.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_ne!(public_key(&[]), first, "without a state dir the key is new");
}

/// The sandbox `command` describes, started on a free port: the child and its stdout lines
/// (kept open: a closed pipe would end the sandbox at its next line).
fn listening(
    command: &mut Command,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = command
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}
