//! The session and payout lifecycle of API.md §5, with webhooks checked at a real receiver.

use std::time::Duration;

use serde_json::{Value, json};
use tests::sandbox::ApiVersion;

use crate::helpers::{PROJECT, VISA, env, env_with, payout, payout_body, session_id};

fn is_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 27 && s.ends_with('Z') && s.as_bytes()[19] == b'.'
}

#[tokio::test]
async fn full_payout_with_signed_webhooks() {
    let mut e = env().await;
    let p = &e.partner;
    let create = json!({"amount_details": {"amount": 10_000, "currency": "RUB"},
                        "metadata": {"order": 7}, "customer": {"reference": "user-1"}});
    let (s, b) = p.post("/api/v2/session/create", create).await;
    assert_eq!(s, 200);
    let session = &b["session"];
    assert!(is_timestamp(&session["created_at"]) && is_timestamp(&session["updated_at"]));
    let id = session["id"].as_str().unwrap().to_owned();

    // Start with what create lacked; amount and metadata carry over from create.
    let start = json!({"session_id": id,
        "payout_details": {"type": "card", "card": {"type": "bank_card", "bank_card": {"number": VISA}}},
        "participant_details": {"recipient": {"full_name": "Ivanov Ivan"}}});
    let (s, b) = p.post("/api/v2/session/start/payout", start).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["session"]["status"], "in_progress");
    assert_eq!(payout(&b["session"])["status"], "in_progress");
    assert!(b["session"].get("next_action").is_none());

    let ready = e.hooks.expect("ready_to_confirm").await;
    assert_eq!(ready["id"], id.as_str());
    assert_eq!(ready["status"], "in_progress");
    assert_eq!(ready["next_action"], "confirm");
    let po = payout(&ready);
    assert_eq!(po["status"], "pending");
    assert_eq!(
        po["amount_details"],
        json!({"amount": 10_000, "currency": "RUB"})
    );
    assert_eq!(po["metadata"], json!({"order": 7}));
    assert_eq!(po["customer"], json!({"reference": "user-1"}));
    assert_eq!(
        po["participant_details"]["recipient"]["full_name"],
        "Ivanov Ivan"
    );
    assert_eq!(po["payout_details"]["card"]["last4"], "4242");

    let (_, st) = p.on_session("v2", "status", &id).await;
    assert_eq!(st["session"]["next_action"], "confirm");

    let (s, b) = p.on_session("v2", "confirm", &id).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["session"]["status"], "in_progress");
    assert!(b["session"].get("next_action").is_none());
    assert_eq!(payout(&b["session"])["status"], "pending");

    let done = e.hooks.expect("payment_finished").await;
    assert_eq!(done["status"], "accepted");
    let po = payout(&done);
    assert_eq!(po["status"], "succeeded");
    assert!(is_timestamp(&po["finished_at"]));
    assert_eq!(po["transaction_info"]["rrn"].as_str().unwrap().len(), 12);
    assert_eq!(
        po["transaction_info"]["auth_code"].as_str().unwrap().len(),
        6
    );
    assert!(po.get("error").is_none());

    let balance = e.sandbox.project(PROJECT).unwrap().wallet_balance;
    assert_eq!(
        balance,
        tests::sandbox::ProjectConfig::DEFAULT_WALLET_BALANCE - 10_000
    );
    e.hooks.quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn cancel_wrong_state_and_timeouts() {
    let mut e = env_with(|c| c.projects[0].confirm_timeout = Duration::from_millis(600)).await;
    let p = &e.partner;
    let wrong = |b: &Value| b["error"]["code"] == "session_wrong_state";

    // A created session cancels at once, with no webhook; starting it afterwards is wrong.
    let id = p.create("v2").await;
    let (s, b) = p.on_session("v2", "cancel", &id).await;
    assert_eq!(
        (s, b["session"]["status"].as_str()),
        (200, Some("cancelled"))
    );
    let mut start = payout_body("payout_details", VISA, 500, "Ivan");
    start["session_id"] = json!(id);
    let (s, b) = p.post("/api/v2/session/start/payout", start).await;
    assert!(s == 400 && wrong(&b), "{b}");

    // Confirm before ready_to_confirm, then cancel after it.
    let (_, b) = p
        .init("v2", payout_body("payout_details", VISA, 500, "Ivan"))
        .await;
    let id = session_id(&b);
    let (s, b) = p.on_session("v2", "confirm", &id).await;
    assert!(s == 400 && wrong(&b), "{b}");
    e.hooks.expect("ready_to_confirm").await;
    let (s, _) = p.on_session("v2", "cancel", &id).await;
    assert_eq!(s, 200);
    let (s, b) = p.on_session("v2", "confirm", &id).await;
    assert!(s == 400 && wrong(&b), "{b}");
    let done = e.hooks.expect("payment_finished").await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(payout(&done)["status"], "failed");
    assert_eq!(
        payout(&done)["error"]["code"],
        "session_cancelled_by_partner"
    );
    let (s, b) = p.on_session("v2", "cancel", &id).await;
    assert!(s == 400 && wrong(&b), "{b}");

    // Nobody confirms: confirm_timeout after ready_to_confirm.
    p.init("v2", payout_body("payout_details", VISA, 500, "Ivan"))
        .await;
    e.hooks.expect("ready_to_confirm").await;
    let done = e.hooks.expect("payment_finished").await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(payout(&done)["error"]["code"], "confirm_timeout");
    assert_eq!(
        e.sandbox.project(PROJECT).unwrap().wallet_balance,
        tests::sandbox::ProjectConfig::DEFAULT_WALLET_BALANCE
    );
}

