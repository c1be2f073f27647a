//! The bank as it is, not as the sandbox's defaults are (issue 11 §3, API.md §14): each test
//! turns on the latitude the live bank has and shows the proxy still pays exactly once, ends
//! every payout, and leaves a person the last word where only the bank knows.

use proxy::store::ProxyStore;
use serde_json::{Value, json};

use crate::stack::{FINAL, SECS, Stack, bank_session, payout_id};

fn hooks_of(stack: &Stack, id: &str, kind: &str) -> usize {
    stack
        .hooks_about(id)
        .iter()
        .filter(|h| h.event["type"] == kind)
        .count()
}

/// `proxy payouts resolve <id> --as <outcome> --operator <operator> --reason <reason>`.
fn resolve(
    stack: &Stack,
    id: &str,
    outcome: &str,
    operator: &str,
    reason: &str,
) -> std::process::Output {
    stack.proxy_cli(&[
        "payouts",
        "resolve",
        id,
        "--as",
        outcome,
        "--operator",
        operator,
        "--reason",
        reason,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_the_recipients_bank_returns_ends_returned_and_the_app_hears_it() {
    let (stack, id, done) = Stack::start_paid("4242424242424242", 7_000, "Ivanov Ivan").await;
    let session = &bank_session(&done);

    stack
        .control(&format!("sessions/{session}/refund"), json!({}))
        .await;
    let returned = stack.wait_status(&id, &["returned"], SECS).await;
    assert_eq!(returned["bank"]["payout_id"], done["bank"]["payout_id"]);
    let hook = stack.wait_hook(&id, "payout.returned").await;
    assert!(hook.signature_valid);
    assert_eq!(hook.event["data"]["payout"]["status"], "returned");
    assert_eq!(hooks_of(&stack, &id, "payout.succeeded"), 1);
    // Final: a second return report changes nothing.
    let (status, _) = stack.action(&id, "cancel").await;
    assert_eq!(status, 409);
    assert_eq!(stack.payouts_at_bank(&id).await, 1);
}

/// Both spellings in one object, amounts as strings, `null` where strings go, another payout
/// listed first in every session, 200 KiB webhooks, and v1-spelled webhooks to a v2 client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_with_all_its_latitude_still_pays_exactly_once() {
    let stack = Stack::with_sandbox_flags(&[
        "--quirk",
        "both_spellings,amounts_as=string,nulls,other_payout_first,large_webhooks",
        "--webhook-version",
        "v1",
    ])
    .await;
    let auto = stack
        .pay("2200000000000004", 12_300, "auto", "Ivanov Ivan")
        .await;
    let manual = stack
        .pay("5555555555554444", 4_500, "manual", "Petrov Petr")
        .await;
    let declined = stack
        .pay(
            &tests::sandbox::magic::luhn_card("4000", "0002").unwrap(),
            1_000,
            "auto",
            "Ivanov Ivan",
        )
        .await;

    stack
        .wait_status(&manual, &["awaiting_confirmation"], SECS)
        .await;
    let (status, body) = stack.action(&manual, "confirm").await;
    assert_eq!(status, 200, "{body}");

    for id in [&auto, &manual] {
        let done = stack.wait_final(id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        // Ours, not the other payout listed first.
        let po = done["bank"]["payout_id"].as_str().unwrap();
        assert!(
            po.starts_with("po_") && !po.starts_with("po_other"),
            "{done}"
        );
        assert_eq!(
            stack.calls_for("session/start/payout", &done).await.len(),
            1
        );
        assert_eq!(stack.calls_for("session/confirm", &done).await.len(), 1);
        assert_eq!(stack.payouts_at_bank(id).await, 1);
    }
    // A decline whose code came as `null`: failed, with a code of ours, not stalled.
    let done = stack.wait_final(&declined).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failure"]["code"], "payout_failed", "{done}");

    // The large webhooks were taken (a 413 would have left the payout to polling).
    let webhooks: Vec<Value> = stack
        .journal()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "webhook" && e["attempt"].as_u64() > Some(0))
        .collect();
    assert!(!webhooks.is_empty());
    for w in &webhooks {
        let size = w["body"].as_str().unwrap().len();
        assert!(size > 150_000, "the quirk makes webhooks large: {size}");
        assert_eq!(w["status"], 200, "a {size}-byte webhook was refused");
    }
}

/// A cancelled session whose payout the bank still shows `pending` or `in_progress` ends the
/// payout instead of waiting forever; amounts come as floats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_session_with_its_payout_still_pending_ends_the_payout() {
    let stack = Stack::with_sandbox_flags(&[
        "--quirk",
        "cancel_leaves_payout_pending,amounts_as=float",
        "--confirm-timeout-ms",
        "1500",
    ])
    .await;
    let by_app = stack
        .pay("4242424242424242", 2_000, "manual", "Ivanov Ivan")
        .await;
    let timed_out = stack
        .pay("5555555555554444", 2_000, "manual", "Petrov Petr")
        .await;
    stack
        .wait_status(&by_app, &["awaiting_confirmation"], SECS)
        .await;
    let (status, _) = stack.action(&by_app, "cancel").await;
    assert_eq!(status, 200);
    let done = stack.wait_final(&by_app).await;
    assert_eq!(done["status"], "cancelled", "{done}");

    // The bank's confirm timeout cancels the other; its payout stays `pending` at the bank.
    let done = stack.wait_final(&timed_out).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failure"]["code"], "session_cancelled", "{done}");
    let session = &bank_session(&done);
    let bank = stack.sandbox_session(session).await;
    assert_eq!(bank["session"]["status"], "cancelled");
    assert_eq!(bank["session"]["payout_list"][0]["status"], "pending");
}

/// Any 5xx on a state-changing call is "outcome unknown", whatever code it carries: the call
/// did its work, so the payout is reconciled and paid once, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_with_any_error_code_is_reconciled_not_failed() {
    let stack = Stack::with_sandbox_flags(&[
        "--fault",
        "session/start/payout=error_after:502:session_wrong_state@1",
        "--fault",
        "session/confirm=error_after:503:invalid_request@1",
    ])
    .await;
    let (id, done) = stack
        .pay_succeeded("4242424242424242", 3_300, "Ivanov Ivan")
        .await;
    let starts = stack.calls_for("session/start/payout", &done).await;
    assert_eq!(
        starts.len(),
        1,
        "the start that answered 502 was not sent again"
    );
    assert_eq!(starts[0]["status"], 502);
    assert_eq!(stack.payouts_at_bank(&id).await, 1);
}

