//! The conformance tests themselves, backend-agnostic.

use std::future::Future;
use std::sync::Arc;

use shared::Pan;
use vault::audit::{Action, AuditDraft, HeadMismatch, Outcome, Verifier};
use vault::auth::{ClientRecord, Scopes};
use vault::clock::now_micros;
use vault::collect::{CollectId, CollectSession, Origin};
use vault::crypto::{KeyPurpose, KeyState, Keyring, MasterKey, RowMac};
use vault::store::{CardMeta, ClientRevocation, Resealed, Store, StoreError, TokenRecord};
use vault::token::{ClientId, Token};
use zeroize::Zeroizing;

use crate::{Backend, Open};

fn keyring() -> (Keyring, Vec<vault::crypto::WrappedKey>) {
    Keyring::generate(
        &MasterKey::from_bytes(&Zeroizing::new([7; 32])),
        now_micros(),
    )
    .unwrap()
}

fn draft(action: Action) -> AuditDraft {
    AuditDraft::new("cli_test", action, Outcome::Granted)
}

fn record(keys: &Keyring, tenant: &str, pan: &str, expires_at: Option<i64>) -> TokenRecord {
    let pan = Pan::parse(pan).unwrap();
    let token = Token::generate().unwrap();
    TokenRecord {
        fingerprint: keys.fingerprint().fingerprint(tenant, &pan),
        fingerprint_key_version: keys.fingerprint().version(),
        earlier_fingerprints: Vec::new(),
        card: CardMeta {
            bin: pan.bin().to_owned(),
            last4: pan.last4().to_owned(),
            brand: pan.brand(),
            pan_length: 16,
            exp_month: Some(12),
            exp_year: Some(2030),
        },
        sealed: keys.seal_pan(&pan, token.as_str(), tenant).unwrap(),
        tenant: tenant.to_owned(),
        created_at: now_micros(),
        expires_at,
        token,
    }
}

/// Tokenizes `pan` for `tenant` as the service does: a fresh record and its audited event.
async fn tokenize(
    store: &dyn Store,
    keys: &Keyring,
    tenant: &str,
    pan: &str,
    expires_at: Option<i64>,
) -> Result<TokenRecord, StoreError> {
    store
        .tokenize(
            record(keys, tenant, pan, expires_at),
            keys.audit(),
            draft(Action::TokenCreate),
        )
        .await
}

/// Appends one audit event (a token read): the write the chain tests count.
async fn append(store: &dyn Store, keys: &Keyring) -> Result<(), StoreError> {
    store
        .append_audit(keys.audit(), draft(Action::TokenRead))
        .await
}

/// Whether deleting `tenant`'s `token` found it (the delete is audited either way).
async fn delete(store: &dyn Store, keys: &Keyring, tenant: &str, token: &Token, now: i64) -> bool {
    store
        .delete_token(tenant, token, now, keys.audit(), draft(Action::TokenDelete))
        .await
        .unwrap()
}

/// Runs `n` tasks at once, task `i` on the store `on(i)` picks (a replica, or one store under
/// concurrent load), and returns what each task returned, in order.
async fn concurrently<T, F>(
    n: u32,
    keys: &Arc<Keyring>,
    on: impl Fn(u32) -> Arc<dyn Store>,
    task: impl Fn(Arc<dyn Store>, Arc<Keyring>, u32) -> F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(task(on(i), Arc::clone(keys), i)))
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

/// Two replicas taking turns: even tasks on `a`, odd ones on `c`.
fn alternating(a: &Arc<dyn Store>, c: &Arc<dyn Store>) -> impl Fn(u32) -> Arc<dyn Store> {
    let (a, c) = (Arc::clone(a), Arc::clone(c));
    move |i| Arc::clone(if i % 2 == 0 { &a } else { &c })
}

async fn verify(store: &dyn Store, keys: &Keyring) -> u64 {
    let mut v = Verifier::new(keys.audit().clone());
    loop {
        let page = store.audit_events(v.checked(), 7).await.unwrap();
        if page.is_empty() {
            return v.checked();
        }
        for e in &page {
            v.check(e).unwrap();
        }
    }
}

