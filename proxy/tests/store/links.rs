//! The payout link part of the conformance suite: idempotent inserts, exclusive claims between
//! replicas, a link closed once (with its payout and its event, or not at all), and forged
//! rows refused as corrupt.

use std::collections::BTreeSet;

use proxy::engine::now_micros;
use proxy::link::{LinkCompletion, LinkState, PayoutLink, payout_key};
use proxy::payout::{OutboxEvent, Payout};
use proxy::store::{EventFilter, Inserted, ProxyStore, StoreError};

use crate::rows::{app, link, payout};
use crate::suite::{claim, claimed_on_replicas, client};
use crate::{Backend, Open};

/// Inserts a new open link of acme's app `a` under `key`; returns it.
async fn new_link(store: &dyn ProxyStore, key: &str, at: i64) -> PayoutLink {
    match store
        .insert_link(link(&app("a"), "acme", key, at))
        .await
        .unwrap()
    {
        Inserted::New(l) => l,
        Inserted::Existing(_) => panic!("{key} found an existing link"),
    }
}

/// `l` completed, paid by `p`, at `at`.
fn completed(l: &PayoutLink, p: &Payout, at: i64) -> PayoutLink {
    PayoutLink {
        state: LinkState::Completed,
        completion: Some(LinkCompletion {
            payout_id: p.id.clone(),
            last4: "4242".to_owned(),
            brand: "visa".to_owned(),
            at,
        }),
        updated_at: at,
        ..l.clone()
    }
}

/// The app event of closing `l` (naming its payout, when it has one).
fn closing_event(l: &PayoutLink, at: i64) -> OutboxEvent {
    proxy::view::link_event(l, at).unwrap()
}

/// The payout a link `l` makes (its key derived from the link).
fn link_payout(l: &PayoutLink, at: i64) -> Payout {
    payout(&app("a"), "acme", &payout_key(&l.id), at)
}

/// Every field of `read` is `written`'s: the tagged fields by their bytes, the tag itself in
/// constant time (a link has no `PartialEq`, since it holds a secret and a tag).
fn assert_same(read: &PayoutLink, written: &PayoutLink) {
    assert_eq!(read.tag_bytes(), written.tag_bytes());
    assert!(shared::ct::bytes_eq(&read.tag, &written.tag), "tag");
    assert_eq!(
        (read.state, &read.completion),
        (written.state, &written.completion)
    );
}

