//! The app-webhook deliverer against real HTTP endpoints: an app whose endpoint never answers
//! must not hold up another app's webhooks, and one payout's events arrive in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use parking_lot::Mutex;
use proxy::auth::{ClientRecord, Scopes};
use proxy::config::WebhookSettings;
use proxy::engine::now_micros;
use proxy::ids::AppClientId;
use proxy::outbox::Deliverer;
use proxy::payout::{ConfirmMode, OutboxEvent};
use proxy::store::{Inserted, ProxyStore, SqliteStore};
use shared::sqlite::SqliteOptions;
use tokio::sync::Notify;

#[path = "store/rows.rs"]
mod rows;

use rows::app;

/// Event ids in arrival order.
type Received = Arc<Mutex<Vec<String>>>;

/// An app endpoint answering 200 and recording each event id.
async fn fast_app() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/hooks",
            post(|State(r): State<Received>, headers: HeaderMap| async move {
                let id = headers["x-event-id"].to_str().unwrap().to_owned();
                r.lock().push(id);
                "ok"
            }),
        )
        .with_state(Arc::clone(&received));
    (serve(app).await, received)
}

/// An app endpoint that holds every request until `release` is notified.
async fn stuck_app(release: Arc<Notify>) -> String {
    let app = axum::Router::new()
        .route(
            "/hooks",
            post(|State(release): State<Arc<Notify>>| async move {
                release.notified().await;
                "late"
            }),
        )
        .with_state(release);
    serve(app).await
}

/// Serves `app` on a loopback port; returns its `/hooks` URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A fresh SQLite store at `path`.
fn open_store(path: &std::path::Path) -> Arc<dyn ProxyStore> {
    Arc::new(
        SqliteStore::open(&SqliteOptions {
            path: path.to_path_buf(),
            read_connections: 2,
            busy_timeout: Duration::from_secs(5),
            max_queued_writes: 4096,
        })
        .unwrap(),
    )
}

/// The key the tests' secrets would be wrapped under (those stored here are in clear, as an
/// older version stored them: the deliverer reads both).
fn secrets() -> Arc<proxy::secrets::WrapKey> {
    Arc::new(proxy::secrets::WrapKey::from_key(&[1; 32]).unwrap())
}

/// Adds an app client `id` whose webhooks go to `url`.
async fn client(store: &dyn ProxyStore, id: &AppClientId, url: &str) {
    store
        .insert_client(rows::client(id, "acme", Some(url)))
        .await
        .unwrap();
}

/// A payout of `client_id` with `events` outbox rows, oldest first; returns their ids.
async fn payout_with_events(
    store: &dyn ProxyStore,
    client_id: &AppClientId,
    events: usize,
) -> Vec<String> {
    let now = now_micros();
    let mut payout = rows::payout(
        client_id,
        "acme",
        &shared::ids::random_id("idem_").unwrap(),
        now,
    );
    (payout.metadata, payout.confirm_mode) = (None, ConfirmMode::Manual);
    let Inserted::New(p) = store.insert_payout(payout).await.unwrap() else {
        panic!("a new payout was expected")
    };
    let outbox: Vec<OutboxEvent> = (0..events)
        .map(|i| OutboxEvent {
            event_type: "payout.awaiting_confirmation".to_owned(),
            ..rows::event(&p, now + i64::try_from(i).unwrap())
        })
        .collect();
    let ids = outbox.iter().map(|e| e.id.clone()).collect();
    store.save(&p, outbox).await.unwrap();
    ids
}

/// Runs a deliverer with `settings` over `store` until `done` holds (looked at every 10 ms) or
/// `within` has passed, then stops it; returns whether `done` came. The deadline only bounds a
/// hang: the tests wait for progress, not time.
async fn deliver_until(
    store: &Arc<dyn ProxyStore>,
    settings: WebhookSettings,
    within: Duration,
    done: impl AsyncFn() -> bool,
) -> bool {
    let deliverer = Deliverer::new(Arc::clone(store), secrets(), settings).unwrap();
    let running = tokio::spawn(deliverer.run());
    let waited = tokio::time::timeout(within, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    running.abort();
    waited.is_ok()
}

/// Settings that look for due events every 20 ms: the tests wait for progress, so the sooner the
/// better.
fn polling_fast() -> WebhookSettings {
    WebhookSettings {
        poll_interval_ms: 20,
        ..WebhookSettings::default()
    }
}

/// [`polling_fast`], and a refused event is offered again after 20 ms, then 40 ms.
fn retrying_fast() -> WebhookSettings {
    WebhookSettings {
        retry_initial_ms: 20,
        retry_max_ms: 40,
        ..polling_fast()
    }
}

/// Whether every event in `store` was delivered or given up.
async fn outbox_empty(store: &Arc<dyn ProxyStore>) -> bool {
    store.undelivered_events().await.unwrap() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_app_endpoint_holds_up_only_its_own_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("proxy.db"));
    let release = Arc::new(Notify::new());
    let (fast_url, received) = fast_app().await;
    client(
        store.as_ref(),
        &app("stuck"),
        &stuck_app(Arc::clone(&release)).await,
    )
    .await;
    client(store.as_ref(), &app("fast"), &fast_url).await;

    // The stuck app's events are the oldest, so a one-at-a-time deliverer would sit on them.
    for _ in 0..3 {
        payout_with_events(store.as_ref(), &app("stuck"), 1).await;
    }
    let mut expected = Vec::new();
    for _ in 0..5 {
        expected.push(payout_with_events(store.as_ref(), &app("fast"), 3).await);
    }

    let all: usize = expected.iter().map(Vec::len).sum();
    let settings = WebhookSettings {
        // Far longer than the test waits: only concurrency can get the fast app served.
        timeout_ms: 120_000,
        concurrency: 4,
        allow_private_networks: true,
        ..polling_fast()
    };
    let all_arrived = async || received.lock().len() >= all;
    let waited = deliver_until(&store, settings, Duration::from_secs(30), all_arrived).await;
    release.notify_waiters();
    assert!(
        waited,
        "the fast app got {} of {all} webhooks while the stuck app held its deliveries",
        received.lock().len()
    );
    let arrived = received.lock().clone();
    for ids in &expected {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| arrived.iter().position(|a| a == id).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "one payout's events arrived out of order"
        );
    }
}