pub(crate) async fn keys_insert_once(b: Backend) {
    let store = b.open().await;
    let (keys, wrapped) = keyring();
    assert!(store.wrapped_keys().await.unwrap().is_empty());
    store
        .insert_keys(wrapped.clone(), keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    let loaded = store.wrapped_keys().await.unwrap();
    assert_eq!(loaded.len(), 4);
    let again = Keyring::open(&MasterKey::from_bytes(&Zeroizing::new([7; 32])), &loaded).unwrap();
    assert_eq!(again.fingerprint().version(), 1);
    let err = store
        .insert_keys(wrapped, keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err:?}");
    assert_eq!(
        verify(store.as_ref(), &keys).await,
        1,
        "the failed insert left no audit event"
    );
}

/// A new key version is stored beside the first (its version unique per purpose), moves from
/// active to decrypt-only once (a second move finds nothing and is audited as such), and the
/// tokens per version are counted.
pub(crate) async fn key_versions_are_added_retired_once_and_counted(b: Backend) {
    let store = b.open().await;
    let master = MasterKey::from_bytes(&Zeroizing::new([7; 32]));
    let (keys, wrapped) = keyring();
    store
        .insert_keys(wrapped, keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    tokenize(store.as_ref(), &keys, "acme", "4242424242424242", None)
        .await
        .unwrap();
    let v2 = Keyring::generate_version(&master, KeyPurpose::Data, 2, now_micros()).unwrap();
    store
        .add_key_and_seal_clients(
            v2.clone(),
            Vec::new(),
            keys.audit(),
            draft(Action::KeysRotate),
        )
        .await
        .unwrap();
    let err = store
        .add_key_and_seal_clients(v2, Vec::new(), keys.audit(), draft(Action::KeysRotate))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err:?}");
    let retire = || {
        store.set_key_state(
            KeyPurpose::Data,
            1,
            KeyState::Active,
            KeyState::DecryptOnly,
            keys.audit(),
            draft(Action::KeysRetire),
        )
    };
    assert!(retire().await.unwrap());
    assert!(!retire().await.unwrap(), "retired once");
    let loaded = store.wrapped_keys().await.unwrap();
    let states: Vec<_> = loaded
        .iter()
        .filter(|w| w.purpose == KeyPurpose::Data)
        .map(|w| (w.version, w.state))
        .collect();
    assert_eq!(
        states,
        vec![(1, KeyState::DecryptOnly), (2, KeyState::Active)]
    );
    let ring = Keyring::open(&master, &loaded).unwrap();
    assert_eq!(ring.sealing_version(), Some(2));
    // Seal counts add up across writers and survive in the row.
    store.add_seals(KeyPurpose::Data, 2, 5).await.unwrap();
    store.add_seals(KeyPurpose::Data, 2, 7).await.unwrap();
    let seals: Vec<_> = store
        .wrapped_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.purpose == KeyPurpose::Data)
        .map(|w| (w.version, w.seals))
        .collect();
    assert_eq!(seals, vec![(1, 0), (2, 12)]);
    let used = store.tokens_per_key_version().await.unwrap();
    assert_eq!(used.data, vec![(1, 1)]);
    assert_eq!(used.fingerprint, vec![(1, 1)]);
    // create, tokenize, rotate, two retire attempts.
    assert_eq!(verify(store.as_ref(), &keys).await, 5);
}

/// The rewrap's two halves: tokens under one version come in token order from a cursor, a
/// reseal changes a row only while it is still under the version it was read with (so two
/// replicas reseal it once), and a version is destroyed only without rows (or shredded).
pub(crate) async fn tokens_are_resealed_once_and_a_version_destroyed_only_when_empty(b: Backend) {
    let store = b.open().await;
    let master = MasterKey::from_bytes(&Zeroizing::new([7; 32]));
    let (keys, wrapped) = keyring();
    store
        .insert_keys(wrapped, keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    let mut made = Vec::new();
    for i in 0..5 {
        let pan = luhn_complete(&format!("4{:014}", 7000 + i));
        made.push(
            tokenize(store.as_ref(), &keys, "acme", &pan, None)
                .await
                .unwrap(),
        );
    }
    let first = store.tokens_sealed_under(1, None, 3).await.unwrap();
    assert_eq!(first.len(), 3);
    let rest = store
        .tokens_sealed_under(1, Some(first[2].token.clone()), 3)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    let mut seen: Vec<_> = first.iter().chain(&rest).map(|t| t.token.clone()).collect();
    seen.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut want: Vec<_> = made.iter().map(|t| t.token.clone()).collect();
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(seen, want, "every token once, in token order");
    assert!(
        store
            .tokens_sealed_under(2, None, 3)
            .await
            .unwrap()
            .is_empty()
    );

    let mut wrapped = store.wrapped_keys().await.unwrap();
    wrapped.push(Keyring::generate_version(&master, KeyPurpose::Data, 2, now_micros()).unwrap());
    let ring = Keyring::open(&master, &wrapped).unwrap();
    store
        .add_key_and_seal_clients(
            wrapped.last().unwrap().clone(),
            Vec::new(),
            keys.audit(),
            draft(Action::KeysRotate),
        )
        .await
        .unwrap();
    let resealed: Vec<Resealed> = first
        .iter()
        .chain(&rest)
        .map(|t| {
            let pan = ring
                .open_pan(&t.sealed, t.token.as_str(), &t.tenant)
                .unwrap();
            Resealed {
                token: t.token.clone(),
                from_version: 1,
                sealed: ring.seal_pan(&pan, t.token.as_str(), &t.tenant).unwrap(),
            }
        })
        .collect();
    let reseal =
        |list: Vec<Resealed>| store.reseal_tokens(list, keys.audit(), draft(Action::KeysRewrap));
    assert_eq!(reseal(resealed.clone()).await.unwrap(), 5);
    assert_eq!(
        reseal(resealed).await.unwrap(),
        0,
        "a second replica changes nothing"
    );
    let after = store
        .token("acme", &made[0].token, now_micros())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.sealed.key_version, 2);
    assert!(
        ring.open_pan(&after.sealed, after.token.as_str(), "acme")
            .is_ok()
    );

    // v2 holds the rows now: destroying it needs shredding; v1 (once decrypt-only) is empty.
    let destroy = |version, shred| {
        store.destroy_key(
            KeyPurpose::Data,
            version,
            shred,
            keys.audit(),
            draft(Action::KeysDestroy),
        )
    };
    assert!(
        !destroy(1, false).await.unwrap(),
        "an active version is not destroyed"
    );
    assert!(
        store
            .set_key_state(
                KeyPurpose::Data,
                1,
                KeyState::Active,
                KeyState::DecryptOnly,
                keys.audit(),
                draft(Action::KeysRetire),
            )
            .await
            .unwrap()
    );
    assert!(destroy(1, false).await.unwrap());
    assert!(
        store
            .set_key_state(
                KeyPurpose::Data,
                2,
                KeyState::Active,
                KeyState::DecryptOnly,
                keys.audit(),
                draft(Action::KeysRetire),
            )
            .await
            .unwrap()
    );
    assert!(!destroy(2, false).await.unwrap(), "rows still under v2");
    assert!(destroy(2, true).await.unwrap(), "shredded");
    assert!(
        store
            .tokens_sealed_under(2, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "the shredded rows went with their key"
    );
    let states: Vec<_> = store
        .wrapped_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.purpose == KeyPurpose::Data)
        .map(|w| (w.version, w.state, w.sealed.ciphertext.is_empty()))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, KeyState::Destroyed, true),
            (2, KeyState::Destroyed, true)
        ]
    );
}

