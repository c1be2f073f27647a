//! Scanning a stream of any length in bounded memory: the bytes are read in chunks and each is
//! scanned with an overlap of the one before, so that a card number across a chunk boundary is
//! found, and found once.
//!
//! A pass scans the buffer `[base, base + len)` and reports the findings that end after the
//! previous pass's cut and at most at its own, `overlap` bytes before the buffer's end (the
//! whole buffer at the end of the stream); the next pass starts `overlap` bytes before the cut.
//! So every finding is reported by exactly one pass, one that saw at least `overlap` bytes
//! around it, and two numbers side by side are both reported.

use std::io::{self, Read};

use super::encoded::{EncodedFinding, find_pans_any_encoding};

/// How a stream is read.
#[derive(Clone, Copy, Debug)]
pub struct StreamScanner {
    /// Bytes read per pass.
    pub chunk: usize,
    /// Bytes of context kept on each side of a chunk boundary: more than any written card
    /// number takes (19 digits with separators, in UTF-16, in base64 of hex is under 1 KiB).
    pub overlap: usize,
}

impl Default for StreamScanner {
    fn default() -> Self {
        Self {
            chunk: 1 << 20,
            overlap: 16 << 10,
        }
    }
}

/// What a scan read.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct StreamStats {
    /// Bytes read.
    pub bytes: u64,
    /// The most bytes held at once (the bound on memory, whatever the stream's length).
    pub peak_buffer: usize,
}

impl StreamScanner {
    /// Reads `reader` to its end and calls `found` with each card number, its range relative
    /// to the start of the stream, in order.
    ///
    /// # Errors
    ///
    /// Reading failed (what was found before is reported already).
    pub fn scan(
        &self,
        mut reader: impl Read,
        mut found: impl FnMut(EncodedFinding),
    ) -> io::Result<StreamStats> {
        let chunk = self.chunk.max(1);
        let overlap = self.overlap;
        let mut buffer: Vec<u8> = Vec::with_capacity(chunk + 2 * overlap);
        let mut base: u64 = 0;
        // Findings ending at or before this (absolute) offset were the previous pass's.
        let mut reported_to: u64 = 0;
        let mut stats = StreamStats::default();
        loop {
            // Fill up to a chunk beyond what is kept.
            let target = buffer.len() + chunk;
            let mut eof = false;
            while buffer.len() < target {
                let old = buffer.len();
                buffer.resize(target, 0);
                match reader.read(&mut buffer[old..]) {
                    Ok(0) => {
                        buffer.truncate(old);
                        eof = true;
                        break;
                    }
                    Ok(n) => buffer.truncate(old + n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => buffer.truncate(old),
                    Err(e) => {
                        buffer.truncate(old);
                        return Err(e);
                    }
                }
            }
            stats.peak_buffer = stats.peak_buffer.max(buffer.len());
            let safe = if eof {
                buffer.len()
            } else {
                buffer.len().saturating_sub(overlap)
            };
            for mut f in find_pans_any_encoding(&buffer) {
                let start = base + to_u64(f.range.start);
                let end = base + to_u64(f.range.end);
                if f.range.end > safe || end <= reported_to {
                    continue;
                }
                f.range = to_usize(start)..to_usize(end);
                found(f);
            }
            reported_to = base + to_u64(safe);
            if eof {
                stats.bytes = base + to_u64(buffer.len());
                return Ok(stats);
            }
            let keep_from = safe.saturating_sub(overlap);
            buffer.drain(..keep_from);
            base += to_u64(keep_from);
        }
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = "4111111111111111";

    fn scan_all(scanner: StreamScanner, data: &[u8]) -> (Vec<EncodedFinding>, StreamStats) {
        let mut found = Vec::new();
        let stats = scanner.scan(data, |f| found.push(f)).unwrap();
        (found, stats)
    }

    #[test]
    fn a_card_number_at_every_position_across_chunk_boundaries_is_found_once() {
        let scanner = StreamScanner {
            chunk: 64,
            overlap: 48,
        };
        for pad in 0..200 {
            let data = format!("{}{PAN} tail", "x".repeat(pad));
            let (found, stats) = scan_all(scanner, data.as_bytes());
            assert_eq!(found.len(), 1, "pad {pad}: {found:?}");
            assert_eq!(found[0].range, pad..pad + PAN.len(), "pad {pad}");
            assert_eq!(stats.bytes, data.len() as u64);
        }
    }

    #[test]
    fn two_numbers_side_by_side_across_a_boundary_are_both_found() {
        let scanner = StreamScanner {
            chunk: 64,
            overlap: 48,
        };
        for pad in 0..120 {
            let data = format!("{}{PAN} 5555555555554444 tail", "x".repeat(pad));
            let (found, _) = scan_all(scanner, data.as_bytes());
            let masked: Vec<&str> = found.iter().map(|f| f.masked.as_str()).collect();
            assert_eq!(
                masked,
                ["411111******1111", "555555******4444"],
                "pad {pad}"
            );
        }
    }

    #[test]
    fn memory_stays_bounded_on_a_long_stream() {
        let scanner = StreamScanner {
            chunk: 4096,
            overlap: 1024,
        };
        // 8 MiB of log lines with a card number at the very end, handed over in reads of
        // whatever size the scanner asks for.
        struct Lines {
            left: usize,
            at: usize,
        }
        impl Read for Lines {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let line: &[u8] =
                    b"2026-12-04T18:00:00Z INFO payout pay_x succeeded amount 150000\n";
                let mut n = 0;
                while n < buf.len() && self.left > 0 {
                    buf[n] = line[self.at];
                    n += 1;
                    self.at += 1;
                    if self.at == line.len() {
                        self.at = 0;
                        self.left -= 1;
                    }
                }
                Ok(n)
            }
        }
        let tail = format!("last line {PAN}\n");
        let reader = Lines {
            left: 130_000,
            at: 0,
        }
        .chain(tail.as_bytes());
        let mut found = Vec::new();
        let stats = scanner.scan(reader, |f| found.push(f)).unwrap();
        assert!(stats.bytes > 8_000_000, "{stats:?}");
        assert!(stats.peak_buffer <= 4096 + 2 * 1024, "{stats:?}");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].masked, "411111******1111");
    }
}
