//! The state file (`--state-dir`): projects, sessions, counters and used idempotency keys,
//! kept so that a restarted sandbox carries on the payouts a running proxy has in flight.
//!
//! Every change is written through: the guard of the one state lock writes the whole state
//! (to a temporary file, then renamed over the old one) before it releases the lock, so what
//! the sandbox answered is on disk even if it is killed right after. That is a full write per
//! change, cheap at a developer's pace and the reason load tests run without a state directory.
//! Faults, the journal and webhooks in the middle of their retries are not kept: after a
//! restart a session's pending step (`ready_to_confirm`, the confirm timeout, execution) is
//! armed again, and a webhook that was being retried is not sent again (its session's status
//! is still there to be read).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::sandbox::model::Session;
use crate::sandbox::state::{ProjectView, State};

/// What the state file holds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    pub(crate) format: u32,
    pub(crate) counters: Counters,
    pub(crate) projects: Vec<ProjectView>,
    pub(crate) sessions: Vec<Session>,
    /// (project, method, key) of every idempotency key seen.
    pub(crate) idempotency: Vec<(String, String, String)>,
}

impl Snapshot {
    /// The layout version written into the file; a file of another version is refused.
    pub(crate) const FORMAT: u32 = 1;
}

/// The id and transaction counters: kept, so ids go on from where they were.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
pub(crate) struct Counters {
    pub(crate) session: u64,
    pub(crate) payout: u64,
    pub(crate) refund: u64,
    pub(crate) transaction: u64,
}

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state file this sandbox wrote (the message names the place, never a value).
    #[error("{path}: not a sandbox state file ({why}); move it away to start empty")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where and what.
        why: String,
    },
}

/// Reads the state file, or `None` when there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<Snapshot>, StateFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |why: String| StateFileError::Invalid {
        path: path.to_owned(),
        why,
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let snapshot: Snapshot = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_json's own message can quote the value; the path and the line are enough.
        invalid(format!("at {} (line {})", e.path(), e.inner().line()))
    })?;
    if snapshot.format != Snapshot::FORMAT {
        return Err(invalid(format!(
            "format {} where this sandbox writes {}",
            snapshot.format,
            Snapshot::FORMAT
        )));
    }
    Ok(Some(snapshot))
}

/// The one state lock, and the file it writes through to (if any).
#[derive(Debug)]
pub(crate) struct StateCell {
    state: Mutex<State>,
    file: Option<PathBuf>,
}

impl StateCell {
    pub(crate) fn new(state: State, file: Option<PathBuf>) -> Self {
        Self {
            state: Mutex::new(state),
            file,
        }
    }

    /// Locks the state. A guard that was used mutably writes the state file when it drops.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            guard: self.state.lock(),
            file: self.file.as_deref(),
            changed: false,
        }
    }
}

pub(crate) struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    file: Option<&'a Path>,
    changed: bool,
}

impl Deref for StateGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if let (true, Some(file)) = (self.changed, self.file)
            && let Err(e) = write(file, self.guard.snapshot())
        {
            // Nothing to hand the error to from here; the sandbox goes on in memory.
            tracing::error!(error = %e, path = %file.display(), "cannot write the state file");
        }
    }
}