pub(crate) async fn tokenize_returns_the_existing_token_and_replaces_expired_ones(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    let make = async |tenant: &str, pan: &str, expires_at: Option<i64>| {
        tokenize(store.as_ref(), &keys, tenant, pan, expires_at)
            .await
            .unwrap()
    };
    let first = make("acme", "4242424242424242", None).await;
    let second = make("acme", "4242424242424242", None).await;
    assert_eq!(first.token, second.token);
    assert_eq!(first, second);
    let other_tenant = make("globex", "4242424242424242", None).await;
    assert_ne!(other_tenant.token, first.token);

    let expired = make("acme", "5555555555554444", Some(now_micros() - 1)).await;
    let fresh = make("acme", "5555555555554444", None).await;
    assert_ne!(expired.token, fresh.token, "an expired token is replaced");
    let opened = keys
        .open_pan(&fresh.sealed, fresh.token.as_str(), "acme")
        .unwrap();
    assert_eq!(opened.expose(), "5555555555554444");
    assert_eq!(verify(store.as_ref(), &keys).await, 5);
}

pub(crate) async fn tokens_are_isolated_by_tenant_and_expiry(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    let in_a_minute = Some(now_micros() + 60_000_000);
    let t = tokenize(
        store.as_ref(),
        &keys,
        "acme",
        "4242424242424242",
        in_a_minute,
    )
    .await
    .unwrap();
    let now = now_micros();
    assert_eq!(
        store.token("acme", &t.token, now).await.unwrap().as_ref(),
        Some(&t)
    );
    assert_eq!(store.token("globex", &t.token, now).await.unwrap(), None);
    assert_eq!(
        store
            .token("acme", &t.token, now + 120_000_000)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .token("acme", &Token::generate().unwrap(), now)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn delete_and_sweep(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    let t = tokenize(store.as_ref(), &keys, "acme", "4242424242424242", None)
        .await
        .unwrap();
    let now = now_micros();
    assert!(!delete(store.as_ref(), &keys, "globex", &t.token, now).await);
    assert!(delete(store.as_ref(), &keys, "acme", &t.token, now).await);
    assert!(!delete(store.as_ref(), &keys, "acme", &t.token, now).await);
    for pan in ["5555555555554444", "2200000000000004"] {
        tokenize(store.as_ref(), &keys, "acme", pan, Some(now + 1))
            .await
            .unwrap();
    }
    assert_eq!(
        store.delete_expired(now + 10, keys.audit()).await.unwrap(),
        2
    );
    assert_eq!(
        store.delete_expired(now + 10, keys.audit()).await.unwrap(),
        0
    );
    let events = store.audit_events(0, 100).await.unwrap();
    let outcomes: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "token.delete")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["not_found", "granted", "not_found"]);
    assert_eq!(
        events.iter().filter(|e| e.action == "token.expire").count(),
        1
    );
    verify(store.as_ref(), &keys).await;
}

