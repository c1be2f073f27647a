//! The control API over HTTP: projects, faults, manual advance, refunds, the bank key.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    PROJECT, Partner, VISA, env_with, partner_keys, payout, payout_body, session_id,
};

async fn call(
    p: &Partner,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = p
        .http
        .request(method, format!("{}/__sandbox{path}", p.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `POST /__sandbox/sessions/{id}/{action}`.
async fn session_action(p: &Partner, id: &str, action: &str, body: Option<Value>) -> (u16, Value) {
    call(
        p,
        reqwest::Method::POST,
        &format!("/sessions/{id}/{action}"),
        body,
    )
    .await
}

#[tokio::test]
async fn projects_faults_and_the_bank_key() {
    let e = env_with(|_| {}).await;
    let p = &e.partner;
    use reqwest::Method as M;

    let (s, key) = call(p, M::GET, "/bank-public-key", None).await;
    assert_eq!(
        (s, key.as_str()),
        (200, Some(e.sandbox.bank_public_key_pem()))
    );

    let new = json!({"id": "second", "partner_public_key_pem": partner_keys().1,
                     "wallet_balance": 5, "webhook_api_version": "v1", "auto_confirm": true});
    let (s, b) = call(p, M::POST, "/projects", Some(new)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["webhook_api_version"], "v1");
    let (s, b) = call(
        p,
        M::POST,
        "/projects",
        Some(json!({"id": "second", "wallet_balance": 9})),
    )
    .await;
    assert_eq!(
        (s, b["wallet_balance"].as_i64(), b["auto_confirm"].as_bool()),
        (200, Some(9), Some(true))
    );
    let (s, b) = call(p, M::GET, "/projects/second", None).await;
    assert_eq!((s, b["wallet_balance"].as_i64()), (200, Some(9)));
    let (s, _) = call(p, M::GET, "/projects/nobody", None).await;
    assert_eq!(s, 404);
    let (s, _) = call(p, M::POST, "/projects", Some(json!({"id": "third"}))).await;
    assert_eq!(s, 400, "a new project needs a key");
    let bad_key = json!({"id": "third", "partner_public_key_pem": "nope"});
    assert_eq!(call(p, M::POST, "/projects", Some(bad_key)).await.0, 400);
    // The new project works for signed calls.
    let second = Partner::new(&p.base, "second", &partner_keys().0);
    assert_eq!(
        second.post("/api/v1/session/create", json!({})).await.0,
        200
    );

    let (s, b) = call(
        p,
        M::POST,
        "/faults",
        Some(json!({"on": "session/create", "action": "error", "count": 2})),
    )
    .await;
    assert_eq!((s, b["id"].as_str()), (201, Some("f_1")));
    let (s, _) = call(
        p,
        M::POST,
        "/faults",
        Some(json!({"on": "webhook:*", "action": "hang"})),
    )
    .await;
    assert_eq!(s, 400);
    let (_, b) = call(p, M::GET, "/faults", None).await;
    assert_eq!(b["faults"][0]["remaining"], 2);
    assert_eq!(p.post("/api/v2/session/create", json!({})).await.0, 500);
    assert_eq!(call(p, M::DELETE, "/faults/f_1", None).await.0, 204);
    assert_eq!(call(p, M::DELETE, "/faults/f_1", None).await.0, 404);
    assert_eq!(p.post("/api/v2/session/create", json!({})).await.0, 200);
    call(
        p,
        M::POST,
        "/faults",
        Some(json!({"on": "*", "action": "delay", "delay_ms": 1})),
    )
    .await;
    assert_eq!(call(p, M::DELETE, "/faults", None).await.0, 204);
    assert!(e.sandbox.faults().is_empty());
    assert_eq!(call(p, M::GET, "/health", None).await.0, 200);
}

#[tokio::test]
async fn manual_advance_and_refund() {
    // Steps never come by themselves: the test drives them.
    let mut e = env_with(|c| {
        c.ready_delay = Duration::from_secs(3600);
        c.finish_delay = Duration::from_secs(3600);
    })
    .await;
    let p = &e.partner;

    let (_, b) = p
        .init("v2", payout_body("payout_details", VISA, 300, "I"))
        .await;
    let id = session_id(&b);
    e.hooks.quiet(Duration::from_millis(100)).await;
    let (s, b) = session_action(p, &id, "advance", None).await;
    assert_eq!(
        (s, b["phase"].as_str()),
        (200, Some("awaiting_confirm")),
        "{b}"
    );
    e.hooks.expect("ready_to_confirm").await;
    let (s, _) = session_action(p, &id, "advance", None).await;
    assert_eq!(s, 409, "waits for the partner");

    p.on_session("v2", "confirm", &id).await;
    let (s, b) = session_action(p, &id, "advance", Some(json!({"step": "finish"}))).await;
    assert_eq!(
        (s, b["session"]["status"].as_str()),
        (200, Some("accepted"))
    );
    e.hooks.expect("payment_finished").await;
    let spent = e.sandbox.project(PROJECT).unwrap().wallet_balance;

    let (s, b) = session_action(p, &id, "refund", Some(json!({"amount": 100}))).await;
    assert_eq!(s, 200, "{b}");
    let refunded = e.hooks.expect("payment_refunded").await;
    let refunds = &payout(&refunded)["refunds"];
    assert_eq!(refunds[0]["amount_details"]["amount"], 100);
    assert!(refunds[0]["id"].as_str().unwrap().starts_with("rf_"));
    assert_eq!(
        e.sandbox.project(PROJECT).unwrap().wallet_balance,
        spent + 100
    );
    let (s, _) = session_action(p, &id, "refund", Some(json!({"amount": 201}))).await;
    assert_eq!(s, 409, "only 200 left");
    let (_, st) = p.on_session("v2", "status", &id).await;
    assert_eq!(payout(&st["session"])["refunds"][0]["status"], "accepted");

    assert_eq!(session_action(p, "ps_404", "advance", None).await.0, 404);
    let (s, _) = session_action(p, &id, "advance", Some(json!({"step": "bogus"}))).await;
    assert_eq!(s, 400);
}

/// A partner that holds sessions from an earlier run (devstack's proxy database) has the sandbox
/// number past them; a lower mark never moves the counter back.
#[tokio::test]
async fn session_ids_can_be_skipped_past_an_earlier_run() {
    let e = env_with(|_| {}).await;
    assert_eq!(e.partner.create("v2").await, "ps_1");
    e.sandbox.skip_session_ids_through(40);
    assert_eq!(e.partner.create("v2").await, "ps_41");
    e.sandbox.skip_session_ids_through(3);
    assert_eq!(e.partner.create("v2").await, "ps_42");
}
