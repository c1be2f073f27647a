//! Day-two operations (issue 12 §3): credentials rotated in place, webhook URLs changed, app
//! events listed and redelivered.

use serde_json::{Value, json};

use crate::stack::{SECS, Stack, until};

/// The app clients, from `proxy clients list --json`.
fn clients(stack: &Stack) -> Vec<Value> {
    stack
        .proxy_cli_ok(&["clients", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn get_status(stack: &Stack, key: &str, path: &str) -> u16 {
    stack.get_as(key, path).await.0
}

async fn create_with(
    stack: &Stack,
    key: &str,
    idempotency_key: &str,
    body: &Value,
) -> (u16, Value) {
    let (status, body) = stack.create_payout_as(key, idempotency_key, body).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_credentials_keeps_the_client_its_payouts_and_its_idempotency_keys() {
    let stack = Stack::start().await;
    let before = clients(&stack);
    assert_eq!(before.len(), 1, "{before:?}");
    let id = before[0]["id"].as_str().unwrap().to_owned();
    let token = stack.tokenize("4242424242424242").await;
    let body = json!({"card_token": token, "amount": 700, "currency": "RUB",
                      "recipient": {"full_name": "Ivanov Ivan"}, "confirm": "manual"});
    let key1 = stack.app_key.clone();
    let (status, first) = create_with(&stack, &key1, "order-1", &body).await;
    assert_eq!(status, 201, "{first}");
    let payout = first["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payouts/{payout}");
    stack
        .wait_status(&payout, &["awaiting_confirmation"], SECS)
        .await;

    // With an overlap, both keys work until it ends, and the new one replays the old one's
    // request instead of paying again.
    let out = stack.proxy_cli_ok(&["clients", "rotate-key", &id, "--old-key-valid-for", "3600"]);
    let key2 = tests::stack::field(&out, "api_key:").unwrap();
    assert!(out.contains("old key valid until"), "{out}");
    assert_eq!(get_status(&stack, &key1, &path).await, 200);
    assert_eq!(get_status(&stack, &key2, &path).await, 200);
    let (status, again) = create_with(&stack, &key2, "order-1", &body).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    assert!(clients(&stack)[0]["old_key_valid_until"].is_string());

    // Without one, every earlier key stops at once.
    let out = stack.proxy_cli_ok(&["clients", "rotate-key", &id]);
    let key3 = tests::stack::field(&out, "api_key:").unwrap();
    for old in [&key1, &key2] {
        assert_eq!(get_status(&stack, old, &path).await, 401);
    }
    let (status, again) = create_with(&stack, &key3, "order-1", &body).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");
    let after = clients(&stack);
    assert_eq!(after.len(), 1, "rotation made a new client: {after:?}");
    assert_eq!(after[0]["id"], id.as_str());
    assert!(after[0]["old_key_valid_until"].is_null());

    // A new webhook secret signs every delivery from now on.
    let out = stack.proxy_cli_ok(&["clients", "rotate-webhook-secret", &id]);
    let secret = tests::stack::field(&out, "webhook_secret:").unwrap();
    *stack.webhook_secret.lock().unwrap() = secret;
    let (status, body) = stack.post_as(&key3, &format!("{path}/confirm")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        stack
            .wait_hook(&payout, "payout.succeeded")
            .await
            .signature_valid,
        "not signed with the rotated secret"
    );

    // The webhook URL changes in place; a refused URL is not echoed and changes nothing.
    let out = stack.proxy_cli(&[
        "clients",
        "update",
        &id,
        "--webhook-url",
        "ftp://user:hunter2@127.0.0.1/x",
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    stack.proxy_cli_ok(&["clients", "update", &id, "--no-webhook-url"]);
    assert!(clients(&stack)[0]["webhook_url"].is_null());
    stack.proxy_cli_ok(&[
        "clients",
        "update",
        &id,
        "--webhook-url",
        &stack.app_webhook_url,
    ]);
    assert_eq!(
        clients(&stack)[0]["webhook_url"],
        stack.app_webhook_url.as_str()
    );

    // Unknown and revoked clients are refused.
    assert_eq!(
        stack
            .proxy_cli(&["clients", "rotate-key", "app_nope"])
            .status
            .code(),
        Some(1)
    );
    stack.proxy_cli_ok(&["clients", "revoke", &id]);
    assert_eq!(get_status(&stack, &key3, &path).await, 401);
    assert_eq!(
        stack
            .proxy_cli(&["clients", "rotate-key", &id])
            .status
            .code(),
        Some(1),
        "a revoked client was given a key"
    );
}

fn hooks_with_id(stack: &Stack, event_id: &str) -> usize {
    stack
        .hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.event["id"] == event_id && h.signature_valid)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_with_their_delivery_and_redelivered_on_request() {
    let stack = Stack::start().await;
    let key = stack.app_key.clone();
    let mut payouts = Vec::new();
    for pan in ["4242424242424242", "5555555555554444"] {
        let id = stack.pay(pan, 300, "auto", "Ivanov Ivan").await;
        stack.wait_status(&id, &["succeeded"], SECS).await;
        stack.wait_hook(&id, "payout.succeeded").await;
        payouts.push(id);
    }

    // One payout's succeeded event, as sent, with its delivery.
    let (status, page) = stack
        .get_json(
            &key,
            &format!("/v1/events?payout={}&type=payout.succeeded", payouts[0]),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let events = page["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    let event = &events[0];
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["type"], "payout.succeeded");
    assert_eq!(event["payout_id"], payouts[0].as_str());
    assert_eq!(event["payload"]["id"], event_id.as_str());
    assert_eq!(
        event["payload"]["data"]["payout"]["id"],
        payouts[0].as_str()
    );
    assert_eq!(event["delivery"]["status"], "delivered", "{event}");
    assert!(event["delivery"]["delivered_at"].is_string());
    assert!(!page.to_string().contains("4242424242424242"));

    // Newest first, a page at a time.
    let (_, first) = stack.get_json(&key, "/v1/events?limit=1").await;
    let cursor = first["next_after"].as_str().unwrap().to_owned();
    assert_eq!(
        first["data"][0]["payout_id"],
        payouts[1].as_str(),
        "{first}"
    );
    let (_, all) = stack.get_json(&key, "/v1/events?limit=100").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["next_after"].is_null());
    let (_, second) = stack
        .get_json(&key, &format!("/v1/events?limit=1&after={cursor}"))
        .await;
    assert_eq!(
        second["data"][0]["payout_id"],
        payouts[0].as_str(),
        "{second}"
    );

    // Bad filters name the parameter.
    for (query, param) in [
        ("type=payout.paid", "type"),
        ("payout=42", "payout"),
        ("after=pay_x", "after"),
        ("limit=0", "limit"),
    ] {
        let (status, body) = stack.get_json(&key, &format!("/v1/events?{query}")).await;
        assert_eq!(
            (status, &body["error"]["param"]),
            (400, &json!(param)),
            "{body}"
        );
    }

    // Redelivered on request: sent again, signed, with the same id.
    assert_eq!(hooks_with_id(&stack, &event_id), 1);
    let (status, body) = stack
        .post_json(&key, &format!("/v1/events/{event_id}/redeliver"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivery"]["status"], "pending");
    until(SECS, async || {
        if hooks_with_id(&stack, &event_id) < 2 {
            Err("never redelivered".to_owned())
        } else {
            Ok(())
        }
    })
    .await;

    // Another app of the tenant sees none of it, and cannot redeliver it: 404 as for a missing
    // event. A reader may list but not redeliver.
    let other = stack.proxy_client("other", "acme", "payouts:write,payouts:read");
    let (_, theirs) = stack.get_json(&other, "/v1/events").await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let (status, foreign) = stack
        .post_json(&other, &format!("/v1/events/{event_id}/redeliver"))
        .await;
    let (_, missing) = stack
        .post_json(&other, "/v1/events/evt_0000000000000000000000/redeliver")
        .await;
    assert_eq!((status, &foreign), (404, &missing));
    let reader = stack.proxy_client("reader", "acme", "payouts:read");
    let (status, body) = stack
        .post_json(&reader, &format!("/v1/events/{event_id}/redeliver"))
        .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (403, &json!("payouts:write")),
        "{body}"
    );

    // An app with no webhook URL is told why nothing can be redelivered.
    let id = clients(&stack)
        .into_iter()
        .find(|c| c["name"] == "app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.proxy_cli_ok(&["clients", "update", &id, "--no-webhook-url"]);
    let (status, body) = stack
        .post_json(&key, &format!("/v1/events/{event_id}/redeliver"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "webhook_url_not_set");
}
