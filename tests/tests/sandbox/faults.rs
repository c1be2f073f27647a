//! Fault switches on calls and webhooks, and webhook retries.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::sandbox::{FaultSpec, JournalEntry};

use crate::helpers::{
    VISA, env, env_with, journal_when, payout, payout_body, wait_phase, webhook_count,
};

fn fault(s: &str) -> FaultSpec {
    s.parse().unwrap()
}

#[tokio::test]
async fn call_faults_error_delay_and_hang() {
    let e = env().await;
    let p = &e.partner;

    e.sandbox
        .set_fault(fault("session/create=error@1"))
        .unwrap();
    let (s, b) = p.post("/api/v2/session/create", json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (500, Some("internal_error"))
    );
    let (s, _) = p.post("/api/v2/session/create", json!({})).await;
    assert_eq!(s, 200, "one-shot fault is used up");

    // error_after: the work is done although the client hears 503.
    e.sandbox
        .set_fault(fault("session/init/payout=error_after:503@1"))
        .unwrap();
    let (s, _) = p
        .init("v2", payout_body("payout_details", VISA, 100, "I"))
        .await;
    assert_eq!(s, 503);
    wait_phase(&e.sandbox, "ps_2", "awaiting_confirm").await;

    e.sandbox.set_fault(fault("*=delay:200@1")).unwrap();
    let t = Instant::now();
    let (s, _) = p.on_session("v2", "status", "ps_2").await;
    assert!(s == 200 && t.elapsed() >= Duration::from_millis(200));

    // hang: the client times out and nothing was done.
    e.sandbox
        .set_fault(fault("session/confirm=hang@1"))
        .unwrap();
    let body = json!({"session_id": "ps_2"}).to_string();
    let r = p
        .http
        .post(format!("{}/api/v2/session/confirm", p.base))
        .header("x-partner-project", &p.project)
        .header("x-partner-sign", p.sign(body.as_bytes()))
        .body(body)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(
        e.sandbox.session("ps_2").unwrap()["phase"],
        "awaiting_confirm"
    );
    assert!(e.sandbox.faults().is_empty());
}

#[tokio::test]
async fn webhooks_are_retried_until_200() {
    let mut e = env().await;
    e.hooks.answer_with(&[500, 404]);
    e.partner
        .init("v2", payout_body("payout_details", VISA, 100, "I"))
        .await;
    e.hooks.expect("ready_to_confirm").await;
    let attempts: Vec<(u32, Option<u16>)> = journal_when(&e.sandbox, |j| webhook_count(j) == 3)
        .await
        .into_iter()
        .filter_map(|j| match j {
            JournalEntry::Webhook(w) => Some((w.attempt, w.status)),
            JournalEntry::Request(_) => None,
        })
        .collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(404)), (3, Some(200))]);
}

#[tokio::test]
async fn webhook_faults_drop_duplicate_reorder() {
    let mut e = env_with(|c| c.projects[0].auto_confirm = true).await;
    let p = &e.partner;
    let init = || payout_body("payout_details", VISA, 100, "I");
    // One payout with the webhook fault `spec` switched on.
    let pay_under = async |spec: &str| {
        e.sandbox.set_fault(fault(spec)).unwrap();
        p.init("v2", init()).await;
    };

    pay_under("webhook:payment_finished=drop@1").await;
    wait_phase(&e.sandbox, "ps_1", "finished").await;
    e.hooks.quiet(Duration::from_millis(150)).await;

    pay_under("webhook:*=duplicate@1").await;
    let a = e.hooks.expect("payment_finished").await;
    let b = e.hooks.expect("payment_finished").await;
    assert_eq!(
        (a["id"].as_str(), b["id"].as_str()),
        (Some("ps_2"), Some("ps_2"))
    );

    // ps_3's webhook is held until ps_4's has gone out.
    pay_under("webhook:payment_finished=reorder@1").await;
    wait_phase(&e.sandbox, "ps_3", "finished").await;
    e.hooks.quiet(Duration::from_millis(100)).await;
    p.init("v2", init()).await;
    assert_eq!(e.hooks.expect("payment_finished").await["id"], "ps_4");
    let late = e.hooks.expect("payment_finished").await;
    assert_eq!(late["id"], "ps_3");
    assert_eq!(payout(&late)["status"], "succeeded");

    let faults: Vec<String> = journal_when(&e.sandbox, |j| webhook_count(j) == 5)
        .await
        .into_iter()
        .filter_map(|j| match j {
            JournalEntry::Webhook(w) => w.fault,
            JournalEntry::Request(_) => None,
        })
        .collect();
    assert_eq!(faults, ["dropped", "duplicate", "reordered"]);
}
