//! Identifiers the vault hands out: tokens, client ids, API keys and request ids.

shared::random_id_type!(
    /// A card token: `tok_` and 22 base62 characters. Never derived from the PAN, and never
    /// mistakable for one (it has letters and a prefix).
    Token,
    "tok_"
);

shared::random_id_type!(
    /// An API client id: `cli_` and 22 base62 characters.
    ClientId,
    "cli_"
);

/// An API key: `vk_` and 43 base64url characters (256 random bits). Shown once at creation;
/// the vault keeps only its hash.
pub use shared::ids::ApiKey;

/// The prefix of vault API keys.
pub const API_KEY_PREFIX: &str = "vk_";

/// A request id: `req_` and 22 base62 characters, unique (not secret: it is in the response).
/// Always made by the vault (a caller-supplied id could carry anything into logs and the audit
/// trail). Made without a system call: one per request cost about 1% of the vault's CPU.
pub fn request_id() -> String {
    shared::ids::unique_id("req_")
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
        let a = ApiKey::generate(API_KEY_PREFIX).unwrap();
        let b = ApiKey::generate(API_KEY_PREFIX).unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), ApiKey::presented(a.expose()).hash());
        assert_eq!(a.expose().len(), 46);
        assert_eq!(format!("{a:?}"), "ApiKey { .. }");
    }
}
