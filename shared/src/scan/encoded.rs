//! Card numbers written in an encoding: hex of their bytes, and base64 (standard or URL-safe)
//! at any alignment, nested up to [`MAX_DEPTH`] layers (base64 of hex, say). Every long enough
//! run of an encoding's alphabet is decoded and what comes out is scanned as the plain bytes
//! are, which covers separators, Unicode digits and UTF-16 there too (UTF-16 needs no layer of
//! its own: its NUL bytes are separators).
//!
//! What counts as a card number is [`card_candidates`]'s rule: 13–19 digits in whole digit
//! groups (separators between groups allowed), Luhn-valid, in a range a card network issues.
//! An auditor's scan of an app's logs must not cry wolf at every 20-digit account number or
//! nanosecond timestamp, so a card number glued to other digits with no separator is not
//! reported here (the boundary tests, which look for known card numbers, do find those:
//! [`super::contains_pan_any_encoding`]). Hex of ASCII digits is itself digits, so where a hex
//! layer finds a card number the plain findings inside the same bytes are dropped in its
//! favour.

use std::fmt;
use std::ops::Range;

use base64::Engine as _;

use super::{Finding, card_candidates};
use crate::pan::MIN_LEN;

/// How many encodings may wrap a card number and it is still found.
pub const MAX_DEPTH: usize = 2;

/// Fewest hex characters that can hold a card number (two per digit).
const MIN_HEX_RUN: usize = 2 * MIN_LEN;
/// Fewest base64 characters that can hold a card number (13 digits encode to 18).
const MIN_BASE64_RUN: usize = (MIN_LEN * 4).div_ceil(3);

/// One encoding a finding was wrapped in.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Layer {
    /// Two hex digits per byte.
    Hex,
    /// Base64, standard or URL-safe alphabet.
    Base64,
}

/// How a card number was written: the layers around it, outermost first (none: plain).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Encoding(pub Vec<Layer>);

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("plain");
        }
        for (i, layer) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" of ")?;
            }
            f.write_str(match layer {
                Layer::Hex => "hex",
                Layer::Base64 => "base64",
            })?;
        }
        Ok(())
    }
}

/// A card number found in some encoding.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct EncodedFinding {
    /// The bytes of the haystack it was found in (the encoded span, for an encoded one).
    pub range: Range<usize>,
    /// At most BIN and last four.
    pub masked: String,
    /// How it was written.
    pub encoding: Encoding,
}

/// Every card number in `haystack`, plain or encoded, in order of position.
pub fn find_pans_any_encoding(haystack: &[u8]) -> Vec<EncodedFinding> {
    let mut found = scan(haystack, MAX_DEPTH);
    found.sort_by_key(|f| (f.range.start, f.range.end));
    found
}

fn scan(haystack: &[u8], depth: usize) -> Vec<EncodedFinding> {
    let mut encoded = Vec::new();
    let mut dumps: Vec<Range<usize>> = Vec::new();
    if depth > 0 {
        // Hex dumps space or colon their bytes (`34 31`, `34:31`, `3431 3131`); base64 is
        // wrapped at 64 or 76 characters (PEM, MIME).
        for run in runs(haystack, is_hex, |b| b == b' ' || b == b':', MIN_HEX_RUN) {
            layer(&run, Layer::Hex, depth, &mut encoded);
        }
        for run in runs(
            haystack,
            is_base64,
            |b| b == b'\n' || b == b'\r',
            MIN_BASE64_RUN,
        ) {
            layer(&run, Layer::Base64, depth, &mut encoded);
        }
        // Hex dumps over many lines (xxd, hexdump -C, tcpdump -X), read back into bytes.
        for block in super::dump::blocks(haystack) {
            dumps.push(block.lines());
            for inner in scan(&block.bytes, depth - 1) {
                if let Some(range) = block.span(&inner.range) {
                    let mut layers = vec![Layer::Hex];
                    layers.extend(inner.encoding.0);
                    encoded.push(EncodedFinding {
                        range,
                        masked: inner.masked,
                        encoding: Encoding(layers),
                    });
                }
            }
        }
    }
    encoded.sort_by_key(|e| (e.range.start, e.range.end));
    // A number a one-line hex run and a dump block both read counts once.
    let mut kept: Vec<EncodedFinding> = Vec::with_capacity(encoded.len());
    for e in encoded {
        let again = kept
            .iter()
            .rev()
            .take_while(|k| k.range.start + MAX_SPAN > e.range.start)
            .any(|k| k.masked == e.masked && overlaps(&k.range, &e.range));
        if !again {
            kept.push(e);
        }
    }
    let mut encoded = kept;
    let mut found: Vec<EncodedFinding> = plain(haystack)
        .into_iter()
        .filter(|p| !overlaps_any(&encoded, &p.range))
        .filter(|p| !dumps.iter().any(|d| overlaps(d, &p.range)))
        .map(|Finding { range, masked }| EncodedFinding {
            range,
            masked,
            encoding: Encoding::default(),
        })
        .collect();
    found.append(&mut encoded);
    found
}