/// Manual mode checks the session before confirming, as auto mode does: a session showing
/// another amount is cancelled, not confirmed; a bank that cannot be read gets nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_confirm_rechecks_the_session_before_confirming() {
    let (stack, id, waiting) =
        Stack::start_awaiting("4242424242424242", 9_000, "Ivanov Ivan").await;
    let session = &bank_session(&waiting);

    // The bank cannot be read: 503, nothing sent, still waiting.
    stack
        .fault(json!({"on": "session/status", "action": "error", "status": 503}))
        .await;
    stack.refuses(&id, "confirm", 503, "bank_unavailable").await;
    assert_eq!(stack.payout(&id).await["status"], "awaiting_confirmation");
    stack.clear_faults().await;

    // The bank's session now shows another amount.
    stack
        .control(
            &format!("sessions/{session}/tamper"),
            json!({"amount": 90_000}),
        )
        .await;
    stack
        .refuses(&id, "confirm", 409, "confirmation_mismatch")
        .await;
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failure"]["code"], "confirmation_mismatch");
    assert_eq!(stack.bank_calls("session/confirm", session).await.len(), 0);
    assert_eq!(stack.bank_calls("session/cancel", session).await.len(), 1);
}

/// A session in `error` is not final: the proxy keeps reconciling and flags it; a person closes
/// it with `proxy payouts resolve`, which is recorded and heard by the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_error_waits_for_a_person_who_resolves_it() {
    let stack = Stack::start().await;
    let id = stack
        .pay(
            "4242424242424242",
            5_100,
            "auto",
            tests::sandbox::magic::SESSION_ERROR,
        )
        .await;
    let flagged = stack
        .wait_payout(&id, SECS, "flagged", |p| {
            p["needs_attention"]
                .as_str()
                .is_some_and(|a| a.contains("error"))
        })
        .await;
    assert!(
        !FINAL.contains(&flagged["status"].as_str().unwrap()),
        "{flagged}"
    );
    assert!(
        flagged["needs_attention"]
            .as_str()
            .unwrap()
            .contains("proxy payouts resolve")
    );

    // Refused: a reason with a card number (not echoed), none at all, a payout not started.
    let card = "4242424242424242";
    let out = resolve(&stack, &id, "failed", "ops", card);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--reason") && !stderr.contains(card),
        "{stderr}"
    );
    let out = resolve(&stack, &id, "failed", "ops", " ");
    assert_eq!(out.status.code(), Some(64));

    let reason = "Bank 131 support ticket T-4711: not paid";
    let out = resolve(&stack, &id, "failed", "ops-anna", reason);
    assert!(out.status.success(), "{out:?}");
    let done = stack.wait_final(&id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["failure"]["code"], "resolved_failed_by_operator");
    assert!(done["needs_attention"].is_null(), "{done}");
    assert!(stack.wait_hook(&id, "payout.failed").await.signature_valid);

    // Recorded in the payout's history, with who and why.
    let history = stack
        .proxy_store()
        .bank_events(&payout_id(&id))
        .await
        .unwrap();
    let resolved: Vec<_> = history
        .iter()
        .filter(|e| e.kind == "operator_resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{history:?}");
    let record: Value = serde_json::from_str(&resolved[0].body).unwrap();
    assert_eq!(record["operator"], "ops-anna");
    assert_eq!(record["resolved_as"], "failed");
    assert_eq!(record["reason"], reason);

    // Once final, not again.
    let out = resolve(&stack, &id, "succeeded", "ops", "again");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already failed"));
}

