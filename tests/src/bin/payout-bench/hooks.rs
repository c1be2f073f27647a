//! The app's webhook receiver: checks each app webhook's signature, hands a payout's final
//! webhook to the worker waiting for it (whichever of the two comes first), and counts the rest:
//! duplicates, late ones, unknown payouts, bad signatures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::load::Outcome;

/// How far an app webhook's `X-Signature` timestamp may be from now.
const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

/// A final webhook as received.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Final {
    pub(crate) at: Instant,
    pub(crate) outcome: Outcome,
}

/// Final webhooks, matched to the workers waiting for them. Either may come first: a fast
/// payout's webhook can arrive before its worker has read the create answer.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    secret: OnceLock<String>,
    state: Mutex<HookState>,
}

#[derive(Debug, Default)]
struct HookState {
    waiting: HashMap<String, oneshot::Sender<Final>>,
    early: HashMap<String, Final>,
    /// Payouts whose final webhook was handed to their worker (to spot duplicates).
    handed: HashSet<String>,
    /// Payouts their worker gave up on.
    abandoned: HashSet<String>,
    counts: HookCounts,
}

/// What the receiver got over the run.
#[derive(Clone, Debug, Default)]
pub(crate) struct HookCounts {
    /// Every final webhook by outcome, duplicates and late ones included.
    received: HashMap<Outcome, u64>,
    pub(crate) invalid_signatures: u64,
    pub(crate) duplicates: u64,
    pub(crate) late: u64,
    pub(crate) non_final: u64,
    pub(crate) unreadable: u64,
    /// Final webhooks for payouts no worker created.
    pub(crate) unknown: usize,
}

impl HookCounts {
    pub(crate) fn received(&self, outcome: Outcome) -> u64 {
        self.received.get(&outcome).copied().unwrap_or(0)
    }
}

/// How a worker gets its payout's final webhook.
#[derive(Debug)]
pub(crate) enum Expect {
    /// It came before the worker asked.
    Ready(Final),
    Wait(oneshot::Receiver<Final>),
}

impl Hooks {
    /// The app client's webhook secret, known once the proxy has made the client.
    pub(crate) fn set_secret(&self, secret: String) -> anyhow::Result<()> {
        self.secret
            .set(secret)
            .map_err(|_| anyhow!("the webhook secret was set twice"))
    }

    /// Called by a worker once it knows its payout's id.
    pub(crate) fn expect(&self, id: &str) -> Expect {
        let mut st = self.state.lock();
        if let Some(f) = st.early.remove(id) {
            st.handed.insert(id.to_owned());
            return Expect::Ready(f);
        }
        let (tx, rx) = oneshot::channel();
        st.waiting.insert(id.to_owned(), tx);
        Expect::Wait(rx)
    }

    /// The worker gives up; false when the webhook was handed over meanwhile.
    pub(crate) fn abandon(&self, id: &str) -> bool {
        let mut st = self.state.lock();
        if st.waiting.remove(id).is_some() {
            st.abandoned.insert(id.to_owned());
            true
        } else {
            false
        }
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> HookCounts {
        let st = self.state.lock();
        HookCounts {
            unknown: st.early.len(),
            ..st.counts.clone()
        }
    }
}

/// The receiver's HTTP server, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where the proxy is to send app webhooks.
    pub(crate) url: String,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the receiver on a free loopback port.
pub(crate) async fn serve(hooks: Arc<Hooks>) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hooks", post(receive))
        .with_state(hooks);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Server { url, task })
}

async fn receive(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let header = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let valid = hooks.secret.get().is_some_and(|secret| {
        proxy::outbox::verify(
            secret,
            header,
            &body,
            unix_seconds(),
            SIGNATURE_TOLERANCE_SECONDS,
        )
    });
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = hooks.state.lock();
    // Counted, not refused: a 401 would only make the proxy retry; the run fails on it instead.
    if !valid {
        st.counts.invalid_signatures += 1;
    }
    let outcome = match event["type"].as_str() {
        Some("payout.succeeded") => Outcome::Succeeded,
        Some("payout.failed") => Outcome::Failed,
        Some("payout.cancelled") => Outcome::Cancelled,
        Some(_) => {
            st.counts.non_final += 1;
            return StatusCode::OK;
        }
        None => {
            st.counts.unreadable += 1;
            return StatusCode::OK;
        }
    };
    let Some(id) = event["data"]["payout"]["id"].as_str() else {
        st.counts.unreadable += 1;
        return StatusCode::OK;
    };
    *st.counts.received.entry(outcome).or_default() += 1;
    let fin = Final { at, outcome };
    if st.handed.contains(id) || st.early.contains_key(id) {
        // Delivery is at least once; the app dedupes.
        st.counts.duplicates += 1;
    } else if st.abandoned.contains(id) {
        st.counts.late += 1;
    } else if let Some(tx) = st.waiting.remove(id) {
        st.handed.insert(id.to_owned());
        let _ = tx.send(fin);
    } else {
        st.early.insert(id.to_owned(), fin);
    }
    StatusCode::OK
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
