//! App webhooks: the outbox rows written with each state change, delivered with retries.
//!
//! Each delivery is signed `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret,
//! "<t>.<body>")>` with the app client's webhook secret, so the app can check both origin and
//! freshness. Delivery is at least once: apps dedupe on the event `id`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{WebhookSettings, backoff};
use crate::engine::now_micros;
use crate::payout::OutboxEvent;
use crate::store::ProxyStore;

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
#[derive(Clone, Debug)]
pub struct Deliverer {
    store: Arc<dyn ProxyStore>,
    http: reqwest::Client,
    settings: WebhookSettings,
}

impl Deliverer {
    /// A deliverer.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(
        store: Arc<dyn ProxyStore>,
        settings: WebhookSettings,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(settings.timeout_ms))
                .build()?,
            store,
            settings,
        })
    }

    /// Polls the outbox forever.
    pub async fn run(self) {
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.settings.poll_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "webhook delivery pass failed");
            }
        }
    }

    /// One pass over due events.
    ///
    /// # Errors
    ///
    /// Storage failure.
    pub async fn deliver_due(&self) -> Result<(), crate::store::StoreError> {
        // The lease outlasts one delivery attempt; a replica that dies mid-delivery leaves the
        // event to be claimed again when it runs out (at-least-once).
        let lease = now_micros()
            + 2 * i64::try_from(self.settings.timeout_ms)
                .unwrap_or(i64::MAX / 4_000)
                .saturating_mul(1000);
        for event in self.store.claim_due_events(now_micros(), lease, 50).await? {
            self.deliver(event).await?;
        }
        Ok(())
    }

    async fn deliver(&self, mut event: OutboxEvent) -> Result<(), crate::store::StoreError> {
        let client = self.store.client(&event.client_id).await?;
        let target = client.as_ref().and_then(|c| {
            c.webhook_url
                .clone()
                .map(|url| (url, c.webhook_secret.clone()))
        });
        let now = now_micros();
        event.attempts += 1;
        let outcome = match target {
            None => Err("the app client has no webhook URL".to_owned()),
            Some((url, secret)) => {
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
                    Err(_) => Err("connection failed".to_owned()),
                }
            }
        };
        match outcome {
            Ok(()) => {
                event.delivered_at = Some(now);
                event.last_error = None;
                tracing::info!(event = %event.id, kind = %event.event_type, payout = %event.payout_id, "app webhook delivered");
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
