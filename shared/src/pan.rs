//! The primary account number (PAN) as a secret type.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::card::{self, Brand};

/// Shortest PAN accepted (ISO/IEC 7812 allows 8, but no payout card is shorter than 13).
pub const MIN_LEN: usize = 13;
/// Longest PAN (ISO/IEC 7812).
pub const MAX_LEN: usize = 19;

/// A validated card number: 13–19 ASCII digits passing the Luhn check.
///
/// The digits live in a fixed array (no heap buffer that could be reallocated and leave copies)
/// and are wiped on drop. `Debug` and `Display` show only the last four digits. The type has no
/// `Serialize`: the one place a PAN is written out (the detokenize response) calls
/// [`Pan::expose`] explicitly.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pan {
    digits: [u8; MAX_LEN],
    len: u8,
}

/// Why a string is not a PAN. Messages are fixed and never contain the input.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum PanError {
    /// Something other than ASCII digits and single spaces or dashes between them.
    #[error(
        "a card number may contain only ASCII digits, with single spaces or dashes between them"
    )]
    InvalidCharacter,
    /// Fewer than 13 or more than 19 digits.
    #[error("a card number has 13 to 19 digits")]
    Length,
    /// The Luhn check digit does not match.
    #[error("the card number fails the Luhn check")]
    Luhn,
}

impl Pan {
    /// Parses a card number: ASCII digits, optionally grouped with single spaces or dashes
    /// (`4242 4242 4242 4242`, `4242-4242-4242-4242`), 13–19 digits, Luhn-valid.
    ///
    /// # Errors
    ///
    /// [`PanError`] says which rule failed, never what the input was.
    pub fn parse(input: &str) -> Result<Self, PanError> {
        Self::parse_bytes(input.as_bytes())
    }

    /// [`Pan::parse`] over bytes.
    ///
    /// # Errors
    ///
    /// As [`Pan::parse`].
    pub fn parse_bytes(input: &[u8]) -> Result<Self, PanError> {
        let mut pan = Self {
            digits: [0; MAX_LEN],
            len: 0,
        };
        let mut len = 0usize;
        let mut previous_was_digit = false;
        for &byte in input {
            match byte {
                b'0'..=b'9' => {
                    if len == MAX_LEN {
                        return Err(PanError::Length);
                    }
                    if let Some(slot) = pan.digits.get_mut(len) {
                        *slot = byte;
                    }
                    len += 1;
                    previous_was_digit = true;
                }
                b' ' | b'-' if previous_was_digit => previous_was_digit = false,
                _ => return Err(PanError::InvalidCharacter),
            }
        }
        if len > 0 && !previous_was_digit {
            // A trailing separator.
            return Err(PanError::InvalidCharacter);
        }
        if len < MIN_LEN {
            return Err(PanError::Length);
        }
        pan.len = u8::try_from(len).map_err(|_| PanError::Length)?;
        if !luhn_valid(pan.digits_slice()) {
            return Err(PanError::Luhn);
        }
        Ok(pan)
    }

    /// The digits, for the few places that must have them: encryption, the fingerprint HMAC, the
    /// detokenize response, the bank's start body, and the scanner looking for them. Every call
    /// site is a boundary crossing; keep them greppable.
    pub fn expose(&self) -> &str {
        // The array holds only ASCII digits (checked in `parse_bytes`), so this cannot fail.
        std::str::from_utf8(self.digits_slice()).unwrap_or_default()
    }

    /// Number of digits (13–19).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a PAN has at least 13 digits. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first six digits (the BIN/IIN), which PCI DSS allows to be shown.
    pub fn bin(&self) -> &str {
        self.expose().get(..6).unwrap_or_default()
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        let digits = self.expose();
        digits
            .get(digits.len().saturating_sub(4)..)
            .unwrap_or_default()
    }

    /// The card brand, from the BIN.
    pub fn brand(&self) -> Brand {
        Brand::from_digits(self.expose())
    }

    /// `****4242`: the default way to show a card.
    pub fn masked(&self) -> String {
        card::mask_last4(self.last4())
    }

