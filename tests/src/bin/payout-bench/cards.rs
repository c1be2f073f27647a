//! The test cards the payouts go to: Luhn-valid numbers the sandbox pays out, tokenized at the
//! vault so the load only ever holds tokens.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::stack::Stack;

/// Card endings the sandbox turns into declines (tests/SANDBOX.md §8).
const MAGIC_ENDINGS: [&str; 4] = ["0002", "0051", "0054", "0061"];

/// `n` distinct Luhn-valid 16-digit test card numbers starting with 4, none ending in a sandbox
/// magic suffix.
fn test_cards(n: usize) -> Vec<String> {
    let mut cards = Vec::with_capacity(n);
    let mut i: u64 = 0;
    while cards.len() < n {
        // 15 digits (a spread of the index), then the check digit that makes it Luhn-valid.
        let body = format!("4{:014}", 31_000_000_000 + i * 7_919);
        i += 1;
        let Some(card) = (b'0'..=b'9')
            .map(|d| format!("{body}{}", char::from(d)))
            .find(|c| shared::pan::luhn_valid(c.as_bytes()))
        else {
            continue;
        };
        if MAGIC_ENDINGS.iter().any(|m| card.ends_with(m)) {
            continue;
        }
        cards.push(card);
    }
    cards
}

/// Tokenizes `n` test cards at the vault; returns their tokens.
pub(crate) async fn tokenize(
    http: &reqwest::Client,
    stack: &Stack,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(n);
    for (i, pan) in test_cards(n).into_iter().enumerate() {
        let r = http
            .post(format!("{}/v1/tokens", stack.vault_url))
            .bearer_auth(&stack.vault_app_key)
            .json(&json!({ "pan": pan }))
            .send()
            .await
            .with_context(|| format!("tokenizing test card #{i}"))?;
        // The answer never holds the card number (only a token and the last four digits).
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let Some(token) = body["token"].as_str().filter(|_| status.is_success()) else {
            bail!("tokenizing test card #{i}: HTTP {status}: {body}");
        };
        tokens.push(token.to_owned());
    }
    Ok(tokens)
}