/// [`card_candidates`] without overlaps: a card number followed by more digit groups (an
/// expiry, say) can pass as a longer one too; the earliest start wins, then the shortest
/// span (the card, not the card and what follows).
fn plain(haystack: &[u8]) -> Vec<Finding> {
    let mut candidates: Vec<Finding> = Vec::new();
    for segment in dense_segments(haystack) {
        let base = segment.start;
        for mut f in card_candidates(haystack.get(segment).unwrap_or_default()) {
            f.range = f.range.start + base..f.range.end + base;
            candidates.push(f);
        }
    }
    without_overlaps(candidates)
}

/// Candidates sorted by position, each overlapping an earlier one dropped (earliest start, then
/// shortest span, wins).
fn without_overlaps(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by_key(|f| (f.range.start, f.range.end));
    let mut out: Vec<Finding> = Vec::with_capacity(candidates.len());
    for f in candidates {
        if out
            .last()
            .is_none_or(|last| last.range.end <= f.range.start)
        {
            out.push(f);
        }
    }
    out
}

/// The parts of `haystack` that may hold a run of 13 or more digits, found without allocating:
/// most of a log is not, and building digit runs for every date and amount costs more than
/// reading the bytes. The rule over-approximates the scanner's own ([`card_candidates`]): a run
/// is ended by an ASCII letter or by more than two ASCII separators (quotes free), while a
/// non-ASCII byte, which may belong to a Unicode digit, counts as a digit and ends nothing, and
/// a NUL is free (the scanner lets a lone one be). So every run the scanner would find lies
/// inside a segment.
fn dense_segments(haystack: &[u8]) -> Vec<Range<usize>> {
    const MAX_SEPARATORS: usize = 2;
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = None;
    let mut digits = 0;
    let mut separators = 0;
    let mut last = 0;
    let mut close = |start: &mut Option<usize>, digits: &mut usize, last: usize| {
        if let Some(s) = start.take()
            && *digits >= MIN_LEN
        {
            // A few bytes of margin: the start of a multi-byte character before the first.
            let range = s.saturating_sub(3)..(last + 1).min(haystack.len());
            match out.last_mut() {
                Some(prev) if prev.end >= range.start => prev.end = range.end,
                _ => out.push(range),
            }
        }
        *digits = 0;
    };
    for (i, &b) in haystack.iter().enumerate() {
        if b.is_ascii_digit() || !b.is_ascii() {
            start.get_or_insert(i);
            digits += 1;
            separators = 0;
            last = i;
        } else if b.is_ascii_alphabetic() {
            close(&mut start, &mut digits, last);
        } else if b != b'"' && b != 0 && start.is_some() {
            separators += 1;
            if separators > MAX_SEPARATORS {
                close(&mut start, &mut digits, last);
            }
        }
    }
    close(&mut start, &mut digits, last);
    out
}

