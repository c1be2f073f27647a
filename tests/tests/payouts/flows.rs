//! Payouts that go as they should: auto confirm, manual confirm and cancel, declines.

use proxy::store::ProxyStore;
use serde_json::json;

use crate::stack::{SECS, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_confirm_pays_once_and_tells_the_app() {
    let (stack, id, done) = Stack::start_paid("2200000000000004", 150_000, "Ivanov Ivan").await;
    assert_eq!(done["card"]["last4"], "0004");
    assert!(
        done["bank"]["session_id"]
            .as_str()
            .unwrap()
            .starts_with("ps_")
    );
    assert!(
        done["bank"]["payout_id"]
            .as_str()
            .unwrap()
            .starts_with("po_")
    );

    let hook = stack.wait_hook(&id, "payout.succeeded").await;
    assert!(
        hook.signature_valid,
        "the app webhook's signature does not verify"
    );
    assert_eq!(hook.event["data"]["payout"]["amount"], 150_000);

    let starts = stack.calls_for("session/start/payout", &done).await;
    assert_eq!(starts.len(), 1, "exactly one start/payout");
    assert!(
        starts[0]["body"]
            .as_str()
            .unwrap()
            .contains("2200000000000004"),
        "the start carries the card"
    );
    assert_eq!(
        stack.calls_for("session/confirm", &done).await.len(),
        1,
        "exactly one confirm"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_confirm_and_manual_cancel() {
    let (stack, confirmed, waiting) =
        Stack::start_awaiting("4242424242424242", 5_000, "Petrov Petr").await;
    assert!(waiting["confirm_deadline"].is_string());
    let hook = stack
        .wait_hook(&confirmed, "payout.awaiting_confirmation")
        .await;
    assert!(hook.signature_valid);
    let (status, _) = stack.action(&confirmed, "confirm").await;
    assert_eq!(status, 200);
    let done = stack.wait_final(&confirmed).await;
    assert_eq!(done["status"], "succeeded");
    // A second decision is refused.
    let (status, body) = stack.action(&confirmed, "cancel").await;
    assert_eq!(status, 409, "{body}");

    let (cancelled, _) = stack
        .awaiting_confirmation("5555555555554444", 5_000, "Petrov Petr")
        .await;
    let (status, _) = stack.action(&cancelled, "cancel").await;
    assert_eq!(status, 200);
    let done = stack.wait_final(&cancelled).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(
        stack
            .wait_hook(&cancelled, "payout.cancelled")
            .await
            .signature_valid
    );
    assert_eq!(stack.calls_for("session/confirm", &done).await.len(), 0);
    assert_eq!(stack.calls_for("session/cancel", &done).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declines_insufficient_balance_and_confirm_timeout() {
    let stack = Stack::with_sandbox_flags(&["--confirm-timeout-ms", "500"]).await;
    let cases = [
        (
            tests::sandbox::magic::luhn_card("4000", "0002").unwrap(),
            10_000,
            "Ivanov Ivan",
            "declined_by_issuer_bank",
        ),
        (
            tests::sandbox::magic::luhn_card("4000", "0051").unwrap(),
            10_000,
            "Ivanov Ivan",
            "insufficient_wallet_balance",
        ),
        (
            "4242424242424242".to_owned(),
            10_000,
            tests::sandbox::magic::NO_CONFIRM,
            "confirm_timeout",
        ),
    ];
    for (card, amount, name, code) in cases {
        let (id, done) = stack.pay_to_end(&card, amount, "auto", name).await;
        assert_eq!(done["status"], "failed", "{code}: {done}");
        assert_eq!(done["failure"]["code"], code, "{done}");
        let hook = stack.wait_hook(&id, "payout.failed").await;
        assert_eq!(hook.event["data"]["payout"]["failure"]["code"], code);
    }
    // Same key, same body: the same payout; same key, other body: 409.
    let token = stack.tokenize("4242424242424242").await;
    let body = json!({"card_token": token, "amount": 100, "currency": "RUB", "recipient": {"full_name": "A B"}});
    let (s1, b1) = stack.create_payout("same-key", &body).await;
    let (s2, b2) = stack.create_payout("same-key", &body).await;
    assert_eq!((s1, s2), (201, 200));
    let id = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap()["id"].clone();
    assert_eq!(id(&b1), id(&b2));
    let other = json!({"card_token": token, "amount": 101, "currency": "RUB", "recipient": {"full_name": "A B"}});
    assert_eq!(stack.create_payout("same-key", &other).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_payout_past_its_deadline_is_cancelled() {
    let stack = Stack::with_proxy_env(&[("PROXY__PAYOUTS__CONFIRM_DEADLINE_SECONDS", "1")]).await;
    let (id, _) = stack
        .awaiting_confirmation("4242424242424242", 900, "Ivanov Ivan")
        .await;
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["failure"]["code"], "confirmation_deadline");
    let hook = stack.wait_hook(&id, "payout.cancelled").await;
    assert!(hook.signature_valid);
    let (status, _) = stack.action(&id, "confirm").await;
    assert_eq!(status, 409, "too late to confirm");
}

/// Confirm and cancel are idempotent, a cancel before the bank asks for the confirmation cancels
/// the payout (in either mode), and only a contradictory decision is refused (issue 12 §3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_cancel_are_idempotent_and_a_cancel_before_the_confirmation_cancels() {
    // The bank asks for the confirmation only when the test says so.
    let stack = Stack::with_sandbox_flags(&["--ready-delay-ms", "3600000"]).await;
    let started = |id: String| {
        let stack = &stack;
        async move {
            let p = stack.wait_status(&id, &["started"], SECS).await;
            p["bank"]["session_id"].as_str().unwrap().to_owned()
        }
    };
    let ask_to_confirm = |session: String| {
        let stack = &stack;
        async move {
            stack
                .control(
                    &format!("sessions/{session}/advance"),
                    json!({"step": "ready_to_confirm"}),
                )
                .await;
        }
    };

    // Confirmed twice, then once more after success: one confirm reaches the bank; a cancel
    // then contradicts it.
    let id = stack
        .pay("4242424242424242", 5_000, "manual", "Petrov Petr")
        .await;
    let session = started(id.clone()).await;
    stack
        .refuses(&id, "confirm", 409, "payout_not_awaiting_confirmation")
        .await;
    ask_to_confirm(session.clone()).await;
    stack
        .wait_status(&id, &["awaiting_confirmation"], SECS)
        .await;
    for _ in 0..2 {
        let (status, body) = stack.action(&id, "confirm").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            ["confirming", "succeeded"].contains(&body["status"].as_str().unwrap()),
            "{body}"
        );
    }
    stack.wait_status(&id, &["succeeded"], SECS).await;
    stack.takes(&id, "confirm", "succeeded").await;
    stack
        .refuses(&id, "cancel", 409, "payout_state_conflict")
        .await;
    assert_eq!(stack.bank_calls("session/confirm", &session).await.len(), 1);

    // Cancelled while the bank still processes the start: answered `cancelling` at once; the
    // cancel goes out when the bank asks for the confirmation, and nothing is confirmed.
    let id = stack
        .pay("5555555555554444", 5_000, "manual", "Petrov Petr")
        .await;
    let session = started(id.clone()).await;
    for _ in 0..2 {
        stack.takes(&id, "cancel", "cancelling").await;
    }
    ask_to_confirm(session.clone()).await;
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["failure"]["code"], "cancelled_by_app");
    assert!(
        stack
            .wait_hook(&id, "payout.cancelled")
            .await
            .signature_valid
    );
    stack.takes(&id, "cancel", "cancelled").await;
    stack
        .refuses(&id, "confirm", 409, "payout_state_conflict")
        .await;
    assert_eq!(stack.bank_calls("session/confirm", &session).await.len(), 0);
    assert_eq!(stack.bank_calls("session/cancel", &session).await.len(), 1);

    // An auto-mode payout the bank has no session for yet (its creation keeps failing): the
    // cancel ends it at once, and the app may not confirm what the proxy confirms.
    stack
        .fault(json!({"on": "session/create", "action": "error", "status": 503, "count": 1000}))
        .await;
    let id = stack
        .pay("4111111111111111", 5_000, "auto", "Petrov Petr")
        .await;
    stack
        .refuses(&id, "confirm", 409, "payout_confirmed_automatically")
        .await;
    let body = stack.takes(&id, "cancel", "cancelled").await;
    assert_eq!(body["failure"]["code"], "cancelled_by_app");
    assert!(body["bank"]["session_id"].is_null(), "{body}");
    assert!(
        stack
            .wait_hook(&id, "payout.cancelled")
            .await
            .signature_valid
    );
}

/// With `server.webhook_listen` the bank's webhooks arrive on a listener of their own, which
/// serves nothing of the app API (only it need face the internet), and the app listener no
/// longer takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_webhook_listener_serves_the_webhook_route_alone() {
    let stack = Stack::start_with(crate::stack::Options {
        webhook_listener: true,
        ..Default::default()
    })
    .await;
    assert_ne!(stack.bank_webhook_base, stack.proxy_url);
    let (id, _) = stack
        .pay_succeeded("4242424242424242", 10_000, "Ivanov Ivan")
        .await;
    stack.wait_hook(&id, "payout.succeeded").await;
    let received = stack
        .proxy_store()
        .bank_events(&crate::stack::payout_id(&id))
        .await
        .unwrap();
    assert!(
        received.iter().any(|e| e.kind == "payment_finished"),
        "the bank's webhooks came in on the webhook listener: {received:?}"
    );
    let status = |url: String, post: bool| {
        let http = stack.http.clone();
        let key = stack.app_key.clone();
        async move {
            let req = if post {
                http.post(url).body("{}")
            } else {
                http.get(url)
            };
            req.bearer_auth(key).send().await.unwrap().status().as_u16()
        }
    };
    let hooks = &stack.bank_webhook_base;
    assert_eq!(status(format!("{hooks}/v1/payouts/{id}"), false).await, 404);
    assert_eq!(status(format!("{hooks}/v1/payouts"), true).await, 404);
    assert_eq!(status(format!("{hooks}/readyz"), false).await, 404);
    assert_eq!(status(format!("{hooks}/healthz"), false).await, 200);
    let app = &stack.proxy_url;
    assert_eq!(status(format!("{app}/webhooks/bank131"), true).await, 404);
    assert_eq!(status(format!("{app}/v1/payouts/{id}"), false).await, 200);
    // PCI case 13 on each listener of the stack: the proxy's two and the vault's.
    let ca = stack.dir.path().join("ca.crt");
    for base in [hooks, app, &stack.vault_url] {
        testkit::tls::assert_only_modern_tls(base.trim_start_matches("https://"), &ca);
    }
}
