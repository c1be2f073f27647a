//! Checkpoints: the chain's head written outside the database, so that cutting events off the
//! end of the log, or restoring an older database, is detected later.
//!
//! With `audit.checkpoint_file` set, the running vault appends one line per interval (when its
//! head moved) and one at shutdown:
//!
//! ```text
//! {"seq":812,"mac":"<64 hex>","at":"2026-12-01T15:00:00.123456Z","at_us":1764601200123456,"tag":"<64 hex>"}
//! ```
//!
//! `tag` is an HMAC under the audit key over `seq`, `mac` and `at_us`, so a checkpoint cannot be
//! forged or edited by someone without the master key. `vault audit verify` checks every line
//! and that the chain holds each checkpointed link. The file only helps if an attacker who can
//! reach the database cannot also rewrite it: ship each line elsewhere as it is written (a log
//! shipper tailing it, syslog, append-only object storage), and verify against that copy.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::head::Link;
use crate::clock::rfc3339_micros;
use crate::crypto::AuditKey;

/// One checkpoint: a link of the chain and when it was recorded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Checkpoint {
    /// The link.
    pub link: Link,
    /// Unix microseconds.
    pub at: i64,
}

/// A checkpoint file that does not hold up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("audit checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a checkpoint.
    #[error("audit checkpoint file line {line}: not a checkpoint")]
    Malformed {
        /// 1-based.
        line: usize,
    },
    /// A line's tag does not verify: forged or edited, or made with another vault's key.
    #[error(
        "audit checkpoint file line {line}: the tag does not verify (forged, edited, or another vault's)"
    )]
    Forged {
        /// 1-based.
        line: usize,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    mac: String,
    at: String,
    at_us: i64,
    tag: String,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(&self.link.seq.to_be_bytes());
        out.extend_from_slice(&self.link.mac);
        out.extend_from_slice(&self.at.to_be_bytes());
        out
    }

    /// The line for the file (with its newline).
    pub fn to_line(&self, key: &AuditKey) -> String {
        let line = Line {
            seq: self.link.seq,
            mac: hex::encode(self.link.mac),
            at: rfc3339_micros(self.at),
            at_us: self.at,
            tag: hex::encode(key.checkpoint_tag(&self.encode())),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses and authenticates line `number` (1-based) of a file.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Malformed`] or [`CheckpointError::Forged`].
    pub fn from_line(text: &str, number: usize, key: &AuditKey) -> Result<Self, CheckpointError> {
        let malformed = || CheckpointError::Malformed { line: number };
        let line: Line = serde_json::from_str(text).map_err(|_| malformed())?;
        let mut mac = [0u8; 32];
        hex::decode_to_slice(&line.mac, &mut mac).map_err(|_| malformed())?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(&line.tag, &mut tag).map_err(|_| malformed())?;
        let checkpoint = Self {
            link: Link { seq: line.seq, mac },
            at: line.at_us,
        };
        let expected = key.checkpoint_tag(&checkpoint.encode());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &tag[..])) {
            return Err(CheckpointError::Forged { line: number });
        }
        Ok(checkpoint)
    }

    /// Appends this checkpoint to `path` (created 0600) and waits for it to reach the disk.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or written.
    pub fn append_to(&self, path: &Path, key: &AuditKey) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(self.to_line(key).as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

/// Every checkpoint in `path`, authenticated, in file order. A missing file has none.
///
/// # Errors
///
/// An unreadable file, a malformed or forged line.
pub fn read_file(path: &Path, key: &AuditKey) -> Result<Vec<Checkpoint>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    // A last line without its newline is one a crash cut short while it was being written: it
    // never reached the disk whole, so it is not a checkpoint (every whole line must be one).
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    if whole.len() < text.len() {
        tracing::warn!(path = %path.display(), "the audit checkpoint file ends in a partial line (a crash while writing?); ignoring it");
    }
    whole
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Checkpoint::from_line(l, i + 1, key))
        .collect()
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn lines_round_trip_and_edits_are_caught() {
        let key = AuditKey::from_bytes(Zeroizing::new([7; 32]));
        let cp = Checkpoint {
            link: Link {
                seq: 42,
                mac: [9; 32],
            },
            at: 1_764_601_200_123_456,
        };
        let line = cp.to_line(&key);
        assert!(line.ends_with('\n'));
        assert_eq!(Checkpoint::from_line(line.trim(), 1, &key).unwrap(), cp);
        let edited = line.replace("\"seq\":42", "\"seq\":41");
        assert!(matches!(
            Checkpoint::from_line(edited.trim(), 3, &key),
            Err(CheckpointError::Forged { line: 3 })
        ));
        let other = AuditKey::from_bytes(Zeroizing::new([8; 32]));
        assert!(matches!(
            Checkpoint::from_line(line.trim(), 1, &other),
            Err(CheckpointError::Forged { .. })
        ));
        assert!(matches!(
            Checkpoint::from_line("{}", 2, &key),
            Err(CheckpointError::Malformed { line: 2 })
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.jsonl");
        assert!(read_file(&path, &key).unwrap().is_empty());
        cp.append_to(&path, &key).unwrap();
        cp.append_to(&path, &key).unwrap();
        assert_eq!(read_file(&path, &key).unwrap(), vec![cp, cp]);
        // A line cut short by a crash is not a checkpoint, and does not make the file unreadable.
        let torn = &cp.to_line(&key)[..40];
        std::fs::write(
            &path,
            format!("{}{torn}", std::fs::read_to_string(&path).unwrap()),
        )
        .unwrap();
        assert_eq!(read_file(&path, &key).unwrap(), vec![cp, cp]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}
