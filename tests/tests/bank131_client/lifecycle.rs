//! Whole payouts through the client: create → start → ready_to_confirm → confirm →
//! payment_finished, cancel, init/payout, single-request and auto-confirm projects, every magic
//! outcome, in both API versions.

use std::sync::atomic::{AtomicU64, Ordering};

use proxy::bank131::{CreateSession, NextAction, PayoutStatus, SessionStatus};
use shared::Pan;
use tests::sandbox::magic;

use crate::env::{Env, VERSIONS, magic_card, pan, payout};

/// Drives create → start → ready_to_confirm → confirm and returns the final webhook's session.
async fn pay(env: &mut Env, card: &Pan, amount: i64, name: &str) -> proxy::bank131::Session {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let created = env
        .client
        .create_session(&CreateSession::default(), Some(&format!("create-{n}")))
        .await
        .unwrap();
    assert_eq!(created.status, SessionStatus::Created);
    let started = env
        .client
        .start_payout(
            &created.id,
            &payout(card, amount, name),
            Some(&format!("start-{n}")),
        )
        .await
        .unwrap();
    assert_eq!(started.status, SessionStatus::InProgress);
    assert_eq!(started.payouts()[0].status, PayoutStatus::InProgress);
    let masked = started.payouts()[0].card().unwrap();
    assert_eq!(masked.last4.as_deref(), Some(card.last4()));

    let session = env.ready_to_confirm().await;
    assert_eq!(session.id, created.id);
    assert_eq!(session.next_action, Some(NextAction::Confirm));
    let p = &session.payouts()[0];
    assert_eq!(p.status, PayoutStatus::Pending);
    // What an auto-confirm policy checks: amount (currency case-insensitive) and card last4.
    assert!(
        p.amount_details
            .as_ref()
            .unwrap()
            .same_money(&payout(card, amount, name).amount)
    );

    let confirmed = env
        .client
        .confirm(&created.id, Some(&format!("confirm-{n}")))
        .await
        .unwrap();
    assert_eq!(confirmed.id, created.id);
    env.payment_finished("after the confirm").await
}

#[tokio::test]
async fn full_lifecycle_succeeds_in_both_versions() {
    for version in VERSIONS {
        let mut env = Env::start(version).await;
        let before = env.client.wallet_balance().await.unwrap()[0]
            .amount_details
            .amount;
        let card = pan("2200000000000004");
        let session = pay(&mut env, &card, 150_000, "Ivanov Ivan").await;
        assert_eq!(session.status, SessionStatus::Accepted, "{version:?}");
        let p = &session.payouts()[0];
        assert_eq!(p.status, PayoutStatus::Succeeded);
        assert!(p.finished_at.is_some());
        assert!(
            p.transaction_info
                .as_ref()
                .and_then(|t| t["rrn"].as_str())
                .is_some()
        );
        assert_eq!(p.card().unwrap().brand.as_deref(), Some("mir"));
        assert_eq!(p.metadata, Some(serde_json::json!({"payout": "po-test"})));

        let status = env.client.status(&session.id).await.unwrap();
        assert_eq!(status.status, SessionStatus::Accepted);
        let after = env.client.wallet_balance().await.unwrap()[0]
            .amount_details
            .amount;
        assert_eq!(before - after, 150_000, "the wallet pays the payout");

        // The requests really went out in this version's spelling.
        let journal = serde_json::to_string(&env.sandbox.journal()).unwrap();
        assert!(journal.contains(&format!(
            "/api/{}/session/start/payout",
            env.version.as_str()
        )));
    }
}

#[tokio::test]
async fn cancel_instead_of_confirm() {
    for version in VERSIONS {
        let mut env = Env::start(version).await;
        let card = pan("4242424242424242");
        let created = env.started(&card, 5_000, "Petrov Petr").await;
        env.ready_to_confirm().await;
        env.client.cancel(&created.id, None).await.unwrap();
        let session = env.payment_finished("after cancel").await;
        assert_eq!(session.status, SessionStatus::Cancelled);
        let p = &session.payouts()[0];
        assert_eq!(p.status, PayoutStatus::Failed);
        assert_eq!(
            p.error.as_ref().unwrap().code,
            "session_cancelled_by_partner"
        );
    }
}

#[tokio::test]
async fn init_payout_and_project_modes() {
    for version in VERSIONS {
        // init/payout with the confirm step.
        let mut env = Env::start(version).await;
        let card = pan("5555555555554444");
        let session = env
            .client
            .init_payout(&payout(&card, 1_000, "Sidorov Sidor"), Some("init-1"))
            .await
            .unwrap();
        assert_eq!(session.status, SessionStatus::InProgress);
        env.ready_to_confirm().await;
        env.client.confirm(&session.id, None).await.unwrap();
        let session = env.payment_finished("after the confirm").await;
        assert_eq!(session.payouts()[0].status, PayoutStatus::Succeeded);

        // Single-request payouts: no ready_to_confirm.
        let mut env = Env::start_with(version, |p| p.single_request_payouts = true).await;
        env.client
            .init_payout(&payout(&card, 1_000, "Sidorov Sidor"), None)
            .await
            .unwrap();
        // Single-request payouts skip ready_to_confirm.
        let session = env.payment_finished("at once").await;
        assert_eq!(session.status, SessionStatus::Accepted);

        // Auto-confirm: create + start, then straight to payment_finished.
        let mut env = Env::start_with(version, |p| p.auto_confirm = true).await;
        env.started(&card, 1_000, "Sidorov Sidor").await;
        env.payment_finished("after the start").await;
    }
}

#[tokio::test]
async fn every_magic_outcome() {
    for version in VERSIONS {
        let mut env = Env::start(version).await;
        for (ending, code) in [
            ("0002", "declined_by_issuer_bank"),
            ("0051", "insufficient_wallet_balance"),
            ("0054", "bank_card_expired"),
            ("0061", "provider_exceeds_amount_limit"),
        ] {
            let session = pay(&mut env, &magic_card(ending), 10_000, "Ivanov Ivan").await;
            let p = &session.payouts()[0];
            assert_eq!(p.status, PayoutStatus::Failed, "{ending}");
            assert_eq!(p.error.as_ref().unwrap().code, code, "{ending}");
            assert_ne!(session.status, SessionStatus::Accepted);
        }
        let card = pan("4242424242424242");
        let session = pay(&mut env, &card, magic::AMOUNT_TOO_SMALL, "Ivanov Ivan").await;
        assert_eq!(
            session.payouts()[0].error.as_ref().unwrap().code,
            "amount_less_allowed_provider"
        );

        // More than the wallet holds.
        let session = pay(&mut env, &card, 50_000_000, "Ivanov Ivan").await;
        assert_eq!(
            session.payouts()[0].error.as_ref().unwrap().code,
            "insufficient_wallet_balance"
        );

        // No ready_to_confirm: the confirm timeout ends it.
        let mut env = Env::start_with(version, |p| {
            p.confirm_timeout = std::time::Duration::from_millis(300)
        })
        .await;
        env.started(&card, 1_000, magic::NO_CONFIRM).await;
        let session = env.payment_finished("after the confirm timeout").await;
        assert_eq!(
            session.payouts()[0].error.as_ref().unwrap().code,
            "confirm_timeout"
        );
    }
}
