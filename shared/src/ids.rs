//! Random identifiers and API keys, as both services hand them out.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::{ExposeSecret, SecretString, secret};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^22 > 2^128, so 22 characters hold any 128-bit value.
pub const ID_CHARS: usize = 22;

/// The OS random number generator failed.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomFailed;

/// Most decimal digits a generated id holds. A card number has at least 13, so no id can ever
/// carry (or be mistaken for) one, and ids fit in free text that allows at most 12 digits (the
/// vault's detokenize `purpose`, which the proxy fills with a payout id).
pub const MAX_ID_DIGITS: usize = 12;

/// `prefix` and 22 base62 characters encoding 128 bits from the OS CSPRNG, with at most
/// [`MAX_ID_DIGITS`] digits among them. About one draw in 200,000 has more and is drawn again,
/// which costs a negligible fraction of a bit of the 128.
///
/// # Errors
///
/// The OS random generator failed.
pub fn random_id(prefix: &str) -> Result<String, RandomFailed> {
    let chars = loop {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| RandomFailed)?;
        if let Some(chars) = id_chars(u128::from_be_bytes(bytes)) {
            break chars;
        }
    };
    let mut id = String::with_capacity(prefix.len() + ID_CHARS);
    id.push_str(prefix);
    id.extend(chars.iter().map(|&c| char::from(c)));
    Ok(id)
}

/// `prefix` and 22 base62 characters that no other call, in this process or (but for a 2^-64
/// chance) any other, returns: 64 random bits drawn once per process and a 64-bit counter
/// starting at a random value. For identifiers that must be unique but need not be
/// unpredictable (request ids): it costs no system call, where [`random_id`] costs one. At most
/// [`MAX_ID_DIGITS`] digits, like every id.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static BASE: OnceLock<(u64, AtomicU64)> = OnceLock::new();
    let (high, counter) = BASE.get_or_init(|| {
        let mut bytes = [0u8; 16];
        // Without the OS generator, a clock-derived base still keeps ids unique in this process.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = nanos.to_be_bytes();
        }
        let value = u128::from_be_bytes(bytes);
        (
            u64::try_from(value >> 64).unwrap_or(0),
            AtomicU64::new(u64::try_from(value & u128::from(u64::MAX)).unwrap_or(0)),
        )
    });
    let chars = loop {
        let low = counter.fetch_add(1, Ordering::Relaxed);
        if let Some(chars) = id_chars((u128::from(*high) << 64) | u128::from(low)) {
            break chars;
        }
    };
    let mut id = String::with_capacity(prefix.len() + ID_CHARS);
    id.push_str(prefix);
    id.extend(chars.iter().map(|&c| char::from(c)));
    id
}

/// The 22 base62 characters of `value`, or `None` when they hold more than [`MAX_ID_DIGITS`]
/// digits.
fn id_chars(mut value: u128) -> Option<[u8; ID_CHARS]> {
    let mut chars = [b'0'; ID_CHARS];
    for slot in chars.iter_mut().rev() {
        let digit = usize::try_from(value % 62).unwrap_or(0);
        *slot = BASE62.get(digit).copied().unwrap_or(b'0');
        value /= 62;
    }
    (chars.iter().filter(|c| c.is_ascii_digit()).count() <= MAX_ID_DIGITS).then_some(chars)
}

/// True when `s` is `prefix` and 22 base62 characters whose value fits 128 bits (so every id has
/// exactly one spelling).
pub fn is_id(prefix: &str, s: &str) -> bool {
    let Some(body) = s.strip_prefix(prefix) else {
        return false;
    };
    if body.len() != ID_CHARS {
        return false;
    }
    let mut value: u128 = 0;
    for c in body.bytes() {
        let Some(digit) = BASE62.iter().position(|&b| b == c) else {
            return false;
        };
        let Some(next) = value
            .checked_mul(62)
            .and_then(|v| v.checked_add(u128::try_from(digit).unwrap_or(u128::MAX)))
        else {
            return false;
        };
        value = next;
    }
    true
}

/// For [`random_id_type!`]: ids serialize as their text, in crates that do not name serde.
#[doc(hidden)]
pub use serde as __serde;

