//! App webhooks: the outbox rows written with each state change, delivered with retries.
//!
//! Each delivery is signed `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret,
//! "<t>.<body>")>` with the app client's webhook secret, so the app can check both origin and
//! freshness. Delivery is at least once: apps dedupe on the event `id`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::{WebhookSettings, backoff};
use crate::engine::now_micros;
use crate::payout::OutboxEvent;
use crate::store::ProxyStore;

/// Splits claimed events (oldest first) into one list per subject (a payout, with the
/// completion of the link it was made from; or a link alone), each still oldest first, the
/// lists in the order of their first event.
fn by_payout(events: Vec<OutboxEvent>) -> Vec<Vec<OutboxEvent>> {
    let mut groups: Vec<Vec<OutboxEvent>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for event in events {
        match index.get(event.subject()) {
            Some(&i) => {
                if let Some(group) = groups.get_mut(i) {
                    group.push(event);
                }
            }
            None => {
                index.insert(event.subject().to_owned(), groups.len());
                groups.push(vec![event]);
            }
        }
    }
    groups
}

/// The `X-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails (and never falls back to another key).
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[allow(
    clippy::panic,
    reason = "HMAC takes keys of any length; this is never reached"
)]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC rejected a key")
}

/// Checks an `X-Signature` header as an app would: the MAC (constant time) and a timestamp
/// within `tolerance_seconds` of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_seconds: i64) -> bool {
    let mut timestamp = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => v1 = Some(sig),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (timestamp, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_seconds {
        return false;
    }
    let expected = signature(secret, t, body);
    let expected = expected.rsplit_once("v1=").map_or("", |(_, s)| s);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), v1.as_bytes()).into()
}

/// Delivers due outbox rows until the process stops.
///
/// Up to `webhooks.concurrency` deliveries are in flight at once, so one slow or dead app
/// endpoint holds up only its own events, never everyone's. One payout's events still go out
/// one after another, oldest first. Events are claimed as delivery slots free up: after a poll
/// that found a full batch the deliverer claims again at once instead of waiting for the next,
/// and the engine wakes it when it writes new events ([`Deliverer::wake_on`]); the poll is for
/// retries coming due and for other replicas' events.
#[derive(Clone, Debug)]
pub struct Deliverer {
    store: Arc<dyn ProxyStore>,
    secrets: Arc<crate::secrets::WrapKey>,
    http: reqwest::Client,
    settings: WebhookSettings,
    wake: Arc<Notify>,
}