    fn digits_slice(&self) -> &[u8] {
        self.digits.get(..self.len()).unwrap_or_default()
    }
}

impl PartialEq for Pan {
    /// Constant time, so comparing PANs leaks no prefix length.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && bool::from(self.digits.ct_eq(&other.digits))
    }
}

impl Eq for Pan {}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The Luhn (mod 10) check over ASCII digits. Returns false for any non-digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &byte) in digits.iter().rev().enumerate() {
        if !byte.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(byte - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_test_pans_in_every_spelling() {
        for input in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "5555555555554444",
            "2200000000000004",
            "378282246310005",
        ] {
            let pan = Pan::parse(input).unwrap();
            assert!(pan.len() >= 13);
        }
        assert_eq!(
            Pan::parse("4242 4242 4242 4242").unwrap().expose(),
            "4242424242424242"
        );
    }

    #[test]
    fn rejects_bad_input_with_the_right_reason() {
        let cases = [
            ("", PanError::Length),
            ("424242424242", PanError::Length), // 12 digits
            ("42424242424242424242", PanError::Length), // 20 digits
            ("4242424242424241", PanError::Luhn),
            ("4242x42424242424", PanError::InvalidCharacter),
            ("4242  4242 4242 4242", PanError::InvalidCharacter), // double space
            (" 4242424242424242", PanError::InvalidCharacter),
            ("4242424242424242 ", PanError::InvalidCharacter),
            (
                "４２４２４２４２４２４２４２４２",
                PanError::InvalidCharacter,
            ), // fullwidth
            ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", PanError::InvalidCharacter), // Arabic-Indic
            ("4242\t4242 4242 4242", PanError::InvalidCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(
                Pan::parse(input).unwrap_err(),
                want,
                "input #{}",
                input.len()
            );
        }
    }

    #[test]
    fn debug_and_display_show_last_four_only() {
        let pan = Pan::parse("4242424242424242").unwrap();
        assert_eq!(format!("{pan:?}"), "Pan(****4242)");
        assert_eq!(format!("{pan}"), "****4242");
        assert_eq!(format!("{:?}", PanError::Luhn), "Luhn");
        assert_eq!(pan.bin(), "424242");
        assert_eq!(pan.last4(), "4242");
        assert_eq!(pan.brand(), Brand::Visa);
    }

    // A PAN cannot be serialized by accident, nor copied implicitly (a `Copy` type is never
    // zeroized).
    static_assertions::assert_not_impl_any!(Pan: serde::Serialize, Copy);
    static_assertions::assert_impl_all!(Pan: ZeroizeOnDrop);

    #[test]
    fn equality_is_by_digits() {
        let a = Pan::parse("4242 4242 4242 4242").unwrap();
        let b = Pan::parse("4242424242424242").unwrap();
        let c = Pan::parse("5555555555554444").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// Generates Luhn-valid PANs of 13–19 digits.
    pub(crate) fn valid_pan() -> impl Strategy<Value = String> {
        (12usize..=18).prop_flat_map(|body_len| {
            proptest::collection::vec(0u8..10, body_len).prop_map(|body| {
                let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
                digits.push(b'0');
                for check in b'0'..=b'9' {
                    if let Some(last) = digits.last_mut() {
                        *last = check;
                    }
                    if luhn_valid(&digits) {
                        break;
                    }
                }
                String::from_utf8(digits).unwrap()
            })
        })
    }

    proptest! {
        #[test]
        fn every_generated_valid_pan_parses(s in valid_pan()) {
            let pan = Pan::parse(&s).unwrap();
            prop_assert_eq!(pan.expose(), s.as_str());
            let shown = format!("{:?}", pan);
            prop_assert!(!shown.contains(&s));
        }

        #[test]
        fn changing_one_digit_breaks_luhn(s in valid_pan(), pos in 0usize..19, delta in 1u8..10) {
            let mut bytes = s.into_bytes();
            let pos = pos % bytes.len();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            prop_assert_eq!(Pan::parse_bytes(&bytes).unwrap_err(), PanError::Luhn);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Pan::parse(&s);
        }
    }
}