/// Defines a random, prefixed identifier type: the prefix and 22 base62 characters encoding 128
/// bits from the OS CSPRNG ([`random_id`]). `parse` takes only that exact spelling, so a PAN,
/// a forged row or another kind of id never becomes one.
#[macro_export]
macro_rules! random_id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            ///
            /// # Errors
            ///
            /// The OS random generator failed.
            pub fn generate() -> Result<Self, $crate::ids::RandomFailed> {
                $crate::ids::random_id(Self::PREFIX).map(Self)
            }

            /// Parses an id. Anything else (including a PAN) is `None`.
            pub fn parse(s: &str) -> Option<Self> {
                $crate::ids::is_id(Self::PREFIX, s).then(|| Self(s.to_owned()))
            }

            /// The id text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $crate::ids::__serde::Serialize for $name {
            fn serialize<S: $crate::ids::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An API key: a prefix and 43 base64url characters (256 random bits). Shown once at creation;
/// services keep only [`ApiKey::hash`].
pub struct ApiKey(SecretString);

impl ApiKey {
    /// A fresh random key with `prefix` (`vk_` for the vault, `pk_` for the proxy).
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate(prefix: &str) -> Result<Self, RandomFailed> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|_| RandomFailed)?;
        let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 43));
        text.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut text);
        Ok(Self(secret(std::mem::take(&mut *text))))
    }

    /// Wraps a presented key (from an `Authorization` header) for hashing.
    pub fn presented(text: &str) -> Self {
        Self(SecretString::from(text))
    }

    /// SHA-256 of the key text. The key has 256 random bits, so a fast hash is enough: there is
    /// nothing to brute-force, and lookups stay cheap on every request.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.expose().as_bytes()).into()
    }

    /// The key text, for showing it once to the operator who created it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A presented key or secret read straight from a JSON body (a collect form's client secret),
/// so that the text is a secret from the moment it is parsed: never in a `Debug` of the body.
impl<'de> serde::Deserialize<'de> for ApiKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(<String as serde::Deserialize>::deserialize(deserializer)?);
        Ok(Self::presented(&text))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey { .. }")
    }
}

/// The credential of an `Authorization: Bearer <credential>` header value. The scheme is
/// case-insensitive (RFC 9110 §11.1: `bearer` and `BEARER` are `Bearer`) and may be followed by
/// more than one space; an empty credential is none.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for header in ["Bearer k1", "bearer k1", "BEARER  k1", "BeArEr k1 "] {
            assert_eq!(bearer_token(header), Some("k1"), "{header}");
        }
        for header in ["Basic k1", "Bearer", "Bearer   ", "Bearerk1", "k1"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }

    #[test]
    fn ids_never_hold_a_card_numbers_worth_of_digits() {
        // 0 encodes as 22 zeros. 2^128 < 62^22, so the first character is always a digit
        // (`0`-`7`): a `0`, then `z`s, then zeros.
        assert_eq!(id_chars(0), None);
        let letters_then_zeros = |letters: u32, zeros: u32| {
            (0..letters).fold(0u128, |v, _| v * 62 + 61) * 62u128.pow(zeros)
        };
        assert!(
            id_chars(letters_then_zeros(10, 11)).is_some(),
            "12 digits are allowed"
        );
        assert_eq!(id_chars(letters_then_zeros(9, 12)), None, "13 are not");
        for _ in 0..10_000 {
            let id = random_id("pay_").unwrap();
            assert!(
                id.bytes().filter(u8::is_ascii_digit).count() <= MAX_ID_DIGITS,
                "{id}"
            );
        }
    }

    #[test]
    fn unique_ids_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let id = unique_id("req_");
            assert!(is_id("req_", &id), "{id}");
            assert!(id.bytes().filter(u8::is_ascii_digit).count() <= MAX_ID_DIGITS);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn ids_round_trip_and_reject_other_spellings() {
        let id = random_id("x_").unwrap();
        assert!(is_id("x_", &id));
        assert!(!is_id("y_", &id));
        assert!(!is_id("x_", "x_zzzzzzzzzzzzzzzzzzzzzz"));
        assert!(is_id("x_", "x_0000000000000000000000"));
    }

    #[test]
    fn api_keys_hash_stably() {
        let a = ApiKey::generate("k_").unwrap();
        assert_eq!(a.hash(), ApiKey::presented(a.expose()).hash());
        assert_ne!(a.hash(), ApiKey::generate("k_").unwrap().hash());
        assert_eq!(format!("{a:?}"), "ApiKey { .. }");
    }
}
