//! Key lifecycle on a running vault: a data key rotated by the command line takes new writes
//! within a second with no restart, old tokens still open, a retired version opens and never
//! seals, and the version in use cannot be retired.

use reqwest::StatusCode;
use vault::crypto::KeyPurpose;
use vault::service::VaultError;

use crate::helpers::{ALL_SCOPES, TestVault, unlimited};
use testkit::numbered_card as pan;

const OLD_PAN: &str = "4242424242424242";

fn key_version(v: &TestVault, token: &str) -> i64 {
    v.scalar("SELECT key_version FROM tokens WHERE token = ?1", [token])
}

#[tokio::test]
async fn a_rotated_data_key_takes_new_writes_without_a_restart_and_old_tokens_still_open() {
    // The rewrap job is the operator's here, so the counts below stay put.
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.rewrap_in_background = false;
    })
    .await;
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
    // The audit key lives as long as its chain.
    assert!(matches!(
        v.admin.rotate_key("cli", KeyPurpose::Audit).await,
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

#[tokio::test]
async fn rewrap_moves_old_tokens_and_a_destroyed_version_never_opens_again() {
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.rewrap_in_background = false;
        c.keys.rewrap_batch_size = 3;
    })
    .await;
    let key = v.client("acme", ALL_SCOPES).await;
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        for n in 0..10 {
            t.push(v.token_for(&key, &pan(n)).await);
        }
        t
    };
    let ciphertext_of = |token: &str| -> Vec<u8> {
        v.scalar("SELECT ciphertext FROM tokens WHERE token = ?1", [token])
    };
    let before = ciphertext_of(&tokens[0]);
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();

    // v1 still seals tokens: it cannot be destroyed, not even retired-and-destroyed.
    v.admin
        .retire_key("cli", KeyPurpose::Data, 1)
        .await
        .unwrap();
    assert!(matches!(
        v.admin.destroy_key("cli", KeyPurpose::Data, 1, false).await,
        Err(VaultError::Invalid(_))
    ));
    // Rewrap in batches of 3 (four transactions, four events): every token moves to v2, its
    // ciphertext changes, and it still opens to its card.
    let done = v
        .admin
        .rewrap("cli", 3, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((done.resealed, done.failed), (10, 0));
    for (n, token) in tokens.iter().enumerate() {
        assert_eq!(key_version(&v, token), 2);
        let reply = v.detokenize(&key, token).await;
        assert_eq!(reply.json()["pan"], pan(n as u64), "{}", reply.text());
    }
    assert_ne!(ciphertext_of(&tokens[0]), before);
    assert_eq!(v.events("keys.rewrap").len(), 4);
    let again = v
        .admin
        .rewrap("cli", 3, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.resealed, 0, "a second pass finds nothing");

    // Now v1 seals nothing and goes; its wrapped key is wiped from the database.
    v.admin
        .destroy_key("cli", KeyPurpose::Data, 1, false)
        .await
        .unwrap();
    let wiped: Vec<u8> = v.scalar(
        "SELECT wrapped FROM keys WHERE purpose = 'data' AND version = 1",
        [],
    );
    assert!(wiped.is_empty());
    let status = v.admin.key_status().await.unwrap();
    assert!(
        status
            .iter()
            .any(|k| k.purpose == "data" && k.version == 1 && k.state == "destroyed")
    );

    // Crypto-shredding: a token still sealed under v2 when v2 is destroyed never opens again;
    // the attempt is refused and audited as an integrity error.
    let doomed = v.token_for(&key, &pan(99)).await;
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    v.admin
        .retire_key("cli", KeyPurpose::Data, 2)
        .await
        .unwrap();
    assert!(matches!(
        v.admin.destroy_key("cli", KeyPurpose::Data, 2, false).await,
        Err(VaultError::Invalid(_))
    ));
    v.admin
        .destroy_key("cli", KeyPurpose::Data, 2, true)
        .await
        .unwrap();
    // The shredded token's row went with its key: it is no longer there to open, and the
    // same card tokenized again gets a new token that opens (not the dead one).
    let reply = v.detokenize(&key, &doomed).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert!(!reply.text().contains(&pan(99)));
    let again = v.token_for(&key, &pan(99)).await;
    assert_ne!(again, doomed);
    assert_eq!(v.detokenize(&key, &again).await.json()["pan"], pan(99));
    // A rewrap has nothing left to move: a destroyed version's tokens are not visited.
    let done = v
        .admin
        .rewrap("cli", 3, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(done.resealed, 0);
    let destroyed = v.events("keys.destroy");
    assert_eq!(
        destroyed
            .iter()
            .filter(|(outcome, _, _)| outcome == "granted")
            .map(|(_, _, d)| d.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec!["data v1".to_owned(), "data v2 (crypto-shred)".to_owned()]
    );
    assert!(v.verify_audit().await.is_ok());
}

#[tokio::test]
async fn running_vaults_rewrap_by_themselves() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", ALL_SCOPES).await;
    let old = v.token_for(&key, OLD_PAN).await;
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    // The background job moves the old token without anyone asking; the deadline bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while key_version(&v, &old) != 2 {
        assert!(std::time::Instant::now() < deadline, "never rewrapped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(v.detokenize(&key, &old).await.json()["pan"], OLD_PAN);
    let rewraps = v.events("keys.rewrap");
    assert_eq!(rewraps.len(), 1, "{rewraps:?}");
    assert_eq!(rewraps[0].1, "system");
    // And says so on /metrics (the counter moves just after the commit the loop above saw).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metrics = v
            .call(reqwest::Method::GET, "/metrics", None, None)
            .await
            .text();
        let has = |line: &str| metrics.lines().any(|l| l == line);
        if has("vault_tokens_rewrapped_total 1") {
            assert!(has("vault_data_key_version_in_use 2"), "{metrics}");
            assert!(has("vault_data_key_versions 2"), "{metrics}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_seal_counter_rotates_the_data_key_at_its_limit() {
    // PCI case 34, with the limit at 100.
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.data_key_max_seals = 100;
        c.keys.rewrap_in_background = false;
    })
    .await;
    let key = v.client("acme", ALL_SCOPES).await;
    for n in 0..120 {
        v.token_for(&key, &pan(20_000 + n)).await;
    }
    // The count reaches the database within a second and the rotation follows; the deadline
    // only bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    loop {
        let token = v.token_for(&key, &pan(30_000 + n)).await;
        if key_version(&v, &token) == 2 {
            break;
        }
        n += 1;
        assert!(std::time::Instant::now() < deadline, "never rotated");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = v.admin.key_status().await.unwrap();
    let v1 = status
        .iter()
        .find(|k| k.purpose == "data" && k.version == 1)
        .unwrap();
    assert!(v1.seals >= 100, "{v1:?}");
    assert!(!v1.in_use);
    let rotations = v.events("keys.rotate");
    assert_eq!(rotations.len(), 1, "one rotation: {rotations:?}");
    assert_eq!(rotations[0].1, "system");
    assert_eq!(rotations[0].2.as_deref(), Some("data v2 (seal limit)"));
}

#[tokio::test]
async fn a_database_that_retires_the_newest_key_cannot_make_the_vault_seal_under_an_old_one() {
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.rewrap_in_background = false;
    })
    .await;
    let key = v.client("acme", ALL_SCOPES).await;
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    v.admin
        .retire_key("cli", KeyPurpose::Data, 1)
        .await
        .unwrap();
    // Once the serving vault seals under v2...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    while key_version(&v, &v.token_for(&key, &pan(60_000 + n)).await) != 2 {
        n += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "never sealed under v2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let failures = || {
        String::from_utf8_lossy(&crate::helpers::logs())
            .matches("reloading the stored keys failed")
            .count()
    };
    let before = failures();
    // ...someone with SQL access wants new cards under the retired (say, suspect) v1.
    v.raw_db()
        .execute_batch(
            "UPDATE keys SET state = 'active' WHERE purpose = 'data' AND version = 1; \
             UPDATE keys SET state = 'decrypt_only' WHERE purpose = 'data' AND version = 2;",
        )
        .unwrap();
    // The serving vault refuses to adopt that (it says so in its log) and keeps sealing
    // under v2; the deadline only bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while failures() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was never read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let token = v.token_for(&key, &pan(70_000)).await;
    assert_eq!(
        key_version(&v, &token),
        2,
        "sealed under the key the database chose"
    );
    // And a vault opened on that database refuses to start.
    let config = v.config.clone();
    assert!(vault::startup::open_vault(&config).await.is_err());
}