/// Whether `r` overlaps a finding of `sorted` (by start). Findings are short (under
/// [`MAX_SPAN`]), so only those starting within that distance before `r` are looked at: a sweep,
/// not a pass over every finding for every other.
fn overlaps_any(sorted: &[EncodedFinding], r: &Range<usize>) -> bool {
    let before_end = sorted.partition_point(|e| e.range.start < r.end);
    sorted
        .get(..before_end)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|e| e.range.start + MAX_SPAN > r.start)
        .any(|e| overlaps(&e.range, r))
}

/// The most bytes one written card number spans, in any encoding the scanner reads (19 digits
/// with separators in UTF-16, in base64 of hex, is under 1 KiB).
const MAX_SPAN: usize = 1 << 16;

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Decodes `run` as `kind` at each alignment and scans what comes out, one layer deeper;
/// findings are mapped back to the haystack's bytes.
fn layer(run: &Run, kind: Layer, depth: usize, out: &mut Vec<EncodedFinding>) {
    let (alignments, chars, bytes) = match kind {
        Layer::Hex => (2, 2, 1),
        Layer::Base64 => (4, 4, 3),
    };
    // (masked, range) of what this run gave, to count a number seen at two alignments once.
    let mut seen: std::collections::HashMap<String, Vec<Range<usize>>> =
        std::collections::HashMap::new();
    for align in 0..alignments {
        let Some(decoded) = run.chars.get(align..).and_then(|t| decode(kind, t)) else {
            continue;
        };
        for inner in scan(&decoded, depth - 1) {
            // Decoded byte j came from the characters from align + chars * (j / bytes) on.
            let first = align + chars * (inner.range.start / bytes);
            let last = (align + chars * ((inner.range.end - 1) / bytes) + chars - 1)
                .min(run.chars.len() - 1);
            let (Some(&from), Some(&to)) = (run.at.get(first), run.at.get(last)) else {
                continue;
            };
            let range = from..to + 1;
            // The same number seen at two alignments (nested layers can do that) counts once;
            // two numbers side by side share an encoded group, and count twice.
            let same = seen.entry(inner.masked.clone()).or_default();
            // Kept sorted by start: the one that could overlap is a neighbour.
            let at = same.partition_point(|r| r.start < range.start);
            let neighbours = at.saturating_sub(1)..(at + 1).min(same.len());
            if same
                .get(neighbours)
                .unwrap_or_default()
                .iter()
                .any(|r| overlaps(r, &range))
            {
                continue;
            }
            same.insert(at, range.clone());
            let mut layers = vec![kind];
            layers.extend(inner.encoding.0);
            out.push(EncodedFinding {
                range,
                masked: inner.masked,
                encoding: Encoding(layers),
            });
        }
    }
}

/// `text` decoded as `kind` from its first character (a last odd hex digit ignored); `None`
/// when it does not decode.
fn decode(kind: Layer, text: &[u8]) -> Option<Vec<u8>> {
    match kind {
        Layer::Hex => text
            .chunks_exact(2)
            .map(|pair| Some(nibble(*pair.first()?)? << 4 | nibble(*pair.get(1)?)?))
            .collect(),
        Layer::Base64 => {
            // A last group of two or three characters holds one or two bytes; a single
            // character holds none.
            let usable = if text.len() % 4 == 1 {
                text.len() - 1
            } else {
                text.len()
            };
            // One alphabet for both: URL-safe characters read as their standard twins.
            let standard: Vec<u8> = text
                .get(..usable)?
                .iter()
                .map(|&b| match b {
                    b'-' => b'+',
                    b'_' => b'/',
                    other => other,
                })
                .collect();
            BASE64.decode(standard).ok()
        }
    }
}

