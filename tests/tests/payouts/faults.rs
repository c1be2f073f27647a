//! Faults: lost, duplicated, reordered, delayed and forged webhooks; 5xx and timeouts on every
//! bank call; a dead vault. No payout is ever paid twice, and every one ends in a final state.

use serde_json::json;

use crate::stack::{Options, PROJECT, SECS, Stack, assert_names_setting, bank_session, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_faults_do_not_break_or_double_a_payout() {
    let stack = Stack::start().await;
    for (target, action) in [
        ("webhook:ready_to_confirm", "drop"),
        ("webhook:payment_finished", "drop"),
        ("webhook:ready_to_confirm", "duplicate"),
        ("webhook:payment_finished", "duplicate"),
        ("webhook:ready_to_confirm", "reorder"),
        ("webhook:*", "delay"),
    ] {
        let mut spec = json!({"on": target, "action": action, "count": 1});
        if action == "delay" {
            spec["delay_ms"] = json!(700);
        }
        stack.fault(spec).await;
        let (id, done) = stack
            .pay_to_end("4242424242424242", 2_000, "auto", "Ivanov Ivan")
            .await;
        assert_eq!(done["status"], "succeeded", "{target} {action}: {done}");
        assert_eq!(stack.payouts_at_bank(&id).await, 1, "{target} {action}");
        assert!(
            stack
                .calls_for("session/confirm", &done)
                .await
                .iter()
                .filter(|r| r["status"] == 200)
                .count()
                <= 1
        );
        stack.wait_hook(&id, "payout.succeeded").await;
        let count = stack.hooks_about(&id).len();
        assert_eq!(
            count, 1,
            "{target} {action}: the app heard about the payout {count} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_webhook_is_rejected_and_changes_nothing() {
    let (stack, id, waiting) =
        Stack::start_awaiting("4242424242424242", 3_000, "Ivanov Ivan").await;
    let session = &bank_session(&waiting);
    let forged =
        json!({"type": "payment_finished", "session": {"id": session, "status": "accepted",
        "payout_list": [{"id": "po_1", "status": "succeeded"}]}})
        .to_string();
    let bad_sig = {
        // Signed, but with a key that is not the bank's.
        let (other, _) = tests::sandbox::generate_rsa_keypair_pem().unwrap();
        proxy::bank131::RequestSigner::from_pem(other.as_bytes())
            .unwrap()
            .sign(forged.as_bytes())
            .unwrap()
    };
    for signature in [Some(bad_sig.as_str()), None, Some("garbage")] {
        let mut req = stack
            .http
            .post(format!("{}/webhooks/bank131", stack.proxy_url))
            .header("content-type", "application/json")
            .body(forged.clone());
        if let Some(s) = signature {
            req = req.header("x-partner-sign", s);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    let after = stack.payout(&id).await;
    assert_eq!(
        after["status"], "awaiting_confirmation",
        "a forged webhook moved the payout"
    );
    assert_eq!(after["updated_at"], waiting["updated_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_5xx_and_timeouts_on_every_call_never_double_a_payout() {
    let stack = Stack::start().await;
    // `error` does nothing and answers 500; `error_after` does the work then answers 500;
    // `hang` holds the request past the proxy's timeout (1.5 s) without doing it; `hang_after`
    // does the work and then holds the answer.
    let mut ids = Vec::new();
    for method in [
        "session/create",
        "session/start/payout",
        "session/confirm",
        "session/status",
    ] {
        for action in ["error", "error_after", "hang", "hang_after"] {
            if method == "session/status" && action.ends_with("after") {
                continue;
            }
            stack.fault_once(method, action).await;
            let id = stack
                .pay("5555555555554444", 1_000, "auto", "Ivanov Ivan")
                .await;
            // Payouts are taken one fault at a time so each fault hits its own payout.
            let done = stack.wait_final(&id).await;
            ids.push((method, action, id, done));
        }
    }
    for (method, action, id, done) in ids {
        assert_eq!(
            done["status"], "succeeded",
            "{method} {action} {id}: {done}"
        );
        assert_eq!(
            stack.payouts_at_bank(&id).await,
            1,
            "{method} {action}: not exactly one payout at the bank"
        );
    }
}

/// A dead vault: a payout is refused while the token cannot be checked (nothing created, the
/// same key works once the vault is back); one accepted before the vault died fails
/// `vault_unreachable`, naming the setting, before the bank sees a card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_vault_refuses_payouts_and_fails_accepted_ones_before_the_bank_sees_a_card()
{
    // Slow retries: the vault is killed long before the attempts run out.
    let mut stack = Stack::with_proxy_env(&[
        ("PROXY__PAYOUTS__RETRY_INITIAL_MS", "1000"),
        ("PROXY__PAYOUTS__RETRY_MAX_MS", "2000"),
    ])
    .await;
    let token = stack.tokenize("4242424242424242").await;
    let body = json!({"card_token": token, "amount": 1000, "currency": "RUB", "recipient": {"full_name": "A B"}});
    stack.kill9_vault();
    let (status, refused) = stack.create_payout("vault-down", &body).await;
    let refused: serde_json::Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "vault_unreachable");
    stack.start_vault().await;
    let (status, _) = stack.create_payout("vault-down", &body).await;
    assert_eq!(
        status, 201,
        "the retry after the outage was not taken as new"
    );

    // Accepted, then the vault dies while the bank keeps refusing the session (each retry
    // fetches the card again first).
    stack
        .fault(json!({"on": "session/create", "action": "error", "status": 503, "count": 1000}))
        .await;
    let (status, created) = stack.create_payout("vault-dies", &body).await;
    assert_eq!(status, 201);
    let id = serde_json::from_slice::<serde_json::Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until(SECS, async || {
        let creates = stack.requests_holding("session/create", &id).await;
        if creates.is_empty() {
            Err(format!("no session/create for {id}"))
        } else {
            Ok(())
        }
    })
    .await;
    stack.kill9_vault();
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "failed");
    assert_names_setting(&done["failure"], "vault_unreachable", "vault.url", &done);
    assert!(done["bank"]["session_id"].is_null(), "{done}");
    let starts = stack
        .requests_holding("session/start/payout", &id)
        .await
        .len();
    assert_eq!(starts, 0, "half-started");
    assert!(stack.wait_hook(&id, "payout.failed").await.signature_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_identical_concurrent_requests_make_one_payout() {
    let stack = std::sync::Arc::new(Stack::start().await);
    let token = stack.tokenize("4242424242424242").await;
    let body = json!({"card_token": token, "amount": 777, "currency": "RUB", "recipient": {"full_name": "A B"}});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (stack, body) = (std::sync::Arc::clone(&stack), body.clone());
        tasks.push(tokio::spawn(async move {
            stack.create_payout("fifty", &body).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
        ids.insert(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(created, 1);
    let id = ids.into_iter().next().unwrap();
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded");
    let creates = stack.requests("session/create").await.len();
    assert_eq!(creates, 1, "one bank session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_5xx_and_timeouts_on_cancel_still_cancel_once() {
    let stack = Stack::start().await;
    for action in ["error", "error_after", "hang", "hang_after"] {
        let (id, _) = stack
            .awaiting_confirmation("4242424242424242", 1_500, "Ivanov Ivan")
            .await;
        stack.fault_once("session/cancel", action).await;
        let (status, _) = stack.action(&id, "cancel").await;
        assert_eq!(status, 200, "{action}");
        let done = stack.wait_final(&id).await;
        assert_eq!(done["status"], "cancelled", "{action}: {done}");
        assert_eq!(stack.payouts_at_bank(&id).await, 1, "{action}");
        assert!(
            stack.calls_for("session/confirm", &done).await.is_empty(),
            "{action}: confirmed a cancelled payout"
        );
    }
}

/// Issue 12 §4: a sandbox kept in a state directory is killed (SIGKILL) with a payout in flight
/// and started again under the running proxy. Its session, the step it waited on, the bank key,
/// the id counters and the wallet balance come back: the payout succeeds once, the next session
/// gets a new id, and the state file holds no card number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_in_flight_carries_on_across_a_sandbox_restart_with_a_state_dir() {
    let kept = tempfile::tempdir().unwrap();
    let state_dir = kept.path().join("bank");
    let flags = |ready_ms: &str| -> Vec<String> {
        let dir = state_dir.to_str().unwrap();
        [
            "--state-dir",
            dir,
            "--id-prefix",
            "",
            "--ready-delay-ms",
            ready_ms,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // No ready_to_confirm before the restart: the payout waits at the bank, `preparing`.
    let mut stack = Stack::start_with(Options {
        sandbox_flags: flags("3600000"),
        ..Options::default()
    })
    .await;
    let pan = "4242424242424242";
    let id = stack.pay(pan, 4_200, "auto", "Ivanov Ivan").await;
    let session = until(SECS, async || {
        let p = stack.payout(&id).await;
        if let Some(s) = p["bank"]["session_id"].as_str()
            && stack.sandbox_session(s).await["phase"] == "preparing"
        {
            return Ok(s.to_owned());
        }
        Err(format!("never preparing at the bank: {p}"))
    })
    .await;
    assert_eq!(session, "ps_1");
    let project = async |stack: &Stack| {
        let v = stack.sandbox_get(&format!("projects/{PROJECT}")).await;
        v["wallet_balance"].as_i64().unwrap()
    };
    let balance = project(&stack).await;

    stack.restart_sandbox(&flags("50")).await;
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["bank"]["session_id"], session.as_str(), "{done}");
    // The journal starts empty with the new process: the session is the count of payouts.
    let at_bank = stack.sandbox_session(&session).await;
    assert_eq!(
        at_bank["session"]["payout_list"].as_array().map(Vec::len),
        Some(1),
        "{at_bank}"
    );
    assert_eq!(
        stack.payouts_at_bank(&id).await,
        0,
        "the proxy started the payout again"
    );
    assert_eq!(
        project(&stack).await,
        balance - 4_200,
        "the balance was not kept"
    );

    let (_, next) = stack.pay_succeeded(pan, 1_000, "Ivanov Ivan").await;
    assert_eq!(
        next["bank"]["session_id"], "ps_2",
        "the id counter started again"
    );

    let file = state_dir.join("state.json");
    let bytes = std::fs::read(&file).unwrap();
    let pan = shared::Pan::parse(pan).unwrap();
    assert!(!shared::scan::contains_pan_any_encoding(&bytes, &pan));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}
