//! Hex dumps as tools print them, over many lines: `xxd` (`00000000: 6361 7264  card`),
//! `hexdump -C` (`00000000  63 61 72 64  |card|`) and `tcpdump -X` (`0x0000:  4500 0034  E..4`).
//! Each line is an offset, then groups of hex digits, then (for most tools) the bytes again as
//! text; a card number wrapped from one line to the next is in no single run of hex, so the
//! lines of a dump are read back into the bytes they show, which are then scanned.
//!
//! Written here because this is text layout, not a codec: no crate reads these formats back
//! (`xxd -r` is a program).

use std::ops::Range;

/// The bytes a block of consecutive dump lines shows, where each came from (the offset of its
/// first hex digit), and the span of the block's lines.
pub(super) struct Block {
    pub(super) bytes: Vec<u8>,
    pub(super) at: Vec<usize>,
    /// Byte offset where each line of the block ends (exclusive), in order.
    pub(super) line_ends: Vec<usize>,
    /// Where the block's first line starts.
    pub(super) first_line: usize,
}

impl Block {
    /// The block's lines: read as bytes, not as text (hex digits read as decimal groups would
    /// pass for card numbers now and then).
    pub(super) fn lines(&self) -> Range<usize> {
        self.first_line..self.line_ends.last().copied().unwrap_or(self.first_line)
    }

    /// The span a finding of decoded bytes `range` covers in the haystack: from its first
    /// byte's hex digits to the end of the line of its last byte (so that the text column of
    /// those lines, which may show the same digits, is inside it).
    pub(super) fn span(&self, range: &Range<usize>) -> Option<Range<usize>> {
        let from = *self.at.get(range.start)?;
        let last = *self.at.get(range.end.checked_sub(1)?)?;
        let end = self
            .line_ends
            .iter()
            .copied()
            .find(|&e| e > last)
            .unwrap_or(last + 2);
        Some(from..end)
    }
}

/// The dump blocks in `haystack` (two lines or more: a single line is a hex run already).
pub(super) fn blocks(haystack: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut start = 0;
    while start < haystack.len() {
        let end = haystack
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(haystack.len(), |i| start + i);
        let line = haystack.get(start..end).unwrap_or_default();
        match line_bytes(line, start) {
            Some(parsed) => {
                let block = current.get_or_insert_with(|| Block {
                    bytes: Vec::new(),
                    at: Vec::new(),
                    line_ends: Vec::new(),
                    first_line: start,
                });
                for (byte, at) in parsed {
                    block.bytes.push(byte);
                    block.at.push(at);
                }
                block.line_ends.push(end);
            }
            None => {
                if let Some(block) = current.take()
                    && block.line_ends.len() > 1
                {
                    out.push(block);
                }
            }
        }
        start = end + 1;
    }
    if let Some(block) = current
        && block.line_ends.len() > 1
    {
        out.push(block);
    }
    out
}

/// The bytes one dump line shows, with the offset of each one's hex digits; `None` when the
/// line is not a dump line (no offset first, or no group of hex digits after it).
fn line_bytes(line: &[u8], line_start: usize) -> Option<Vec<(u8, usize)>> {
    // Most lines are not dump lines: the first word says so before anything is allocated.
    let begin = line.iter().position(|b| !b.is_ascii_whitespace())?;
    let offset = line.get(begin..)?;
    let offset = offset
        .get(..offset.iter().position(u8::is_ascii_whitespace)?)
        .unwrap_or_default();
    let is_offset =
        offset.ends_with(b":") || (offset.len() >= 6 && offset.iter().all(u8::is_ascii_hexdigit));
    if !is_offset {
        return None;
    }
    let tokens = tokens(line);
    let (_, rest) = tokens.split_first()?;
    let mut out = Vec::new();
    let mut previous: Option<&Range<usize>> = None;
    for token in rest {
        let text = line.get(token.clone())?;
        let group = text.len() % 2 == 0
            && (2..=8).contains(&text.len())
            && text.iter().all(u8::is_ascii_hexdigit);
        // The text column: after `|` (hexdump -C), or after two spaces that follow groups of
        // four or more digits (xxd, tcpdump; hexdump -C puts two spaces mid-line between
        // single bytes).
        let wide_gap = previous.is_some_and(|p| token.start - p.end >= 2 && p.len() >= 4);
        if !group || text.starts_with(b"|") || wide_gap {
            break;
        }
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let high = char::from(*pair.first()?).to_digit(16)?;
            let low = char::from(*pair.get(1)?).to_digit(16)?;
            let byte = u8::try_from(high * 16 + low).ok()?;
            out.push((byte, line_start + token.start + 2 * i));
        }
        previous = Some(token);
    }
    (!out.is_empty()).then_some(out)
}

/// The whitespace-separated tokens of `line`, as ranges.
fn tokens(line: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..line.len());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A dump line's bytes as its text column shows them: printable ASCII, `.` for the rest.
    fn text_column(line: &[u8]) -> String {
        line.iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect()
    }

    /// `bytes` as `xxd` prints them.
    pub(crate) fn xxd(bytes: &[u8]) -> String {
        let mut out = String::new();
        for (n, line) in bytes.chunks(16).enumerate() {
            let groups: Vec<String> = line
                .chunks(2)
                .map(|g| g.iter().map(|b| format!("{b:02x}")).collect())
                .collect();
            let text = text_column(line);
            out.push_str(&format!(
                "{:08x}: {:<39}  {text}\n",
                n * 16,
                groups.join(" ")
            ));
        }
        out
    }

    /// `bytes` as `hexdump -C` prints them.
    pub(crate) fn hexdump_c(bytes: &[u8]) -> String {
        let mut out = String::new();
        for (n, line) in bytes.chunks(16).enumerate() {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            let (left, right) = hex.split_at(hex.len().min(8));
            let text = text_column(line);
            out.push_str(&format!(
                "{:08x}  {:<23}  {:<23}  |{text}|\n",
                n * 16,
                left.join(" "),
                right.join(" ")
            ));
        }
        out
    }

    #[test]
    fn lines_of_xxd_and_hexdump_read_back_into_their_bytes() {
        let data = b"card=4111111111111111 exp 12/30, and more text to wrap";
        for dump in [xxd(data), hexdump_c(data)] {
            let found = blocks(dump.as_bytes());
            assert_eq!(found.len(), 1, "{dump}");
            assert_eq!(found[0].bytes, data, "{dump}");
        }
        assert!(blocks(b"2026-12-04 INFO a log line\nanother line\n").is_empty());
    }
}
