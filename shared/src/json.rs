//! Decoding request bodies without ever echoing them.
//!
//! serde's errors quote the offending value (`invalid type: string "4242…", expected u8`), and
//! web frameworks put that text in responses and logs. [`decode`] refuses card-security fields by
//! name, decodes, and classifies every failure into a [`DecodeError`] that carries no input;
//! serde's messages are only read to tell a missing or unknown field from a wrong value, never
//! shown. A field whose value must not fail with serde's words (the vault's `pan`) decodes into
//! a value that holds its own fixed error, which the route reports after decoding.

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
    /// Arrays and objects nested more than [`MAX_DEPTH`] deep.
    TooDeep,
}

impl DecodeError {
    /// The fixed text for this problem when it is told of the body as a whole (no field of the
    /// route's own to name): the same words in both services.
    pub const fn whole_body_rule(self) -> &'static str {
        match self {
            Self::Malformed => "the request body is not valid JSON",
            Self::SensitiveData => "card data, CVV, track data and PINs are never accepted",
            Self::UnknownField => "the request body has a field this route does not accept",
            Self::MissingField => "the request body lacks a required field",
            Self::Invalid => {
                "the request body must be a JSON object of the fields this route takes"
            }
            Self::TooDeep => "the request body nests arrays and objects more than 32 levels deep",
        }
    }
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
/// carrying any, at any depth, is refused outright (docs/ARCHITECTURE.md §2.4).
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

/// Decodes `bytes` as `T`.
///
/// # Errors
///
/// [`DecodeError`], never containing input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if nests_deeper_than(bytes, MAX_DEPTH) {
        return Err(DecodeError::TooDeep);
    }
    // Field names only, at every depth: values are skipped, not kept.
    if sensitive_name_path(bytes).is_some() {
        return Err(DecodeError::SensitiveData);
    }
    serde_json::from_slice(bytes).map_err(|e| classify(&e))
}

/// [`decode`], and for a field that is missing, unknown or of the wrong type or value, its JSON
/// path (`recipient.full_name`, `metadata.items[2]`) for `error.param`. The path holds names
/// only, never a value: keys that are not plain identifiers show as `*`, and a path whose digits
/// spell a long run has them hidden. An unknown field is named when it is a plain identifier.
///
/// # Errors
///
/// The [`DecodeError`], with the path where one is known.
pub fn decode_at<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, (DecodeError, Option<FieldPath>)> {
    if nests_deeper_than(bytes, MAX_DEPTH) {
        return Err((DecodeError::TooDeep, None));
    }
    if let Some(path) = sensitive_name_path(bytes) {
        return Err((DecodeError::SensitiveData, Some(path)));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let decoded: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let error = classify(e.inner());
        let path = match error {
            DecodeError::Malformed | DecodeError::TooDeep | DecodeError::SensitiveData => None,
            _ => field_path(&e),
        };
        (error, path)
    })?;
    // Trailing bytes after the value, as `serde_json::from_slice` refuses them.
    de.end().map_err(|_| (DecodeError::Malformed, None))?;
    Ok(decoded)
}

/// The path of a decode error, with the missing field's own name appended (serde reports a
/// missing field at its parent object; the name in its message is the program's, not input).
fn field_path(e: &serde_path_to_error::Error<serde_json::Error>) -> Option<FieldPath> {
    use serde_path_to_error::Segment;
    let mut path = FieldPath::default();
    for segment in e.path().iter() {
        path = match segment {
            Segment::Map { key } => path.child(key),
            Segment::Seq { index } => path.index(*index),
            Segment::Enum { .. } | Segment::Unknown => path,
        };
    }
    let mut message = e.inner().to_string();
    if message.starts_with("missing field `")
        && let Some(name) = message.split('`').nth(1)
    {
        path = path.child(name);
    }
    message.zeroize();
    let path = path.scrubbed();
    (!path.as_str().is_empty()).then_some(path)
}

