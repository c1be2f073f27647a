//! Magic inputs forcing outcomes.

use std::time::{Duration, Instant};

use tests::sandbox::magic::{self, luhn_card};

use crate::helpers::{PROJECT, VISA, env_with, payout, payout_body, session_id, wait_phase};

#[tokio::test]
async fn declines_by_card_number_and_amount() {
    let mut e = env_with(|c| {
        c.projects[0].auto_confirm = true;
        c.projects[0].wallet_balance = 1000;
    })
    .await;
    let mut cases: Vec<(String, i64, &str)> = magic::CARD_ENDINGS
        .iter()
        .map(|(ending, code)| (luhn_card("4", ending).unwrap(), 100, *code))
        .collect();
    cases.push(("4242424242424241".into(), 100, "card_number_does_not_exist"));
    cases.push((
        VISA.into(),
        magic::AMOUNT_TOO_SMALL,
        "amount_less_allowed_provider",
    ));
    cases.push((VISA.into(), 1001, "insufficient_wallet_balance"));
    for (number, amount, code) in &cases {
        let (s, b) = e
            .partner
            .init("v2", payout_body("payout_details", number, *amount, "I"))
            .await;
        assert_eq!(s, 200, "declines are asynchronous: {b}");
        let done = e.hooks.expect("payment_finished").await;
        assert_eq!(done["status"], "cancelled", "{code}");
        let po = payout(&done);
        assert_eq!(po["status"], "failed");
        assert_eq!(po["error"]["code"], *code);
        assert!(po["error"]["description"].is_string());
        assert!(po["finished_at"].is_string());
    }
    assert_eq!(e.sandbox.project(PROJECT).unwrap().wallet_balance, 1000);
    // The balance covers exactly this one, then it is spent.
    e.partner
        .init("v2", payout_body("payout_details", VISA, 1000, "I"))
        .await;
    assert_eq!(
        payout(&e.hooks.expect("payment_finished").await)["status"],
        "succeeded"
    );
    assert_eq!(e.sandbox.project(PROJECT).unwrap().wallet_balance, 0);
}

#[tokio::test]
async fn no_confirm_never_gets_ready_and_times_out() {
    let mut e = env_with(|c| c.projects[0].confirm_timeout = Duration::from_millis(200)).await;
    let (_, b) = e
        .partner
        .init(
            "v2",
            payout_body("payout_details", VISA, 100, magic::NO_CONFIRM),
        )
        .await;
    let id = session_id(&b);
    let (s, b) = e.partner.on_session("v2", "confirm", &id).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("session_wrong_state"))
    );
    // The first webhook is the end; no ready_to_confirm came before it.
    let done = e.hooks.expect("payment_finished").await;
    assert_eq!(done["status"], "cancelled");
    assert_eq!(payout(&done)["error"]["code"], "confirm_timeout");
}

#[tokio::test]
async fn slow_bank_does_the_work_then_answers_late() {
    let e = env_with(|_| {}).await;
    let body = payout_body("payout_details", VISA, 100, magic::SLOW_BANK);
    let started = Instant::now();
    let (s, b) = e.partner.init("v2", body.clone()).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let id = session_id(&b);

    // A client that gives up sooner sees a timeout, yet the session exists and moves on.
    let r = e
        .partner
        .http
        .post(format!("{}/api/v2/session/init/payout", e.partner.base))
        .header("x-partner-project", PROJECT)
        .header(
            "x-partner-sign",
            e.partner.sign(body.to_string().as_bytes()),
        )
        .body(body.to_string())
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let next = format!(
        "ps_{}",
        id.trim_start_matches("ps_").parse::<u64>().unwrap() + 1
    );
    wait_phase(&e.sandbox, &next, "awaiting_confirm").await;
}
