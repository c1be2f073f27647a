//! Magic inputs: request values that force an outcome (emulator-only, API.md §9, our own choice).
//!
//! | input | outcome |
//! |---|---|
//! | card number failing Luhn (still 14–19 digits) | payout `failed`, `card_number_does_not_exist` |
//! | card number ending `0002` | `failed`, `declined_by_issuer_bank` |
//! | card number ending `0051` | `failed`, `insufficient_wallet_balance` |
//! | card number ending `0054` | `failed`, `bank_card_expired` |
//! | card number ending `0061` | `failed`, `provider_exceeds_amount_limit` |
//! | amount `1` | `failed`, `amount_less_allowed_provider` |
//! | recipient `full_name` `NO_CONFIRM` | no `ready_to_confirm`; the confirm timeout cancels it |
//! | recipient `full_name` `SLOW_BANK` | every answer about the session comes `slow_delay` late |
//! | recipient `full_name` `SESSION_ERROR` | once executed, the session ends in `error` with its payout `failed` (not final) |
//!
//! Declines are reported asynchronously, in `payment_finished`, once the payout executes (after
//! the confirm, or at once under automatic confirmation).

/// Card endings that force a decline, and the error code each one gives.
pub const CARD_ENDINGS: &[(&str, &str)] = &[
    ("0002", "declined_by_issuer_bank"),
    ("0051", "insufficient_wallet_balance"),
    ("0054", "bank_card_expired"),
    ("0061", "provider_exceeds_amount_limit"),
];

/// The amount that fails with `amount_less_allowed_provider`.
pub const AMOUNT_TOO_SMALL: i64 = 1;

/// Recipient `full_name` for which `ready_to_confirm` never comes.
pub const NO_CONFIRM: &str = "NO_CONFIRM";

/// Recipient `full_name` that makes every answer about the session slow.
pub const SLOW_BANK: &str = "SLOW_BANK";

/// Recipient `full_name` whose session ends in `error` (not final, result unknown) once
/// executed: the case only a person can close (`proxy payouts resolve`).
pub const SESSION_ERROR: &str = "SESSION_ERROR";

/// A Luhn-valid 16-digit card number that starts with `prefix` and ends with `ending`, the digit
/// just before the ending chosen to fix the check digit (one of the ten always does). `None` if
/// the two don't fit in 15 digits or are not all digits.
///
/// `luhn_card("4", "0002")` is a Visa number that the issuer declines.
pub fn luhn_card(prefix: &str, ending: &str) -> Option<String> {
    let fill = 16usize.checked_sub(prefix.len() + ending.len() + 1)?;
    if !prefix
        .bytes()
        .chain(ending.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    (b'0'..=b'9')
        .map(|d| format!("{prefix}{}{}{ending}", "0".repeat(fill), char::from(d)))
        .find(|n| shared::pan::luhn_valid(n.as_bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        assert_eq!(luhn_card("4", "0002").unwrap().len(), 16);
        assert!(luhn_card("4", "0002").unwrap().ends_with("0002"));
        assert!(luhn_card("12345678901234", "00").is_none());
        assert!(luhn_card("4a", "0002").is_none());
    }

    proptest! {
        #[test]
        fn always_luhn_valid(prefix in "[0-9]{1,8}", ending in "[0-9]{4}") {
            let n = luhn_card(&prefix, &ending).unwrap();
            prop_assert!(shared::pan::luhn_valid(n.as_bytes()));
            prop_assert!(n.starts_with(&prefix) && n.ends_with(&ending));
        }
    }
}
