//! Identifiers the proxy hands out (payouts, payout links and app clients) and the vault's
//! collect sessions it keeps. Typed, so that a payout id cannot be passed where a client id is
//! meant, and parsed strictly wherever one comes in (a path, a query, a stored row, a vault
//! answer), so that a forged or mistyped value is refused at the edge.

shared::random_id_type!(
    /// A payout: `pay_` and 22 base62 characters.
    PayoutId,
    "pay_"
);

shared::random_id_type!(
    /// An app client: `app_` and 22 base62 characters.
    AppClientId,
    "app_"
);

shared::random_id_type!(
    /// A payout link: `pl_` and 22 base62 characters.
    PayoutLinkId,
    "pl_"
);

shared::random_id_type!(
    /// A collect session at the vault (`cs_` and 22 base62 characters), made by the vault; the
    /// proxy only parses them, from the vault's answers and its own rows.
    CollectSessionId,
    "cs_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_their_own_kind() {
        let p = PayoutId::generate().unwrap();
        let c = AppClientId::generate().unwrap();
        assert_eq!(PayoutId::parse(p.as_str()), Some(p.clone()));
        assert_eq!(AppClientId::parse(c.as_str()), Some(c.clone()));
        assert_eq!(PayoutId::parse(c.as_str()), None);
        assert_eq!(AppClientId::parse(p.as_str()), None);
        for bad in [
            "pay_1",
            "pay_4242424242424242",
            "",
            "PAY_AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(PayoutId::parse(bad), None, "{bad}");
        }
    }
}