fn write(file: &Path, mut snapshot: Snapshot) -> std::io::Result<()> {
    mask_card_numbers(&mut snapshot);
    let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    crate::stack::write_secret(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// A partner may send anything in the free fields the bank echoes (`participant_details`,
/// `customer`, `metadata`) and in its idempotency keys; a card number there is masked to BIN and
/// last four before the state reaches the disk (the card itself is kept only as [`CardFacts`]).
///
/// [`CardFacts`]: crate::sandbox::model::CardFacts
fn mask_card_numbers(snapshot: &mut Snapshot) {
    use crate::sandbox::journal::masked_text;
    for session in &mut snapshot.sessions {
        let payout_fields = session.payout.as_mut().map(|p| &mut p.fields);
        for fields in std::iter::once(&mut session.fields).chain(payout_fields) {
            for value in [
                &mut fields.participant_details,
                &mut fields.customer,
                &mut fields.metadata,
            ]
            .into_iter()
            .flatten()
            {
                mask_value(value);
            }
        }
    }
    for (_, _, key) in &mut snapshot.idempotency {
        *key = masked_text(key.as_bytes());
    }
}

fn mask_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = crate::sandbox::journal::masked_text(s.as_bytes()),
        // A number that is a card number becomes its masked text.
        Value::Number(n) => {
            let text = n.to_string();
            let masked = crate::sandbox::journal::masked_text(text.as_bytes());
            if masked != text {
                *value = Value::String(masked);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::Object(map) => map.values_mut().for_each(mask_value),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::config::ApiVersion;
    use crate::sandbox::error::{ApiError, Decline};
    use crate::sandbox::model::{Amount, CardFacts, Decision, Fields, Payout, Phase, Refund};

    /// A card number a partner put in a free field or an idempotency key is masked on disk.
    #[test]
    fn card_numbers_in_free_fields_are_masked_on_disk() {
        let pan = "4970100000130001";
        let fields = Fields {
            customer: Some(serde_json::json!({"reference": format!("card {pan}")})),
            metadata: Some(serde_json::json!({"n": 4_970_100_000_130_001_u64, "ok": 42})),
            participant_details: Some(serde_json::json!([pan])),
            ..Fields::default()
        };
        let mut state = State::default();
        state.sessions.insert(
            "ps_1".to_owned(),
            Session::new("ps_1".to_owned(), "p", fields),
        );
        state
            .idempotency
            .insert(("p".to_owned(), "session/create".to_owned(), pan.to_owned()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, state.snapshot()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!shared::scan::contains_pan(
            &bytes,
            &shared::Pan::parse(pan).unwrap()
        ));
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.sessions[0].fields.metadata.as_ref().unwrap()["ok"], 42);
    }

    /// Every name, phase and error a session can hold reads back as the same session.
    #[test]
    fn a_session_reads_back_as_it_was_written() {
        let card = CardFacts::from_number("p", "2200000000000004");
        let amount = Amount {
            amount: 500,
            currency: "rub".to_owned(),
        };
        let fields = Fields {
            amount: Some(amount.clone()),
            card: Some(card.clone()),
            metadata: Some(serde_json::json!({"id": "pay_1"})),
            ..Fields::default()
        };
        let mut sessions = Vec::new();
        for (phase, error) in [
            (Phase::Preparing { silent: true }, None),
            (Phase::AwaitingConfirm, Some(ApiError::internal())),
            (
                Phase::Executing(Decision::Cancelled),
                Some(Decline::ConfirmTimeout.error()),
            ),
            (Phase::Finished, Some(Decline::InsufficientWallet.error())),
        ] {
            let mut s = Session::new(format!("ps_{}", sessions.len()), "p", fields.clone());
            s.enter(phase);
            s.status = "in_progress";
            s.next_action = Some("confirm");
            s.payout = Some(Payout {
                id: "po_1".to_owned(),
                status: "failed",
                created_at: s.created_at.clone(),
                finished_at: None,
                card: card.clone(),
                amount: amount.clone(),
                fields: fields.clone(),
                transaction_info: Some(("131000000001".to_owned(), "000001".to_owned())),
                error,
                refunds: vec![Refund {
                    id: "rf_1".to_owned(),
                    at: s.created_at.clone(),
                    amount: amount.clone(),
                }],
            });
            sessions.push(s);
        }
        let mut state = State::default();
        state.sessions = sessions.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, state.snapshot()).unwrap();
        let back = State::restored(load(&path).unwrap().unwrap(), String::new()).unwrap();
        for s in &sessions {
            let b = &back.sessions[&s.id];
            assert_eq!((b.phase, b.epoch), (s.phase, s.epoch));
            assert_eq!(b.payout.as_ref().unwrap().card, card);
            assert_eq!(b.render(ApiVersion::V1), s.render(ApiVersion::V1));
            assert_eq!(b.render(ApiVersion::V2), s.render(ApiVersion::V2));
        }
    }

    #[test]
    fn a_file_of_another_format_or_shape_is_refused_without_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_none(), "no file is an empty start");
        let mut snapshot = State::default().snapshot();
        write(&path, snapshot.clone()).unwrap();
        assert!(load(&path).unwrap().is_some());
        snapshot.format = 7;
        write(&path, snapshot).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("format 7"), "{e}");
        std::fs::write(
            &path,
            br#"{"format":1,"counters":{"session":"4111111111111111"}}"#,
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("counters.session") && !e.contains("4111"), "{e}");
    }
}