#[tokio::test]
async fn idempotency_keys_are_rejected_on_reuse_never_replayed() {
    let e = env().await;
    let p = &e.partner;
    let key = [("X-PARTNER-IDEMPOTENCY-KEY", "key-1")];
    let (s, _) = p.send("/api/v2/session/create", b"{}", &key).await;
    assert_eq!(s, 200);
    for path in ["/api/v2/session/create", "/api/v1/session/create"] {
        let (s, b) = p.send(path, b"{}", &key).await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(
            b["error"],
            json!({"code": "idempotency_key_already_exists",
                   "description": "already in progress or processed"})
        );
        assert!(b.get("session").is_none());
    }
    // Another method, or no key: fine.
    let (s, _) = p
        .send("/api/v2/session/status", br#"{"session_id":"ps_1"}"#, &key)
        .await;
    assert_eq!(s, 200);
    let (s, _) = p.send("/api/v2/session/create", b"{}", &[]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn automatic_and_single_request_confirmation() {
    let mut e = env_with(|c| c.projects[0].auto_confirm = true).await;
    e.partner
        .init("v2", payout_body("payout_details", VISA, 100, "Ivan"))
        .await;
    let done = e.hooks.expect("payment_finished").await;
    assert_eq!(payout(&done)["status"], "succeeded");

    let mut e = env_with(|c| {
        c.projects[0].single_request_payouts = true;
        c.projects[0].webhook_api_version = ApiVersion::V1;
    })
    .await;
    let p = &e.partner;
    p.init("v2", payout_body("payout_details", VISA, 100, "Ivan"))
        .await;
    let done = e.hooks.expect("payment_finished").await;
    // v1 webhooks, whatever prefix the requests used.
    assert_eq!(done["payments"][0]["status"], "succeeded");
    assert!(done["payments"][0]["payment_method"].is_object());
    // Single-request applies to init only: create + start still asks for confirmation.
    let id = p.create("v2").await;
    let mut start = payout_body("payout_details", VISA, 100, "Ivan");
    start["session_id"] = json!(id);
    p.post("/api/v2/session/start/payout", start).await;
    e.hooks.expect("ready_to_confirm").await;
}
