//! The journal: every bank API request the sandbox received and every webhook it sent or tried
//! to send, for assertions in tests.
//!
//! Request bodies are kept verbatim only for `session/start/payout` and `session/init/payout`,
//! where the card number is expected; any other body has its card-number-like digit runs masked
//! before it is stored, so the journal as a whole holds a PAN only where the protocol put one.

use std::collections::{BTreeMap, VecDeque};

use axum::http::HeaderMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One journal entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A request to the bank API (anything outside `/__sandbox/`).
    Request(RequestRecord),
    /// One webhook attempt (or a webhook that was dropped or had nowhere to go).
    Webhook(WebhookRecord),
}

/// A bank API request and the answer it got.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RequestRecord {
    /// Position in the journal, increasing from 1.
    pub seq: u64,
    /// When it arrived (RFC 3339, microseconds).
    pub at: String,
    /// The HTTP method.
    pub method: String,
    /// The path, e.g. `/api/v2/session/create` (digit runs that look like a PAN masked).
    pub path: String,
    /// Request headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The raw body as (lossy) UTF-8; masked except for start/init payout.
    pub body: String,
    /// The `X-PARTNER-PROJECT` value, if any (masked as headers are).
    pub project: Option<String>,
    /// The HTTP status answered; `None` while the request is still being handled (or hangs).
    pub status: Option<u16>,
    /// The response body; `None` while still being handled.
    pub response: Option<String>,
}

/// One webhook delivery attempt.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct WebhookRecord {
    /// Position in the journal.
    pub seq: u64,
    /// When the attempt finished.
    pub at: String,
    /// `ready_to_confirm`, `payment_finished`, `payment_refunded`.
    pub webhook_type: String,
    /// The session it is about.
    pub session_id: String,
    /// Where it went; `None` when the project has no webhook URL.
    pub url: Option<String>,
    /// The headers sent.
    pub headers: BTreeMap<String, String>,
    /// The exact body sent (and signed).
    pub body: String,
    /// 1 for the first attempt; 0 when nothing was sent (dropped, or no URL).
    pub attempt: u32,
    /// The receiver's HTTP status.
    pub status: Option<u16>,
    /// A transport error, or why nothing was sent.
    pub error: Option<String>,
    /// The fault that shaped this delivery: `dropped`, `duplicate`, `reordered`, `delayed`.
    pub fault: Option<String>,
}

impl JournalEntry {
    /// The sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Request(r) => r.seq,
            Self::Webhook(w) => w.seq,
        }
    }
}

/// The bounded, shared journal.
#[derive(Debug)]
pub(crate) struct Journal {
    inner: Mutex<(u64, VecDeque<JournalEntry>)>,
    limit: usize,
}

impl Journal {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new((0, VecDeque::new())),
            limit: limit.max(1),
        }
    }

    /// Records an arriving request; [`Journal::finish`] fills in the answer.
    pub(crate) fn begin(&self, mut record: RequestRecord) -> u64 {
        let mut inner = self.inner.lock();
        inner.0 += 1;
        record.seq = inner.0;
        self.push(&mut inner.1, JournalEntry::Request(record));
        inner.0
    }

    pub(crate) fn finish(&self, seq: u64, status: u16, response: String) {
        let mut inner = self.inner.lock();
        let found = inner.1.iter_mut().rev().find_map(|e| match e {
            JournalEntry::Request(r) if r.seq == seq => Some(r),
            _ => None,
        });
        if let Some(r) = found {
            r.status = Some(status);
            r.response = Some(response);
        }
    }

    pub(crate) fn webhook(&self, mut record: WebhookRecord) {
        let mut inner = self.inner.lock();
        inner.0 += 1;
        record.seq = inner.0;
        self.push(&mut inner.1, JournalEntry::Webhook(record));
    }

    fn push(&self, entries: &mut VecDeque<JournalEntry>, entry: JournalEntry) {
        if entries.len() >= self.limit {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<JournalEntry> {
        self.inner.lock().1.iter().cloned().collect()
    }

    /// Empties the journal; sequence numbers keep increasing.
    pub(crate) fn clear(&self) {
        self.inner.lock().1.clear();
    }
}

/// Header map as a name → value map (lowercase names; values lossily, card-number-like digit
/// runs masked: no header is a place for a PAN).
pub(crate) fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), masked_text(v.as_bytes())))
        .collect()
}

/// The body as text, with every Luhn-valid 13–19 digit run masked to BIN and last four.
pub(crate) fn masked_text(body: &[u8]) -> String {
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    for finding in shared::scan::find_pans(body) {
        out.extend_from_slice(body.get(pos..finding.range.start).unwrap_or_default());
        out.extend_from_slice(finding.masked.as_bytes());
        pos = finding.range.end;
    }
    out.extend_from_slice(body.get(pos..).unwrap_or_default());
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_removes_pans_only() {
        let text = masked_text(br#"{"n":"4242424242424242","amount":10000,"x":"1234"}"#);
        assert_eq!(
            text,
            r#"{"n":"424242******4242","amount":10000,"x":"1234"}"#
        );
    }
}
