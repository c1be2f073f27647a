//! Secret strings (API keys, webhook secrets, a database URL with its password, passphrases)
//! all in one conventional type, `secrecy`'s [`SecretString`]: zeroized on drop, its `Debug`
//! redacted, its text reached only through [`ExposeSecret::expose_secret`]. Each service wraps
//! it in a newtype only where the secret has behaviour of its own (a key's hash, a URL shown
//! with its password masked).

use zeroize::Zeroize;

pub use secrecy::{ExposeSecret, SecretString};

/// `text` as a secret, leaving no copy behind: copied into an allocation of its exact size, then
/// zeroized (turning a `String` into the boxed `str` a `SecretString` holds may reallocate and
/// free the old buffer unzeroized).
pub fn secret(mut text: String) -> SecretString {
    let kept = SecretString::from(text.as_str());
    text.zeroize();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_keeps_its_text_and_hides_it_from_debug() {
        let mut text = String::with_capacity(64);
        text.push_str("whsec_abc");
        let s = secret(text);
        assert_eq!(s.expose_secret(), "whsec_abc");
        assert!(!format!("{s:?}").contains("abc"));
    }
}
