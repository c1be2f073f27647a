//! The closed-loop load: `--concurrency` workers, each creating a payout at the proxy and waiting
//! for its final webhook before the next, until the measured window ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::Args;
use crate::hooks::{Expect, Hooks};
use crate::stack::Stack;

/// How a payout ended.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    /// No final webhook within `--payout-timeout`.
    TimedOut,
    /// `POST /v1/payouts` did not answer 201.
    CreateError,
}

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Load {
    http: reqwest::Client,
    create_url: String,
    app_key: String,
    tokens: Vec<String>,
    amount: i64,
    concurrency: usize,
    hooks: Arc<Hooks>,
    /// No payout is started at or after this.
    stop_at: Instant,
    timeout: Duration,
    /// Makes idempotency keys unique across runs.
    run: String,
}

/// One payout, from the create request to its end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    pub(crate) sent: Instant,
    pub(crate) end: Instant,
    pub(crate) outcome: Outcome,
}

/// What one worker did.
#[derive(Debug, Default)]
pub(crate) struct WorkerResult {
    pub(crate) records: Vec<Record>,
    /// The first few create errors, for the report.
    pub(crate) errors: Vec<String>,
    /// Payout ids the proxy answered 201 for.
    pub(crate) created: Vec<String>,
}

impl Load {
    /// The load of `args` on `stack`, paying to `tokens` in turn, with no payout started at or
    /// after `stop_at`.
    pub(crate) fn new(
        args: &Args,
        http: reqwest::ClientBuilder,
        stack: &Stack,
        tokens: Vec<String>,
        hooks: Arc<Hooks>,
        stop_at: Instant,
    ) -> anyhow::Result<Self> {
        let concurrency = usize::try_from(args.concurrency)?;
        Ok(Self {
            http: http.pool_max_idle_per_host(concurrency).build()?,
            create_url: format!("{}/v1/payouts", stack.proxy_url),
            app_key: stack.app_key.clone(),
            tokens,
            amount: args.amount,
            concurrency,
            hooks,
            stop_at,
            timeout: Duration::from_secs(args.payout_timeout),
            run: crate::random_suffix()?,
        })
    }

    /// Runs every worker to the end.
    pub(crate) async fn run(self) -> anyhow::Result<Vec<WorkerResult>> {
        let load = Arc::new(self);
        let workers: Vec<_> = (0..load.concurrency)
            .map(|w| tokio::spawn(worker(Arc::clone(&load), w)))
            .collect();
        let mut results = Vec::with_capacity(workers.len());
        for w in workers {
            results.push(w.await.context("a worker died")?);
        }
        Ok(results)
    }

    /// Creates the `seq`th payout of worker `w`: its id, or why not.
    async fn create(&self, w: usize, seq: usize) -> Result<String, String> {
        // Workers walk the card pool in step, so concurrent payouts mostly use different cards.
        let token = &self.tokens[(w + seq * self.concurrency) % self.tokens.len()];
        let key = format!("bench-{}-{w}-{}", self.run, seq + 1);
        let body = json!({
            "card_token": token,
            "amount": self.amount,
            "currency": "RUB",
            "recipient": { "full_name": "Ivan Petrov" },
            "confirm": "auto",
        });
        match self
            .http
            .post(&self.create_url)
            .bearer_auth(&self.app_key)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::CREATED => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                v["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "201 without an id".to_owned())
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Err(format!(
                    "HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Worker `w`: payouts one after another until the load stops.
async fn worker(load: Arc<Load>, w: usize) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut seq = 0usize;
    while Instant::now() < load.stop_at {
        let sent = Instant::now();
        let created = load.create(w, seq).await;
        seq += 1;
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                if result.errors.len() < 5 {
                    result.errors.push(e);
                }
                result.records.push(Record {
                    sent,
                    end: Instant::now(),
                    outcome: Outcome::CreateError,
                });
                // An overloaded or broken proxy is not helped by an instant retry.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        result.created.push(id.clone());
        let fin = match load.hooks.expect(&id) {
            Expect::Ready(f) => Some(f),
            Expect::Wait(mut rx) => match tokio::time::timeout(load.timeout, &mut rx).await {
                Ok(Ok(f)) => Some(f),
                Ok(Err(_)) => None,
                Err(_) if load.hooks.abandon(&id) => None,
                // Handed over just as the timeout fired.
                Err(_) => rx.try_recv().ok(),
            },
        };
        let (end, outcome) = fin.map_or_else(
            || (Instant::now(), Outcome::TimedOut),
            |f| (f.at, f.outcome),
        );
        result.records.push(Record { sent, end, outcome });
    }
    result
}
