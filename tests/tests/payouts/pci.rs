//! The PCI DSS §5 cases the proxy's webhooks, isolation and retries close (issue 11 §5), each a
//! named test against the running system. Case 28 (egress) is in `egress.rs` and in the bank
//! client's suite.

use std::time::{Duration, Instant};

use proxy::store::ProxyStore;
use serde_json::{Value, json};

use crate::stack::{SECS, Stack, bank_session, payout_id, post_bank_webhook, until};

/// The webhooks the sandbox sent about `session`, oldest first: (type, body, signature).
async fn bank_webhooks(stack: &Stack, session: &str) -> Vec<(String, String, String)> {
    stack
        .journal()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "webhook" && e["session_id"] == session)
        .map(|e| {
            (
                e["webhook_type"].as_str().unwrap().to_owned(),
                e["body"].as_str().unwrap().to_owned(),
                e["headers"]["x-partner-sign"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn hooks_for(stack: &Stack, id: &str) -> Vec<Value> {
    stack.hooks_about(id).into_iter().map(|h| h.event).collect()
}

/// No form of `pan` is in the proxy's database or its WAL.
fn assert_proxy_db_lacks(stack: &Stack, pan: &shared::Pan) {
    for (name, bytes) in stack.files() {
        if name.starts_with("proxy.db") {
            assert!(
                !shared::scan::contains_pan_any_encoding(&bytes, pan),
                "{name} holds the PAN"
            );
        }
    }
}

/// PCI 11, pay-out half: another tenant's token does not pay out, and another app's payout
/// (same tenant or not) is 404 byte-identical to one that does not exist, for reading, listing,
/// confirming and cancelling; a tenant-wide read scope is explicit and reads only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_11_tenants_and_apps_see_and_decide_only_their_own_payouts() {
    let mut stack = Stack::start().await;
    stack.add_vault_tenant("globex").await;
    let same_tenant = stack.proxy_client("app-b", "acme", "payouts:write,payouts:read");
    let other_tenant = stack.proxy_client("app-c", "globex", "payouts:write,payouts:read");
    let back_office = stack.proxy_client("back-office", "acme", "payouts:read_tenant");

    let (id, _) = stack
        .awaiting_confirmation("4242424242424242", 2_500, "Ivanov Ivan")
        .await;
    let missing = "pay_0000000000000000000000";
    for key in [&same_tenant, &other_tenant] {
        let (status, body) = stack.get_as(key, &format!("/v1/payouts/{id}")).await;
        let (missing_status, missing_body) =
            stack.get_as(key, &format!("/v1/payouts/{missing}")).await;
        assert_eq!((status, &body), (404, &missing_body), "read");
        assert_eq!(missing_status, 404);
        for action in ["confirm", "cancel"] {
            let (status, body) = stack
                .post_as(key, &format!("/v1/payouts/{id}/{action}"))
                .await;
            let (_, missing_body) = stack
                .post_as(key, &format!("/v1/payouts/{missing}/{action}"))
                .await;
            assert_eq!((status, &body), (404, &missing_body), "{action}");
        }
        let (status, list) = stack.get_as(key, "/v1/payouts?limit=100").await;
        assert_eq!(status, 200);
        assert!(!list.contains(&id), "listed to another app: {list}");
    }
    // Still waiting: nobody else decided it.
    assert_eq!(stack.payout(&id).await["status"], "awaiting_confirmation");

    // The back office reads the whole tenant, and decides nothing.
    let (status, body) = stack
        .get_as(&back_office, &format!("/v1/payouts/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = stack.get_as(&back_office, "/v1/payouts?limit=100").await;
    assert!(list.contains(&id));
    let (status, _) = stack
        .post_as(&back_office, &format!("/v1/payouts/{id}/confirm"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = stack.get_as(&other_tenant, "/v1/payouts?limit=100").await;
    assert_eq!(status, 200);

    // Another tenant's token: refused at create exactly as a token that does not exist (the
    // vault does not show it to globex's key); nothing is created, the bank hears nothing.
    let acme_token = stack.tokenize("5555555555554444").await;
    let missing_token = format!("tok_{}", "0".repeat(acme_token.len() - 4));
    let mut answers = Vec::new();
    for (key, token) in [("globex-1", &acme_token), ("globex-2", &missing_token)] {
        let body = json!({"card_token": token, "amount": 100, "currency": "RUB",
                          "recipient": {"full_name": "Ivanov Ivan"}});
        answers.push(stack.create_payout_as(&other_tenant, key, &body).await);
    }
    assert_eq!(
        answers[0], answers[1],
        "a foreign token reads unlike a missing one"
    );
    let refused: Value = serde_json::from_slice(&answers[0].1).unwrap();
    assert_eq!(answers[0].0, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "card_token_not_found");
    assert_eq!(refused["error"]["param"], "card_token");
    let (_, list) = stack.get_as(&other_tenant, "/v1/payouts?limit=100").await;
    assert!(!list.contains("pay_"), "a refused payout was kept: {list}");
}

/// Stop deliveries to revoked apps: an event written after the revocation is abandoned, not
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_app_gets_no_more_webhooks() {
    // The bank cancels an unconfirmed session after 1.5 s: the payout ends after the revocation.
    let stack = Stack::with_sandbox_flags(&["--confirm-timeout-ms", "1500"]).await;
    let app_b = stack.proxy_client("app-b", "acme", "payouts:write,payouts:read");
    let token = stack.tokenize("4242424242424242").await;
    let body = json!({"card_token": token, "amount": 100, "currency": "RUB", "confirm": "manual",
                      "recipient": {"full_name": "Ivanov Ivan"}});
    let (status, created) = stack.create_payout_as(&app_b, "b-1", &body).await;
    assert_eq!(status, 201);
    let id = serde_json::from_slice::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = stack.proxy_store();
    // One deadline for both waits, as the whole payout must end within it.
    let deadline = Instant::now() + SECS;
    until(SECS, async || {
        let p = store.payout(&payout_id(&id)).await.unwrap().unwrap();
        if p.state.as_str() == "awaiting_confirmation" {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    let clients = stack.proxy_cli_ok(&["clients", "list"]);
    let app_b_id = clients
        .lines()
        .find(|l| l.contains("app-b"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    stack.proxy_cli_ok(&["clients", "revoke", &app_b_id]);
    // The payout still ends (the bank times the confirmation out); its event is not sent.
    let p = until(
        deadline.saturating_duration_since(Instant::now()),
        async || {
            let p = store.payout(&payout_id(&id)).await.unwrap().unwrap();
            if p.state.is_final() && store.undelivered_events().await.unwrap() == 0 {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    )
    .await;
    assert_eq!(p.state.as_str(), "failed", "{p:?}");
    let heard: Vec<Value> = hooks_for(&stack, &id)
        .into_iter()
        .filter(|h| h["type"] == "payout.failed")
        .collect();
    assert!(heard.is_empty(), "a revoked app got webhooks: {heard:?}");
}

/// PCI 20: the bank signs no timestamp (API.md §2.2), so a replay cannot be told by its age; a
/// replayed webhook (100 times) changes nothing and is not kept again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_20_a_replayed_bank_webhook_changes_nothing_and_is_kept_once() {
    let (stack, id, done) = Stack::start_paid("4242424242424242", 4_000, "Ivanov Ivan").await;
    let session = &bank_session(&done);
    let store = stack.proxy_store();
    let kept = store.bank_events(&payout_id(&id)).await.unwrap().len();
    let hooks = hooks_for(&stack, &id).len();
    for (_, body, signature) in bank_webhooks(&stack, session).await {
        for _ in 0..50 {
            assert_eq!(stack.bank_webhook(&body, &signature).await, 200);
        }
    }
    let after = stack.payout(&id).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["updated_at"], done["updated_at"]);
    assert_eq!(
        store.bank_events(&payout_id(&id)).await.unwrap().len(),
        kept
    );
    assert_eq!(hooks_for(&stack, &id).len(), hooks);
}

/// PCI 21: 50 concurrent copies of one webhook: all 2xx, one state change, one app event, one
/// row kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_21_fifty_concurrent_duplicates_of_one_webhook_change_the_state_once() {
    let (stack, bank) = Stack::signing_as_bank().await;
    // The bank's own delivery is dropped: the test delivers payment_finished, 50 times at once.
    stack
        .fault(json!({"on": "webhook:payment_finished", "action": "drop"}))
        .await;
    let id = stack
        .pay("5555555555554444", 4_100, "auto", "Ivanov Ivan")
        .await;
    let session = until(SECS, async || {
        let p = stack.payout(&id).await;
        if let Some(session) = p["bank"]["session_id"].as_str() {
            let view = stack.sandbox_session(session).await;
            if view["session"]["status"] == "accepted" {
                return Ok(view["session"].clone());
            }
        }
        Err(p.to_string())
    })
    .await;
    let body = json!({"type": "payment_finished", "session": session}).to_string();
    let signature = bank.sign(body.as_bytes()).unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..50 {
        sends.spawn(post_bank_webhook(
            stack.http.clone(),
            stack.proxy_url.clone(),
            body.clone(),
            signature.clone(),
        ));
    }
    let statuses = sends.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded");
    stack.wait_hook(&id, "payout.succeeded").await;
    let succeeded = hooks_for(&stack, &id)
        .iter()
        .filter(|h| h["type"] == "payout.succeeded")
        .count();
    assert_eq!(succeeded, 1);
    let kept = stack
        .proxy_store()
        .bank_events(&payout_id(&id))
        .await
        .unwrap();
    assert_eq!(
        kept.iter().filter(|e| e.kind == "payment_finished").count(),
        1
    );
}

/// PCI 23: a signed bank webhook carrying a full PAN is stored redacted and never reaches the
/// app; the proxy's database holds no PAN afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_23_a_bank_webhook_carrying_a_pan_is_redacted_and_never_forwarded() {
    let (stack, bank) = Stack::signing_as_bank().await;
    let (id, done) = stack
        .pay_to_end("2200000000000004", 4_200, "auto", "Ivanov Ivan")
        .await;
    let session = &bank_session(&done);
    let leaked = "4111111111111111";
    let bank_view = stack.sandbox_session(session).await;
    let mut leaky = bank_view["session"].clone();
    leaky["payout_list"][0]["payout_details"]["card"]["number"] = json!(leaked);
    leaky["payout_list"][0]["metadata"]["note"] = json!(format!("card {leaked}"));
    let body = json!({"type": "payment_finished", "session": leaky}).to_string();
    let signature = bank.sign(body.as_bytes()).unwrap();
    assert_eq!(stack.bank_webhook(&body, &signature).await, 200);

    let kept = stack
        .proxy_store()
        .bank_events(&payout_id(&id))
        .await
        .unwrap();
    assert!(
        kept.iter().any(|e| e.body.contains("[redacted]")),
        "{kept:?}"
    );
    let pan = shared::Pan::parse(leaked).unwrap();
    for e in &kept {
        assert!(!shared::scan::contains_pan_any_encoding(
            e.body.as_bytes(),
            &pan
        ));
    }
    for h in hooks_for(&stack, &id) {
        assert!(!shared::scan::contains_pan_any_encoding(
            h.to_string().as_bytes(),
            &pan
        ));
    }
    let (_, view) = stack
        .get_as(&stack.app_key, &format!("/v1/payouts/{id}"))
        .await;
    assert!(!view.contains(leaked));
    assert_proxy_db_lacks(&stack, &pan);
}

/// PCI 24: a webhook from before the final state (delivered late, out of order) changes
/// nothing; the bank's own status agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_24_a_stale_webhook_after_the_final_state_changes_nothing() {
    let (stack, id, waiting) =
        Stack::start_awaiting("4242424242424242", 4_300, "Ivanov Ivan").await;
    let session = bank_session(&waiting);
    let (status, _) = stack.action(&id, "confirm").await;
    assert_eq!(status, 200);
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded");
    let (_, body, signature) = bank_webhooks(&stack, &session)
        .await
        .into_iter()
        .find(|(kind, _, _)| kind == "ready_to_confirm")
        .unwrap();
    assert_eq!(stack.bank_webhook(&body, &signature).await, 200);
    let after = stack.payout(&id).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["updated_at"], done["updated_at"]);
    let bank = stack.sandbox_session(&session).await;
    assert_eq!(bank["session"]["status"], "accepted");
    assert_eq!(bank["session"]["payout_list"][0]["status"], "succeeded");
}

/// PCI 27: a bank answering 5xx to every start: the calls are bounded, each carries the same
/// idempotency key, and the proxy's database (its retry queue) holds no PAN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pci_27_bank_5xx_until_retries_run_out_is_bounded_with_one_key_and_no_pan_kept() {
    let stack = Stack::start().await;
    stack
        .fault(json!({"on": "session/start/payout", "action": "error", "status": 503}))
        .await;
    let pan = "5555555555554444";
    let id = stack.pay(pan, 4_400, "auto", "Ivanov Ivan").await;
    // Past the re-send cap the session is cancelled and the payout flagged for a person.
    let flagged = stack
        .wait_payout(&id, Duration::from_secs(120), "flagged", |p| {
            p["needs_attention"]
                .as_str()
                .is_some_and(|a| a.contains("never showed"))
        })
        .await;
    let starts = stack.calls_for("session/start/payout", &flagged).await;
    assert!(
        (1..=4).contains(&starts.len()),
        "one start and at most payouts.max_start_resends (3) re-sends: {}",
        starts.len()
    );
    let keys: std::collections::BTreeSet<_> = starts
        .iter()
        .map(|s| {
            s["headers"]["x-partner-idempotency-key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_proxy_db_lacks(&stack, &shared::Pan::parse(pan).unwrap());
}

/// App webhook secrets are wrapped at rest: a reader of proxy.db cannot sign a webhook the app
/// would trust. A secret an older version stored in clear is wrapped at the next start, and is
/// still the same secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_webhook_secrets_are_wrapped_at_rest_and_old_clear_ones_at_start() {
    let mut stack = Stack::start().await;
    let store = stack.proxy_store();
    let config =
        proxy::config::ProxyConfig::load(Some(&stack.path("proxy.toml")), std::iter::empty())
            .unwrap();
    let secrets = proxy::secrets::for_config(&config).unwrap();
    for client in store.clients().await.unwrap() {
        assert!(
            !proxy::secrets::is_clear(&client.webhook_secret),
            "{}",
            client.id
        );
        assert!(
            secrets
                .open(&client.webhook_secret, client.id.as_str())
                .is_ok()
        );
    }
    // As an older version stored it.
    let clear = proxy::auth::WebhookSecret::generate().unwrap();
    let mut legacy = proxy::auth::NewClient::make(
        "legacy",
        "acme",
        proxy::auth::Scopes::parse("payouts:read").unwrap(),
        None,
        proxy::engine::now_micros(),
    )
    .unwrap()
    .record;
    legacy.webhook_secret = clear.clone();
    store.insert_client(legacy.clone()).await.unwrap();
    stack.restart_proxy().await;
    let stored = store
        .client(&legacy.id)
        .await
        .unwrap()
        .unwrap()
        .webhook_secret;
    assert!(!proxy::secrets::is_clear(&stored));
    assert_ne!(stored, clear);
    assert_eq!(secrets.open(&stored, legacy.id.as_str()).unwrap(), clear);
    // And the app webhooks still verify with the secret the app was given.
    let id = stack
        .pay("4242424242424242", 100, "auto", "Ivanov Ivan")
        .await;
    assert!(
        stack
            .wait_hook(&id, "payout.succeeded")
            .await
            .signature_valid
    );
}
