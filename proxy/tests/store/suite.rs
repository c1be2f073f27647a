//! The conformance tests, backend-agnostic.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use proxy::engine::now_micros;
use proxy::ids::{AppClientId, PayoutId};
use proxy::payout::{BankSession, OutboxEvent, Payout, PayoutState, SessionId};
use proxy::store::{
    BankEvent, EventFilter, Inserted, PayoutClaim, PayoutFilter, ProxyStore, StoreError,
};

use crate::rows::{self, app, event, payout};
use crate::{Backend, Open};

pub(crate) use crate::links::{
    a_link_closes_once_with_its_payout_and_event, forged_link_rows_are_corrupt,
    link_idempotency_keys_are_per_client, replicas_never_claim_the_same_link,
};

/// Adds an app client `id` of `tenant` (its webhook URL a closed port: nothing is delivered here).
pub(crate) async fn client(store: &dyn ProxyStore, id: &AppClientId, tenant: &str) {
    let record = rows::client(id, tenant, Some("http://127.0.0.1:9/hooks"));
    store.insert_client(record).await.unwrap();
}

/// Inserts a new payout of acme's `client_id` under idempotency key `key`; returns it.
async fn new_payout(store: &dyn ProxyStore, client_id: &AppClientId, key: &str, at: i64) -> Payout {
    let inserted = store
        .insert_payout(payout(client_id, "acme", key, at))
        .await
        .unwrap();
    let Inserted::New(p) = inserted else {
        panic!("{key} found an existing payout")
    };
    p
}

/// Up to 100 of `tenant`'s payouts that `filter` lets through, newest first.
async fn listed(store: &dyn ProxyStore, tenant: &str, filter: PayoutFilter) -> Vec<Payout> {
    store.list_payouts(tenant, filter, 100).await.unwrap()
}

/// Up to 10 of app `a`'s events that `filter` lets through.
async fn events_of_a(store: &dyn ProxyStore, filter: EventFilter) -> Vec<OutboxEvent> {
    store.list_events(&app("a"), filter, 10).await.unwrap()
}

/// Runs `n` claims at once, claim `i` by replica `i % 2` (`a` or `c`), and returns everything
/// they claimed.
pub(crate) async fn claimed_on_replicas<T, F>(
    (a, c): (&Arc<dyn ProxyStore>, &Arc<dyn ProxyStore>),
    n: usize,
    claim: impl Fn(Arc<dyn ProxyStore>, usize) -> F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = Vec<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(claim(Arc::clone(if i % 2 == 0 { a } else { c }), i)))
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    claimed
}

pub(crate) async fn idempotency_keys_are_per_client(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    client(store.as_ref(), &app("b"), "acme").await;
    let first = payout(&app("a"), "acme", "k1", now_micros());
    assert!(matches!(
        store.insert_payout(first.clone()).await.unwrap(),
        Inserted::New(_)
    ));
    match store
        .insert_payout(payout(&app("a"), "acme", "k1", now_micros()))
        .await
        .unwrap()
    {
        Inserted::Existing(p) => assert_eq!(p, first),
        Inserted::New(_) => panic!("the same key made a second payout"),
    }
    assert!(matches!(
        store
            .insert_payout(payout(&app("b"), "acme", "k1", now_micros()))
            .await
            .unwrap(),
        Inserted::New(_)
    ));
    // Found again by the key, only for the client that used it.
    let found = store
        .payout_by_idempotency_key(&app("a"), "k1")
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&first));
    assert!(
        store
            .payout_by_idempotency_key(&app("a"), "k2")
            .await
            .unwrap()
            .is_none()
    );
    let other = store
        .payout_by_idempotency_key(&app("b"), "k1")
        .await
        .unwrap();
    assert_ne!(other.map(|p| p.id), Some(first.id));
}