pub(crate) async fn clients_and_revocation(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    let mut client = ClientRecord {
        id: ClientId::generate().unwrap(),
        name: "app".to_owned(),
        tenant: "acme".to_owned(),
        scopes: Scopes::parse("tokens:create,tokens:read").unwrap(),
        key_hash: [9; 32],
        created_at: now_micros(),
        revoked_at: None,
        mac: None,
        // Bound to a client certificate: the binding is stored and MAC'd like the rest.
        cert_sha256: Some([0x5A; 32]),
    };
    client.seal(keys.client());
    store
        .insert_client(client.clone(), keys.audit(), draft(Action::ClientCreate))
        .await
        .unwrap();
    let found = store.client_by_key_hash([9; 32]).await.unwrap().unwrap();
    assert_eq!(found.cert_sha256, Some([0x5A; 32]));
    assert_eq!(found.encode(), client.encode());
    let unbound = ClientRecord {
        cert_sha256: None,
        ..found.clone()
    };
    assert!(
        !unbound.is_authentic(keys.client()),
        "a row unbound behind the vault's back fails its MAC"
    );
    assert_eq!(found.mac, client.mac);
    assert!(found.is_authentic(keys.client()));
    let by_id = store.client_by_id(&client.id).await.unwrap().unwrap();
    assert_eq!(by_id.encode(), client.encode());
    assert!(store.client_by_key_hash([8; 32]).await.unwrap().is_none());
    assert!(
        store
            .client_by_id(&ClientId::generate().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let dup = ClientRecord {
        id: ClientId::generate().unwrap(),
        ..client.clone()
    };
    assert!(matches!(
        store
            .insert_client(dup, keys.audit(), draft(Action::ClientCreate))
            .await
            .unwrap_err(),
        StoreError::Duplicate
    ));
    let mut revoked = client.clone();
    revoked.revoked_at = Some(now_micros());
    revoked.seal(keys.client());
    // Whether revoking, computed from `old` (a version of the row), changed the row.
    let revoke = async |old: &ClientRecord| {
        let revocation = ClientRevocation {
            id: client.id.clone(),
            revoked_at: revoked.revoked_at.unwrap(),
            old_mac: old.mac.unwrap(),
            new_mac: revoked.mac.unwrap(),
        };
        store
            .revoke_client(revocation, keys.audit(), draft(Action::ClientRevoke))
            .await
            .unwrap()
    };
    // A revocation computed from another version of the row does nothing.
    assert!(!revoke(&revoked).await);
    assert!(revoke(&client).await);
    assert!(!revoke(&client).await);
    let listed = store.clients().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());
    assert!(
        listed[0].is_authentic(keys.client()),
        "the revoked row keeps a valid MAC"
    );
    store.check_ready().await.unwrap();
}

/// The store remembers the head it wrote: a cut tail or a rewritten last event makes every
/// later append (and readiness) fail, for good; appends by another store on the same database
/// (a replica, the command line) do not.
pub(crate) async fn the_store_refuses_to_append_after_the_chain_was_cut(b: Backend) {
    let (store, other) = (b.open().await, b.open().await);
    let (keys, _) = keyring();
    for _ in 0..5 {
        append(store.as_ref(), &keys).await.unwrap();
    }
    assert_eq!(store.known_head().unwrap().seq, 5);
    other.adopt_head().await.unwrap();
    append(other.as_ref(), &keys).await.unwrap();
    // The other store moved the head on: still fine for the first.
    append(store.as_ref(), &keys).await.unwrap();
    store.check_ready().await.unwrap();
    assert_eq!(store.known_head().unwrap().seq, 7);
    b.execute("DELETE FROM audit_events WHERE seq >= 6").await;
    let err = append(store.as_ref(), &keys).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Chain {
                mismatch: HeadMismatch::Behind {
                    stored: 5,
                    known: 7
                }
            }
        ),
        "{err:?}"
    );
    assert!(store.check_ready().await.is_err());
    let err = tokenize(store.as_ref(), &keys, "acme", "4242424242424242", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Chain {
                mismatch: HeadMismatch::Latched
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        verify(store.as_ref(), &keys).await,
        5,
        "nothing was appended"
    );
    // The other store last saw event 6, which is gone too.
    assert!(other.check_ready().await.is_err());
    // A fresh store (a restarted vault) adopts what is there: only a checkpoint kept elsewhere
    // can tell it more.
    let restarted = b.open().await;
    restarted.adopt_head().await.unwrap();
    append(restarted.as_ref(), &keys).await.unwrap();
}

/// Readiness checks run beside a stream of concurrent writes (and another store's) never
/// mistake this process's own progress for tampering.
pub(crate) async fn readiness_beside_concurrent_writes_never_latches(b: Backend) {
    let (store, other) = (b.open().await, b.open().await);
    let keys = Arc::new(keyring().0);
    let on = |i| Arc::clone(if i % 4 == 3 { &other } else { &store });
    let results = concurrently(120, &keys, on, |store, keys, i| async move {
        if i % 3 == 0 {
            store.check_ready().await
        } else {
            append(store.as_ref(), &keys).await
        }
    })
    .await;
    for r in results {
        r.unwrap();
    }
    store.check_ready().await.unwrap();
    other.check_ready().await.unwrap();
}

/// A last event rewritten in place (same sequence number, another MAC) is caught too.
pub(crate) async fn the_store_refuses_to_append_after_its_last_event_changed(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    for _ in 0..3 {
        append(store.as_ref(), &keys).await.unwrap();
    }
    b.execute(
        "UPDATE audit_events SET mac = (SELECT mac FROM audit_events WHERE seq = 1) WHERE seq = 3",
    )
    .await;
    let err = append(store.as_ref(), &keys).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Chain {
                mismatch: HeadMismatch::Differs { seq: 3 }
            }
        ),
        "{err:?}"
    );
}

pub(crate) async fn audit_chain_pages_and_verifies(b: Backend) {
    let store = b.open().await;
    let (keys, _) = keyring();
    for i in 0..23 {
        let mut d = draft(Action::TokenRead);
        d.request_id = Some(format!("req_{i}"));
        store.append_audit(keys.audit(), d).await.unwrap();
    }
    assert_eq!(verify(store.as_ref(), &keys).await, 23);
    let page = store.audit_events(20, 10).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [21, 22, 23]);
}

pub(crate) async fn replicas_tokenizing_one_card_make_one_token(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    let keys = Arc::new(keyring().0);
    let tokens = concurrently(
        16,
        &keys,
        alternating(&a, &c),
        |store, keys, _| async move {
            tokenize(store.as_ref(), &keys, "acme", "4242424242424242", None)
                .await
                .unwrap()
                .token
        },
    )
    .await;
    let tokens: std::collections::BTreeSet<_> =
        tokens.iter().map(|t| t.as_str().to_owned()).collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(verify(a.as_ref(), &keys).await, 16);
}

