//! The demo: one payout through every step, each printed as it happens.
//!
//! 1. the app tokenizes a test card at the vault (it sees the token and last 4 only);
//! 2. it asks the proxy for a payout to the token, `confirm: "auto"`;
//! 3. the bank's `ready_to_confirm` webhook reaches the proxy (seen in the sandbox journal);
//! 4. the proxy checks it against the payout and calls `session/confirm`;
//! 5. `payment_finished`: the payout is `succeeded`;
//! 6. the app's webhook receiver gets `payout.succeeded` with a valid signature.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Printer;
use super::receiver::AppEvent;
use crate::sandbox::{JournalEntry, SandboxHandle};

/// The demo's test card (a Mir test number; Luhn-valid, never a real card).
const TEST_CARD: &str = "2200000000000004";
/// 100.00 RUB.
const AMOUNT: i64 = 10_000;
const CURRENCY: &str = "RUB";
const RECIPIENT: &str = "Ivan Petrov";
/// How often the demo looks at the proxy and the sandbox.
const POLL: Duration = Duration::from_millis(20);

/// Everything the demo talks to.
#[derive(Debug)]
pub(crate) struct Demo<'a> {
    pub(crate) http: reqwest::Client,
    pub(crate) vault_url: &'a str,
    pub(crate) vault_key: &'a str,
    pub(crate) proxy_url: &'a str,
    pub(crate) proxy_key: &'a str,
    pub(crate) sandbox: &'a SandboxHandle,
    pub(crate) events: &'a mut mpsc::UnboundedReceiver<AppEvent>,
    pub(crate) out: &'a Printer,
    pub(crate) step_timeout: Duration,
}

/// What the demo made, for the curl examples printed after it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) token: String,
    pub(crate) payout_id: String,
}

/// The payout as the proxy shows it.
#[derive(Debug)]
struct Seen {
    status: String,
    session_id: Option<String>,
    bank_payout_id: Option<String>,
    failure: Option<String>,
}

impl Seen {
    fn from_json(v: &Value) -> Self {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let failure = v["failure"].as_object().map(|f| {
            format!(
                "{}: {}",
                f.get("code").and_then(Value::as_str).unwrap_or("?"),
                f.get("message").and_then(Value::as_str).unwrap_or("")
            )
        });
        Self {
            status: s(&v["status"]).unwrap_or_else(|| "?".to_owned()),
            session_id: s(&v["bank"]["session_id"]),
            bank_payout_id: s(&v["bank"]["payout_id"]),
            failure,
        }
    }

    fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }

    /// Failed or cancelled: the demo cannot go on.
    fn check_not_lost(&self, id: &str) -> anyhow::Result<()> {
        if matches!(self.status.as_str(), "failed" | "cancelled") {
            bail!(
                "payout {id} ended {} ({})",
                self.status,
                self.failure.as_deref().unwrap_or("no reason given")
            );
        }
        Ok(())
    }
}

/// One step's deadline.
#[derive(Debug)]
struct Step {
    number: u8,
    name: &'static str,
    deadline: Instant,
    timeout: Duration,
}

