//! Dual control (PCI test case 14): destroying a key version needs two distinct operators, one
//! proposing and another approving within the window; the proposer approving, a stranger's
//! credential, a second approval, an expired proposal and a revoked operator are refused, each
//! refusal audited; and operators forged into the database are not operators.

use std::time::Duration;

use vault::crypto::KeyPurpose;
use vault::service::{Operation, OperatorAdded, OperatorKey, Vault, VaultError};

use crate::helpers::TestVault;

const HOUR: Duration = Duration::from_secs(3600);

async fn add(vault: &Vault, name: &str, by: Option<&OperatorKey>) -> OperatorAdded {
    vault.add_operator(name, by, HOUR).await.unwrap()
}

/// An operator added at once (fewer than two exist): their id and credential.
async fn first(vault: &Vault, name: &str) -> (String, OperatorKey) {
    match add(vault, name, None).await {
        OperatorAdded::Added(op, key) => (op.id, key),
        OperatorAdded::Proposed(..) => panic!("{name} should be added at once"),
    }
}

fn destroy_v1() -> Operation {
    Operation::DestroyKey {
        purpose: "data".to_owned(),
        version: 1,
        crypto_shred: false,
    }
}

fn refused(result: Result<impl std::fmt::Debug, VaultError>, why: &str) {
    match result {
        Err(VaultError::DualControl(message)) => {
            assert!(message.contains(why), "{message}");
        }
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

fn denied_events(v: &TestVault, action: &str) -> i64 {
    v.scalar(
        "SELECT count(*) FROM audit_events WHERE action = ?1 AND outcome = 'denied'",
        [action],
    )
}

#[tokio::test]
async fn destroying_a_key_needs_a_second_operator_within_the_window() {
    let v = TestVault::spawn_with(|c| c.keys.rewrap_in_background = false).await;
    let admin = &v.admin;
    admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    admin.retire_key("cli", KeyPurpose::Data, 1).await.unwrap();

    // One operator cannot propose: dual control needs two.
    let (alice, alice_key) = first(admin, "Alice").await;
    refused(
        admin.propose(&alice_key, destroy_v1(), HOUR).await,
        "needs two operators",
    );
    let (bob, bob_key) = first(admin, "Bob").await;

    // A credential nobody holds proposes nothing.
    let stranger = OperatorKey::generate("opk_").unwrap();
    refused(
        admin.propose(&stranger, destroy_v1(), HOUR).await,
        "unknown or revoked",
    );
    assert_eq!(denied_events(&v, "dual.propose"), 1);

    let proposal = admin.propose(&alice_key, destroy_v1(), HOUR).await.unwrap();
    assert_eq!(proposal.proposed_by, alice);
    // The proposer approving their own proposal is refused, and so is a stranger.
    refused(
        admin.approve(&alice_key, &proposal.id, &|_| None).await,
        "cannot approve it",
    );
    refused(
        admin.approve(&stranger, &proposal.id, &|_| None).await,
        "unknown or revoked",
    );
    refused(
        admin.approve(&bob_key, "prp_nosuch", &|_| None).await,
        "no such proposal",
    );
    assert_eq!(denied_events(&v, "dual.approve"), 3);
    // Nothing was destroyed by any of that.
    let state: String = v.scalar(
        "SELECT state FROM keys WHERE purpose = 'data' AND version = 1",
        [],
    );
    assert_eq!(state, "decrypt_only");

    // The other operator approves, once: then the operation runs in their name.
    let (approved, approver) = admin
        .approve(&bob_key, &proposal.id, &|_| None)
        .await
        .unwrap();
    assert_eq!(
        (approved.operation.clone(), approver.id.clone()),
        (destroy_v1(), bob.clone())
    );
    let state: String = v.scalar(
        "SELECT state FROM keys WHERE purpose = 'data' AND version = 1",
        [],
    );
    assert_eq!(state, "destroyed");
    let actor: String = v.scalar(
        "SELECT actor FROM audit_events WHERE action = 'keys.destroy' AND outcome = 'granted'",
        [],
    );
    assert!(
        actor.contains(&bob) && actor.contains(&proposal.id),
        "{actor}"
    );
    refused(
        admin.approve(&bob_key, &proposal.id, &|_| None).await,
        "approved already",
    );
    let proposals = admin.proposals().await.unwrap();
    assert!(proposals.iter().any(|p| p.id == proposal.id && p.approved));

    // An expired proposal is refused.
    let late = admin
        .propose(&bob_key, destroy_v1(), Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    refused(
        admin.approve(&alice_key, &late.id, &|_| None).await,
        "expired",
    );

    // Revoking needs a proposal too, and never leaves fewer than two: with two operators,
    // Alice cannot revoke Bob (to then add a friend alone).
    refused(
        admin.revoke_operator(&bob, &alice_key, HOUR).await,
        "fewer than two active operators",
    );
    // With a third (a proposal of Alice that Bob approves), Bob can be revoked by two others.
    let OperatorAdded::Proposed(add_carol, carol_key) = add(admin, "Carol", Some(&alice_key)).await
    else {
        panic!("a third operator is a proposal");
    };
    admin
        .approve(&bob_key, &add_carol.id, &|_| None)
        .await
        .unwrap();
    let pending = admin.propose(&bob_key, destroy_v1(), HOUR).await.unwrap();
    let revoke_bob = admin.revoke_operator(&bob, &alice_key, HOUR).await.unwrap();
    // Carol approves Alice's proposal to revoke Bob.
    admin
        .approve(&carol_key, &revoke_bob.id, &|_| None)
        .await
        .unwrap();
    refused(
        admin.propose(&bob_key, destroy_v1(), HOUR).await,
        "unknown or revoked",
    );
    refused(
        admin.approve(&alice_key, &pending.id, &|_| None).await,
        "revoked since",
    );
    let operators = admin.operators().await.unwrap();
    assert!(operators.iter().any(|o| o.id == bob && o.revoked));
    assert!(operators.iter().any(|o| o.id == alice && !o.revoked));
    // Two are left: neither can be revoked now, and nobody is added without a proposal.
    let carol = operators
        .iter()
        .find(|o| o.name == "Carol")
        .unwrap()
        .id
        .clone();
    refused(
        admin.revoke_operator(&carol, &alice_key, HOUR).await,
        "fewer than two active operators",
    );
    refused(
        admin.add_operator("Mallory", None, HOUR).await,
        "is a proposal",
    );
    // An approving run that cannot carry the operation out refuses it before it counts.
    let later = admin.propose(&alice_key, destroy_v1(), HOUR).await.unwrap();
    refused(
        admin
            .approve(&carol_key, &later.id, &|_| Some("not here".to_owned()))
            .await,
        "not here",
    );
    assert!(
        !admin
            .proposals()
            .await
            .unwrap()
            .iter()
            .any(|p| p.id == later.id && p.approved)
    );
}

#[tokio::test]
async fn a_third_operator_is_added_only_by_two() {
    let v = TestVault::spawn().await;
    let admin = &v.admin;
    let (_, alice_key) = first(admin, "Alice").await;
    let (_, bob_key) = first(admin, "Bob").await;
    // With two operators, adding a third without a credential is refused, and with one it is
    // a proposal whose credential works only once another operator approves.
    refused(
        admin.add_operator("Mallory", None, HOUR).await,
        "is a proposal",
    );
    let OperatorAdded::Proposed(proposal, carol_key) = add(admin, "Carol", Some(&alice_key)).await
    else {
        panic!("a third operator should be a proposal");
    };
    refused(
        admin.propose(&carol_key, destroy_v1(), HOUR).await,
        "unknown or revoked",
    );
    admin
        .approve(&bob_key, &proposal.id, &|_| None)
        .await
        .unwrap();
    let by_carol = admin.propose(&carol_key, destroy_v1(), HOUR).await.unwrap();
    assert!(by_carol.id.starts_with("prp_"));
    assert_eq!(admin.operators().await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_operator_written_into_the_database_is_not_an_operator() {
    let v = TestVault::spawn().await;
    let admin = &v.admin;
    let (_, _alice_key) = first(admin, "Alice").await;
    // Someone with write access to the database appends an operator.add event for a
    // credential they hold (they cannot compute its chain MAC without the audit key).
    let forged = OperatorKey::generate("opk_").unwrap();
    let detail = serde_json::json!({
        "operator": "op_forged",
        "name": "Mallory",
        "credential_sha256": hex::encode(forged.hash()),
    })
    .to_string();
    v.raw_db()
        .execute(
            "INSERT INTO audit_events (seq, occurred_at, actor, action, outcome, detail, mac) \
             SELECT max(seq) + 1, 0, 'cli', 'operator.add', 'granted', ?1, zeroblob(32) FROM audit_events",
            [detail],
        )
        .unwrap();
    // Dual control reads operators only from a chain that verifies, so it stops instead.
    refused(admin.operators().await, "verifies");
    refused(admin.propose(&forged, destroy_v1(), HOUR).await, "verifies");
}