fn classify(e: &serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => DecodeError::Malformed,
        Category::Data => {
            // The message may quote the input: it is only compared with serde's own fixed
            // openings, never shown or logged, and wiped.
            let mut message = e.to_string();
            let error = if message.starts_with("unknown field") {
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

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "decoded only")]
    struct PayBody {
        amount: i64,
        recipient: Recipient,
        #[serde(default)]
        items: Vec<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "decoded only")]
    struct Recipient {
        full_name: String,
    }

    fn param(body: &str) -> (DecodeError, Option<String>) {
        let (e, path) = decode_at::<PayBody>(body.as_bytes()).unwrap_err();
        (e, path.map(|p| p.as_str().to_owned()))
    }

    #[test]
    fn decode_errors_name_the_field_and_never_the_value() {
        let named = |body: &str, kind: DecodeError, path: &str| {
            assert_eq!(param(body), (kind, Some(path.to_owned())), "{body}");
        };
        named(
            r#"{"amount":1,"recipient":{}}"#,
            DecodeError::MissingField,
            "recipient.full_name",
        );
        named(
            r#"{"recipient":{"full_name":"A"}}"#,
            DecodeError::MissingField,
            "amount",
        );
        named(
            r#"{"amount":"4242424242424242","recipient":{"full_name":"A"}}"#,
            DecodeError::Invalid,
            "amount",
        );
        named(
            r#"{"amount":1,"recipient":{"full_name":7}}"#,
            DecodeError::Invalid,
            "recipient.full_name",
        );
        named(
            r#"{"amount":1,"recipient":{"full_name":"A"},"items":[1,"x"]}"#,
            DecodeError::Invalid,
            "items[1]",
        );
        named(
            r#"{"amount":1,"recipient":{"full_name":"A"},"colour":1}"#,
            DecodeError::UnknownField,
            "colour",
        );
        // An unknown key that is a card number is not handed back.
        let (kind, path) =
            param(r#"{"amount":1,"recipient":{"full_name":"A"},"4242424242424242":1}"#);
        assert_eq!(kind, DecodeError::UnknownField);
        assert!(
            path.as_deref().is_none_or(|p| !p.contains("4242")),
            "{path:?}"
        );
        let (kind, path) = param(r#"{"amount":1,"recipient":{"full_name":"A"},"a b":1}"#);
        assert_eq!(
            (kind, path.as_deref()),
            (DecodeError::UnknownField, Some("*"))
        );
        // Not JSON, trailing bytes: no path.
        assert_eq!(param("{"), (DecodeError::Malformed, None));
        assert_eq!(
            param(r#"{"amount":1,"recipient":{"full_name":"A"}} x"#),
            (DecodeError::Malformed, None)
        );
        assert!(decode_at::<PayBody>(br#"{"amount":1,"recipient":{"full_name":"A"}}"#).is_ok());
    }

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
        assert!(decode::<serde_json::Value>(at_limit.as_bytes()).is_ok());
        let past = nested(MAX_DEPTH + 1);
        assert!(nests_deeper_than(past.as_bytes(), MAX_DEPTH));
        assert_eq!(
            decode::<serde_json::Value>(past.as_bytes()).unwrap_err(),
            DecodeError::TooDeep
        );
        // Brackets inside strings (escaped quotes too) do not count.
        let quoted = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(100));
        assert!(!nests_deeper_than(quoted.as_bytes(), 2));
        assert!(decode::<serde_json::Value>(quoted.as_bytes()).is_ok());
        // Far past serde_json's own limit: refused by ours, without recursion.
        let huge = "[".repeat(100_000);
        assert_eq!(
            decode::<serde_json::Value>(huge.as_bytes()).unwrap_err(),
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
        assert_eq!(decode::<Body>(b"{").unwrap_err(), DecodeError::Malformed);
        assert_eq!(
            decode::<Body>(br#"{"amount":1,"CVV2":"1"}"#).unwrap_err(),
            DecodeError::SensitiveData
        );
        assert_eq!(
            decode::<serde_json::Value>(br#"{"a":{"b":[{"cvc":"1"}]}}"#).unwrap_err(),
            DecodeError::SensitiveData
        );
        assert_eq!(
            decode::<Body>(br#"{"amount":1,"x":1}"#).unwrap_err(),
            DecodeError::UnknownField
        );
        assert_eq!(
            decode::<Body>(br#"{}"#).unwrap_err(),
            DecodeError::MissingField
        );
        assert_eq!(
            decode::<Body>(br#"{"amount":"4242424242424242"}"#).unwrap_err(),
            DecodeError::Invalid
        );
        assert!(decode::<Body>(br#"{"amount":7}"#).is_ok());
        assert_eq!(
            decode::<Body>(br#"{"amount":[[1]]}"#).unwrap_err(),
            DecodeError::Invalid
        );
        assert!(is_json_content_type(Some(
            "application/json; charset=utf-8"
        )));
        assert!(!is_json_content_type(Some("text/plain")));
    }
}