/// The webhook route takes the bank's large bodies (up to 256 KiB, the app routes keep their
/// limit), and a signed webhook that cannot be read is kept, redacted, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_unreadable_bank_webhooks() {
    let (stack, bank) = Stack::signing_as_bank().await;
    let (id, waiting) = stack
        .awaiting_confirmation("4242424242424242", 6_000, "Ivanov Ivan")
        .await;
    let session = &bank_session(&waiting);
    let send = |body: String| {
        let signature = bank.sign(body.as_bytes()).unwrap();
        stack.bank_webhook(body, signature)
    };
    let padded = |bytes: usize| {
        json!({"type": "action_required", "session": {"id": session, "status": "in_progress",
               "padding": "x".repeat(bytes)}})
        .to_string()
    };
    assert_eq!(send(padded(250_000)).await, 200);
    // Refused before it is read: 413, or, when the proxy closes the connection while the
    // client is still sending (likelier over TLS), no answer at all. Nothing is kept either way
    // (the history below holds only the malformed event).
    let big = padded(300_000);
    let signature = bank.sign(big.as_bytes()).unwrap();
    match stack.try_bank_webhook(big, signature).await {
        Ok(status) => assert_eq!(status, 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // The app API keeps its own limit.
    let (status, _) = stack
        .create_payout("k-large", &json!({"metadata": {"x": "x".repeat(100_000)}}))
        .await;
    assert_eq!(status, 413);

    // Signed by the bank, unreadable (a status that is a list): 400, and kept, redacted.
    let card = "4111111111111111";
    let broken = json!({"type": "payment_finished", "session": {"id": session,
        "status": ["accepted"], "note": format!("card {card}")}})
    .to_string();
    assert_eq!(send(broken).await, 400);
    let history = stack
        .proxy_store()
        .bank_events(&payout_id(&id))
        .await
        .unwrap();
    let kept: Vec<_> = history.iter().filter(|e| e.kind == "malformed").collect();
    assert_eq!(kept.len(), 1, "{history:?}");
    assert!(kept[0].body.contains("[\"accepted\"]"), "{}", kept[0].body);
    assert!(!kept[0].body.contains(card), "{}", kept[0].body);
    assert_eq!(stack.payout(&id).await["status"], "awaiting_confirmation");
}