impl Step {
    fn new(number: u8, name: &'static str, timeout: Duration) -> Self {
        Self {
            number,
            name,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    /// Sleeps before the next look, or fails the step when its time is up.
    async fn tick(&self, state: impl FnOnce() -> String) -> anyhow::Result<()> {
        if Instant::now() >= self.deadline {
            bail!(
                "demo step {} ({}) did not happen within {} s; {}",
                self.number,
                self.name,
                self.timeout.as_secs(),
                state()
            );
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }

    fn fail(&self, e: impl Into<anyhow::Error>) -> anyhow::Error {
        e.into()
            .context(format!("demo step {} ({}) failed", self.number, self.name))
    }
}

/// Whether a webhook of `kind` about `session` reached the proxy and was accepted.
fn webhook_accepted(journal: &[JournalEntry], session: &str, kind: &str) -> bool {
    journal.iter().any(|e| match e {
        JournalEntry::Webhook(w) => {
            w.webhook_type == kind && w.session_id == session && w.status == Some(200)
        }
        JournalEntry::Request(_) => false,
    })
}

/// Whether the bank answered a `method` call about `session` with 200.
fn call_accepted(journal: &[JournalEntry], session: &str, method: &str) -> bool {
    journal.iter().any(|e| match e {
        JournalEntry::Request(r) => {
            r.path.ends_with(method)
                && r.status == Some(200)
                && serde_json::from_str::<Value>(&r.body)
                    .is_ok_and(|b| b["session_id"].as_str() == Some(session))
        }
        JournalEntry::Webhook(_) => false,
    })
}

async fn answer(response: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.context("the answer was not JSON")?;
    if !(200..300).contains(&status) {
        // Error bodies of both services carry fixed messages that never echo input.
        bail!(
            "HTTP {status}: {} ({})",
            body["error"]["code"].as_str().unwrap_or("?"),
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    Ok((status, body))
}

impl Demo<'_> {
    async fn payout(&self, id: &str) -> anyhow::Result<Seen> {
        let response = self
            .http
            .get(format!("{}/v1/payouts/{id}", self.proxy_url))
            .bearer_auth(self.proxy_key)
            .send()
            .await
            .context("GET /v1/payouts/{id}")?;
        let (_, body) = answer(response).await.context("GET /v1/payouts/{id}")?;
        Ok(Seen::from_json(&body))
    }

    /// Sends one step's request, bounded by the step's timeout; the error names the step.
    async fn send(
        &self,
        step: &Step,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(u16, Value)> {
        let response = request
            .timeout(self.step_timeout)
            .send()
            .await
            .map_err(|e| step.fail(e))?;
        answer(response).await.map_err(|e| step.fail(e))
    }

    /// Looks at the payout until `reached` gives what the step waits for, failing the step when
    /// the payout is lost or the step's time is up.
    async fn watch<T>(
        &self,
        step: &Step,
        id: &str,
        mut reached: impl FnMut(&Seen) -> Option<T>,
    ) -> anyhow::Result<(Seen, T)> {
        loop {
            let seen = self.payout(id).await.map_err(|e| step.fail(e))?;
            seen.check_not_lost(id).map_err(|e| step.fail(e))?;
            if let Some(t) = reached(&seen) {
                return Ok((seen, t));
            }
            step.tick(|| format!("payout {id} is {}", seen.status))
                .await?;
        }
    }

    /// Runs the demo; the error names the step that failed.
    pub(crate) async fn run(self) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let out = self.out;
        out.line(format!(
            "demo: one payout end to end, to the test card {}",
            shared::card::mask_bin_last4(TEST_CARD)
        ));

        // 1. Tokenize.
        let step = Step::new(1, "tokenize at the vault", self.step_timeout);
        let request = self
            .http
            .post(format!("{}/v1/tokens", self.vault_url))
            .bearer_auth(self.vault_key)
            .json(&json!({ "pan": TEST_CARD, "exp_month": 12, "exp_year": 2030 }));
        let (status, body) = self.send(&step, request).await?;
        let token = body["token"]
            .as_str()
            .ok_or_else(|| step.fail(anyhow!("the vault's answer has no token")))?
            .to_owned();
        let last4 = body["card"]["last4"].as_str().unwrap_or("?");
        let brand = body["card"]["brand"].as_str().unwrap_or("?");
        out.line(format!(
            "  [1] tokenized at the vault: {token} ({brand}, last4 {last4}){}",
            if status == 200 {
                "; the vault already held this card for tenant demo, so the token is the same"
            } else {
                ""
            }
        ));

        // 2. Create the payout.
        let step = Step::new(2, "create the payout at the proxy", self.step_timeout);
        let idempotency_key =
            shared::ids::random_id("demo-").map_err(|_| step.fail(anyhow!("no randomness")))?;
        let request = self
            .http
            .post(format!("{}/v1/payouts", self.proxy_url))
            .bearer_auth(self.proxy_key)
            .header("Idempotency-Key", &idempotency_key)
            .json(&json!({
                "card_token": token,
                "amount": AMOUNT,
                "currency": CURRENCY,
                "recipient": { "full_name": RECIPIENT },
                "metadata": { "order": "devstack-demo" },
                "confirm": "auto",
            }));
        let (_, body) = self.send(&step, request).await?;
        let id = body["id"]
            .as_str()
            .ok_or_else(|| step.fail(anyhow!("the proxy's answer has no id")))?
            .to_owned();
        out.line(format!(
            "  [2] payout created at the proxy: {id}, status {} (100.00 {CURRENCY} to {RECIPIENT}, confirm auto, Idempotency-Key {idempotency_key})",
            body["status"].as_str().unwrap_or("?")
        ));

        // 3. ready_to_confirm reaches the proxy.
        let step = Step::new(3, "ready_to_confirm", self.step_timeout);
        let (seen, session) = self
            .watch(&step, &id, |seen| {
                let session = seen.session_id.clone()?;
                let journal = self.sandbox.journal();
                (webhook_accepted(&journal, &session, "ready_to_confirm")
                    || matches!(seen.status.as_str(), "confirming" | "succeeded"))
                .then_some(session)
            })
            .await?;
        out.line(format!(
            "  [3] ready_to_confirm: the bank's signed webhook for session {session} reached the proxy (payout now {})",
            seen.status
        ));

        // 4. The proxy confirms.
        let step = Step::new(4, "confirmed", self.step_timeout);
        let (seen, ()) = self
            .watch(&step, &id, |_| {
                call_accepted(&self.sandbox.journal(), &session, "/session/confirm").then_some(())
            })
            .await?;
        out.line(format!(
            "  [4] confirmed: amount, currency and last4 matched, the proxy called session/confirm and the bank accepted (payout now {})",
            seen.status
        ));

        // 5. payment_finished: succeeded.
        let step = Step::new(5, "payment_finished", self.step_timeout);
        let mut final_since: Option<Instant> = None;
        let (seen, by_webhook) = self
            .watch(&step, &id, |seen| {
                if !seen.is_final() {
                    return None;
                }
                // The sandbox journals a webhook once the proxy has answered it, which can be a
                // moment after the payout moved: give the journal a little time to catch up.
                let since = *final_since.get_or_insert_with(Instant::now);
                let by_webhook =
                    webhook_accepted(&self.sandbox.journal(), &session, "payment_finished");
                (by_webhook || since.elapsed() > Duration::from_secs(1)).then_some(by_webhook)
            })
            .await?;
        let finished_webhook = if by_webhook {
            "the bank's signed payment_finished webhook reached the proxy"
        } else {
            "the proxy learned the outcome from session/status"
        };
        out.line(format!(
            "  [5] payment_finished: {finished_webhook}; payout {id} {} (bank payout {})",
            seen.status,
            seen.bank_payout_id.as_deref().unwrap_or("?")
        ));

        // 6. The app hears about it.
        let step = Step::new(6, "app webhook payout.succeeded", self.step_timeout);
        let event = loop {
            let next = tokio::time::timeout_at(step.deadline.into(), self.events.recv()).await;
            match next {
                Err(_) => {
                    return Err(anyhow!(
                        "demo step 6 (app webhook payout.succeeded) did not happen within {} s; \
                         the app's receiver got no payout.succeeded for {id}",
                        step.timeout.as_secs()
                    ));
                }
                Ok(None) => return Err(step.fail(anyhow!("the webhook receiver stopped"))),
                Ok(Some(e)) if e.payout_id == id && e.event_type == "payout.succeeded" => {
                    break e;
                }
                Ok(Some(_)) => {}
            }
        };
        out.line(format!(
            "  [6] app webhook {} received for {} (status {}), X-Signature valid",
            event.event_type, event.payout_id, event.status
        ));
        out.line(format!(
            "demo: succeeded in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(Outcome {
            token,
            payout_id: id,
        })
    }
}
