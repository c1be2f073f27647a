//! Errors through the client: wrong state, idempotency reuse, a bad signature, a slow bank, a
//! hanging bank, 5xx; and the card-data boundary of everything the client produced.

use std::time::Duration;

use proxy::bank131::{
    ApiVersion, Bank131Client, Bank131Error, CreateSession, ErrorClass, RequestSigner,
    SessionStatus,
};
use tests::sandbox::{JournalEntry, magic};

use crate::env::{Env, VERSIONS, client_config, logs, pan, partner_client, payout};

#[tokio::test]
async fn wrong_state_idempotency_and_bad_signature() {
    for version in VERSIONS {
        let env = Env::start(version).await;
        let card = pan("4242424242424242");
        let created = env
            .client
            .create_session(&CreateSession::default(), Some("k-1"))
            .await
            .unwrap();

        // Confirm before the bank is ready.
        let err = env.client.confirm(&created.id, None).await.unwrap_err();
        assert_eq!(err.code(), Some("session_wrong_state"), "{err}");
        assert_eq!(
            err.class(),
            ErrorClass::OutcomeUnknown,
            "wrong state means: read the status"
        );

        // The same idempotency key again is refused, not replayed.
        let err = env
            .client
            .create_session(&CreateSession::default(), Some("k-1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("idempotency_key_already_exists"));
        assert_eq!(err.class(), ErrorClass::OutcomeUnknown);

        // An unknown session.
        let err = env.client.status("ps_999999").await.unwrap_err();
        assert_eq!(err.code(), Some("invalid_request"));
        assert_eq!(err.class(), ErrorClass::Permanent);

        // A client signing with a key the bank does not know.
        let stranger = Bank131Client::with_signer(
            &client_config(env.sandbox.base_url(), version, 2_000),
            RequestSigner::from_pem(
                tests::sandbox::generate_rsa_keypair_pem()
                    .unwrap()
                    .0
                    .as_bytes(),
            )
            .unwrap(),
        )
        .unwrap();
        let err = stranger
            .start_payout(&created.id, &payout(&card, 1_000, "Ivanov Ivan"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("authentication_error"), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(matches!(err, Bank131Error::Bank { status: 401, .. }));

        // Client-side validation: nothing is sent.
        let err = env
            .client
            .start_payout(&created.id, &payout(&card, 0, "Ivanov Ivan"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Bank131Error::InvalidRequest { .. }));
        // The session is untouched by all of the above.
        assert_eq!(
            env.client.status(&created.id).await.unwrap().status,
            SessionStatus::Created
        );
    }
}

#[tokio::test]
async fn timeouts_and_5xx_are_classified_for_reconciliation() {
    for version in VERSIONS {
        let env = Env::start(version).await;
        let card = pan("4242424242424242");

        // A hanging start: the client times out (1 s); the payout did not start; status says so.
        let created = env.create().await;
        // The one start this test makes fail, one way after another: its error.
        let failed_start = async |client: &Bank131Client| {
            client
                .start_payout(&created.id, &payout(&card, 1_000, "Ivanov Ivan"), None)
                .await
                .unwrap_err()
        };
        env.fault("session/start/payout=hang@1");
        let err = failed_start(&env.client).await;
        assert!(matches!(err, Bank131Error::Timeout { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
        assert_eq!(
            env.client.status(&created.id).await.unwrap().status,
            SessionStatus::Created
        );

        // The bank does the work, then the answer is lost: status shows the payout started.
        env.fault("session/start/payout=hang_after@1");
        let err = failed_start(&env.client).await;
        assert_eq!(err.class(), ErrorClass::OutcomeUnknown);
        assert_eq!(
            env.client.status(&created.id).await.unwrap().status,
            SessionStatus::InProgress
        );

        // 5xx on confirm: outcome unknown; on status: retryable.
        env.fault("session/confirm=error:503@1");
        let err = env.client.confirm(&created.id, None).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::OutcomeUnknown, "{err}");
        env.fault("session/status=error@1");
        let err = env.client.status(&created.id).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable, "{err}");

        // A slow bank (magic recipient) past the client's timeout.
        let slow = env
            .client
            .init_payout(&payout(&card, 1_000, magic::SLOW_BANK), None)
            .await;
        let err = slow.unwrap_err();
        assert!(matches!(err, Bank131Error::Timeout { .. }), "{err}");

        // Nothing listens: a connect error is retryable.
        let dead = partner_client(&client_config(
            "http://127.0.0.1:9".to_owned(),
            version,
            1_000,
        ));
        let err = failed_start(&dead).await;
        assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The card number is in the journal only inside start/init bodies, and nowhere in the logs or
/// the errors of this binary.
#[tokio::test]
async fn the_card_number_goes_only_into_start_and_init_bodies() {
    let canary = pan("5555555555554444");
    let env = Env::start(ApiVersion::V2).await;
    env.started(&canary, 1_000, "Ivanov Ivan").await;
    env.client
        .init_payout(&payout(&canary, 1_000, "Ivanov Ivan"), None)
        .await
        .unwrap();
    let mut errors = String::new();
    env.fault("session/start/payout=error@1");
    let created2 = env.create().await;
    let err = env
        .client
        .start_payout(&created2.id, &payout(&canary, 1_000, "Ivanov Ivan"), None)
        .await
        .unwrap_err();
    errors.push_str(&format!("{err} {err:?}\n"));
    let err = env.client.confirm(&created2.id, None).await.unwrap_err();
    errors.push_str(&format!("{err} {err:?}\n"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut carrying = Vec::new();
    for entry in env.sandbox.journal() {
        let text = serde_json::to_string(&entry).unwrap();
        if !shared::scan::contains_pan(text.as_bytes(), &canary) {
            continue;
        }
        match &entry {
            JournalEntry::Request(r) => {
                assert!(
                    r.path.ends_with("/session/start/payout")
                        || r.path.ends_with("/session/init/payout"),
                    "{}",
                    r.path
                );
                assert!(shared::scan::contains_pan(r.body.as_bytes(), &canary));
                let mut without_body = r.clone();
                without_body.body.clear();
                assert!(!shared::scan::contains_pan(
                    serde_json::to_string(&without_body).unwrap().as_bytes(),
                    &canary
                ));
                carrying.push(r.path.clone());
            }
            JournalEntry::Webhook(w) => {
                panic!("a webhook carries the card number: {}", w.webhook_type)
            }
        }
    }
    assert_eq!(
        carrying.len(),
        3,
        "start, init and the failed start carry the number: {carrying:?}"
    );
    assert!(
        !shared::scan::contains_pan_any_encoding(errors.as_bytes(), &canary),
        "{errors}"
    );
    assert!(
        !shared::scan::contains_pan_any_encoding(&logs(), &canary),
        "the logs carry the card number"
    );
}

/// docs/ARCHITECTURE.md §9.3: when the bank's name resolves to an address outside `bank131.allowed_networks`
/// (DNS rebinding, a poisoned resolver), the client does not connect: no card number leaves. The
/// same name resolving inside the networks is served.
#[tokio::test]
async fn pci_28_a_bank_name_resolving_outside_its_networks_gets_nothing() {
    let env = Env::start(ApiVersion::V2).await;
    let by_name = env.sandbox.base_url().replace("127.0.0.1", "localhost");
    let client_for = |networks: &[&str]| {
        let mut config = client_config(by_name.clone(), ApiVersion::V2, 2_000);
        config.allowed_networks = networks.iter().map(|n| (*n).to_owned()).collect();
        partner_client(&config)
    };
    let card = pan("4242424242424242");
    env.sandbox.clear_journal();
    let err = client_for(&["185.71.76.0/24"])
        .init_payout(&payout(&card, 1_000, "Ivanov Ivan"), None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "not sent: {err:?}");
    assert!(
        env.sandbox.journal().is_empty(),
        "a request reached an address outside the allowed networks"
    );
    client_for(&["127.0.0.0/8", "::1/128"])
        .init_payout(&payout(&card, 1_000, "Ivanov Ivan"), None)
        .await
        .unwrap();
    assert!(!env.sandbox.journal().is_empty());
}
