//! The PAN scanner: finds card numbers in bytes or text.
//!
//! A candidate is a run of decimal digits (ASCII or any Unicode decimal digit, such as full-width
//! `４２４２`) in which up to two non-alphanumeric characters may separate digits (`4242 4242`,
//! `4242-4242`, `4242.4242`, `4242/4242`, `4242_4242`, `4242  4242`, the `,` of a JSON array of
//! numbers, the `","` of an array of strings (quotes are not counted), the NUL bytes of UTF-16).
//! Inside each run every window of 13–19 digits is
//! Luhn-checked, so a PAN glued to other digits is still found. Findings carry the byte offset and
//! a masked value only: the scanner never hands back the digits it found.
//!
//! Every boundary test (logs, database files, HTTP bodies, webhooks) goes through here and reports
//! every Luhn-valid window; [`encoded`] finds them in hex and base64 too, [`stream`] in a stream
//! of any length, and [`paths`] is `vault scan` / `proxy scan` over files and directories. Input checks, which must not refuse order ids and account numbers,
//! use [`card_candidates`] instead: whole runs in an issued card range.
//!
//! Long because its tests (a third of the file) pin every encoding and separator the scanner
//! knows next to the code that reads them.

mod dump;
pub mod encoded;
pub mod paths;
pub mod stream;

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
                    let last = run.ends.get(start + len - 1).copied().unwrap_or_default();
                    findings.push(Finding {
                        range: first..last,
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

/// True when `pan`'s digits appear anywhere in the haystack, also split by separators (as in
/// [`find_pans`]), in Unicode digits or surrounded by other digits. Exact, unlike [`find_pans`], whose windows may overlap a
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

/// `text` with the digits of every run of 13 or more (separators allowed, as in [`find_pans`])
/// masked but the run's first six and last four: for text a report must show, such as a file's
/// path, that might hold a card number. Masking whole runs, not Luhn windows, is what keeps a
/// card glued to a date (`20261204-5555555555554444`) from showing all but a few digits.
pub fn mask_pans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for run in DigitRuns::new(bytes) {
        let n = run.digits.len();
        if n < MIN_LEN {
            continue;
        }
        for i in 6..n - 4 {
            let (Some(&from), Some(&to)) = (run.offsets.get(i), run.ends.get(i)) else {
                continue;
            };
            out.push_str(text.get(copied..from).unwrap_or_default());
            out.push('*');
            copied = to;
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Replaces every run of 13 or more digits (separators allowed between them, as in [`find_pans`]) with
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
        let (first, last) = (run.start(), run.end());
        out.push_str(text.get(copied..first).unwrap_or_default());
        out.push_str("[redacted]");
        copied = last;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// True when the haystack holds a run of at least `min_digits` digits (separators allowed between
/// them, as in [`find_pans`]), Luhn-valid or not. Used to refuse free-text fields that could carry a
/// card number, such as a detokenize purpose.
pub fn has_digit_run(haystack: &[u8], min_digits: usize) -> bool {
    DigitRuns::new(haystack).any(|run| run.digits.len() >= min_digits)
}

/// Card candidates for input checks: within each run, every span of whole digit groups (the
/// digits between separators) that holds 13–19 digits, passes Luhn and starts in a range a card
/// network issues ([`issued_range`]). A number glued to other digits without a separator (a
/// 20-digit account number, a PAN inside a longer number) is not split, so account numbers,
/// millisecond timestamps, `ORD-20261201-000123` and Luhn failures are not candidates, while
/// `4242.4242.4242.4242`, `４２４２…`, `4242424242424242 12/25` and `4242424242424242.0` are.
pub fn card_candidates(haystack: &[u8]) -> Vec<Finding> {
    let mut found = Vec::new();
    for run in DigitRuns::new(haystack) {
        let mut bounds = run.groups.clone();
        bounds.push(run.digits.len());
        for (i, &start) in bounds.iter().enumerate() {
            for &end in bounds.iter().skip(i + 1) {
                let len = end - start;
                if len > MAX_LEN {
                    break;
                }
                let Some(digits) = run.digits.get(start..end) else {
                    continue;
                };
                if len >= MIN_LEN && luhn_valid(digits) && issued_range(digits) {
                    found.push(Finding {
                        range: run.offsets.get(start).copied().unwrap_or_default()
                            ..run.ends.get(end - 1).copied().unwrap_or_default(),
                        masked: mask_bin_last4(std::str::from_utf8(digits).unwrap_or_default()),
                    });
                }
            }
        }
    }
    found
}

/// Whether ASCII `digits` start in a range issued by Visa (4), Mastercard (51–55, 2221–2720), Mir
/// (2200–2204), American Express (34, 37), Diners Club (300–305, 36, 38–39), JCB (3528–3589),
/// Discover (6011, 644–649, 65), UnionPay (62, 81), Maestro (50, 56–69), or a national scheme a
/// Russian bank pays to: UzCard (8600), Humo (9860), Belkart (9112), ArCa (9051), Troy (9792); or
/// UATP (1, 15 digits only, so that 13-digit millisecond timestamps are not cards).
pub fn issued_range(digits: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        digits
            .iter()
            .take(n)
            .fold(0, |acc, d| acc * 10 + u32::from(d.saturating_sub(b'0')))
    };
    matches!(prefix(1), 4..=6)
        || matches!(prefix(2), 34 | 36..=39 | 81)
        || matches!(prefix(3), 300..=305)
        || matches!(
            prefix(4),
            2200..=2204 | 2221..=2720 | 3528..=3589 | 8600 | 9051 | 9112 | 9792 | 9860
        )
        || (prefix(1) == 1 && digits.len() == 15)
}

/// A run of digits (normalised to ASCII) with the byte range of each digit.
struct DigitRun {
    digits: Vec<u8>,
    offsets: Vec<usize>,
    ends: Vec<usize>,
    /// The index in `digits` where each group (digits between separators) starts.
    groups: Vec<usize>,
}

impl DigitRun {
    fn start(&self) -> usize {
        self.offsets.first().copied().unwrap_or_default()
    }

    fn end(&self) -> usize {
        self.ends.last().copied().unwrap_or_default()
    }
}

/// Most non-alphanumeric characters allowed between two digits of one run (quotes not counted,
/// so that the elements of a JSON array of strings join as those of an array of numbers do).
const MAX_SEPARATORS: usize = 2;

/// What one character of the haystack is, for the run builder.
#[derive(Clone, Copy)]
enum Class {
    /// A decimal digit, as its ASCII digit.
    Digit(u8),
    /// A letter or another numeric character: ends a run.
    Alphanumeric,
    /// Anything else (punctuation, spaces, controls, undecodable bytes): may separate digits.
    Separator,
}

/// The class and byte length of the character at `i`, decoding UTF-8 leniently (an invalid byte is
/// a one-byte separator).
fn class_at(h: &[u8], i: usize) -> Option<(Class, usize)> {
    let b = *h.get(i)?;
    if b.is_ascii() {
        let class = if b.is_ascii_digit() {
            Class::Digit(b)
        } else if b.is_ascii_alphanumeric() {
            Class::Alphanumeric
        } else {
            Class::Separator
        };
        return Some((class, 1));
    }
    let len = match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Some((Class::Separator, 1)),
    };
    let Some(c) = h
        .get(i..i + len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|s| s.chars().next())
    else {
        return Some((Class::Separator, 1));
    };
    let class = match unicode_digit(c) {
        Some(d) => Class::Digit(d),
        None if c.is_alphanumeric() => Class::Alphanumeric,
        None => Class::Separator,
    };
    Some((class, len))
}

/// The code points of the zeros of Unicode's decimal-digit blocks (general category Nd, UCD 15):
/// each is followed by the nine other digits in order. Written here because std has no decimal
/// value for non-ASCII digits and no maintained crate is lighter than this table.
const UNICODE_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// A non-ASCII decimal digit as its ASCII digit.
fn unicode_digit(c: char) -> Option<u8> {
    if !c.is_numeric() {
        return None;
    }
    let cp = u32::from(c);
    let zero = match UNICODE_ZEROS.binary_search(&cp) {
        Ok(i) => UNICODE_ZEROS.get(i),
        Err(0) => None,
        Err(i) => UNICODE_ZEROS.get(i - 1),
    }?;
    let value = cp - zero;
    (value < 10).then(|| b'0' + u8::try_from(value).unwrap_or(0))
}

/// Iterates over maximal digit runs (up to [`MAX_SEPARATORS`] non-alphanumeric characters allowed
/// between digits).
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
        // Skip to the next digit.
        loop {
            let (class, len) = class_at(self.haystack, self.pos)?;
            if matches!(class, Class::Digit(_)) {
                break;
            }
            self.pos += len;
        }
        let mut run = DigitRun {
            digits: Vec::new(),
            offsets: Vec::new(),
            ends: Vec::new(),
            groups: vec![0],
        };
        loop {
            let Some((Class::Digit(d), len)) = class_at(self.haystack, self.pos) else {
                return Some(run);
            };
            run.digits.push(d);
            run.offsets.push(self.pos);
            run.ends.push(self.pos + len);
            self.pos += len;
            // Up to two separators, then a digit, continue the run.
            let mut ahead = self.pos;
            let mut separators = 0;
            loop {
                match class_at(self.haystack, ahead) {
                    // A quote costs nothing: `"4242","4242"` is one run, as `4242,4242` is.
                    Some((Class::Separator, 1)) if self.haystack.get(ahead) == Some(&b'"') => {
                        ahead += 1;
                    }
                    // Nor does a lone NUL: the high bytes of UTF-16, so that `4111 1111` in
                    // UTF-16 (NUL, space, NUL between the groups) is one run as it is in
                    // ASCII. Two NULs in a row are padding, and count.
                    Some((Class::Separator, 1))
                        if self.haystack.get(ahead) == Some(&0)
                            && self.haystack.get(ahead + 1) != Some(&0) =>
                    {
                        ahead += 1;
                    }
                    Some((Class::Separator, len)) if separators < MAX_SEPARATORS => {
                        separators += 1;
                        ahead += len;
                    }
                    Some((Class::Digit(_), _)) => {
                        if ahead != self.pos {
                            run.groups.push(run.digits.len());
                        }
                        self.pos = ahead;
                        break;
                    }
                    _ => return Some(run),
                }
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
        // UTF-16's NUL bytes are separators: the plain scan finds it too.
        assert!(contains_pan(&utf16, &p));
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

    /// The attack spellings of issue 11 §4: each is found by the boundary scan and is a card
    /// candidate for the input check.
    #[test]
    fn finds_the_attack_spellings() {
        let fullwidth: String = "4242424242424242"
            .chars()
            .map(|c| char::from_u32(0xFF10 + u32::from(c) - u32::from('0')).unwrap())
            .collect();
        let arabic_indic: String = "5555555555554444"
            .chars()
            .map(|c| char::from_u32(0x0660 + u32::from(c) - u32::from('0')).unwrap())
            .collect();
        let spellings = [
            "4242424242424242".to_owned(),
            "4242.4242.4242.4242".to_owned(),
            "5555/5555/5555/4444".to_owned(),
            "4242_4242_4242_4242".to_owned(),
            "4242  4242  4242  4242".to_owned(),
            "4242-_4242-_4242-_4242".to_owned(),
            "card: 2200 0000 0000 0004!".to_owned(),
            fullwidth,
            arabic_indic,
            "[4242,4242,4242,4242]".to_owned(),
            r#"["4000","0566","5566","5556"]"#.to_owned(),
        ];
        for text in &spellings {
            assert_eq!(find_pans(text.as_bytes()).len(), 1, "{text}");
            assert_eq!(card_candidates(text.as_bytes()).len(), 1, "{text}");
            assert_eq!(
                redact_digit_runs(text).matches("[redacted]").count(),
                1,
                "{text}"
            );
        }
        // Other digits beside the card, after a separator, do not hide it from the input check.
        for text in [
            "4242424242424242 12/25",
            "4242424242424242 123",
            "4242424242424242.0",
            "Ivan 4242424242424242 1",
            "pan-4242424242424242-1",
            "9860000000000000",
            "8600000000000007",
        ] {
            assert!(!card_candidates(text.as_bytes()).is_empty(), "{text}");
        }
    }

    /// Ordinary marketplace data is not a card candidate, whatever the boundary scan says.
    #[test]
    fn card_candidates_spare_what_is_not_a_card() {
        for text in [
            "ORD-20261201-000123",
            "1796134768000",
            "40817810099910004312",
            "1234567890123",
            "order 1001, amount 150000",
            "2026-12-01T18:29:54.014285Z",
            "+7 (912) 345-67-89",
            // Luhn-valid, but no network issues cards starting with 7, 9 (but its national
            // schemes) or 0, nor 16 digits starting with 1.
            "1000000000000008",
            "9000000000000008",
            "7000000000000005",
            // A PAN inside a longer run is not a whole-run candidate (the scan still finds it).
            "004242424242424242424242",
        ] {
            assert!(card_candidates(text.as_bytes()).is_empty(), "{text}");
        }
        assert!(!find_pans(b"004242424242424242424242").is_empty());
    }

    #[test]
    fn issued_ranges() {
        for (digits, issued) in [
            ("4", true),
            ("51", true),
            ("55", true),
            ("2221", true),
            ("2720", true),
            ("2721", false),
            ("2200", true),
            ("2204", true),
            ("2205", false),
            ("34", true),
            ("35", false),
            ("3528", true),
            ("37", true),
            ("300", true),
            ("306", false),
            ("6011", true),
            ("62", true),
            ("81", true),
            ("1", false),
            ("7", false),
            ("9", false),
            ("0", false),
        ] {
            let mut padded = digits.as_bytes().to_vec();
            padded.resize(16, b'0');
            assert_eq!(issued_range(&padded), issued, "{digits}");
        }
    }

    #[test]
    fn unicode_digits() {
        assert_eq!(unicode_digit('٣'), Some(b'3'));
        assert_eq!(unicode_digit('９'), Some(b'9'));
        assert_eq!(unicode_digit('½'), None);
        assert_eq!(unicode_digit('Ⅻ'), None);
        assert_eq!(unicode_digit('a'), None);
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