pub(crate) async fn replicas_appending_audit_events_keep_one_chain(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    let keys = Arc::new(keyring().0);
    concurrently(
        40,
        &keys,
        alternating(&a, &c),
        |store, keys, _| async move {
            store
                .append_audit(keys.audit(), draft(Action::TokenDetokenize))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(verify(c.as_ref(), &keys).await, 40);
}

/// After a fingerprint rotation: tokenize finds a card under an older fingerprint (and moves
/// its token), the rewrap batch moves a token only while it is still under the version it was
/// read with and the new version is active, and a token whose card already has another token
/// under the new version keeps its own unmatched fingerprint.
pub(crate) async fn tokens_are_refingerprinted_once_and_a_duplicate_keeps_its_own(b: Backend) {
    use vault::store::Refingerprinted;
    let store = b.open().await;
    let master = MasterKey::from_bytes(&Zeroizing::new([7; 32]));
    let (keys, wrapped) = keyring();
    store
        .insert_keys(wrapped, keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    let old = tokenize(store.as_ref(), &keys, "acme", "4242424242424242", None)
        .await
        .unwrap();
    let other = tokenize(store.as_ref(), &keys, "acme", "5555555555554444", None)
        .await
        .unwrap();
    let v2 = Keyring::generate_version(&master, KeyPurpose::Fingerprint, 2, now_micros()).unwrap();
    store
        .add_key_and_seal_clients(v2, Vec::new(), keys.audit(), draft(Action::KeysRotate))
        .await
        .unwrap();
    // Tokenizing the first card again under "v2" (any new fingerprint) with its v1 fingerprint
    // as an earlier one returns its token, moved to v2.
    let mut again = record(&keys, "acme", "4242424242424242", None);
    again.earlier_fingerprints = vec![again.fingerprint];
    again.fingerprint = [0xA2; 32];
    again.fingerprint_key_version = 2;
    let found = store
        .tokenize(again, keys.audit(), draft(Action::TokenCreate))
        .await
        .unwrap();
    assert_eq!(found.token, old.token);
    let now = now_micros();
    let moved = store.token("acme", &old.token, now).await.unwrap().unwrap();
    assert_eq!(
        (moved.fingerprint, moved.fingerprint_key_version),
        ([0xA2; 32], 2)
    );
    assert_eq!(
        store
            .tokens_fingerprinted_under(1, None, 10)
            .await
            .unwrap()
            .len(),
        1,
        "the second card is still under v1"
    );
    // The batch: the second card's new fingerprint is taken by the first card's token (as if
    // a stale replica had made a second token for it), so it keeps its own unmatched one.
    let batch = |fingerprint: [u8; 32]| {
        vec![Refingerprinted {
            token: other.token.clone(),
            tenant: "acme".to_owned(),
            from_version: 1,
            fingerprint,
            unmatched: [0xEE; 32],
            version: 2,
        }]
    };
    let n = store
        .refingerprint_tokens(batch([0xA2; 32]), keys.audit(), draft(Action::KeysRewrap))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = store
        .token("acme", &other.token, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.fingerprint, row.fingerprint_key_version),
        ([0xEE; 32], 2)
    );
    // Moved once: a second batch finds it no longer under v1.
    let n = store
        .refingerprint_tokens(batch([0xB2; 32]), keys.audit(), draft(Action::KeysRewrap))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(
        store
            .tokens_fingerprinted_under(1, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // v1 is destroyed now that nothing is fingerprinted under it (once retired).
    store
        .set_key_state(
            KeyPurpose::Fingerprint,
            1,
            KeyState::Active,
            KeyState::DecryptOnly,
            keys.audit(),
            draft(Action::KeysRetire),
        )
        .await
        .unwrap();
    assert!(
        store
            .destroy_key(
                KeyPurpose::Fingerprint,
                1,
                false,
                keys.audit(),
                draft(Action::KeysDestroy)
            )
            .await
            .unwrap()
    );
}

/// A card with tokens under two fingerprint versions (a stale replica made one under the older
/// version in the second after a rotation) answers with the one under the newest, every time,
/// on both backends; rows under two different older versions (two stale windows) are found,
/// newest first, and not an error.
pub(crate) async fn a_card_under_two_fingerprint_versions_answers_with_the_newest(b: Backend) {
    let store = b.open().await;
    let (keys, wrapped) = keyring();
    store
        .insert_keys(wrapped, keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    let pan = "4242424242424242";
    let v1 = record(&keys, "acme", pan, None).fingerprint;
    // The up-to-date replica's token, under "v2" (any fingerprint other than v1's) ...
    let under = |fingerprint: [u8; 32], version: u32, earlier: Vec<[u8; 32]>| {
        let mut r = record(&keys, "acme", pan, None);
        r.fingerprint = fingerprint;
        r.fingerprint_key_version = version;
        r.earlier_fingerprints = earlier;
        r
    };
    let newest = store
        .tokenize(
            under([0xA2; 32], 2, Vec::new()),
            keys.audit(),
            draft(Action::TokenCreate),
        )
        .await
        .unwrap();
    // ... and the stale replica's, under v1, which knew no v2.
    let stale = tokenize(store.as_ref(), &keys, "acme", pan, None)
        .await
        .unwrap();
    assert_ne!(
        stale.token, newest.token,
        "the stale replica made a second token"
    );
    for _ in 0..3 {
        let found = store
            .tokenize(
                under([0xA2; 32], 2, vec![v1]),
                keys.audit(),
                draft(Action::TokenCreate),
            )
            .await
            .unwrap();
        assert_eq!(
            found.token, newest.token,
            "the token under the newest fingerprint"
        );
    }
    // A third version: the card is under v2 and v1, neither newest; the newer one is moved.
    let found = store
        .tokenize(
            under([0xA3; 32], 3, vec![[0xA2; 32], v1]),
            keys.audit(),
            draft(Action::TokenCreate),
        )
        .await
        .unwrap();
    assert_eq!(found.token, newest.token);
    let row = store
        .token("acme", &newest.token, now_micros())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.fingerprint, row.fingerprint_key_version),
        ([0xA3; 32], 3)
    );
    let again = store
        .tokenize(
            under([0xA3; 32], 3, vec![[0xA2; 32], v1]),
            keys.audit(),
            draft(Action::TokenCreate),
        )
        .await
        .unwrap();
    assert_eq!(again.token, newest.token);
    // The stale token is untouched: the rewrap job gives it its own unmatched fingerprint.
    let left = store
        .token("acme", &stale.token, now_micros())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((left.fingerprint, left.fingerprint_key_version), (v1, 1));
}

/// After a client key rotation the rewrap job MACs rows again: each changes only while it still
/// holds the MAC it was read with; collect sessions page in id order.
pub(crate) async fn rows_are_remaced_only_from_the_mac_they_were_read_with(b: Backend) {
    use vault::crypto::RowMac;
    let store = b.open().await;
    let (keys, _) = keyring();
    let mut client = ClientRecord {
        id: ClientId::generate().unwrap(),
        name: "app".to_owned(),
        tenant: "acme".to_owned(),
        scopes: Scopes::parse("tokens:create").unwrap(),
        key_hash: [5; 32],
        created_at: now_micros(),
        revoked_at: None,
        mac: None,
        cert_sha256: None,
    };
    client.seal(keys.client());
    store
        .insert_client(client.clone(), keys.audit(), draft(Action::ClientCreate))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let session = collect_session(&keys, "acme", 3_600_000_000);
        ids.push(session.id.clone());
        store
            .insert_collect_session(session, keys.audit(), draft(Action::CollectCreate))
            .await
            .unwrap();
    }
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let first = store.collect_sessions_after(None, 2).await.unwrap();
    let rest = store
        .collect_sessions_after(Some(first[1].id.clone()), 2)
        .await
        .unwrap();
    let paged: Vec<_> = first.iter().chain(&rest).map(|s| s.id.clone()).collect();
    assert_eq!(paged, ids);
    let old_client = client.mac.unwrap();
    let old_session = first[0].mac;
    let remac = |client_from: RowMac, session_from: RowMac, to: u8| {
        store.remac_rows(
            vec![(client.id.clone(), client_from, RowMac([to; 32]))],
            vec![(first[0].id.clone(), session_from, RowMac([to; 32]))],
            keys.audit(),
            draft(Action::KeysRewrap),
        )
    };
    assert_eq!(remac(old_client, old_session, 1).await.unwrap(), 2);
    // Read with the MAC they held before: nothing changes a second time.
    assert_eq!(remac(old_client, old_session, 2).await.unwrap(), 0);
    let row = store.client_by_id(&client.id).await.unwrap().unwrap();
    assert_eq!(row.mac.unwrap().0, [1; 32]);
    let session = store.collect_session(&first[0].id).await.unwrap().unwrap();
    assert_eq!(session.mac.0, [1; 32]);
}

/// A key version lands only beside the keys it was wrapped with: once a master-key rotation
/// rewrapped the witness row, a version made under the old master key is refused.
pub(crate) async fn a_key_version_under_an_old_master_key_is_refused(b: Backend) {
    let store = b.open().await;
    let old = MasterKey::from_bytes(&Zeroizing::new([7; 32]));
    let new = MasterKey::from_bytes(&Zeroizing::new([8; 32]));
    let (keys, wrapped) = keyring();
    store
        .insert_keys(wrapped.clone(), keys.audit(), draft(Action::KeysCreate))
        .await
        .unwrap();
    let witness = wrapped
        .iter()
        .find(|w| w.purpose == KeyPurpose::Audit)
        .cloned()
        .unwrap();
    let v2 = Keyring::generate_version(&old, KeyPurpose::Data, 2, now_micros()).unwrap();
    store
        .add_key_version(v2, witness.clone(), keys.audit(), draft(Action::KeysRotate))
        .await
        .unwrap();
    let stored = store.wrapped_keys().await.unwrap();
    let rewrapped = Keyring::rewrap(&old, &new, &stored).unwrap();
    assert!(
        store
            .rewrap_keys(
                stored,
                rewrapped,
                keys.audit(),
                draft(Action::KeysRewrapMaster)
            )
            .await
            .unwrap()
    );
    let v3 = Keyring::generate_version(&old, KeyPurpose::Data, 3, now_micros()).unwrap();
    let err = store
        .add_key_version(v3, witness, keys.audit(), draft(Action::KeysRotate))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate), "{err:?}");
    assert!(Keyring::open(&new, &store.wrapped_keys().await.unwrap()).is_ok());
}