#[tokio::test]
async fn a_rewrap_pass_stops_when_its_target_key_is_rotated_away() {
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.rewrap_in_background = false;
    })
    .await;
    let key = v.client("acme", ALL_SCOPES).await;
    for n in 0..20 {
        v.token_for(&key, &pan(80_000 + n)).await;
    }
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    let count = |version: i64| -> i64 {
        v.scalar(
            "SELECT count(*) FROM tokens WHERE key_version = ?1",
            [version],
        )
    };
    let admin = v.admin.clone();
    let pass = tokio::spawn(async move {
        admin
            .rewrap("cli", 1, std::time::Duration::from_millis(100))
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(2) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pass never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // v2 is rotated away mid-pass (suspected, say): the pass must not keep filling it.
    v.admin.rotate_key("cli", KeyPurpose::Data).await.unwrap();
    let at_rotation = count(2);
    pass.await.unwrap().unwrap();
    assert!(
        count(2) <= at_rotation + 1,
        "the pass kept sealing under v2: {} then {}",
        at_rotation,
        count(2)
    );
    assert!(
        count(1) > 0,
        "the pass stopped before moving everything into v2"
    );
    // The next pass moves what is left, and what v2 holds, to v3.
    v.admin
        .rewrap("cli", 50, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((count(1), count(2), count(3)), (0, 0, 20));
}

/// PCI case 35 on a running vault: after a fingerprint key rotation the same card still gets
/// the same token (found under the older version, and moved), the rewrap job re-fingerprints
/// the rest, and the old version is destroyed only once no token is fingerprinted under it.
#[tokio::test]
async fn a_rotated_fingerprint_key_keeps_same_card_same_token_and_is_destroyed_once_moved() {
    let v = TestVault::spawn_with(|c| {
        unlimited(c);
        c.keys.rewrap_in_background = false;
    })
    .await;
    let key = v.client("acme", ALL_SCOPES).await;
    let fp_version = |token: &str| -> i64 {
        v.scalar(
            "SELECT fingerprint_key_version FROM tokens WHERE token = ?1",
            [token],
        )
    };
    let mut before = Vec::new();
    for n in 0..10 {
        let card = pan(90_000 + n);
        let token = v.token_for(&key, &card).await;
        assert_eq!(fp_version(&token), 1);
        before.push((card, token));
    }
    let v1_fingerprint: Vec<u8> = v.scalar(
        "SELECT fingerprint FROM tokens WHERE token = ?1",
        [before[0].1.as_str()],
    );
    assert_eq!(
        v.admin
            .rotate_key("cli", KeyPurpose::Fingerprint)
            .await
            .unwrap(),
        2
    );
    // The serving vault fingerprints new cards under v2 within a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        let token = v.token_for(&key, &pan(95_000 + n)).await;
        if fp_version(&token) == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never fingerprinted under v2"
        );
        tokio::task::yield_now().await;
    }
    // Same card, same token: found under v1 and moved to its v2 fingerprint on the spot.
    assert_eq!(v.token_for(&key, &before[0].0).await, before[0].1);
    assert_eq!(fp_version(&before[0].1), 2);
    let v2_fingerprint: Vec<u8> = v.scalar(
        "SELECT fingerprint FROM tokens WHERE token = ?1",
        [before[0].1.as_str()],
    );
    assert_ne!(
        v1_fingerprint, v2_fingerprint,
        "another key, another fingerprint"
    );

    // v1 cannot be destroyed while tokens are fingerprinted under it.
    v.admin
        .retire_key("cli", KeyPurpose::Fingerprint, 1)
        .await
        .unwrap();
    assert!(matches!(
        v.admin.destroy_key("cli", KeyPurpose::Fingerprint, 1, false).await,
        Err(VaultError::Invalid(m)) if m.contains("fingerprinted under that version")
    ));
    // The rewrap job moves the rest (the cards above tokenized before the vault read the
    // rotation among them).
    let under_v1: i64 = v.scalar(
        "SELECT count(*) FROM tokens WHERE fingerprint_key_version = 1",
        [],
    );
    assert!(under_v1 >= 9, "{under_v1}");
    let done = v
        .admin
        .rewrap("cli", 3, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (done.refingerprinted, done.failed),
        (u64::try_from(under_v1).unwrap(), 0)
    );
    let left: i64 = v.scalar(
        "SELECT count(*) FROM tokens WHERE fingerprint_key_version = 1",
        [],
    );
    assert_eq!(left, 0);
    v.admin
        .destroy_key("cli", KeyPurpose::Fingerprint, 1, false)
        .await
        .unwrap();
    // Every card still finds its token, and every token still opens to its card.
    for (card, token) in &before {
        assert_eq!(&v.token_for(&key, card).await, token);
        let reply = v.detokenize(&key, token).await;
        assert_eq!(reply.json()["pan"], card.as_str());
    }
    // Crypto-shredding is for data keys only.
    assert!(matches!(
        v.admin
            .destroy_key("cli", KeyPurpose::Fingerprint, 2, true)
            .await,
        Err(VaultError::Invalid(_))
    ));
}

