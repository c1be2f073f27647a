//! What the proxy and the sandbox hold after the run: the proxy's payouts by status and the
//! sandbox wallet's decrease, to check that nothing was lost or paid twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

use crate::stack::{PROJECT, Stack, WALLET_BALANCE};

/// What the proxy and the sandbox hold after the run.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) by_status: BTreeMap<String, u64>,
    pub(crate) total: u64,
    /// The sandbox wallet's decrease.
    pub(crate) spent: i64,
}

impl Ledger {
    /// Pages through the proxy's payouts and reads the sandbox wallet.
    pub(crate) async fn read(http: &reqwest::Client, stack: &Stack) -> anyhow::Result<Self> {
        let mut ledger = Self::default();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/payouts?limit=100", stack.proxy_url);
            if let Some(a) = &after {
                let _ = write!(url, "&after={a}");
            }
            let page: Value = http
                .get(&url)
                .bearer_auth(&stack.app_key)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for p in page["data"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let status = p["status"].as_str().unwrap_or("?").to_owned();
                *ledger.by_status.entry(status).or_default() += 1;
                ledger.total += 1;
            }
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        let project: Value = http
            .get(format!(
                "{}/__sandbox/projects/{PROJECT}",
                stack.sandbox_url
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let balance = project["wallet_balance"]
            .as_i64()
            .context("the sandbox project view has no wallet_balance")?;
        ledger.spent = WALLET_BALANCE - balance;
        Ok(ledger)
    }

    /// Payouts with `status`.
    pub(crate) fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}