/// Two replicas approving one proposal at once record one approval (`append_audit_once`, under
/// the audit lock); a denied attempt does not count as one.
pub(crate) async fn replicas_approving_one_proposal_record_one_approval(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    let keys = Arc::new(keyring().0);
    let mut denied = draft(Action::DualApprove);
    denied.outcome = Outcome::Denied;
    denied.request_id = Some("prp_1".to_owned());
    assert!(a.append_audit_once(keys.audit(), denied).await.unwrap());
    let won = concurrently(
        16,
        &keys,
        alternating(&a, &c),
        |store, keys, _| async move {
            let mut d = draft(Action::DualApprove);
            d.request_id = Some("prp_1".to_owned());
            store.append_audit_once(keys.audit(), d).await.unwrap()
        },
    )
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    // Another proposal is approved on its own.
    let mut other = draft(Action::DualApprove);
    other.request_id = Some("prp_2".to_owned());
    assert!(c.append_audit_once(keys.audit(), other).await.unwrap());
    assert_eq!(verify(c.as_ref(), &keys).await, 3);
}

/// Concurrent writes share commits (group commit); one the database refuses (PostgreSQL
/// rejects a NUL in text) must fail alone: every other write lands and the chain verifies.
pub(crate) async fn a_refused_write_fails_alone_among_concurrent_ones(b: Backend) {
    let store = b.open().await;
    let keys = Arc::new(keyring().0);
    let on = |_| Arc::clone(&store);
    let results = concurrently(60, &keys, on, |store, keys, i| async move {
        match i % 3 {
            0 => {
                let pan = luhn_complete(&format!("4{:014}", 1000 + i));
                tokenize(store.as_ref(), &keys, "acme", &pan, None)
                    .await
                    .map(drop)
            }
            _ if i == 31 => {
                let mut poison = draft(Action::TokenRead);
                poison.detail = Some("bad\0byte".to_owned());
                store.append_audit(keys.audit(), poison).await
            }
            _ => append(store.as_ref(), &keys).await,
        }
    })
    .await;
    let mut landed = 0u64;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => landed += 1,
            Err(e) => assert_eq!(i, 31, "write {i} failed: {e}"),
        }
    }
    assert!(landed >= 59);
    assert_eq!(verify(store.as_ref(), &keys).await, landed);
}

