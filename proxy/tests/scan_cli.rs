//! `proxy scan` is the same scanner as `vault scan` (shared::scan::paths), on the host the
//! proxy runs on: a card number in its directory is found and printed masked (exit 1), a clean
//! directory is clean (exit 0), and it needs no configuration.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::process::Command;

fn scan(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("scan")
        .arg(path)
        .env_remove("PROXY_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn proxy_scan_finds_a_card_number_and_passes_a_clean_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("proxy.log"),
        "2026-12-04T18:00:00Z INFO payout pay_7QveIRNsUE0B4yzZOMB0Vn succeeded amount=150000\n",
    )
    .unwrap();
    let clean = scan(dir.path());
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert!(clean.stdout.is_empty());

    std::fs::write(
        dir.path().join("webhook-dump.txt"),
        "body={\"card\":\"5555-5555-5555-4444\"}\n",
    )
    .unwrap();
    let dirty = scan(dir.path());
    assert_eq!(dirty.status.code(), Some(1), "{dirty:?}");
    let out = String::from_utf8(dirty.stdout).unwrap();
    assert!(
        out.contains("webhook-dump.txt:14: 555555******4444 (plain)"),
        "{out}"
    );
    assert!(!out.contains("5555-5555-5555-4444"));
    let err = String::from_utf8(dirty.stderr).unwrap();
    assert!(
        err.starts_with("proxy scan: 1 card number found in 1 of 2 files"),
        "{err}"
    );
}