impl Deliverer {
    /// A deliverer.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(
        store: Arc<dyn ProxyStore>,
        secrets: Arc<crate::secrets::WrapKey>,
        settings: WebhookSettings,
    ) -> Result<Self, crate::upstream_tls::BuildError> {
        Ok(Self {
            http: {
                let builder = reqwest::Client::builder()
                    .timeout(Duration::from_millis(settings.timeout_ms))
                    // A redirect from an app's endpoint would send a signed event wherever it
                    // points (loopback, a metadata service): a 3xx is a failed delivery.
                    .redirect(reqwest::redirect::Policy::none())
                    // Not through an environment proxy: it would resolve, and reach, what our
                    // resolver refuses.
                    .no_proxy();
                let builder = crate::upstream_tls::trust(
                    builder,
                    settings.ca_file.as_deref(),
                    "webhooks.ca_file",
                )?;
                if settings.allow_private_networks {
                    builder.build()?
                } else {
                    // Names that resolve inside (now, or after a DNS change) get nothing.
                    builder
                        .dns_resolver(Arc::new(crate::egress::PublicOnly::any_host()))
                        .build()?
                }
            },
            store,
            secrets,
            settings,
            wake: Arc::default(),
        })
    }

    /// Also polls as soon as `signal` is notified (the engine's [`outbox_signal`], after it
    /// wrote events), so a webhook does not wait for the next poll.
    ///
    /// [`outbox_signal`]: crate::engine::Engine::outbox_signal
    #[must_use]
    pub fn wake_on(mut self, signal: Arc<Notify>) -> Self {
        self.wake = signal;
        self
    }

    /// Polls the outbox forever. Dropping the future stops it and its deliveries in flight;
    /// their events stay claimed until the lease runs out, then go out again (at least once).
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut deliveries = JoinSet::new();
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.settings.poll_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the last claim filled every free slot, so more may be due right now.
        let mut more_due = false;
        loop {
            if !more_due {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = self.wake.notified() => {}
                }
            }
            while deliveries.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 {
                // Every slot is busy: claim again as soon as one delivery ends.
                let _ = deliveries.join_next().await;
                more_due = true;
                continue;
            }
            let events = match self.claim(free).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming app webhooks failed");
                    more_due = false;
                    continue;
                }
            };
            more_due = events.len() >= free;
            for group in by_payout(events) {
                // Never fails: groups are no more than the free slots, and only this loop
                // takes slots.
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    break;
                };
                let this = self.clone();
                deliveries.spawn(async move {
                    this.deliver_in_order(group).await;
                    drop(slot);
                });
            }
        }
    }

    /// Claims up to `limit` due events with a lease that outlasts one delivery attempt; a
    /// replica that dies mid-delivery leaves them to be claimed again when it runs out.
    async fn claim(&self, limit: usize) -> Result<Vec<OutboxEvent>, crate::store::StoreError> {
        let now = now_micros();
        let lease = now.saturating_add(self.lease_micros());
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.store.claim_due_events(now, lease, limit).await
    }

    fn lease_micros(&self) -> i64 {
        2 * i64::try_from(self.settings.timeout_ms)
            .unwrap_or(i64::MAX / 4_000)
            .saturating_mul(1000)
    }

    /// One payout's events, oldest first. An event whose lease would run out before its
    /// attempt could finish is left for the next claim rather than risk a parallel delivery.
    async fn deliver_in_order(&self, group: Vec<OutboxEvent>) {
        let deadline = now_micros().saturating_add(self.lease_micros() / 2);
        for (i, event) in group.into_iter().enumerate() {
            if i > 0 && now_micros() > deadline {
                return;
            }
            if let Err(e) = self.deliver(event).await {
                tracing::warn!(error = %e, "recording an app webhook attempt failed");
                return;
            }
        }
    }

    async fn deliver(&self, mut event: OutboxEvent) -> Result<(), crate::store::StoreError> {
        let client = self.store.client(&event.client_id).await?;
        // The secret is stored wrapped; it is unwrapped only to sign, and only here.
        let target = client.as_ref().and_then(|c| {
            c.webhook_url
                .clone()
                .map(|url| (url, self.secrets.open(&c.webhook_secret, c.id.as_str())))
        });
        let now = now_micros();
        event.attempts += 1;
        let revoked = client.as_ref().is_none_or(|c| c.revoked_at.is_some());
        let outcome = match target {
            // A revoked app hears nothing more: its events are abandoned at once, kept in the
            // outbox for the record.
            _ if revoked => {
                event.abandoned_at = Some(now);
                Err("the app client is revoked; not sent".to_owned())
            }
            // Nowhere to send it, now or later: set aside at once (kept in the outbox, for an app
            // that adds a URL and asks), not retried with a warning every few seconds.
            None => {
                event.abandoned_at = Some(now);
                Err("the app client has no webhook URL".to_owned())
            }
            Some((_, Err(e))) => {
                tracing::error!(client = %event.client_id, error = %e, "app webhook not signed");
                Err(
                    "the app's webhook secret does not open under this proxy's key; not sent"
                        .to_owned(),
                )
            }
            Some((url, Ok(_)))
                if crate::egress::check_literal_destination(
                    &url,
                    self.settings.allow_private_networks,
                )
                .is_err() =>
            {
                Err("the webhook URL points at an internal address; not sent".to_owned())
            }
            Some((url, Ok(secret))) => {
                let t = now / 1_000_000;
                let sent = self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header(
                        "x-signature",
                        signature(secret.expose(), t, event.payload.as_bytes()),
                    )
                    .header("x-event-id", &event.id)
                    .body(event.payload.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                    Err(e) if refused_by_egress(&e) => {
                        Err("the webhook URL resolves to an internal address; not sent".to_owned())
                    }
                    Err(_) => Err("connection failed".to_owned()),
                }
            }
        };
        match outcome {
            Ok(()) => {
                event.delivered_at = Some(now);
                event.last_error = None;
                tracing::info!(event = %event.id, kind = %event.event_type, about = %event.subject(), "app webhook delivered");
            }
            Err(why) if event.abandoned_at.is_some() => {
                tracing::info!(event = %event.id, reason = %why, "app webhook set aside, not sent");
                event.last_error = Some(why);
            }
            Err(why) => {
                tracing::warn!(event = %event.id, attempt = event.attempts, reason = %why, "app webhook not delivered");
                event.last_error = Some(why);
                if event.attempts >= self.settings.max_attempts {
                    event.abandoned_at = Some(now);
                } else {
                    let delay = backoff(
                        self.settings.retry_initial_ms,
                        self.settings.retry_max_ms,
                        event.attempts,
                    );
                    event.next_attempt_at =
                        now + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                }
            }
        }
        self.store.update_event(&event).await
    }
}

/// Whether the send failed because [`crate::egress::PublicOnly`] refused the name.
fn refused_by_egress(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<crate::egress::EgressError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature("whsec_abc", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify("whsec_abc", &header, body, 1_700_000_010, 300));
        assert!(
            !verify("whsec_abc", &header, body, 1_700_001_000, 300),
            "too old"
        );
        assert!(!verify("whsec_other", &header, body, 1_700_000_010, 300));
        assert!(!verify(
            "whsec_abc",
            &header,
            br#"{"id":"evt_2"}"#,
            1_700_000_010,
            300
        ));
        assert!(!verify("whsec_abc", "v1=00", body, 1_700_000_010, 300));
    }
}
