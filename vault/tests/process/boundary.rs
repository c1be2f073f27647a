//! docs/ARCHITECTURE.md §2 over a whole run of the real binary: canary PANs go in through every door; none
//! may come out anywhere but a detokenize response: not the database file or its WAL, not the
//! logs, not the command line's output, not any other response body or header.

use reqwest::{Client, Method};

use crate::helpers::{ALL_SCOPES, VaultDir, contains};

use testkit::TEST_CARDS as CANARIES;

struct Recorder {
    http: Client,
    base: String,
    /// Every response except detokenize successes: status line, headers and body.
    seen: Vec<u8>,
    detokenized: Vec<String>,
}

impl Recorder {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> serde_json::Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let mut head = format!("{status}\n");
        for (name, value) in resp.headers() {
            head.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
        }
        let body = resp.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if path.ends_with("/detokenize") && status.is_success() {
            self.detokenized
                .push(json["pan"].as_str().unwrap().to_owned());
        } else {
            self.seen.extend_from_slice(head.as_bytes());
            self.seen.extend_from_slice(&body);
        }
        json
    }

    async fn get(&mut self, path: &str, key: &str) -> serde_json::Value {
        self.call(Method::GET, path, key, None, &[]).await
    }

    async fn post(&mut self, path: &str, key: &str, body: String) -> serde_json::Value {
        self.call(Method::POST, path, key, Some(body), &[]).await
    }
}

#[tokio::test]
async fn no_canary_pan_leaves_the_boundary() {
    let vault = VaultDir::new();
    let (_, acme) = vault.client("acme", ALL_SCOPES);
    let (_, globex) = vault.client("globex", ALL_SCOPES);
    let (_, reader) = vault.client("acme", "tokens:read");
    let server = vault.serve();
    let mut r = Recorder {
        http: Client::new(),
        base: server.base.clone(),
        seen: Vec::new(),
        detokenized: Vec::new(),
    };

    for (i, pan) in CANARIES.iter().enumerate() {
        let spaced: String = pan
            .chars()
            .enumerate()
            .flat_map(|(j, c)| {
                if j > 0 && j % 4 == 0 {
                    vec![' ', c]
                } else {
                    vec![c]
                }
            })
            .collect();
        let with_expiry = format!(r#"{{"pan":"{pan}","exp_month":1,"exp_year":2030}}"#);
        let created = r.post("/v1/tokens", &acme, with_expiry).await;
        let token = created["token"].as_str().unwrap().to_owned();
        let (token_path, detokenize_path) = (
            format!("/v1/tokens/{token}"),
            format!("/v1/tokens/{token}/detokenize"),
        );
        r.post("/v1/tokens", &acme, format!(r#"{{"pan":"{spaced}"}}"#))
            .await;
        r.get(&token_path, &acme).await;
        r.get(&token_path, &globex).await;
        r.post(&detokenize_path, &reader, r#"{"purpose":"x"}"#.to_owned())
            .await;
        r.post(
            &detokenize_path,
            &acme,
            r#"{"purpose":"payout"}"#.to_owned(),
        )
        .await;

        // Card numbers where they do not belong.
        let number = pan.parse::<u64>().unwrap();
        for body in [
            format!(r#"{{"pan":{number}}}"#),
            format!(r#"{{"pan":"{pan}","cvv":"123"}}"#),
            format!(r#"{{"pan":"{pan}","note":"{pan}"}}"#),
            format!(r#"{{"pan":"{pan}","exp_month":"{pan}","exp_year":2030}}"#),
            format!(r#"{{"pan":"{pan}","ttl_seconds":{number}00000}}"#),
            format!(r#"{{"pan":"{pan}""#),
            format!(r#"{{"{pan}":"{pan}"}}"#),
        ] {
            r.post("/v1/tokens", &acme, body).await;
        }
        r.post(&detokenize_path, &acme, format!(r#"{{"purpose":"{pan}"}}"#))
            .await;
        r.get(&format!("/v1/tokens/{pan}"), &acme).await;
        r.get(&format!("/v1/tokens?pan={pan}"), &acme).await;
        r.get(&format!("/{pan}"), &acme).await;
        r.get(&token_path, pan).await;
        let in_headers = [("x-request-id", *pan), ("x-card", *pan)];
        r.call(Method::GET, &token_path, &acme, None, &in_headers)
            .await;
        if i % 2 == 0 {
            r.call(Method::DELETE, &token_path, &acme, None, &[]).await;
        }
    }
    r.get("/metrics", &acme).await;

    // Every canary came back through detokenize, and only there.
    assert_eq!(r.detokenized.len(), CANARIES.len());
    for pan in CANARIES {
        assert!(
            r.detokenized.iter().any(|p| p == pan),
            "{pan} did not round-trip"
        );
        assert!(
            !contains(&r.seen, pan),
            "a non-detokenize response carries a canary"
        );
    }

    // The files while the server runs (the WAL holds the recent writes), then after shutdown.
    let running = vault.all_bytes();
    let status = server.terminate();
    assert!(status.success(), "vault exited with {status:?} on SIGTERM");
    let audit = vault.run(&["audit", "verify"]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let stopped = vault.all_bytes();
    let mut scanned = 0;
    for (name, bytes) in running.iter().chain(stopped.iter()) {
        scanned += bytes.len();
        for pan in CANARIES {
            assert!(!contains(bytes, pan), "{name} contains a canary PAN");
        }
    }
    let names: Vec<&str> = running.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("vault.db-wal")),
        "no WAL was scanned: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".log")),
        "no log was scanned: {names:?}"
    );
    assert!(
        scanned > 10_000,
        "suspiciously little was scanned: {scanned} bytes"
    );

    // The scanner is not blind: the same check finds a canary planted in the log.
    let mut planted = stopped[0].1.clone();
    planted.extend_from_slice(b"oops 4242 4242 4242 4242");
    assert!(contains(&planted, CANARIES[0]));
}
