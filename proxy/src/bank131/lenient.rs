//! Reading the bank's JSON with the latitude its own SDK allows (API.md §14.4–5): the SDK
//! coerces types with PHP's `settype()` and tolerates `null` anywhere, so the live bank may send
//! `10000.0` or `"10000"` for an amount and `null` for a string. One odd field must not make a
//! whole session unreadable (and a payout stall): optional fields that do not fit become
//! `None`, strings take `null` and numbers, amounts take exact integral values only.
//!
//! Written here rather than taken from a crate: `serde_with` has pieces of this
//! (`DefaultOnError`, `PickFirst`), but not the exact-integral rule for money, nor lists that
//! drop only their unreadable elements; four small functions are all the client needs.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An optional field: `None` when absent, `null`, or of a shape `T` does not take.
pub(crate) fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    if value.is_null() {
        return Ok(None);
    }
    Ok(serde_json::from_value(value).ok())
}

/// An optional list: `None` when absent, `null` or not a list; elements that do not fit `T`
/// are skipped (logged by count), so one odd payout does not hide the others.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let Value::Array(items) = Value::deserialize(d)? else {
        return Ok(None);
    };
    let total = items.len();
    let kept: Vec<T> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if kept.len() < total {
        tracing::warn!(
            skipped = total - kept.len(),
            "bank list elements that could not be read were skipped"
        );
    }
    Ok(Some(kept))
}

/// A string: `null` is empty, a number or a boolean is its text. Anything else is an error.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(D::Error::custom("expected a string")),
    }
}

/// Minor units: an integer, a float with no fraction (`10000.0`) or a string of either
/// (`"10000"`). Anything else, `100.5` included, is an error: money is never rounded.
pub(crate) fn minor_units<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(d)?;
    let text = match &value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(D::Error::custom("an amount must be a number")),
    };
    integral(&text)
        .ok_or_else(|| D::Error::custom("an amount must be a whole number of minor units"))
}

/// `text` as an exact integer: digits with an optional sign, optionally followed by `.` and
/// zeros (`10000`, `-5`, `10000.0`, `10000.000`). Exponents and fractions are refused.
fn integral(text: &str) -> Option<i64> {
    let whole = match text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() && fraction.bytes().all(|b| b == b'0') => {
            whole
        }
        Some(_) => return None,
        None => text,
    };
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    whole.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Money {
        #[serde(deserialize_with = "minor_units")]
        amount: i64,
    }

    #[test]
    fn amounts_are_exact_integral_values_only() {
        for (json, want) in [
            (r#"{"amount":10000}"#, Some(10000)),
            (r#"{"amount":10000.0}"#, Some(10000)),
            (r#"{"amount":"10000"}"#, Some(10000)),
            (r#"{"amount":"10000.00"}"#, Some(10000)),
            (r#"{"amount":-5}"#, Some(-5)),
            (r#"{"amount":100.5}"#, None),
            (r#"{"amount":"100.5"}"#, None),
            // serde_json reads `1e4` as the float 10000.0: exact, so accepted.
            (r#"{"amount":1e4}"#, Some(10000)),
            (r#"{"amount":"1e4"}"#, None),
            (r#"{"amount":"ten"}"#, None),
            (r#"{"amount":""}"#, None),
            (r#"{"amount":null}"#, None),
            (r#"{"amount":"99999999999999999999"}"#, None),
        ] {
            let got = serde_json::from_str::<Money>(json).ok().map(|m| m.amount);
            assert_eq!(got, want, "{json}");
        }
    }
}