fn luhn_complete(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A fresh, sealed collect session of `tenant` open for `ttl_micros`.
fn collect_session(keys: &Keyring, tenant: &str, ttl_micros: i64) -> CollectSession {
    let now = now_micros();
    let mut session = CollectSession {
        id: CollectId::generate().unwrap(),
        tenant: tenant.to_owned(),
        created_by: ClientId::generate().unwrap(),
        secret_hash: [9; 32],
        allowed_origins: vec![Origin::parse("https://shop.example").unwrap()],
        name_required: false,
        metadata: Some(r#"{"order":"A-1"}"#.to_owned()),
        created_at: now,
        expires_at: now + ttl_micros,
        completion: None,
        mac: RowMac([0; 32]),
    };
    session.seal(keys.client());
    session
}

async fn complete(
    store: &dyn Store,
    keys: &Keyring,
    session: CollectSession,
    pan: &str,
) -> Option<CollectSession> {
    let tenant = session.tenant.clone();
    // The session is the actor of its submission, as the service writes it.
    let draft = AuditDraft::new(session.id.as_str(), Action::CollectSubmit, Outcome::Granted);
    store
        .complete_collect_session(
            session,
            record(keys, &tenant, pan, None),
            Some("IVAN PETROV".to_owned()),
            keys.client(),
            keys.audit(),
            draft,
        )
        .await
        .unwrap()
}

/// A session reads back as written, completes once (with its token recorded and the row
/// sealed again over the completion), and a completed one takes no second card.
pub(crate) async fn collect_sessions_complete_once(b: Backend) {
    let store = b.open().await;
    let keys = keyring().0;
    let session = collect_session(&keys, "acme", 60_000_000);
    store
        .insert_collect_session(session.clone(), keys.audit(), draft(Action::CollectCreate))
        .await
        .unwrap();
    let read = store.collect_session(&session.id).await.unwrap().unwrap();
    assert!(read.is_authentic(keys.client()));
    assert_eq!(read.encode(), session.encode());
    assert!(
        store
            .collect_session(&CollectId::generate().unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let done = complete(store.as_ref(), &keys, read.clone(), "4242424242424242")
        .await
        .unwrap();
    let completion = done.completion.clone().unwrap();
    assert_eq!(completion.last4, "4242");
    assert_eq!(completion.cardholder_name.as_deref(), Some("IVAN PETROV"));
    let stored = store.collect_session(&session.id).await.unwrap().unwrap();
    assert!(
        stored.is_authentic(keys.client()),
        "the completion is sealed"
    );
    assert_eq!(stored.completion, Some(completion.clone()));
    let token = store
        .token("acme", &completion.token, now_micros())
        .await
        .unwrap();
    assert!(token.is_some(), "the token was stored with the session");
    // Neither the row as first read nor as completed opens it again.
    assert!(
        complete(store.as_ref(), &keys, read, "5555555555554444")
            .await
            .is_none()
    );
    assert!(
        complete(store.as_ref(), &keys, stored, "5555555555554444")
            .await
            .is_none()
    );
    // create, submit; the refused ones wrote nothing.
    assert_eq!(verify(store.as_ref(), &keys).await, 2);
}

/// The row must still be the one that was checked: a session edited since its read (say, its
/// origins widened by hand) is not claimed, and an expired one is not either.
pub(crate) async fn a_changed_or_expired_collect_session_is_not_claimed(b: Backend) {
    let store = b.open().await;
    let keys = keyring().0;
    let session = collect_session(&keys, "acme", 60_000_000);
    store
        .insert_collect_session(session.clone(), keys.audit(), draft(Action::CollectCreate))
        .await
        .unwrap();
    let mut stale = session.clone();
    stale.mac = RowMac([1; 32]);
    assert!(
        complete(store.as_ref(), &keys, stale, "4242424242424242")
            .await
            .is_none()
    );

    let expired = collect_session(&keys, "acme", -1);
    store
        .insert_collect_session(expired.clone(), keys.audit(), draft(Action::CollectCreate))
        .await
        .unwrap();
    assert!(
        complete(store.as_ref(), &keys, expired, "4242424242424242")
            .await
            .is_none()
    );
    let fresh = record(&keys, "acme", "4242424242424242", None);
    let want = fresh.token.clone();
    let got = store
        .tokenize(fresh, keys.audit(), draft(Action::TokenCreate))
        .await
        .unwrap();
    assert_eq!(got.token, want, "a refused claim costs no token");
}

/// A completed session's row put back as it was before its card (a restored backup): the row
/// verifies (its MAC is the vault's own), but the audit log holds the card accepted for it, so
/// the claim refuses and mints no token.
pub(crate) async fn a_collect_session_restored_to_before_its_card_is_not_claimed(b: Backend) {
    let store = b.open().await;
    let keys = keyring().0;
    let session = collect_session(&keys, "acme", 60_000_000);
    store
        .insert_collect_session(session.clone(), keys.audit(), draft(Action::CollectCreate))
        .await
        .unwrap();
    b.execute("CREATE TABLE before_card AS SELECT * FROM collect_sessions")
        .await;
    assert!(
        complete(store.as_ref(), &keys, session.clone(), "4242424242424242")
            .await
            .is_some()
    );
    b.execute(
        "UPDATE collect_sessions SET completed_at = NULL, token = NULL, last4 = NULL, \
         brand = NULL, cardholder_name = NULL, \
         mac = (SELECT b.mac FROM before_card b WHERE b.id = collect_sessions.id)",
    )
    .await;
    let restored = store.collect_session(&session.id).await.unwrap().unwrap();
    assert!(
        restored.is_authentic(keys.client()),
        "the restored row verifies"
    );
    assert!(restored.completion.is_none());
    assert!(
        complete(store.as_ref(), &keys, restored, "5555555555554444")
            .await
            .is_none(),
        "a second card through a rolled-back session"
    );
    let fresh = record(&keys, "acme", "5555555555554444", None);
    let want = fresh.token.clone();
    let got = store
        .tokenize(fresh, keys.audit(), draft(Action::TokenCreate))
        .await
        .unwrap();
    assert_eq!(got.token, want, "the refused claim stored no token");
}

/// Sessions expired before the cut-off are deleted, with one `collect.expire` event; open ones
/// and ones expired since stay, and a sweep with nothing to do writes nothing.
pub(crate) async fn collect_sessions_past_their_retention_are_swept(b: Backend) {
    let store = b.open().await;
    let keys = keyring().0;
    let old = collect_session(&keys, "acme", -10_000_000);
    let done = collect_session(&keys, "acme", 60_000_000);
    let open = collect_session(&keys, "acme", 60_000_000);
    for s in [&old, &done, &open] {
        store
            .insert_collect_session(s.clone(), keys.audit(), draft(Action::CollectCreate))
            .await
            .unwrap();
    }
    complete(store.as_ref(), &keys, done.clone(), "4242424242424242")
        .await
        .unwrap();
    let cut = now_micros() - 5_000_000;
    let swept = store
        .delete_expired_collect_sessions(cut, keys.audit())
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(store.collect_session(&old.id).await.unwrap().is_none());
    assert!(store.collect_session(&open.id).await.unwrap().is_some());
    assert!(store.collect_session(&done.id).await.unwrap().is_some());
    // Past everyone's expiry, the completed one goes too; its token stays.
    let later = now_micros() + 120_000_000;
    assert_eq!(
        store
            .delete_expired_collect_sessions(later, keys.audit())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .delete_expired_collect_sessions(later, keys.audit())
            .await
            .unwrap(),
        0
    );
    // 3 creates, 1 submit, 2 sweeps that deleted something.
    assert_eq!(verify(store.as_ref(), &keys).await, 6);
}

/// Replicas racing to complete one session: exactly one wins, one token exists.
pub(crate) async fn replicas_completing_one_collect_session_complete_it_once(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    let keys = Arc::new(keyring().0);
    let session = collect_session(&keys, "acme", 60_000_000);
    a.insert_collect_session(session.clone(), keys.audit(), draft(Action::CollectCreate))
        .await
        .unwrap();
    let wins = concurrently(12, &keys, alternating(&a, &c), move |store, keys, i| {
        let session = session.clone();
        async move {
            let pan = luhn_complete(&format!("4{:014}", 5000 + i));
            complete(store.as_ref(), &keys, session, &pan)
                .await
                .is_some()
        }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(verify(c.as_ref(), &keys).await, 2);
}
