//! `kill -9` during concurrent tokenize load: every token acknowledged before the kill still
//! detokenizes to its PAN after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;

use crate::helpers::{ALL_SCOPES, VaultDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_tokens_survive_kill_9() {
    let vault = VaultDir::new();
    vault.unlimited();
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (http, base, key, acked) = (
            http.clone(),
            server.base.clone(),
            key.clone(),
            Arc::clone(&acked),
        );
        workers.push(tokio::spawn(async move {
            for i in 0..100_000u64 {
                let pan = testkit::numbered_card(w * 1_000_000 + i);
                let sent = http
                    .post(format!("{base}/v1/tokens"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "pan": pan }))
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if !resp.status().is_success() {
                    return;
                }
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                let token = body["token"].as_str().unwrap().to_owned();
                acked.lock().unwrap().push((pan, token));
            }
        }));
    }
    // Kill once real load has been acknowledged (progress, not a fixed time: on a loaded
    // machine a second may hold only a few requests).
    let deadline = std::time::Instant::now() + crate::helpers::READY_DEADLINE;
    while acked.lock().unwrap().len() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the vault acknowledged only {} tokens",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "too little load to mean anything: {}",
        acked.len()
    );
    eprintln!("{} tokens acknowledged before kill -9", acked.len());

    let server = vault.serve();
    for (pan, token) in &acked {
        let resp = http
            .post(format!("{}/v1/tokens/{token}/detokenize", server.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "purpose": "durability check" }))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "acknowledged {token} lost: {}",
            resp.status()
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["pan"].as_str(), Some(pan.as_str()));
    }
    drop(server);
    let verify = vault.run(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit chain broken by the crash: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// `kill -9` in the middle of a rewrap loses nothing: the batches committed stay moved, the
/// one in flight rolls back, and the restarted vault carries on until no row is left under the
/// old version; every token still opens to its card.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewrap_killed_midway_resumes_and_loses_nothing() {
    let vault = VaultDir::new();
    vault.unlimited();
    // Small, slow batches, so the kill lands mid-rewrap.
    let config = vault.path("vault.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[keys]\n",
        "[keys]\nrewrap_batch_size = 10\nrewrap_pause_ms = 100\n",
    );
    std::fs::write(&config, text).unwrap();
    let (_, key) = vault.client("acme", ALL_SCOPES);
    let server = vault.serve();
    let http = Client::new();
    let mut made = Vec::new();
    for i in 0..400u64 {
        let pan = testkit::numbered_card(9_000_000 + i);
        let body: serde_json::Value = http
            .post(format!("{}/v1/tokens", server.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "pan": pan }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        made.push((pan, body["token"].as_str().unwrap().to_owned()));
    }
    let db = rusqlite::Connection::open(vault.path("vault.db")).unwrap();
    let under_v1 = || -> i64 {
        db.query_row(
            "SELECT count(*) FROM tokens WHERE key_version = 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(under_v1(), 400);
    assert!(vault.run(&["keys", "rotate"]).status.success());
    // Kill as soon as the serving vault has moved a first batch (progress, not a fixed time).
    let deadline = std::time::Instant::now() + crate::helpers::READY_DEADLINE;
    while under_v1() == 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rewrap never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    let left = under_v1();
    assert!(
        left > 0 && left < 400,
        "the kill must land mid-rewrap: {left} rows left under v1"
    );

    let server = vault.serve();
    let deadline = std::time::Instant::now() + crate::helpers::READY_DEADLINE;
    while under_v1() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rewrap never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (pan, token) in &made {
        let body: serde_json::Value = http
            .post(format!("{}/v1/tokens/{token}/detokenize", server.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({ "purpose": "rewrap durability check" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["pan"], pan.as_str(), "{token}");
    }
    drop(server);
    assert!(vault.run(&["audit", "verify"]).status.success());
}
