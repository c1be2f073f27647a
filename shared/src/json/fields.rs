//! Where in a JSON body a refused field is, said without saying what it holds.
//!
//! Input checks walk a body at every depth: field names that carry sensitive authentication data
//! ([`sensitive_name_path`]) and values that hold a card number ([`card_number_path`]). Each
//! answers with a [`FieldPath`] (`metadata.card.cvv`, `metadata.items[2]`), never the value. A
//! key is itself input, so a key that is not a plain identifier is shown as `*`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::SENSITIVE_FIELDS;

/// A JSON path made of identifier keys (others as `*`) and array indexes.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at `root` (a name the caller chose, such as `metadata`).
    pub fn root(root: &str) -> Self {
        let mut p = Self::default();
        p.push_key(root);
        p
    }

    /// This path with `key` appended.
    #[must_use]
    pub fn child(&self, key: &str) -> Self {
        self.child_key(key)
    }

    /// The path with every digit hidden when its keys and indexes together spell a long digit
    /// run (`metadata.4242.4242.4242.4242` would otherwise hand back a card number).
    #[must_use]
    pub(super) fn scrubbed(mut self) -> Self {
        if crate::scan::has_digit_run(self.0.as_bytes(), 13) {
            self.0 = self
                .0
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
        }
        self
    }

    /// This path with array index `i` appended.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        self.child_index(i)
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn push_key(&mut self, key: &str) {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        let plain = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !crate::scan::has_digit_run(key.as_bytes(), 6);
        self.0.push_str(if plain { key } else { "*" });
    }

    fn push_index(&mut self, i: usize) {
        self.0.push_str(&format!("[{i}]"));
    }

    fn child_key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.push_key(key);
        p
    }

    fn child_index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.push_index(i);
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a field name carries sensitive authentication data (CVV, track data, PIN), ignoring
/// case, `_` and `-`.
pub fn is_sensitive_name(name: &str) -> bool {
    let normal: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SENSITIVE_FIELDS.contains(&normal.as_str())
}

/// The path of the first field, at any depth, whose name is sensitive; `None` when there is none
/// or `bytes` is not JSON. Values are skipped, never kept: the walk holds only key names.
/// Callers bound the depth first ([`super::nests_deeper_than`]).
pub fn sensitive_name_path(bytes: &[u8]) -> Option<FieldPath> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut found = None;
    Walk {
        path: FieldPath::default(),
        found: &mut found,
    }
    .deserialize(&mut de)
    .ok()?;
    found.map(FieldPath::scrubbed)
}

/// The path of the first value under `root` that holds a card number (a card candidate of
/// [`crate::scan::card_candidates`]): a string, a number, a key, or the scalar elements of an
/// array read together (`[4242, 4242, 4242, 4242]`).
pub fn card_number_path(value: &Value, root: &FieldPath) -> Option<FieldPath> {
    card_path(value, root).map(FieldPath::scrubbed)
}

fn card_path(value: &Value, root: &FieldPath) -> Option<FieldPath> {
    let holds_card = |text: &str| !crate::scan::card_candidates(text.as_bytes()).is_empty();
    match value {
        Value::String(s) => holds_card(s).then(|| root.clone()),
        Value::Number(n) => holds_card(&n.to_string()).then(|| root.clone()),
        Value::Array(items) => {
            let scalars: Vec<String> = items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            // An element holding it is named; only a card spread over elements names the array.
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| card_path(v, &root.child_index(i)))
                .or_else(|| holds_card(&scalars.join(",")).then(|| root.clone()))
        }
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = root.child_key(k);
            if holds_card(k) {
                return Some(child);
            }
            card_path(v, &child)
        }),
        Value::Bool(_) | Value::Null => None,
    }
}

/// A seed that walks any JSON value, recording the first sensitive key's path.
struct Walk<'a> {
    path: FieldPath,
    found: &'a mut Option<FieldPath>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let path = self.path.child_key(&key);
            if self.found.is_none() && is_sensitive_name(&key) {
                *self.found = Some(path.clone());
            }
            if self.found.is_some() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Walk {
                    path,
                    found: &mut *self.found,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let more = if self.found.is_some() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(Walk {
                    path: self.path.child_index(i),
                    found: &mut *self.found,
                })?
                .is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_names_at_every_depth_with_their_path() {
        for (body, path) in [
            (r#"{"cvv":"737"}"#, Some("cvv")),
            (
                r#"{"metadata":{"card":{"CVV2":"737","pin":"1234"}}}"#,
                Some("metadata.card.CVV2"),
            ),
            (
                r#"{"metadata":{"items":[{"a":1},{"track-2":"x"}]}}"#,
                Some("metadata.items[1].track-2"),
            ),
            (
                r#"{"metadata":[[{"Pin_Block":"x"}]]}"#,
                Some("metadata[0][0].Pin_Block"),
            ),
            (
                r#"{"metadata":{"pinned":true,"cv":"1","note":"cvv 737"}}"#,
                None,
            ),
            (r#"not json"#, None),
            // Short numeric keys that together spell a card number are not handed back.
            (
                r#"{"metadata":{"4242":{"4242":{"4242":{"4242":{"cvv":1}}}}}}"#,
                Some("metadata.####.####.####.####.cvv"),
            ),
        ] {
            assert_eq!(
                sensitive_name_path(body.as_bytes())
                    .as_ref()
                    .map(FieldPath::as_str),
                path,
                "{body}"
            );
        }
    }

    #[test]
    fn card_numbers_anywhere_with_their_path_never_the_value() {
        let root = FieldPath::root("metadata");
        let at = |v: Value| card_number_path(&v, &root).map(|p| p.as_str().to_owned());
        assert_eq!(
            at(serde_json::json!({"order": "ORD-20261201-000123"})),
            None
        );
        assert_eq!(
            at(serde_json::json!({"a": {"b": ["x", "4242.4242.4242.4242"]}})),
            Some("metadata.a.b[1]".to_owned())
        );
        assert_eq!(
            at(serde_json::json!({"parts": [4242, 4242, 4242, 4242]})),
            Some("metadata.parts".to_owned())
        );
        assert_eq!(
            at(serde_json::json!({"n": 4_242_424_242_424_242_u64})),
            Some("metadata.n".to_owned())
        );
        // A key holding the card: named as `*`.
        assert_eq!(
            at(serde_json::json!({"4242424242424242": true})),
            Some("metadata.*".to_owned())
        );
        assert_eq!(
            at(serde_json::json!({"ts": 1_796_134_768_000_u64, "acct": "40817810099910004312"})),
            None
        );
    }
}
