//! Identifiers the vault hands out: tokens, client ids and API keys.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, random_bytes};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^22 > 2^128, so 22 characters hold any 128-bit value.
const ID_CHARS: usize = 22;

/// Defines a random, prefixed identifier type: the prefix and 22 base62 characters encoding 128
/// bits from the OS CSPRNG.
macro_rules! random_id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Eq, Hash, PartialEq)]
        pub struct $name(String);

        impl $name {
            const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            ///
            /// # Errors
            ///
            /// The OS random generator failed.
            pub fn generate() -> Result<Self, CryptoError> {
                random_id(Self::PREFIX).map(Self)
            }

            /// Parses an id. Anything else (including a PAN) is `None`.
            pub fn parse(s: &str) -> Option<Self> {
                parse_id(Self::PREFIX, s).then(|| Self(s.to_owned()))
            }

            /// The id text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id_type!(
    /// A card token: `tok_` and 22 base62 characters. Never derived from the PAN, and never
    /// mistakable for one (it has letters and a prefix).
    Token,
    "tok_"
);

random_id_type!(
    /// An API client id: `cli_` and 22 base62 characters.
    ClientId,
    "cli_"
);

/// An API key: `vk_` and 43 base64url characters (256 random bits). Shown once at creation;
/// the vault keeps only [`ApiKey::hash`].
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    const PREFIX: &'static str = "vk_";

    /// A fresh random key.
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(bytes.as_mut_slice())?;
        let mut text = Zeroizing::new(String::with_capacity(46));
        text.push_str(Self::PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut text);
        Ok(Self(text))
    }

    /// Wraps a presented key (from an `Authorization` header) for hashing.
    pub fn presented(text: &str) -> Self {
        Self(Zeroizing::new(text.to_owned()))
    }

    /// SHA-256 of the key text. The key has 256 random bits, so a fast hash is enough: there is
    /// nothing to brute-force, and lookups stay cheap on every request.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The key text, for showing it once to the operator who created it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey { .. }")
    }
}

/// A request id: `req_` and 22 base62 characters. Always made by the vault (a caller-supplied id
/// could carry anything into logs and the audit trail).
pub fn request_id() -> String {
    random_id("req_").unwrap_or_else(|_| "req_unavailable".to_owned())
}

fn random_id(prefix: &str) -> Result<String, CryptoError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    let mut value = u128::from_be_bytes(bytes);
    let mut chars = [b'0'; ID_CHARS];
    for slot in chars.iter_mut().rev() {
        let digit = usize::try_from(value % 62).unwrap_or(0);
        *slot = BASE62.get(digit).copied().unwrap_or(b'0');
        value /= 62;
    }
    let mut id = String::with_capacity(prefix.len() + ID_CHARS);
    id.push_str(prefix);
    id.extend(chars.iter().map(|&c| char::from(c)));
    Ok(id)
}

fn parse_id(prefix: &str, s: &str) -> bool {
    let Some(body) = s.strip_prefix(prefix) else {
        return false;
    };
    if body.len() != ID_CHARS {
        return false;
    }
    // The value must fit 128 bits, so every id has exactly one spelling.
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use shared::scan;

    use super::*;

    #[test]
    fn tokens_have_the_format_and_parse_back() {
        let t = Token::generate().unwrap();
        assert!(t.as_str().starts_with("tok_"));
        assert_eq!(t.as_str().len(), 26);
        assert_eq!(Token::parse(t.as_str()), Some(t));
        for bad in [
            "",
            "tok_",
            "4242424242424242",
            "tok_4242424242424242",
            "tok_zzzzzzzzzzzzzzzzzzzzzz", // > 2^128
            "tok_0000000000000000000000x",
            "cli_0000000000000000000000",
            "tok_00000000000000000000-0",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad}");
        }
        assert!(Token::parse("tok_0000000000000000000000").is_some());
    }

    #[test]
    fn many_tokens_are_unique_and_never_look_like_pans() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let t = Token::generate().unwrap();
            assert!(scan::find_pans(t.as_str().as_bytes()).is_empty());
            assert!(seen.insert(t));
        }
    }

    #[test]
    fn api_keys_are_random_and_hash_stably() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), ApiKey::presented(a.expose()).hash());
        assert_eq!(a.expose().len(), 46);
        assert_eq!(format!("{a:?}"), "ApiKey { .. }");
    }
}