/// A server counting the requests that reach it.
async fn counting_server(
    answer: axum::http::StatusCode,
    location: Option<String>,
) -> (String, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0usize));
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let (seen, location) = (Arc::clone(&seen), location.clone());
        async move {
            *seen.lock() += 1;
            let mut response = axum::response::IntoResponse::into_response(answer);
            if let Some(l) = location {
                response
                    .headers_mut()
                    .insert("location", l.parse().unwrap());
            }
            response
        }
    });
    (serve(app).await, hits)
}

/// docs/ARCHITECTURE.md §9.3: an app's endpoint answering with a redirect does not make the proxy POST a
/// signed event to wherever it points (a `307` to loopback once did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_an_app_endpoint_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("proxy.db"));
    let (target, stolen) = counting_server(axum::http::StatusCode::OK, None).await;
    let (endpoint, asked) =
        counting_server(axum::http::StatusCode::TEMPORARY_REDIRECT, Some(target)).await;
    client(store.as_ref(), &app("redirecting"), &endpoint).await;
    payout_with_events(store.as_ref(), &app("redirecting"), 1).await;
    let settings = WebhookSettings {
        allow_private_networks: true,
        ..retrying_fast()
    };
    // Progress, not time: the event was offered (and refused by a redirect) twice.
    let offered_twice = async || *asked.lock() >= 2;
    let offered = deliver_until(&store, settings, Duration::from_secs(120), offered_twice).await;
    assert!(offered, "the event was never offered again");
    assert_eq!(*stolen.lock(), 0, "the signed event followed the redirect");
}

/// docs/ARCHITECTURE.md §9.3: an app's webhook URL may not make the proxy reach inside (loopback, a metadata
/// service), whether the URL names the address or a name that resolves to it, and however the
/// row got into the database (a client created before the check, or written by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_pointing_inside_is_never_sent_to() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proxy.db");
    let store = open_store(&db);
    let (literal, literal_hits) = counting_server(axum::http::StatusCode::OK, None).await;
    let (named, named_hits) = counting_server(axum::http::StatusCode::OK, None).await;
    let named = named.replace("127.0.0.1", "localhost");
    client(store.as_ref(), &app("literal"), &literal).await;
    client(store.as_ref(), &app("named"), &named).await;
    payout_with_events(store.as_ref(), &app("literal"), 1).await;
    payout_with_events(store.as_ref(), &app("named"), 1).await;
    let settings = WebhookSettings {
        max_attempts: 2,
        ..retrying_fast()
    };
    // Progress, not time: both events were tried to the end and given up.
    let emptied = async || outbox_empty(&store).await;
    let done = deliver_until(&store, settings, Duration::from_secs(120), emptied).await;
    assert!(done, "the events were never given up");
    assert_eq!(
        *literal_hits.lock(),
        0,
        "an event went to a loopback address"
    );
    assert_eq!(
        *named_hits.lock(),
        0,
        "an event went to a name resolving to loopback"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut reasons: Vec<(String, String)> = conn
        .prepare("SELECT client_id, last_error FROM outbox WHERE abandoned_at IS NOT NULL ORDER BY client_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    reasons.sort();
    let mut expected = [
        (
            app("literal").to_string(),
            "the webhook URL points at an internal address; not sent".to_owned(),
        ),
        (
            app("named").to_string(),
            "the webhook URL resolves to an internal address; not sent".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(reasons, expected);
}

/// Issue 12 §3: an app without a webhook URL is not retried (and warned about) every few
/// seconds: its events are set aside at the first look, in one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_an_app_without_a_webhook_url_are_set_aside_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("proxy.db"));
    store
        .insert_client(ClientRecord {
            scopes: Scopes::parse("payouts:write").unwrap(),
            ..rows::client(&app("quiet"), "acme", None)
        })
        .await
        .unwrap();
    payout_with_events(store.as_ref(), &app("quiet"), 3).await;
    let settings = WebhookSettings {
        // Far longer than the wait below: only setting them aside can empty the outbox.
        retry_initial_ms: 600_000,
        max_attempts: 15,
        ..polling_fast()
    };
    let emptied = async || outbox_empty(&store).await;
    let done = deliver_until(&store, settings, Duration::from_secs(60), emptied).await;
    assert!(done, "events of an app without a URL stayed pending");
}
