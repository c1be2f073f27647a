//! The rows the proxy's tests write straight into a store: an app client, a payout, an outbox
//! event, a payout link. The store suite and `tests/deliverer.rs` (which takes this file with `#[path]`) both
//! need them, and one definition keeps both in step with the row types.

use proxy::auth::{ClientRecord, Scopes, WebhookSecret};
use proxy::engine::now_micros;
use proxy::ids::{AppClientId, CollectSessionId, PayoutId, PayoutLinkId};
use proxy::link::{LinkState, PayoutLink};
use proxy::payout::{ConfirmMode, OutboxEvent, Payout, PayoutRequest};

/// A readable app client id (`app("a")` is `app_…0a`).
pub(crate) fn app(name: &str) -> AppClientId {
    AppClientId::parse(&testkit::named_id("app_", name)).unwrap()
}

/// An active app client `id` of `tenant` that may write and read payouts, with a fresh key and
/// webhook secret.
pub(crate) fn client(id: &AppClientId, tenant: &str, webhook_url: Option<&str>) -> ClientRecord {
    ClientRecord {
        id: id.clone(),
        name: "app".to_owned(),
        tenant: tenant.to_owned(),
        scopes: Scopes::parse("payouts:write,payouts:read").unwrap(),
        key_hash: shared::ct::Tag32(shared::ids::ApiKey::generate("pk_").unwrap().hash()),
        webhook_url: webhook_url.map(str::to_owned),
        webhook_secret: WebhookSecret::generate().unwrap(),
        created_at: now_micros(),
        revoked_at: None,
        previous_key: None,
    }
}

/// A new payout of 100 RUB by `client_id` under idempotency key `key`, confirmed automatically.
pub(crate) fn payout(client_id: &AppClientId, tenant: &str, key: &str, created_at: i64) -> Payout {
    Payout::created(
        PayoutRequest {
            id: PayoutId::generate().unwrap(),
            tenant: tenant.to_owned(),
            client_id: client_id.clone(),
            idempotency_key: key.to_owned(),
            request_hash: [1; 32],
            card_token: "tok_0000000000000000000000".to_owned(),
            amount: 100,
            currency: "RUB".to_owned(),
            recipient_name: "A B".to_owned(),
            metadata: Some(r#"{"o":1}"#.to_owned()),
            confirm_mode: ConfirmMode::Auto,
        },
        created_at,
    )
}

/// An undelivered `payout.succeeded` event of `p`, made and due at `at`.
pub(crate) fn event(p: &Payout, at: i64) -> OutboxEvent {
    OutboxEvent {
        id: shared::ids::random_id("evt_").unwrap(),
        payout_id: Some(p.id.clone()),
        payout_link_id: None,
        client_id: p.client_id.clone(),
        event_type: "payout.succeeded".to_owned(),
        payload: "{}".to_owned(),
        attempts: 0,
        next_attempt_at: at,
        delivered_at: None,
        abandoned_at: None,
        last_error: None,
        created_at: at,
    }
}

/// A new open payout link of 500 RUB by `client_id` under idempotency key `key`, its session a
/// fresh `cs_…` id, due to be polled at `at` (its tag is not a real one: the store never checks
/// tags, the proxy does).
#[allow(
    dead_code,
    reason = "the deliverer tests take this file too and make no links"
)]
pub(crate) fn link(client_id: &AppClientId, tenant: &str, key: &str, at: i64) -> PayoutLink {
    let session = shared::ids::random_id("cs_").unwrap();
    PayoutLink {
        id: PayoutLinkId::generate().unwrap(),
        tenant: tenant.to_owned(),
        client_id: client_id.clone(),
        idempotency_key: key.to_owned(),
        request_hash: [2; 32],
        amount: 500,
        currency: "RUB".to_owned(),
        recipient_name: None,
        metadata: Some(r#"{"o":2}"#.to_owned()),
        session_url: format!("https://vault.example/collect/{session}"),
        session: CollectSessionId::parse(&session).unwrap(),
        sealed_secret: "wsk1:AAAA".to_owned(),
        expires_at: at + 60_000_000,
        created_at: at,
        tag: [9; 32],
        state: LinkState::Open,
        completion: None,
        next_poll_at: at,
        lease_owner: None,
        updated_at: at,
        version: 0,
    }
}
