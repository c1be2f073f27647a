//! docs/ARCHITECTURE.md §2 over the whole system: canary card numbers paid out through every path; afterwards
//! none is in the proxy's database or WAL, any log, any app API response or app webhook, or the
//! vault's files; in the sandbox journal they appear only inside start/payout bodies.

use std::time::Duration;

use serde_json::json;
use shared::Pan;
use testkit::http::Fetch;

use crate::stack::Stack;

const CANARIES: &[&str] = &[
    "4242424242424242",
    "5555555555554444",
    "2200000000000004",
    "4000056655665556",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_leaves_the_boundary() {
    let stack = Stack::start().await;
    let mut responses = Vec::new();
    let mut paid = Vec::new();
    for (i, pan) in CANARIES.iter().enumerate() {
        let confirm = if i % 2 == 0 { "auto" } else { "manual" };
        let id = stack
            .pay(
                pan,
                1_000 + i64::try_from(i).unwrap(),
                confirm,
                "Ivanov Ivan",
            )
            .await;
        if confirm == "manual" {
            stack
                .wait_status(&id, &["awaiting_confirmation"], Duration::from_secs(60))
                .await;
            let (_, body) = stack.action(&id, "confirm").await;
            responses.push(body.to_string());
        }
        let done = stack
            .wait_status(&id, &["succeeded"], Duration::from_secs(60))
            .await;
        responses.push(done.to_string());
        paid.push(id);
        // Card numbers where they do not belong: refused without echo.
        let token = stack.tokenize(pan).await;
        for body in [
            json!({"card_token": pan, "amount": 1, "currency": "RUB", "recipient": {"full_name": "A B"}}),
            json!({"card_token": token, "amount": 1, "currency": "RUB", "recipient": {"full_name": pan}}),
            json!({"card_token": token, "amount": 1, "currency": "RUB", "recipient": {"full_name": "A B"}, "metadata": {"n": pan}}),
            json!({"card_token": token, "amount": 1, "currency": "RUB", "recipient": {"full_name": "A B"}, "pan": pan}),
            json!({"card_token": token, "amount": 1, "currency": "RUB", "recipient": {"full_name": "A B"}, "cvv": "123"}),
            json!({"card_token": token, "amount": pan, "currency": "RUB", "recipient": {"full_name": "A B"}}),
        ] {
            let (status, body) = stack
                .create_payout(&format!("k-{i}-{}", responses.len()), &body)
                .await;
            assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
            responses.push(String::from_utf8_lossy(&body).into_owned());
        }
        let (status, body) = stack
            .create_payout(pan, &json!({"card_token": token}))
            .await;
        assert_eq!(status, 400);
        responses.push(String::from_utf8_lossy(&body).into_owned());
        let (status, body) = stack
            .get_as(&stack.app_key, &format!("/v1/payouts/{pan}"))
            .await;
        assert_eq!(status, 404);
        responses.push(body);
    }
    let list = stack
        .http
        .get(format!("{}/v1/payouts?limit=100", stack.proxy_url))
        .bearer_auth(&stack.app_key)
        .text_body()
        .await;
    responses.push(list);
    // Every payout's final webhook has arrived, so every webhook the app will get is scanned.
    for id in &paid {
        stack.wait_hook(id, "payout.succeeded").await;
    }
    let hooks: Vec<u8> = stack
        .hooks
        .lock()
        .unwrap()
        .iter()
        .flat_map(|h| h.body.clone())
        .collect();
    assert!(!hooks.is_empty());

    let journal = stack.journal().await;
    for canary in CANARIES {
        let pan = Pan::parse(canary).unwrap();
        let found = |bytes: &[u8]| shared::scan::contains_pan_any_encoding(bytes, &pan);
        assert!(
            !found(responses.join("\n").as_bytes()),
            "an app API response carries a card number"
        );
        assert!(!found(&hooks), "an app webhook carries a card number");
        for (name, bytes) in stack.files() {
            if name.starts_with("partner") || name == "master.key" {
                continue;
            }
            assert!(!found(&bytes), "{name} carries a card number");
        }
        let mut in_starts = 0;
        for entry in &journal {
            let text = entry.to_string();
            if !found(text.as_bytes()) {
                continue;
            }
            let path = entry["path"].as_str().unwrap_or_default();
            assert!(
                entry["kind"] == "request" && path.ends_with("session/start/payout"),
                "the card number reached the bank outside a start/payout: {path}"
            );
            in_starts += 1;
        }
        assert_eq!(in_starts, 1, "one start/payout per card");
    }
    let scanned: usize = stack.files().iter().map(|(_, b)| b.len()).sum();
    assert!(scanned > 50_000, "little was scanned: {scanned}");
}