/// Standard base64 read leniently: no padding required, stray low bits allowed (a run cut at
/// an arbitrary character need not end where the encoder did).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// The base64 alphabets, standard and URL-safe, without the padding `=` (which ends a run: two
/// encodings written back to back are two runs).
fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// A run of an encoding's characters, the gap bytes between them left out, and where each
/// character is in the haystack.
struct Run {
    chars: Vec<u8>,
    at: Vec<usize>,
}

/// Maximal runs of bytes for which `member` holds, each of at least `min` characters, allowing
/// up to two `gap` bytes between two characters of one run. Most runs in text are short
/// (words, numbers), so a run is only measured until it ends, and copied out only when long
/// enough.
fn runs(
    haystack: &[u8],
    member: impl Fn(u8) -> bool,
    gap: impl Fn(u8) -> bool,
    min: usize,
) -> Vec<Run> {
    const MAX_GAP: usize = 2;
    let mut out = Vec::new();
    let mut i = 0;
    while i < haystack.len() {
        if !haystack.get(i).is_some_and(|&b| member(b)) {
            i += 1;
            continue;
        }
        // Measure the run from i: its end, and how many characters it holds.
        let start = i;
        let mut count = 0;
        let mut end = i;
        let mut j = i;
        while j < haystack.len() {
            let b = haystack.get(j).copied().unwrap_or_default();
            if member(b) {
                count += 1;
                j += 1;
                end = j;
                continue;
            }
            let gaps = haystack
                .get(j..)
                .unwrap_or_default()
                .iter()
                .take(MAX_GAP + 1)
                .take_while(|&&g| gap(g))
                .count();
            if (1..=MAX_GAP).contains(&gaps) && haystack.get(j + gaps).is_some_and(|&n| member(n)) {
                j += gaps;
                continue;
            }
            break;
        }
        if count >= min {
            let mut run = Run {
                chars: Vec::with_capacity(count),
                at: Vec::with_capacity(count),
            };
            for (k, &b) in haystack
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if member(b) {
                    run.chars.push(b);
                    run.at.push(start + k);
                }
            }
            out.push(run);
        }
        i = end.max(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "4111111111111111";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn labels(haystack: &[u8]) -> Vec<(String, String)> {
        find_pans_any_encoding(haystack)
            .into_iter()
            .map(|f| (f.masked, f.encoding.to_string()))
            .collect()
    }

    #[test]
    fn plain_hex_base64_and_nested_are_each_found_once() {
        let masked = "411111******1111".to_owned();
        let hex = hex_of(PAN.as_bytes());
        for (text, encoding) in [
            (format!("card={PAN} end"), "plain"),
            (format!("dump 0x{hex} end"), "hex"),
            (format!("dump {} end", hex.to_uppercase()), "hex"),
            (format!("blob: {} end", b64(PAN.as_bytes())), "base64"),
            (
                format!("blob: {} end", b64(format!("x{PAN}").as_bytes())),
                "base64",
            ),
            (
                format!("blob: {} end", b64(format!("xy{PAN}").as_bytes())),
                "base64",
            ),
            (
                format!(
                    "{{\"payload\":\"{}\"}}",
                    b64(format!("{{\"pan\":\"{PAN}\"}}").as_bytes())
                ),
                "base64",
            ),
            (
                format!(
                    "b64url {}",
                    b64(PAN.as_bytes()).replace('+', "-").replace('/', "_")
                ),
                "base64",
            ),
            (format!("nested {}", b64(hex.as_bytes())), "base64 of hex"),
            (format!("xxd 00000000: {}", spaced(&hex, 4, " ")), "hex"),
            (format!("wire {}", spaced(&hex, 2, ":")), "hex"),
            (
                format!(
                    "pem\n{}\n",
                    spaced(
                        &b64(format!("{{\"card\":\"{PAN}\"}}").as_bytes()),
                        7,
                        "\r\n"
                    )
                ),
                "base64",
            ),
            (format!("utf16 {}", b64(&utf16le(PAN))), "base64"),
        ] {
            assert_eq!(
                labels(text.as_bytes()),
                [(masked.clone(), encoding.to_owned())],
                "{text}"
            );
        }
    }

    #[test]
    fn spaced_utf16_side_by_side_numbers_and_a_bare_short_card_in_base64_are_all_found() {
        // 15 digits encode to 20 base64 characters, no padding.
        let amex = format!("amex {} end", b64(b"378282246310005"));
        assert_eq!(
            labels(amex.as_bytes()),
            [("378282*****0005".to_owned(), "base64".to_owned())]
        );
        let spaced = utf16le("card 4111 1111 1111 1111 end");
        assert_eq!(
            labels(&spaced),
            [("411111******1111".to_owned(), "plain".to_owned())]
        );
        // Two numbers in one base64 blob share an encoded group: both are reported.
        let pair = b64(format!("{PAN} 5555555555554444").as_bytes());
        assert_eq!(
            labels(pair.as_bytes()),
            [
                ("411111******1111".to_owned(), "base64".to_owned()),
                ("555555******4444".to_owned(), "base64".to_owned())
            ]
        );
    }

    #[test]
    fn a_card_wrapped_across_the_lines_of_a_hex_dump_is_found_once_at_every_offset() {
        use crate::scan::dump::tests::{hexdump_c, xxd};
        for pad in 0..17 {
            let data = format!("{}card={PAN} exp 12/30 end of the record", "x".repeat(pad));
            for (tool, dump) in [
                ("xxd", xxd(data.as_bytes())),
                ("hexdump -C", hexdump_c(data.as_bytes())),
            ] {
                assert_eq!(
                    labels(dump.as_bytes()),
                    [("411111******1111".to_owned(), "hex".to_owned())],
                    "{tool}, pad {pad}:\n{dump}"
                );
            }
        }
    }

    #[test]
    fn a_finding_points_at_the_encoded_bytes() {
        let encoded = b64(format!("pan {PAN} exp 12/30").as_bytes());
        let text = format!("prefix {encoded} suffix");
        let found = find_pans_any_encoding(text.as_bytes());
        assert_eq!(found.len(), 1);
        let span = text.get(found[0].range.clone()).unwrap();
        assert!(encoded.contains(span), "{span} is not inside {encoded}");
    }

    #[test]
    fn clean_text_ids_and_keys_find_nothing() {
        for clean in [
            "2026-12-04T18:14:28Z INFO payout pay_7QveIRNsUE0B4yzZOMB0Vn succeeded",
            "tok_2irmxaa8G8hmSyYQjDSJdV fp_c7hIbzOKFyAObRnFW3a9L0xmHlvTxO2_3pRau2S-G_Y",
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "order ORD-20261201-000123, amount 150000",
            &b64(b"a base64 blob with no card number in it at all, only words"),
        ] {
            assert!(
                labels(clean.as_bytes()).is_empty(),
                "{clean}: {:?}",
                labels(clean.as_bytes())
            );
        }
    }

    /// `text` with `sep` after every `every` characters.
    fn spaced(text: &str, every: usize, sep: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(every)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// What `plain` finds with its pre-filter, found without it.
    fn plain_unfiltered(haystack: &[u8]) -> Vec<Finding> {
        without_overlaps(card_candidates(haystack))
    }

    proptest::proptest! {
        /// The pre-filter never hides a card number: bytes of every kind (digits, separators,
        /// quotes, letters, NULs, full-width digits) around planted cards give what the
        /// unfiltered scan gives.
        #[test]
        fn the_prefilter_loses_nothing(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("4111 1111 1111 1111".to_owned()),
                    proptest::strategy::Just("５５５５５５５５５５５５４４４４".to_owned()),
                    "[0-9]{1,20}",
                    "[ ,.\"/_-]{1,3}",
                    "[a-z]{1,3}",
                    proptest::strategy::Just("\0".to_owned()),
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(plain(text.as_bytes()), plain_unfiltered(text.as_bytes()));
        }

        #[test]
        fn scanning_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = find_pans_any_encoding(&bytes);
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn utf16le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }
}