pub(crate) async fn save_is_compare_and_set_with_its_events(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    let p = new_payout(store.as_ref(), &app("a"), "k", now_micros()).await;
    let mut moved = p.clone();
    moved.state = PayoutState::SessionCreated;
    moved.bank = Some(BankSession::new(SessionId::new("ps_1".to_owned())));
    let saved = store.save(&moved, vec![event(&moved, 1)]).await.unwrap();
    assert_eq!(saved.version, 1);
    // A second writer holding the old version loses, and its events are not written.
    let mut stale = p.clone();
    stale.state = PayoutState::Failed;
    assert!(matches!(
        store
            .save(&stale, vec![event(&stale, 2)])
            .await
            .unwrap_err(),
        StoreError::Conflict
    ));
    let read = store.payout(&p.id).await.unwrap().unwrap();
    assert_eq!(read.state, PayoutState::SessionCreated);
    assert_eq!(read.version, 1);
    assert_eq!(
        store.payout_by_session("ps_1").await.unwrap().unwrap().id,
        p.id
    );
    assert_eq!(store.undelivered_events().await.unwrap(), 1);
}

pub(crate) async fn listing_pages_filters_and_isolates_tenants(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    client(store.as_ref(), &app("g"), "globex").await;
    let base = now_micros();
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = payout(&app("a"), "acme", &format!("k{i}"), base + i);
        ids.push(p.id.clone());
        store.insert_payout(p).await.unwrap();
    }
    store
        .insert_payout(payout(&app("g"), "globex", "k0", base))
        .await
        .unwrap();
    let page1 = store
        .list_payouts("acme", PayoutFilter::default(), 2)
        .await
        .unwrap();
    let page2 = store
        .list_payouts("acme", after(page1[1].id.as_str()), 2)
        .await
        .unwrap();
    let page3 = store
        .list_payouts("acme", after(page2[1].id.as_str()), 2)
        .await
        .unwrap();
    let paged: Vec<PayoutId> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|p| p.id.clone())
        .collect();
    ids.reverse();
    assert_eq!(paged, ids, "newest first, no gaps or repeats");
    let created = listed(store.as_ref(), "acme", in_state(PayoutState::Created)).await;
    assert_eq!(created.len(), 5);
    let succeeded = listed(store.as_ref(), "acme", in_state(PayoutState::Succeeded)).await;
    assert!(succeeded.is_empty());
    let globex = listed(store.as_ref(), "globex", PayoutFilter::default()).await;
    assert_eq!(globex.len(), 1);
    // One app's payouts only, when asked.
    client(store.as_ref(), &app("b"), "acme").await;
    store
        .insert_payout(payout(&app("b"), "acme", "kb", base + 10))
        .await
        .unwrap();
    let of = async |client: AppClientId| {
        let filter = PayoutFilter {
            client_id: Some(client.to_string()),
            ..Default::default()
        };
        let payouts = listed(store.as_ref(), "acme", filter).await;
        payouts.into_iter().map(|p| p.client_id).collect::<Vec<_>>()
    };
    assert_eq!(of(app("a")).await, vec![app("a"); 5]);
    assert_eq!(of(app("b")).await, vec![app("b")]);
    let all = listed(store.as_ref(), "acme", PayoutFilter::default()).await;
    assert_eq!(all.len(), 6);
}

pub(crate) async fn replicas_never_claim_the_same_payout(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    client(a.as_ref(), &app("a"), "acme").await;
    let now = now_micros();
    for i in 0..30 {
        a.insert_payout(payout(&app("a"), "acme", &format!("k{i}"), now - 1000 + i))
            .await
            .unwrap();
    }
    let claimed = claimed_on_replicas((&a, &c), 6, |store, i| async move {
        let owner = format!("replica_{}", i % 2);
        store
            .claim_due_payouts(claim(now, now + 60_000_000, &owner, 7))
            .await
            .unwrap()
    })
    .await;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for p in claimed {
        total += 1;
        // As claimed: the lease, its owner, and a version that fences older reads.
        let stored = a.payout(&p.id).await.unwrap().unwrap();
        assert_eq!(stored.lease_owner, p.lease_owner);
        assert_eq!(
            (stored.version, stored.next_attempt_at),
            (1, now + 60_000_000)
        );
        assert_eq!(p.version, 1);
        assert!(seen.insert(p.id), "a payout was claimed twice");
    }
    assert_eq!(total, 30);
    // A save from a read taken before the claim is refused: the claim fenced it.
    let id = seen.iter().next().unwrap().clone();
    let mut before_claim = a.payout(&id).await.unwrap().unwrap();
    before_claim.version = 0;
    assert!(matches!(
        a.save(&before_claim, Vec::new()).await,
        Err(StoreError::Conflict)
    ));
    assert!(
        a.claim_due_payouts(claim(now, now + 1, "replica_0", 100))
            .await
            .unwrap()
            .is_empty(),
        "leased payouts are not due"
    );
    assert_eq!(
        c.claim_due_payouts(claim(now + 60_000_000, now + 60_000_001, "replica_1", 100))
            .await
            .unwrap()
            .len(),
        30
    );
}

