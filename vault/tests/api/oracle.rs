//! Tokenize as a PAN oracle (docs/ARCHITECTURE.md §9.1), and enumeration: a client may not search for card
//! numbers or tokens faster than its limits, and the vault records that it tried.

use reqwest::{Method, StatusCode};

use crate::helpers::{Reply, TestVault};

/// The 13-digit Visa test card the victim stored.
fn luhn_valid(digits: &str) -> bool {
    shared::pan::luhn_valid(digits.as_bytes())
}

/// Every 13-digit Visa number ending in `last4`, in the order an attacker would try them.
fn candidates(last4: &str) -> impl Iterator<Item = String> + '_ {
    (0..100_000_000u64)
        .map(move |middle| format!("4{middle:08}{last4}"))
        .filter(|pan| luhn_valid(pan))
}

/// The whole attack with the default settings: a client holding `tokens:create,tokens:read`
/// reads a token, then tokenizes every candidate its view allows. Before the fix it learned BIN
/// and length from the read and found a 13-digit card in 23 calls. Now it sees last four and
/// brand only (10^7 candidates), and the limiter holds it to its burst plus 10 a second. The
/// target is placed 600th in the attacker's order, which an unlimited client reaches within
/// the test's 1,500 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_is_not_a_pan_oracle_with_the_default_settings() {
    let mut v = TestVault::spawn().await;
    let victim = v.client("acme", "tokens:create").await;
    let (attacker_id, attacker) = v.client_with_id("acme", "tokens:create,tokens:read").await;

    let target = candidates("2222").nth(599).unwrap();
    let token = v.token_for(&victim, &target).await;

    // What the attacker learns from reading the token.
    let read = v.read(&attacker, &token).await;
    assert_eq!(read.status, StatusCode::OK);
    let card = &read.json()["card"];
    assert_eq!(card["last4"], "2222");
    assert_eq!(card["brand"], "visa");
    assert!(
        card.get("bin").is_none() && card.get("length").is_none(),
        "{card}"
    );

    let (mut tried, mut limited, mut found) = (0u32, 0u32, None);
    let mut next = candidates("2222");
    let mut pending = next.next();
    // 1,500 requests, or 40 s on a slow machine: either way the limits (100 + 10 a second)
    // allow fewer than 600 tries, and an unlimited client gets there in the first 600.
    let started = std::time::Instant::now();
    for _ in 0..1_500 {
        if started.elapsed() > std::time::Duration::from_secs(40) {
            break;
        }
        let Some(pan) = pending.clone() else { break };
        let reply: Reply = v.tokenize(&attacker, &pan).await;
        match reply.status {
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let wait: u64 = reply.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
                assert_eq!(reply.code(), "rate_limited");
                continue; // try the same candidate again
            }
            StatusCode::OK | StatusCode::CREATED => {
                tried += 1;
                if reply.json()["token"] == token.as_str() {
                    found = Some(pan);
                    break;
                }
                pending = next.next();
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert_eq!(
        found, None,
        "the attacker recovered the card after {tried} tries"
    );
    assert!(limited > 0, "nothing limited the attacker ({tried} tries)");
    let allowed = 100 + 10 * (u32::try_from(started.elapsed().as_secs()).unwrap() + 1);
    assert!(
        tried <= allowed,
        "{tried} tries got through, at most {allowed} allowed"
    );

    let metrics = v.call(Method::GET, "/metrics", None, None).await.text();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("vault_rate_limited_total{operation=\"tokenize\"}"))
        .unwrap();
    assert_eq!(
        counted,
        format!("vault_rate_limited_total{{operation=\"tokenize\"}} {limited}")
    );

    // The vault noticed: one aggregated event for the client (not one per refusal).
    v.stop().await;
    let events = v.events("rate.limited");
    assert_eq!(events.len(), 1, "{events:?}");
    let (outcome, actor, detail) = &events[0];
    assert_eq!(
        (outcome.as_str(), actor.as_str()),
        ("denied", attacker_id.as_str())
    );
    assert_eq!(
        detail.as_deref(),
        Some(format!("refused by rate limits within 60 s: tokenize={limited}").as_str())
    );
}

/// PCI DSS §5 case 36: many token guesses from one client: every answered one is 404, the
/// limit engages at the configured threshold, the alert (metric and audit event) fires, and no
/// guess finds anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_36_enumeration_is_limited() {
    let mut v = TestVault::spawn_with(|c| {
        c.limits.read_per_second = 1;
        c.limits.read_burst = 50;
        c.limits.detokenize_per_second = 1;
        c.limits.detokenize_burst = 20;
    })
    .await;
    let key = v
        .client("acme", "tokens:create,tokens:read,tokens:detokenize")
        .await;
    let _real = v.token_for(&key, "4242424242424242").await;

    let guesses = 4_000usize;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (http, base, key) = (v.http.clone(), v.base.clone(), key.clone());
            tokio::spawn(async move {
                let (mut not_found, mut limited, mut other) = (0usize, 0usize, 0usize);
                for _ in 0..guesses / 8 {
                    let guess = shared::ids::random_id("tok_").unwrap();
                    let (method, path) = if w == 0 {
                        (Method::POST, format!("{base}/v1/tokens/{guess}/detokenize"))
                    } else {
                        (Method::GET, format!("{base}/v1/tokens/{guess}"))
                    };
                    let mut req = http.request(method, path).bearer_auth(&key);
                    if w == 0 {
                        req = req
                            .header("content-type", "application/json")
                            .body(r#"{"purpose":"guess"}"#);
                    }
                    let resp = req.send().await.unwrap();
                    match resp.status() {
                        StatusCode::NOT_FOUND => not_found += 1,
                        StatusCode::TOO_MANY_REQUESTS => limited += 1,
                        s => {
                            eprintln!("{s}: {}", resp.text().await.unwrap());
                            other += 1;
                        }
                    }
                }
                (not_found, limited, other)
            })
        })
        .collect();
    let (mut not_found, mut limited, mut other) = (0, 0, 0);
    for t in tasks {
        let (n, l, o) = t.await.unwrap();
        (not_found, limited, other) = (not_found + n, limited + l, other + o);
    }
    assert_eq!(other, 0, "a guess got something other than 404 or 429");
    assert_eq!(not_found + limited, guesses);
    // The bursts (50 reads, 20 detokenizes) plus one a second each while the test ran.
    let allowed = 70 + 2 * (usize::try_from(started.elapsed().as_secs()).unwrap() + 1);
    assert!(not_found >= 70, "{not_found}");
    assert!(
        not_found <= allowed,
        "the limit did not engage: {not_found} answered, at most {allowed} allowed"
    );
    let metrics = v.call(Method::GET, "/metrics", None, None).await.text();
    for op in ["read", "detokenize"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("vault_rate_limited_total{{operation=\"{op}\"}}")))
            .unwrap();
        let n: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0, "{line}");
    }
    v.stop().await;
    let events = v.events("rate.limited");
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = events[0].2.clone().unwrap();
    assert!(
        detail.contains("read=") && detail.contains("detokenize="),
        "{detail}"
    );
    // Every answered guess is in the audit log as not found; none was granted.
    let granted: i64 = v.scalar(
        "SELECT count(*) FROM audit_events WHERE action IN ('token.read', 'token.detokenize') AND outcome = 'granted'",
        [],
    );
    assert_eq!(granted, 0);
}
