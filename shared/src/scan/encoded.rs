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
/// Fewest base64 characters that can hold a card number at any alignment.
const MIN_BASE64_RUN: usize = (MIN_LEN * 4).div_ceil(3) + 3;

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
    if depth > 0 {
        for run in runs(haystack, is_hex, MIN_HEX_RUN) {
            layer(haystack, run, Layer::Hex, depth, &mut encoded);
        }
        for run in runs(haystack, is_base64, MIN_BASE64_RUN) {
            layer(haystack, run, Layer::Base64, depth, &mut encoded);
        }
    }
    let mut found: Vec<EncodedFinding> = plain(haystack)
        .into_iter()
        .filter(|p| !encoded.iter().any(|e| overlaps(&e.range, &p.range)))
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
    let mut candidates = card_candidates(haystack);
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

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Decodes `run` of `haystack` as `kind` at each alignment and scans what comes out, one layer
/// deeper; findings are mapped back to the run's bytes.
fn layer(
    haystack: &[u8],
    run: Range<usize>,
    kind: Layer,
    depth: usize,
    out: &mut Vec<EncodedFinding>,
) {
    let text = haystack.get(run.clone()).unwrap_or_default();
    let (alignments, chars, bytes) = match kind {
        Layer::Hex => (2, 2, 1),
        Layer::Base64 => (4, 4, 3),
    };
    let mut seen: Vec<Range<usize>> = Vec::new();
    for align in 0..alignments {
        let Some(decoded) = text.get(align..).and_then(|t| decode(kind, t)) else {
            continue;
        };
        for inner in scan(&decoded, depth - 1) {
            // Decoded byte j came from characters starting at chars * (j / bytes).
            let at = |j: usize| run.start + align + chars * (j / bytes);
            let range = at(inner.range.start)..(at(inner.range.end - 1) + chars).min(run.end);
            // The same number seen at two alignments (nested layers can do that) counts once.
            if seen.iter().any(|r| overlaps(r, &range)) {
                continue;
            }
            seen.push(range.clone());
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

/// Maximal runs of bytes for which `member` holds, at least `min` long.
fn runs(haystack: &[u8], member: fn(u8) -> bool, min: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in haystack.iter().enumerate() {
        match (member(b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= min {
                    out.push(s..i);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start
        && haystack.len() - s >= min
    {
        out.push(s..haystack.len());
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

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn utf16le(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }
}