pub(crate) async fn replicas_never_claim_the_same_event(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    client(a.as_ref(), &app("a"), "acme").await;
    let now = now_micros();
    let p = new_payout(a.as_ref(), &app("a"), "k", now).await;
    let mut moved = p.clone();
    moved.state = PayoutState::Succeeded;
    a.save(
        &moved,
        (0..20).map(|i| event(&moved, now - 100 + i)).collect(),
    )
    .await
    .unwrap();
    let claimed = claimed_on_replicas((&a, &c), 4, |store, _| async move {
        store
            .claim_due_events(now, now + 60_000_000, 6)
            .await
            .unwrap()
    })
    .await;
    let ids: BTreeSet<_> = claimed.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), claimed.len(), "an event was claimed twice");
    assert_eq!(claimed.len(), 20);
    let mut delivered = claimed[0].clone();
    delivered.delivered_at = Some(now);
    a.update_event(&delivered).await.unwrap();
    assert_eq!(a.undelivered_events().await.unwrap(), 19);
    let again = c
        .claim_due_events(now + 60_000_000, now + 60_000_001, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 19, "delivered events are never claimed again");
}

pub(crate) async fn clients_and_bank_events(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    let c = store.client(&app("a")).await.unwrap().unwrap();
    assert_eq!(
        store
            .client_by_key_hash(*c.key_hash)
            .await
            .unwrap()
            .unwrap()
            .id,
        app("a")
    );
    // Rotated with an overlap: both hashes find the client, the old one with its end; rotated
    // again without one, the oldest finds nothing and the overlap is gone.
    let (k2, k3) = ([2u8; 32], [3u8; 32]);
    let until = now_micros() + 60_000_000;
    assert!(
        store
            .rotate_client_key(&app("a"), k2, Some(until))
            .await
            .unwrap()
    );
    let found = store
        .client_by_key_hash(*c.key_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.previous_key.map(|k| (k.hash.0, k.expires_at)),
        Some((c.key_hash.0, until))
    );
    assert!(found.accepts(&c.key_hash.0, now_micros()));
    assert!(!found.accepts(&c.key_hash.0, until));
    assert!(found.accepts(&k2, until));
    assert!(store.rotate_client_key(&app("a"), k3, None).await.unwrap());
    assert!(
        store
            .client_by_key_hash(*c.key_hash)
            .await
            .unwrap()
            .is_none()
    );
    let found = store.client_by_key_hash(k3).await.unwrap().unwrap();
    assert_eq!(found.previous_key, None);
    assert!(!found.accepts(&k2, now_micros()));
    assert!(
        !store
            .rotate_client_key(&app("none"), k2, None)
            .await
            .unwrap()
    );
    assert!(store.set_webhook_url(&app("a"), None).await.unwrap());
    assert_eq!(
        store.client(&app("a")).await.unwrap().unwrap().webhook_url,
        None
    );
    assert!(
        store
            .set_webhook_url(&app("a"), Some("https://hooks.example/x"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .client(&app("a"))
            .await
            .unwrap()
            .unwrap()
            .webhook_url
            .as_deref(),
        Some("https://hooks.example/x")
    );
    assert!(store.revoke_client(&app("a"), now_micros()).await.unwrap());
    assert!(!store.revoke_client(&app("a"), now_micros()).await.unwrap());
    // A revoked client is neither rotated nor updated, and no key opens it.
    assert!(!store.rotate_client_key(&app("a"), k2, None).await.unwrap());
    assert!(!store.set_webhook_url(&app("a"), None).await.unwrap());
    assert!(
        !store
            .client_by_key_hash(k3)
            .await
            .unwrap()
            .unwrap()
            .accepts(&k3, now_micros())
    );
    assert!(store.clients().await.unwrap()[0].revoked_at.is_some());
    let p = new_payout(store.as_ref(), &app("a"), "k", now_micros()).await;
    let event = |kind: &str| BankEvent {
        payout_id: Some(p.id.clone()),
        bank_session_id: "ps_1".to_owned(),
        kind: kind.to_owned(),
        body: "{}".to_owned(),
        received_at: now_micros(),
    };
    for kind in ["ready_to_confirm", "payment_finished"] {
        assert!(store.record_bank_event(event(kind)).await.unwrap());
    }
    // PCI 20: a replayed webhook (same kind, same body) is kept once, whenever it comes.
    for _ in 0..3 {
        assert!(
            !store
                .record_bank_event(event("payment_finished"))
                .await
                .unwrap()
        );
    }
    let kinds: Vec<String> = store
        .bank_events(&p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["ready_to_confirm", "payment_finished"]);
    store.check_writable().await.unwrap();
}

pub(crate) async fn events_are_listed_per_client_and_redelivered(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    client(store.as_ref(), &app("b"), "acme").await;
    let mut payouts = Vec::new();
    for (i, client_id) in [&app("a"), &app("a"), &app("b")].into_iter().enumerate() {
        let p = new_payout(store.as_ref(), client_id, &format!("k{i}"), now_micros()).await;
        let mut moved = p.clone();
        moved.state = PayoutState::Failed;
        let mut e = event(&moved, 1_000 + i64::try_from(i).unwrap());
        e.event_type = "payout.failed".to_owned();
        store.save(&moved, vec![e]).await.unwrap();
        payouts.push(p);
    }
    let ids = |events: Vec<OutboxEvent>| {
        events
            .into_iter()
            .map(|e| e.payout_id.unwrap())
            .collect::<Vec<_>>()
    };
    let all = events_of_a(store.as_ref(), EventFilter::default()).await;
    assert_eq!(
        ids(all.clone()),
        [payouts[1].id.clone(), payouts[0].id.clone()]
    );
    let after_newest = EventFilter {
        after: Some(all[0].id.clone()),
        ..EventFilter::default()
    };
    let page = events_of_a(store.as_ref(), after_newest).await;
    assert_eq!(ids(page), [payouts[0].id.clone()]);
    let of_first = EventFilter {
        payout_id: Some(payouts[0].id.to_string()),
        ..EventFilter::default()
    };
    let one = events_of_a(store.as_ref(), of_first).await;
    assert_eq!(one.len(), 1);
    let succeeded = EventFilter {
        event_type: Some("payout.succeeded".to_owned()),
        ..EventFilter::default()
    };
    let none = events_of_a(store.as_ref(), succeeded).await;
    assert!(none.is_empty());

    // Delivered, then asked for again: due now with fresh attempts; only by its own client.
    let mut delivered = all[0].clone();
    delivered.attempts = 3;
    delivered.delivered_at = Some(now_micros());
    delivered.next_attempt_at = i64::MAX;
    store.update_event(&delivered).await.unwrap();
    assert!(
        store
            .redeliver_event(&app("b"), &delivered.id, 5)
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .redeliver_event(&app("a"), &delivered.id, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.attempts, again.next_attempt_at, again.delivered_at),
        (0, 5, None)
    );
    let due = store.claim_due_events(10, 20, 10).await.unwrap();
    assert!(due.iter().any(|e| e.id == delivered.id));
}

fn after(id: &str) -> PayoutFilter {
    PayoutFilter {
        after: Some(id.to_owned()),
        ..Default::default()
    }
}

fn in_state(state: PayoutState) -> PayoutFilter {
    PayoutFilter {
        state: Some(state),
        ..Default::default()
    }
}

/// App `a`'s payout under key `k`, then altered behind the store's back: `UPDATE payouts SET
/// {set}`. Returns the id it was inserted with.
async fn planted(b: &Backend, store: &dyn ProxyStore, set: &str) -> PayoutId {
    client(store, &app("a"), "acme").await;
    let p = payout(&app("a"), "acme", "k", now_micros());
    let id = p.id.clone();
    store.insert_payout(p).await.unwrap();
    alter(b, &id, set).await;
    id
}

/// `UPDATE payouts SET {set}` on payout `id`, behind the store's back.
async fn alter(b: &Backend, id: &PayoutId, set: &str) {
    b.execute(&format!("UPDATE payouts SET {set} WHERE id = '{id}'"))
        .await;
}

/// App `a`'s payout under key `k` is refused as corrupt in `column` both where a replayed create
/// reaches it (by its idempotency key) and in a listing.
async fn refused_as(store: &dyn ProxyStore, column: &str) {
    let by_key = store.payout_by_idempotency_key(&app("a"), "k").await;
    assert!(
        matches!(by_key, Err(StoreError::Corrupt(c)) if c == column),
        "{by_key:?}"
    );
    let listed = store
        .list_payouts("acme", PayoutFilter::default(), 10)
        .await;
    assert!(
        matches!(listed, Err(StoreError::Corrupt(c)) if c == column),
        "{listed:?}"
    );
}

/// A row forged behind the store's back with an id that is not one (here a card number where a
/// payout id belongs, a short string where a client id belongs) is refused as corrupt: it never
/// reaches the engine, a listing or an app.
pub(crate) async fn forged_ids_in_rows_are_corrupt(b: Backend) {
    let store = b.open().await;
    planted(&b, store.as_ref(), "id = '4242424242424242'").await;
    refused_as(store.as_ref(), "payout id").await;
    client(store.as_ref(), &app("b"), "acme").await;
    b.execute(&format!(
        "UPDATE clients SET id = 'app_1' WHERE id = '{}'",
        app("b")
    ))
    .await;
    // A listing reaches it; the short id is not even one a lookup by id could ask for.
    assert!(AppClientId::parse("app_1").is_none());
    assert!(matches!(
        store.clients().await,
        Err(StoreError::Corrupt("client id"))
    ));
}

/// A row forged (or mangled) behind the store's back into a state that has a bank session, but
/// naming none, is refused as corrupt: the engine is never handed a started payout without its
/// session. The states a payout may end in before its session existed still read, and what is
/// learned within a session cannot be there without one.
pub(crate) async fn a_session_state_without_a_session_is_corrupt(b: Backend) {
    let store = b.open().await;
    let id = planted(&b, store.as_ref(), "state = 'started'").await;
    assert!(matches!(
        store.payout(&id).await,
        Err(StoreError::Corrupt("bank session"))
    ));
    refused_as(store.as_ref(), "bank session").await;
    // Failed before a session was created: it reads, with none.
    alter(&b, &id, "state = 'failed'").await;
    let read = store.payout(&id).await.unwrap().unwrap();
    assert_eq!(read.state, PayoutState::Failed);
    assert_eq!(read.bank, None);
    // A bank payout id with no session to hold it.
    alter(&b, &id, "bank_payout_id = 'po_1'").await;
    assert!(matches!(
        store.payout(&id).await,
        Err(StoreError::Corrupt("bank session"))
    ));
    // With its session the started row reads, the session's columns as one value.
    alter(&b, &id, "state = 'started', bank_session_id = 'ps_1'").await;
    let read = store.payout(&id).await.unwrap().unwrap();
    assert_eq!(read.state, PayoutState::Started);
    assert_eq!(
        read.bank,
        Some(BankSession {
            id: SessionId::new("ps_1".to_owned()),
            payout_id: Some("po_1".to_owned()),
            confirm_deadline: None,
        })
    );
}

/// A claim of up to `limit` payouts due at `due`, leased to `owner` until `lease_until`.
pub(crate) fn claim(due: i64, lease_until: i64, owner: &str, limit: u32) -> PayoutClaim<'_> {
    PayoutClaim {
        due,
        lease_until,
        owner,
        limit,
    }
}
