//! Webhook delivery: `{"type":...,"session":{...}}` signed with the bank's key, POSTed to the
//! project's URL, retried on anything but HTTP 200, shaped by webhook faults, and journaled
//! attempt by attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::sandbox::Sandbox;
use crate::sandbox::faults::FaultAction;
use crate::sandbox::journal::WebhookRecord;
use crate::sandbox::lifecycle::Event;
use crate::sandbox::model::now;

/// One webhook, ready to send.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    kind: &'static str,
    session_id: String,
    url: Option<String>,
    body: String,
    signature: String,
    fault: Option<&'static str>,
}

/// A webhook held back by a `reorder` fault, with a number that tells its release timer
/// whether it is still the one held.
#[derive(Debug)]
pub(crate) struct Held {
    ticket: u64,
    delivery: Delivery,
}

impl Sandbox {
    /// Builds, signs and dispatches the webhook for `event`.
    pub(crate) fn emit(&self, event: Event) {
        let url = self
            .state
            .lock()
            .projects
            .get(&event.project)
            .and_then(|p| p.config.webhook_url.clone());
        // Serialised once; these exact bytes are signed and sent.
        let body = json!({"type": event.kind, "session": event.session}).to_string();
        let signature = match self.bank.sign(body.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a webhook");
                return;
            }
        };
        let mut delivery = Delivery {
            kind: event.kind,
            session_id: event.session_id,
            url,
            body,
            signature,
            fault: None,
        };
        if delivery.url.is_none() {
            self.record(
                &delivery,
                0,
                None,
                Some("the project has no webhook URL".into()),
            );
            return;
        }
        let effect = self.faults.fire(&format!("webhook:{}", delivery.kind));
        if matches!(effect.terminal, Some((FaultAction::Drop, _))) {
            delivery.fault = Some("dropped");
            self.record(&delivery, 0, None, Some("dropped by a fault".into()));
            return;
        }
        if !effect.delay.is_zero() {
            delivery.fault = Some("delayed");
        }
        if effect.reorder && self.hold(&delivery) {
            return;
        }
        if effect.duplicate {
            let mut copy = delivery.clone();
            copy.fault = Some("duplicate");
            self.spawn_delivery(copy, effect.delay, false);
        }
        self.spawn_delivery(delivery, effect.delay, true);
    }

    /// Holds `delivery` until the next webhook goes out (or `reorder_max_hold` passes). False if
    /// another one is held already: then this one goes out now and releases that one.
    fn hold(&self, delivery: &Delivery) -> bool {
        let mut held = self.held.lock();
        if held.is_some() {
            return false;
        }
        let ticket = next_ticket();
        let mut delivery = delivery.clone();
        delivery.fault = Some("reordered");
        *held = Some(Held { ticket, delivery });
        let sandbox = self.clone();
        self.runtime.spawn(async move {
            if sandbox.sleep(sandbox.config.reorder_max_hold).await {
                let mut held = sandbox.held.lock();
                if held.as_ref().is_some_and(|h| h.ticket == ticket)
                    && let Some(h) = held.take()
                {
                    drop(held);
                    sandbox.spawn_delivery(h.delivery, Duration::ZERO, false);
                }
            }
        });
        true
    }

    fn spawn_delivery(&self, delivery: Delivery, delay: Duration, releases_held: bool) {
        let sandbox = self.clone();
        self.runtime.spawn(async move {
            sandbox.deliver(delivery, delay, releases_held).await;
        });
    }

    async fn deliver(&self, d: Delivery, delay: Duration, releases_held: bool) {
        if !delay.is_zero() && !self.sleep(delay).await {
            return;
        }
        let Some(url) = d.url.clone() else { return };
        let max = self.config.webhook_max_attempts.max(1);
        for attempt in 1..=max {
            let sent = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-partner-sign", &d.signature)
                .body(d.body.clone())
                .timeout(self.config.webhook_timeout)
                .send()
                .await;
            let (status, error) = match sent {
                Ok(r) => (Some(r.status().as_u16()), None),
                // Without the URL: it is ours, but the error text is all the journal needs.
                Err(e) => (None, Some(e.without_url().to_string())),
            };
            tracing::info!(
                webhook = d.kind,
                session = %d.session_id,
                attempt,
                status = status.unwrap_or(0),
                "webhook attempt"
            );
            self.record(&d, attempt, status, error);
            if attempt == 1 && releases_held {
                let held = self.held.lock().take();
                if let Some(h) = held {
                    self.spawn_delivery(h.delivery, Duration::ZERO, false);
                }
            }
            if status == Some(200) || attempt == max {
                return;
            }
            let Some(wait) = retry_delay(&self.config.webhook_retry, attempt) else {
                return;
            };
            if !self.sleep(wait).await {
                return;
            }
        }
    }

    fn record(&self, d: &Delivery, attempt: u32, status: Option<u16>, error: Option<String>) {
        let headers = if attempt == 0 {
            BTreeMap::new()
        } else {
            BTreeMap::from([
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-partner-sign".to_owned(), d.signature.clone()),
            ])
        };
        self.journal.webhook(WebhookRecord {
            seq: 0,
            at: now(),
            webhook_type: d.kind.to_owned(),
            session_id: d.session_id.clone(),
            url: d.url.clone(),
            headers,
            body: d.body.clone(),
            attempt,
            status,
            error,
            fault: d.fault.map(str::to_owned),
        });
    }
}

/// The wait after attempt `n` (1-based): the n-th entry, the last one repeating; `None` with
/// an empty schedule.
fn retry_delay(schedule: &[Duration], attempt: u32) -> Option<Duration> {
    let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    schedule.get(i).or(schedule.last()).copied()
}

/// A fresh hold ticket (unique in the process, which is all a ticket needs).
fn next_ticket() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_caps_at_the_last_entry() {
        let s = [Duration::from_millis(1), Duration::from_millis(5)];
        assert_eq!(retry_delay(&s, 1), Some(Duration::from_millis(1)));
        assert_eq!(retry_delay(&s, 2), Some(Duration::from_millis(5)));
        assert_eq!(retry_delay(&s, 9), Some(Duration::from_millis(5)));
        assert_eq!(retry_delay(&[], 1), None);
    }
}