pub(crate) async fn link_idempotency_keys_are_per_client(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    client(store.as_ref(), &app("b"), "acme").await;
    let first = new_link(store.as_ref(), "k1", now_micros()).await;
    // Every field reads back as written.
    assert_same(&store.link(&first.id).await.unwrap().unwrap(), &first);
    match store
        .insert_link(link(&app("a"), "acme", "k1", now_micros()))
        .await
        .unwrap()
    {
        Inserted::Existing(l) => assert_same(&l, &first),
        Inserted::New(_) => panic!("the same key made a second link"),
    }
    assert!(matches!(
        store
            .insert_link(link(&app("b"), "acme", "k1", now_micros()))
            .await
            .unwrap(),
        Inserted::New(_)
    ));
    let found = store
        .link_by_idempotency_key(&app("a"), "k1")
        .await
        .unwrap();
    assert_same(&found.unwrap(), &first);
    let other = store
        .link_by_idempotency_key(&app("b"), "k1")
        .await
        .unwrap();
    assert_ne!(other.map(|l| l.id), Some(first.id.clone()));
    assert!(
        store
            .link_by_idempotency_key(&app("a"), "k2")
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn replicas_never_claim_the_same_link(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    client(a.as_ref(), &app("a"), "acme").await;
    let now = now_micros();
    let mut open = Vec::new();
    for i in 0..24 {
        open.push(new_link(a.as_ref(), &format!("k{i}"), now - 1000 + i).await);
    }
    // Two closed links are never claimed again.
    let done = open.pop().unwrap();
    let p = link_payout(&done, now);
    let paid = completed(&done, &p, now);
    a.complete_link(&paid, Some(p), closing_event(&paid, now))
        .await
        .unwrap();
    let gone = open.pop().unwrap();
    let expired = PayoutLink {
        state: LinkState::Expired,
        ..gone
    };
    assert!(
        a.expire_link(&expired, closing_event(&expired, now))
            .await
            .unwrap()
    );
    let claimed = claimed_on_replicas((&a, &c), 6, |store, i| async move {
        let owner = format!("replica_{}", i % 2);
        store
            .claim_due_links(claim(now, now + 60_000_000, &owner, 5))
            .await
            .unwrap()
    })
    .await;
    let mut seen = BTreeSet::new();
    for l in &claimed {
        let stored = a.link(&l.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.next_poll_at, stored.version, &stored.lease_owner),
            (now + 60_000_000, 1, &l.lease_owner)
        );
        assert_eq!(l.state, LinkState::Open);
        assert!(seen.insert(l.id.clone()), "a link was claimed twice");
    }
    assert_eq!(seen.len(), 22);
    assert!(
        a.claim_due_links(claim(now, now + 1, "replica_0", 100))
            .await
            .unwrap()
            .is_empty(),
        "leased links are not due"
    );
    assert_eq!(
        c.claim_due_links(claim(now + 60_000_000, now + 60_000_001, "replica_1", 100))
            .await
            .unwrap()
            .len(),
        22
    );
}

pub(crate) async fn a_link_closes_once_with_its_payout_and_event(b: Backend) {
    let (a, c) = (b.open().await, b.open().await);
    client(a.as_ref(), &app("a"), "acme").await;
    let now = now_micros();
    let l = new_link(a.as_ref(), "k", now).await;

    // A link whose payout key is taken (an earlier attempt's payout) cannot insert another:
    // nothing is written, the link stays open.
    let taken = link_payout(&l, now);
    a.insert_payout(taken.clone()).await.unwrap();
    let second = link_payout(&l, now);
    let attempt = completed(&l, &second, now);
    assert!(matches!(
        a.complete_link(&attempt, Some(second.clone()), closing_event(&attempt, now))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(a.link(&l.id).await.unwrap().unwrap().state, LinkState::Open);
    assert!(a.payout(&second.id).await.unwrap().is_none());
    assert_eq!(a.undelivered_events().await.unwrap(), 0);

    // With the payout that holds the key: closed, with its event, once.
    let paid = completed(&l, &taken, now + 1);
    let event = closing_event(&paid, now + 1);
    a.complete_link(&paid, None, event.clone()).await.unwrap();
    let read = a.link(&l.id).await.unwrap().unwrap();
    assert_eq!(read.state, LinkState::Completed);
    assert_eq!(read.completion, paid.completion);
    assert_eq!(read.version, l.version + 1);
    // Another replica closing it again (with a payout of its own) writes nothing.
    let late = link_payout(&l, now + 2);
    let again = completed(&l, &late, now + 2);
    assert!(matches!(
        c.complete_link(&again, Some(late.clone()), closing_event(&again, now + 2))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(c.payout(&late.id).await.unwrap().is_none());
    let expired = PayoutLink {
        state: LinkState::Expired,
        ..l.clone()
    };
    assert!(
        !c.expire_link(&expired, closing_event(&expired, now))
            .await
            .unwrap()
    );
    let events = a
        .list_events(
            &app("a"),
            EventFilter {
                payout_link_id: Some(l.id.to_string()),
                ..EventFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(events, std::slice::from_ref(&event));
    assert_eq!(
        (events[0].payout_id.as_ref(), events[0].event_type.as_str()),
        (Some(&taken.id), "payout_link.completed")
    );

    // A fresh link, completed with a new payout in the same transaction.
    let m = new_link(a.as_ref(), "k2", now).await;
    let p = link_payout(&m, now);
    let paid = completed(&m, &p, now);
    a.complete_link(&paid, Some(p.clone()), closing_event(&paid, now))
        .await
        .unwrap();
    assert_eq!(a.payout(&p.id).await.unwrap().unwrap(), p);
    assert_eq!(
        a.payout_by_idempotency_key(&app("a"), &payout_key(&m.id))
            .await
            .unwrap()
            .map(|p| p.id),
        Some(p.id.clone())
    );

    // An expired link's event is about the link alone, and is delivered like any other.
    let n = new_link(a.as_ref(), "k3", now).await;
    let gone = PayoutLink {
        state: LinkState::Expired,
        updated_at: now + 3,
        ..n.clone()
    };
    assert!(
        a.expire_link(&gone, closing_event(&gone, now + 3))
            .await
            .unwrap()
    );
    let read = a.link(&n.id).await.unwrap().unwrap();
    assert_eq!((read.state, read.completion), (LinkState::Expired, None));
    let due = a
        .claim_due_events(now + 10, now + 60_000_000, 10)
        .await
        .unwrap();
    let expiry: Vec<_> = due
        .iter()
        .filter(|e| e.event_type == "payout_link.expired")
        .collect();
    assert_eq!(expiry.len(), 1);
    assert_eq!(
        (
            expiry[0].payout_id.as_ref(),
            expiry[0].payout_link_id.as_ref()
        ),
        (None, Some(&n.id))
    );
    assert_eq!(expiry[0].subject(), n.id.as_str());
    assert_eq!(due.len(), 3, "the three closings' events");
}

/// A link row forged behind the store's back (an id that is not one, a completion without its
/// payout or a payout without a completion) is refused as corrupt.
pub(crate) async fn forged_link_rows_are_corrupt(b: Backend) {
    let store = b.open().await;
    client(store.as_ref(), &app("a"), "acme").await;
    let l = new_link(store.as_ref(), "k", now_micros()).await;
    let alter = async |set: &str| {
        b.execute(&format!(
            "UPDATE payout_links SET {set} WHERE idempotency_key = 'k'"
        ))
        .await;
    };
    let by_key = async || store.link_by_idempotency_key(&app("a"), "k").await;
    alter("state = 'completed'").await;
    assert!(matches!(
        by_key().await,
        Err(StoreError::Corrupt("payout link completion"))
    ));
    alter("state = 'open', card_last4 = '4242'").await;
    assert!(matches!(
        by_key().await,
        Err(StoreError::Corrupt("payout link completion"))
    ));
    alter("card_last4 = NULL, state = 'paid'").await;
    assert!(matches!(
        by_key().await,
        Err(StoreError::Corrupt("payout link state"))
    ));
    alter("state = 'open', collect_session_id = '4242424242424242'").await;
    assert!(matches!(
        by_key().await,
        Err(StoreError::Corrupt("collect session id"))
    ));
    alter(&format!(
        "collect_session_id = '{}', id = 'pl_1'",
        l.session
    ))
    .await;
    assert!(matches!(
        by_key().await,
        Err(StoreError::Corrupt("payout link id"))
    ));
    // The claim reaches it too, and refuses it rather than handing it to the poller.
    assert!(matches!(
        store
            .claim_due_links(claim(now_micros(), now_micros() + 1, "r", 10))
            .await,
        Err(StoreError::Corrupt("payout link id"))
    ));
}
