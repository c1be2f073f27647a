//! Decoding request bodies without ever echoing them.
//!
//! serde's errors quote the offending value (`invalid type: string "4242…", expected u8`), and
//! web frameworks put that text in responses and logs. [`decode`] refuses card-security fields by
//! name, decodes, and classifies every failure into a [`DecodeError`] that carries no input;
//! decode messages are only ever compared with texts the caller passes in, never shown.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use zeroize::Zeroize;

mod fields;

pub use fields::{FieldPath, card_number_path, is_sensitive_name, sensitive_name_path};

/// Why a body was refused. No variant holds request data.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum DecodeError {
    /// Not JSON.
    Malformed,
    /// A field named like a CVV, track data or a PIN.
    SensitiveData,
    /// A field the route does not accept.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or value.
    Invalid,
    /// A decode error whose message starts with one of the caller's fixed texts (returned as is).
    Known(&'static str),
    /// Arrays and objects nested more than [`MAX_DEPTH`] deep.
    TooDeep,
}

/// The deepest nesting of arrays and objects a body may have (the top-level object is depth 1).
/// No request of either service needs more than a few levels; the limit keeps recursion in the
/// decoder, and the work a body can cause, small whatever serde_json's own limit is (128).
pub const MAX_DEPTH: usize = 32;

/// Whether arrays and objects in `bytes` nest deeper than `max` (strings are skipped, escapes
/// honoured). Runs before any decoding, in one pass, without allocating.
pub fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Field names (lowercase, without `_` and `-`) that carry sensitive authentication data: card
/// verification codes, magnetic-stripe track data, PINs. Payouts need none of them, so a body
/// carrying any, at any depth, is refused outright (DESIGN §2.4).
pub const SENSITIVE_FIELDS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cid",
    "csc",
    "cav2",
    "cvn",
    "securitycode",
    "cardsecuritycode",
    "verificationcode",
    "cardverificationvalue",
    "track",
    "track1",
    "track2",
    "trackdata",
    "magstripe",
    "magneticstripe",
    "pin",
    "pinblock",
];

/// Decodes `bytes` as `T`. `known` are fixed texts the caller's own deserializers fail with
/// (e.g. "pan must be a JSON string"): such failures come back as [`DecodeError::Known`].
///
/// # Errors
///
/// [`DecodeError`], never containing input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], known: &[&'static str]) -> Result<T, DecodeError> {
    if nests_deeper_than(bytes, MAX_DEPTH) {
        return Err(DecodeError::TooDeep);
    }
    // Field names only, at every depth: values are skipped, not kept.
    if sensitive_name_path(bytes).is_some() {
        return Err(DecodeError::SensitiveData);
    }
    serde_json::from_slice(bytes).map_err(|e| classify(&e, known))
}

fn classify(e: &serde_json::Error, known: &[&'static str]) -> DecodeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => DecodeError::Malformed,
        Category::Data => {
            // The message may quote the input: it is only compared with fixed texts, never shown
            // or logged, and wiped.
            let mut message = e.to_string();
            let error = if let Some(k) = known.iter().find(|k| message.starts_with(*k)) {
                DecodeError::Known(k)
            } else if message.starts_with("unknown field") {
                DecodeError::UnknownField
            } else if message.starts_with("missing field") {
                DecodeError::MissingField
            } else {
                DecodeError::Invalid
            };
            message.zeroize();
            error
        }
    }
}

/// True for `application/json` (parameters such as `charset` allowed).
pub fn is_json_content_type(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Best effort: overwrites a body buffer when no one else holds it.
pub fn wipe(bytes: Bytes) {
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"a":` then arrays to reach `depth` levels in all.
    fn nested(depth: usize) -> String {
        format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    #[test]
    fn pci_03_nesting_is_refused_past_the_limit_and_accepted_at_it() {
        let at_limit = nested(MAX_DEPTH);
        assert!(!nests_deeper_than(at_limit.as_bytes(), MAX_DEPTH));
        assert!(decode::<serde_json::Value>(at_limit.as_bytes(), &[]).is_ok());
        let past = nested(MAX_DEPTH + 1);
        assert!(nests_deeper_than(past.as_bytes(), MAX_DEPTH));
        assert_eq!(
            decode::<serde_json::Value>(past.as_bytes(), &[]).unwrap_err(),
            DecodeError::TooDeep
        );
        // Brackets inside strings (escaped quotes too) do not count.
        let quoted = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(100));
        assert!(!nests_deeper_than(quoted.as_bytes(), 2));
        assert!(decode::<serde_json::Value>(quoted.as_bytes(), &[]).is_ok());
        // Far past serde_json's own limit: refused by ours, without recursion.
        let huge = "[".repeat(100_000);
        assert_eq!(
            decode::<serde_json::Value>(huge.as_bytes(), &[]).unwrap_err(),
            DecodeError::TooDeep
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "decoded only")]
    struct Body {
        amount: u32,
    }

    #[test]
    fn classifies_without_echo() {
        assert_eq!(
            decode::<Body>(b"{", &[]).unwrap_err(),
            DecodeError::Malformed
        );
        assert_eq!(
            decode::<Body>(br#"{"amount":1,"CVV2":"1"}"#, &[]).unwrap_err(),
            DecodeError::SensitiveData
        );
        assert_eq!(
            decode::<serde_json::Value>(br#"{"a":{"b":[{"cvc":"1"}]}}"#, &[]).unwrap_err(),
            DecodeError::SensitiveData
        );
        assert_eq!(
            decode::<Body>(br#"{"amount":1,"x":1}"#, &[]).unwrap_err(),
            DecodeError::UnknownField
        );
        assert_eq!(
            decode::<Body>(br#"{}"#, &[]).unwrap_err(),
            DecodeError::MissingField
        );
        assert_eq!(
            decode::<Body>(br#"{"amount":"4242424242424242"}"#, &[]).unwrap_err(),
            DecodeError::Invalid
        );
        assert!(decode::<Body>(br#"{"amount":7}"#, &[]).is_ok());
        assert_eq!(
            decode::<Body>(br#"{"amount":[[1]]}"#, &[]).unwrap_err(),
            DecodeError::Invalid
        );
        assert!(is_json_content_type(Some(
            "application/json; charset=utf-8"
        )));
        assert!(!is_json_content_type(Some("text/plain")));
    }
}
