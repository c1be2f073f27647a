//! Card brands from the BIN, and masking.

use std::fmt;

use serde::Serialize;

/// A card scheme, recognised from the leading digits.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Brand {
    /// American Express: 34, 37.
    Amex,
    /// JCB: 3528–3589.
    Jcb,
    /// Maestro: 50, 56–58, 63, 67.
    Maestro,
    /// Mastercard: 51–55 and 2221–2720.
    Mastercard,
    /// Mir: 2200–2204 (checked before Mastercard's 2-series, which does not overlap it).
    Mir,
    /// UnionPay: 62.
    Unionpay,
    /// Visa: 4.
    Visa,
    /// Anything else.
    Unknown,
}

impl Brand {
    /// Detects the brand from the leading digits of a card number (at least the first four are
    /// needed for the 4-digit ranges; fewer give `Unknown` where a range needs them).
    pub fn from_digits(digits: &str) -> Self {
        let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
        let in_range =
            |n: usize, lo: u32, hi: u32| prefix(n).is_some_and(|p| (lo..=hi).contains(&p));

        if in_range(4, 2200, 2204) {
            Self::Mir
        } else if in_range(4, 2221, 2720) || in_range(2, 51, 55) {
            Self::Mastercard
        } else if digits.starts_with('4') {
            Self::Visa
        } else if in_range(2, 34, 34) || in_range(2, 37, 37) {
            Self::Amex
        } else if in_range(4, 3528, 3589) {
            Self::Jcb
        } else if in_range(2, 62, 62) {
            Self::Unionpay
        } else if in_range(2, 50, 50)
            || in_range(2, 56, 58)
            || in_range(2, 63, 63)
            || in_range(2, 67, 67)
        {
            Self::Maestro
        } else {
            Self::Unknown
        }
    }

    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amex => "amex",
            Self::Jcb => "jcb",
            Self::Maestro => "maestro",
            Self::Mastercard => "mastercard",
            Self::Mir => "mir",
            Self::Unionpay => "unionpay",
            Self::Visa => "visa",
            Self::Unknown => "unknown",
        }
    }

    /// Parses [`Brand::as_str`] back; anything else is `Unknown`.
    pub fn from_name(name: &str) -> Self {
        [
            Self::Amex,
            Self::Jcb,
            Self::Maestro,
            Self::Mastercard,
            Self::Mir,
            Self::Unionpay,
            Self::Visa,
        ]
        .into_iter()
        .find(|b| b.as_str() == name)
        .unwrap_or(Self::Unknown)
    }
}

impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `****` followed by the last four digits given.
pub fn mask_last4(last4: &str) -> String {
    format!("****{last4}")
}

/// Masks a digit string to at most BIN (first 6) and last 4, the most PCI DSS 3.4.1 allows:
/// `424242******4242`. Strings too short to keep 10 digits and hide any are reduced to the last
/// four (or fewer), so masking never reveals more than it hides.
pub fn mask_bin_last4(digits: &str) -> String {
    let n = digits.len();
    if n < 13 {
        return mask_last4(
            digits
                .get(n.saturating_sub(4).max(n / 2)..)
                .unwrap_or_default(),
        );
    }
    let bin = digits.get(..6).unwrap_or_default();
    let last4 = digits.get(n - 4..).unwrap_or_default();
    format!("{bin}{}{last4}", "*".repeat(n - 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands() {
        let cases = [
            ("4242424242424242", Brand::Visa),
            ("5555555555554444", Brand::Mastercard),
            ("5105105105105100", Brand::Mastercard),
            ("2221000000000009", Brand::Mastercard),
            ("2720990000000007", Brand::Mastercard),
            ("2721000000000000", Brand::Unknown),
            ("2200000000000004", Brand::Mir),
            ("2204000000000000", Brand::Mir),
            ("2205000000000000", Brand::Unknown),
            ("378282246310005", Brand::Amex),
            ("341111111111111", Brand::Amex),
            ("6200000000000005", Brand::Unionpay),
            ("6759649826438453", Brand::Maestro),
            ("5018000000000000", Brand::Maestro),
            ("3530111333300000", Brand::Jcb),
            ("3589000000000000", Brand::Jcb),
            ("3590000000000000", Brand::Unknown),
            ("9999999999999995", Brand::Unknown),
        ];
        for (digits, brand) in cases {
            assert_eq!(Brand::from_digits(digits), brand, "{}", &digits[..4]);
            assert_eq!(Brand::from_name(brand.as_str()), brand);
        }
    }

    #[test]
    fn masking_never_shows_more_than_bin_and_last4() {
        for n in 12..=19 {
            let digits: String = "1234567890123456789".chars().take(n).collect();
            let masked = mask_bin_last4(&digits);
            let shown = masked.chars().filter(char::is_ascii_digit).count();
            assert!(shown <= 10, "{n} digits showed {shown}");
            assert!(shown <= n - 3 || n < 13, "{n} digits showed {shown}");
            assert!(mask_last4(&digits[n - 4..]).ends_with(&digits[n - 4..]));
        }
        assert_eq!(mask_bin_last4("4242424242424242"), "424242******4242");
        assert_eq!(mask_last4("4242"), "****4242");
    }
}
