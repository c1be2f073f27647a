//! The PAN scanner: finds card numbers in bytes or text.
//!
//! A candidate is a run of ASCII digits in which single spaces or dashes may separate digits
//! (`4242 4242 4242 4242`, `4242-4242-4242-4242`). Inside each run every window of 13–19 digits is
//! Luhn-checked, so a PAN glued to other digits is still found. Findings carry the byte offset and
//! a masked value only: the scanner never hands back the digits it found.
//!
//! Every boundary test (logs, database files, HTTP bodies, webhooks) goes through here.

use std::ops::Range;

use crate::card::mask_bin_last4;
use crate::pan::{MAX_LEN, MIN_LEN, Pan, luhn_valid};

/// One Luhn-valid run of 13–19 digits.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Finding {
    /// Byte range in the haystack, separators included.
    pub range: Range<usize>,
    /// At most BIN and last four: `424242******4242`.
    pub masked: String,
}

/// Finds every Luhn-valid 13–19 digit window, left to right, without overlaps (the longest
/// window at each start wins).
pub fn find_pans(haystack: &[u8]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for run in DigitRuns::new(haystack) {
        let n = run.digits.len();
        let mut start = 0;
        while start + MIN_LEN <= n {
            let longest = (MIN_LEN..=MAX_LEN.min(n - start))
                .rev()
                .find(|&len| run.digits.get(start..start + len).is_some_and(luhn_valid));
            match longest {
                Some(len) => {
                    let window = run.digits.get(start..start + len).unwrap_or_default();
                    let first = run.offsets.get(start).copied().unwrap_or_default();
                    let last = run
                        .offsets
                        .get(start + len - 1)
                        .copied()
                        .unwrap_or_default();
                    findings.push(Finding {
                        range: first..last + 1,
                        masked: mask_bin_last4(std::str::from_utf8(window).unwrap_or_default()),
                    });
                    start += len;
                }
                None => start += 1,
            }
        }
    }
    findings
}

/// True when `pan`'s digits appear anywhere in the haystack, also split by single spaces or
/// dashes or surrounded by other digits. Exact, unlike [`find_pans`], whose windows may overlap a
/// PAN with a chance Luhn-valid neighbour.
pub fn contains_pan(haystack: &[u8], pan: &Pan) -> bool {
    let needle = pan.expose().as_bytes();
    DigitRuns::new(haystack).any(|run| run.digits.windows(needle.len()).any(|w| w == needle))
}

/// As [`contains_pan`], also looking for the PAN encoded as UTF-16 (either byte order), hex of
/// its ASCII bytes, and standard or URL-safe base64 of its digits at any of the three alignments.
pub fn contains_pan_any_encoding(haystack: &[u8], pan: &Pan) -> bool {
    if contains_pan(haystack, pan) {
        return true;
    }
    let digits = pan.expose().as_bytes();
    let utf16le: Vec<u8> = digits.iter().flat_map(|&d| [d, 0]).collect();
    let utf16be: Vec<u8> = digits.iter().flat_map(|&d| [0, d]).collect();
    let hex: Vec<u8> = digits
        .iter()
        .flat_map(|d| format!("{d:02x}").into_bytes())
        .collect();
    let mut needles = vec![utf16le, utf16be, hex.clone(), hex.to_ascii_uppercase()];
    // Base64 of the digits at each alignment: the middle of the encoding is stable whatever
    // precedes it, so drop the first and last (possibly partial) quantum.
    for skip in 0..3 {
        let mut padded = vec![b'x'; skip];
        padded.extend_from_slice(digits);
        let encoded = base64_std(&padded);
        let start = 4 * skip.div_ceil(3);
        let end = 4 * ((skip + digits.len()) / 3);
        if let Some(middle) = encoded.get(start..end) {
            needles.push(middle.to_vec());
            needles.push(middle.iter().map(|&b| url_safe(b)).collect());
        }
    }
    needles
        .iter()
        .any(|needle| !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle))
}

/// Replaces every run of 13 or more digits (single spaces or dashes allowed between them) with
/// `[redacted]`, whether or not it passes Luhn. For text that comes from outside and is about to
/// be kept or shown (an error description from a bank, say), where a card number may hide.
pub fn redact_digit_runs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for run in DigitRuns::new(bytes) {
        if run.digits.len() < MIN_LEN {
            continue;
        }
        let (Some(&first), Some(&last)) = (run.offsets.first(), run.offsets.last()) else {
            continue;
        };
        out.push_str(text.get(copied..first).unwrap_or_default());
        out.push_str("[redacted]");
        copied = last + 1;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// True when the haystack holds a run of at least `min_digits` digits (single spaces or dashes
/// allowed between them), Luhn-valid or not. Used to refuse free-text fields that could carry a
/// card number, such as a detokenize purpose.
pub fn has_digit_run(haystack: &[u8], min_digits: usize) -> bool {
    DigitRuns::new(haystack).any(|run| run.digits.len() >= min_digits)
}

/// A run of digits with the byte offset of each digit.
struct DigitRun {
    digits: Vec<u8>,
    offsets: Vec<usize>,
}

/// Iterates over maximal digit runs (single space or dash separators allowed between digits).
struct DigitRuns<'a> {
    haystack: &'a [u8],
    pos: usize,
}

