//! Key lifecycle on a running vault: a data key rotated by the command line takes new writes
//! within a second with no restart, old tokens still open, a retired version opens and never
//! seals, and the version in use cannot be retired.

use reqwest::StatusCode;
use vault::crypto::KeyPurpose;
use vault::service::VaultError;

use crate::helpers::{ALL_SCOPES, TestVault, unlimited};

const OLD_PAN: &str = "4242424242424242";

/// A Luhn-valid 16-digit Visa test number from `n`.
fn pan(n: u64) -> String {
    let body = format!("4{n:014}");
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap();
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn key_version(v: &TestVault, token: &str) -> i64 {
    v.scalar("SELECT key_version FROM tokens WHERE token = ?1", [token])
}

#[tokio::test]
async fn a_rotated_data_key_takes_new_writes_without_a_restart_and_old_tokens_still_open() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", ALL_SCOPES).await;
    let old = v.token_for(&key, OLD_PAN).await;
    assert_eq!(key_version(&v, &old), 1);

    // The operator rotates (as `vault keys rotate` does, on another handle on the database).
    assert_eq!(
        v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap(),
        2
    );
    // The serving vault notices by itself (it re-reads the keys every second): new cards are
    // sealed under version 2 from then on. The deadline only bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    let first_new = loop {
        n += 1;
        let token = v.token_for(&key, &pan(n)).await;
        if key_version(&v, &token) == 2 {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sealed under v2"
        );
        tokio::task::yield_now().await;
    };
    for i in 0..5 {
        let token = v.token_for(&key, &pan(1000 + i)).await;
        assert_eq!(key_version(&v, &token), 2, "every later write uses v2");
    }
    let reply = v.detokenize(&key, &old).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["pan"], OLD_PAN);
    assert_eq!(v.detokenize(&key, &first_new).await.status, StatusCode::OK);
    // Same card, same token, across the rotation.
    assert_eq!(v.token_for(&key, OLD_PAN).await, old);

    // The version in use cannot be retired; the old one can, once.
    assert!(matches!(
        v.admin.retire_key("cli", KeyPurpose::Data, 2).await,
        Err(VaultError::Invalid(_))
    ));
    v.admin
        .retire_key("cli", KeyPurpose::Data, 1)
        .await
        .unwrap();
    assert!(matches!(
        v.admin.retire_key("cli", KeyPurpose::Data, 1).await,
        Err(VaultError::Invalid(_))
    ));
    assert!(matches!(
        v.admin.retire_key("cli", KeyPurpose::Data, 9).await,
        Err(VaultError::Invalid(_))
    ));
    // Other purposes do not rotate until the rewrap job can move their rows.
    assert!(matches!(
        v.admin.rotate_key("cli", KeyPurpose::Fingerprint).await,
        Err(VaultError::Invalid(_))
    ));

    let status = v.admin.key_status().await.unwrap();
    let data: Vec<_> = status.iter().filter(|k| k.purpose == "data").collect();
    assert_eq!(data.len(), 2);
    assert_eq!(
        (data[0].version, data[0].state, data[0].in_use),
        (1, "decrypt_only", false)
    );
    assert_eq!(data[0].tokens, Some(1 + n - 1));
    assert_eq!(
        (data[1].version, data[1].state, data[1].in_use),
        (2, "active", true)
    );

    // A decrypt-only version still opens what it sealed, on the serving vault too, and seals
    // nothing: new cards keep going to v2.
    let reply = v.detokenize(&key, &old).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let later = v.token_for(&key, &pan(5000)).await;
    assert_eq!(key_version(&v, &later), 2);

    let rotations = v.events("keys.rotate");
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    assert_eq!(rotations[0].2.as_deref(), Some("data v2"));
    let retirements = v.events("keys.retire");
    assert_eq!(
        retirements
            .iter()
            .map(|(outcome, _, detail)| (outcome.as_str(), detail.as_deref()))
            .collect::<Vec<_>>(),
        vec![("granted", Some("data v1"))]
    );
    assert!(v.verify_audit().await.is_ok());
}

#[tokio::test]
async fn two_rotations_at_once_make_two_versions() {
    let v = TestVault::spawn().await;
    let (a, b) = tokio::join!(
        v.admin.rotate_key("cli", KeyPurpose::Data),
        v.admin.rotate_key("cli", KeyPurpose::Data)
    );
    let mut made = vec![a.unwrap(), b.unwrap()];
    made.sort_unstable();
    assert_eq!(made, vec![2, 3]);
}