/// A replica that cannot load a newer fingerprint (or data) key than the one it holds (the
/// row does not open under its master key: another master key, a forged row, an HSM that lost
/// the key) makes no new tokens under the old version, which would give a card a second token
/// beside the one other replicas make under the newer fingerprint; it is not ready until a
/// reload succeeds, and every stored card still opens meanwhile.
#[tokio::test]
async fn a_vault_that_cannot_load_the_newest_fingerprint_key_makes_no_tokens() {
    let v = TestVault::spawn_with(unlimited).await;
    let key = v.client("acme", ALL_SCOPES).await;
    let old = v.token_for(&key, OLD_PAN).await;
    v.wait_readyz(StatusCode::OK).await;
    // A fingerprint v2 whose wrapped key is not the master key's work.
    v.raw_db()
        .execute_batch(
            "INSERT INTO keys (purpose, version, algorithm, wrap_nonce, wrapped, created_at, \
             state, seals) SELECT purpose, 2, algorithm, wrap_nonce, zeroblob(length(wrapped)), \
             created_at, state, 0 FROM keys WHERE purpose = 'fingerprint' AND version = 1",
        )
        .unwrap();
    // Within a second the vault re-reads the keys, fails to open v2, and refuses new tokens;
    // the deadline only bounds a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    let refused = loop {
        n += 1;
        let reply = v.tokenize(&key, &pan(120_000 + n)).await;
        if reply.status != StatusCode::CREATED {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kept making tokens under fingerprint v1"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "keys_behind", "{}", refused.text());
    // Every later one too, an existing card included, and the load balancer is told.
    assert_eq!(v.tokenize(&key, &pan(130_000)).await.code(), "keys_behind");
    assert_eq!(v.tokenize(&key, OLD_PAN).await.code(), "keys_behind");
    v.wait_readyz(StatusCode::SERVICE_UNAVAILABLE).await;
    let reply = v.detokenize(&key, &old).await;
    assert_eq!(reply.status, StatusCode::OK, "stored cards still open");
    let fingerprinted_v1: i64 = v.scalar(
        "SELECT count(*) FROM tokens WHERE fingerprint_key_version = 1 AND created_at > ?1",
        [v.scalar::<i64>(
            "SELECT created_at FROM tokens WHERE token = ?1",
            [old.as_str()],
        )],
    );
    assert_eq!(
        u64::try_from(fingerprinted_v1).unwrap(),
        n - 1,
        "no token was made after the refusal began"
    );
    // The row goes; the next reload succeeds and tokens are made again.
    v.raw_db()
        .execute_batch("DELETE FROM keys WHERE purpose = 'fingerprint' AND version = 2")
        .unwrap();
    v.wait_readyz(StatusCode::OK).await;
    assert_eq!(v.token_for(&key, OLD_PAN).await, old);
}