impl<'a> DigitRuns<'a> {
    fn new(haystack: &'a [u8]) -> Self {
        Self { haystack, pos: 0 }
    }
}

impl Iterator for DigitRuns<'_> {
    type Item = DigitRun;

    fn next(&mut self) -> Option<DigitRun> {
        let at = |i: usize| self.haystack.get(i).copied();
        // Skip to the next digit.
        while at(self.pos).is_some_and(|b| !b.is_ascii_digit()) {
            self.pos += 1;
        }
        at(self.pos)?;
        let mut run = DigitRun {
            digits: Vec::new(),
            offsets: Vec::new(),
        };
        loop {
            match at(self.pos) {
                Some(b) if b.is_ascii_digit() => {
                    run.digits.push(b);
                    run.offsets.push(self.pos);
                    self.pos += 1;
                }
                Some(b' ' | b'-') if at(self.pos + 1).is_some_and(|b| b.is_ascii_digit()) => {
                    self.pos += 1;
                }
                _ => return Some(run),
            }
        }
    }
}

fn base64_std(input: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |v: u32, shift: u32| {
        ALPHABET
            .get(((v >> shift) & 63) as usize)
            .copied()
            .unwrap_or(b'=')
    };
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sextet(v, 18));
        out.push(sextet(v, 12));
        out.push(if chunk.len() > 1 { sextet(v, 6) } else { b'=' });
        out.push(if chunk.len() > 2 { sextet(v, 0) } else { b'=' });
    }
    out
}

fn url_safe(b: u8) -> u8 {
    match b {
        b'+' => b'-',
        b'/' => b'_',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pan(s: &str) -> Pan {
        Pan::parse(s).unwrap()
    }

    #[test]
    fn finds_plain_spaced_and_dashed_pans() {
        let text = b"a 4242424242424242 b 5555 5555 5555 4444 c 2200-0000-0000-0004 d";
        let found = find_pans(text);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].masked, "424242******4242");
        assert_eq!(&text[found[0].range.clone()], b"4242424242424242");
        assert_eq!(&text[found[1].range.clone()], b"5555 5555 5555 4444");
        assert_eq!(found[2].masked, "220000******0004");
    }

    #[test]
    fn ignores_short_runs_non_luhn_and_double_separators() {
        assert!(find_pans(b"123456789012").is_empty());
        assert!(find_pans(b"4242424242421").is_empty());
        assert!(find_pans(b"4242  4242  4242  4242").is_empty());
        assert!(find_pans(b"2026-11-24T23:58:10Z").is_empty());
    }

    #[test]
    fn finds_a_pan_glued_to_other_digits() {
        let p = pan("4242424242424242");
        assert!(contains_pan(b"x99424242424242424299x", &p));
        assert!(contains_pan(b"\"pan\":\"4242-4242-4242-4242\"", &p));
        assert!(!contains_pan(b"424242 and 4242", &p));
        assert!(!find_pans(b"99424242424242424299").is_empty());
    }

    #[test]
    fn finds_encoded_pans() {
        let p = pan("5555555555554444");
        let utf16: Vec<u8> = "id=5555555555554444"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(!contains_pan(&utf16, &p));
        assert!(contains_pan_any_encoding(&utf16, &p));
        assert!(contains_pan_any_encoding(
            b"hex 35353535353535353535353534343434",
            &p
        ));
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = base64_std(format!("{prefix}5555555555554444!").as_bytes());
            assert!(contains_pan_any_encoding(&encoded, &p), "prefix {prefix:?}");
        }
        assert!(!contains_pan_any_encoding(b"nothing here 5555", &p));
    }

    #[test]
    fn redacts_long_digit_runs_only() {
        assert_eq!(
            redact_digit_runs("card 4242 4242 4242 4242 declined, ref 123456"),
            "card [redacted] declined, ref 123456"
        );
        assert_eq!(redact_digit_runs("x4242424242424241y"), "x[redacted]y");
        assert_eq!(
            redact_digit_runs("нет карты 2200000000000004."),
            "нет карты [redacted]."
        );
        assert_eq!(redact_digit_runs("no digits"), "no digits");
    }

    #[test]
    fn never_returns_the_digits() {
        let found = find_pans(b"4242424242424242");
        assert!(!format!("{found:?}").contains("4242424242424242"));
    }

    proptest! {
        #[test]
        fn every_valid_pan_is_found_anywhere(s in crate::pan::tests::valid_pan(), before in "[a-z \\n]{0,8}", after in "[a-z \\n]{0,8}") {
            let text = format!("{before}x{s}x{after}");
            let found = find_pans(text.as_bytes());
            prop_assert_eq!(found.len(), 1);
            prop_assert!(contains_pan(text.as_bytes(), &Pan::parse(&s).unwrap()));
        }

        #[test]
        fn scanning_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = find_pans(&bytes);
            let _ = has_digit_run(&bytes, 13);
        }
    }
}
