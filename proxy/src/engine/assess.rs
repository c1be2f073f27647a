//! The pure half of the engine: reading a bank session into what it says about one payout
//! ([`assess`]), checking the bank's payout against ours before an automatic confirm, and the
//! bank's error codes as we keep them. No I/O, so every shape the bank may send is a unit test.

use crate::bank131::{
    Amount, NextAction, Payout as BankPayout, PayoutStatus, RefundStatus, Session, SessionStatus,
};
use crate::payout::Payout;

/// What the bank's session says about a payout.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Assessment {
    /// The session has no payout: a start never took effect.
    NotStarted,
    /// The bank is processing the payout.
    InProgress {
        /// `po_…`.
        bank_payout_id: String,
    },
    /// The bank waits for confirm or cancel.
    AwaitingConfirmation {
        /// `po_…`.
        bank_payout_id: String,
    },
    /// The payout went out.
    Succeeded {
        /// `po_…`.
        bank_payout_id: String,
    },
    /// The payout went out and the recipient's bank returned it (`payment_refunded`).
    Returned {
        /// `po_…`.
        bank_payout_id: String,
    },
    /// The payout did not go out.
    Failed {
        /// `po_…`, if the bank named one.
        bank_payout_id: Option<String>,
        /// The bank's error code (see [`bank_error_code`]).
        code: String,
    },
    /// The bank's session is in `error` (not final) or something the proxy cannot interpret.
    Unclear(&'static str),
}

const SESSION_IN_ERROR: &str = "the bank session is in error (not final): check with Bank 131 and close it with `proxy payouts resolve`";

/// Which of the session's payouts is ours (a session may hold several, API.md §14.1): the one
/// whose id we stored, else the one echoing our `payout_id` in its metadata, else the only one
/// if it names no other payout. `Err` when the session holds payouts none of which is
/// identifiably ours.
fn our_payout<'a>(
    session: &'a Session,
    our_id: &str,
    bank_payout_id: Option<&str>,
) -> Result<Option<&'a BankPayout>, &'static str> {
    let list = session.payouts();
    let echoing: Vec<&BankPayout> = list
        .iter()
        .filter(|b| b.our_payout_id() == Some(our_id))
        .collect();
    if echoing.len() > 1 || bank_payout_id.is_some_and(|id| echoing.iter().any(|b| b.id != id)) {
        // More than one payout carries our id: the sign of a second start. Never pick one.
        return Err(
            "the bank session holds more than one payout for this payout: check with Bank 131 at once",
        );
    }
    if let Some(id) = bank_payout_id {
        return list
            .iter()
            .find(|b| b.id == id)
            .map(Some)
            .ok_or("the bank session no longer lists the payout it reported");
    }
    if let Some(b) = echoing.first() {
        return Ok(Some(b));
    }
    match list {
        [] => Ok(None),
        [only] if only.our_payout_id().is_none() => Ok(Some(only)),
        _ => Err("the bank session holds payouts none of which is identifiably this one"),
    }
}

/// Reads a bank session (from `session/status`, a call's answer or a webhook) for payout
/// `our_id`, whose bank payout id is `bank_payout_id` once known.
pub fn assess(session: &Session, our_id: &str, bank_payout_id: Option<&str>) -> Assessment {
    let session_code = || {
        session
            .error
            .as_ref()
            .map(|e| bank_error_code(&e.code, "session_cancelled"))
    };
    let payout = match our_payout(session, our_id, bank_payout_id) {
        Ok(Some(payout)) => payout,
        Ok(None) => {
            return match session.status {
                SessionStatus::Created => Assessment::NotStarted,
                SessionStatus::Cancelled => Assessment::Failed {
                    bank_payout_id: None,
                    code: session_code().unwrap_or_else(|| "session_cancelled".to_owned()),
                },
                SessionStatus::Error => Assessment::Unclear(SESSION_IN_ERROR),
                _ => Assessment::Unclear("the bank session has no payout"),
            };
        }
        Err(why) => return Assessment::Unclear(why),
    };
    let id = payout.id.clone();
    // Returned when the accepted refunds cover the whole payout; a partial return leaves it
    // succeeded (the app's money mostly went out).
    let refunded: i64 = payout
        .refunds
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.status == RefundStatus::Accepted)
        .map(|r| r.amount_details.as_ref().map_or(i64::MAX, |a| a.amount))
        .fold(0, i64::saturating_add);
    let returned = refunded > 0
        && payout
            .amount_details
            .as_ref()
            .is_none_or(|a| refunded >= a.amount);
    // The payout's own code, else the session's, else `fallback`.
    let failure_code = |fallback: &str| {
        payout
            .error
            .as_ref()
            .map(|e| bank_error_code(&e.code, ""))
            .filter(|c| !c.is_empty())
            .or_else(session_code)
            .unwrap_or_else(|| fallback.to_owned())
    };
    match (&payout.status, &session.status) {
        (PayoutStatus::Succeeded, _) if returned => Assessment::Returned { bank_payout_id: id },
        (PayoutStatus::Succeeded, _) => Assessment::Succeeded { bank_payout_id: id },
        (_, SessionStatus::Error) => Assessment::Unclear(SESSION_IN_ERROR),
        (PayoutStatus::Failed, _) => Assessment::Failed {
            bank_payout_id: Some(id),
            code: failure_code("payout_failed"),
        },
        // `next_action` is the signal (API.md §14.6), whatever the payout's own status says.
        _ if session.next_action == Some(NextAction::Confirm) => {
            Assessment::AwaitingConfirmation { bank_payout_id: id }
        }
        // A cancelled session is final (API.md §14.7): a payout it still shows pending or in
        // progress did not go out, and waiting for it would wait forever.
        (_, SessionStatus::Cancelled) => Assessment::Failed {
            bank_payout_id: Some(id),
            code: failure_code("session_cancelled"),
        },
        (PayoutStatus::Pending | PayoutStatus::InProgress, _) => {
            Assessment::InProgress { bank_payout_id: id }
        }
        _ => Assessment::Unclear("the bank reports a payout status the proxy does not know"),
    }
}

/// The bank's error code as the proxy keeps and shows it: a code is `[a-z0-9_]{1,64}` with a
/// letter and no long digit run; anything else (text, or digits that could be a card number)
/// becomes `bank_error`, and an empty one (`null`) `fallback`. Codes reach the app's webhooks
/// and the database, so nothing the bank echoes can ride along.
pub fn bank_error_code(code: &str, fallback: &str) -> String {
    let longest_digit_run = code
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    let fits = code.len() <= 64
        && longest_digit_run < 6
        && code.bytes().any(|b| b.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if fits {
        code.to_owned()
    } else if code.is_empty() {
        fallback.to_owned()
    } else {
        "bank_error".to_owned()
    }
}

/// Auto-confirm: the bank's payout must be for this amount, currency (case-insensitively) and
/// card.
pub(super) fn matches_payout(p: &Payout, session: &Session) -> bool {
    let Ok(Some(bank)) = our_payout(session, p.id.as_str(), p.bank_payout_id()) else {
        return false;
    };
    let amount_ok = bank.amount_details.as_ref().is_some_and(|a| {
        a.same_money(&Amount {
            amount: p.amount,
            currency: p.currency.clone(),
        })
    });
    let card_ok = bank
        .card()
        .and_then(|c| c.last4.as_deref())
        .is_some_and(|last4| Some(last4) == p.card_last4.as_deref());
    amount_ok && card_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(json: &str) -> Session {
        serde_json::from_str(json).unwrap()
    }

    fn ours(json: &str) -> Assessment {
        assess(&session(json), "pay_1", None)
    }

    #[test]
    fn assess_reads_every_documented_shape() {
        let cases = [
            (
                r#"{"id":"ps_1","status":"created"}"#,
                Assessment::NotStarted,
            ),
            (
                r#"{"id":"ps_1","status":"in_progress","payout_list":[{"id":"po_1","status":"in_progress"}]}"#,
                Assessment::InProgress {
                    bank_payout_id: "po_1".into(),
                },
            ),
            (
                r#"{"id":"ps_1","status":"in_progress","next_action":"confirm","payments":[{"id":"po_1","status":"pending"}]}"#,
                Assessment::AwaitingConfirmation {
                    bank_payout_id: "po_1".into(),
                },
            ),
            (
                r#"{"id":"ps_1","status":"in_progress","payout_list":[{"id":"po_1","status":"pending"}]}"#,
                Assessment::InProgress {
                    bank_payout_id: "po_1".into(),
                },
            ),
            (
                r#"{"id":"ps_1","status":"accepted","payout_list":[{"id":"po_1","status":"succeeded"}]}"#,
                Assessment::Succeeded {
                    bank_payout_id: "po_1".into(),
                },
            ),
            (
                r#"{"id":"ps_1","status":"cancelled","payout_list":[{"id":"po_1","status":"failed","error":{"code":"declined_by_issuer_bank"}}]}"#,
                Assessment::Failed {
                    bank_payout_id: Some("po_1".into()),
                    code: "declined_by_issuer_bank".into(),
                },
            ),
        ];
        for (json, want) in cases {
            assert_eq!(ours(json), want, "{json}");
        }
        // A session in `error` is not final, whatever the payout says (API.md §7.2).
        let unclear = ours(
            r#"{"id":"ps_1","status":"error","payout_list":[{"id":"po_1","status":"failed"}]}"#,
        );
        assert!(matches!(unclear, Assessment::Unclear(_)));
    }

    /// API.md §14: what the live bank may send that the sandbox's defaults do not.
    #[test]
    fn assess_reads_the_bank_as_it_is() {
        let cases = [
            // `next_action: confirm` is the signal, whatever the payout's status says.
            (
                r#"{"id":"ps_1","status":"in_progress","next_action":"confirm","payout_list":[{"id":"po_1","status":"in_progress"}]}"#,
                Assessment::AwaitingConfirmation {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // A cancelled session with a payout still pending or in progress is final.
            (
                r#"{"id":"ps_1","status":"cancelled","payout_list":[{"id":"po_1","status":"pending"}]}"#,
                Assessment::Failed {
                    bank_payout_id: Some("po_1".into()),
                    code: "session_cancelled".into(),
                },
            ),
            (
                r#"{"id":"ps_1","status":"cancelled","error":{"code":"confirm_timeout"},"payout_list":[{"id":"po_1","status":"in_progress"}]}"#,
                Assessment::Failed {
                    bank_payout_id: Some("po_1".into()),
                    code: "confirm_timeout".into(),
                },
            ),
            // Several payouts: ours is the one echoing our id, not the first.
            (
                r#"{"id":"ps_1","status":"in_progress","next_action":"confirm","payout_list":[
                    {"id":"po_0","status":"failed","metadata":{"payout_id":"pay_other"}},
                    {"id":"po_1","status":"pending","metadata":{"payout_id":"pay_1"}}]}"#,
                Assessment::AwaitingConfirmation {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // Both spellings in one object (the SDK reads `payout_list` first).
            (
                r#"{"id":"ps_1","status":"accepted","payments":[{"id":"po_1","status":"succeeded"}],"payout_list":[{"id":"po_1","status":"succeeded"}]}"#,
                Assessment::Succeeded {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // Nulls and odd types where strings are expected; a float amount.
            (
                r#"{"id":"ps_1","status":"cancelled","error":null,"payout_list":[{"id":"po_1","status":"failed","created_at":null,"customer":{"reference":null},"amount_details":{"amount":10000.0,"currency":"rub"},"error":{"code":null,"description":null}}]}"#,
                Assessment::Failed {
                    bank_payout_id: Some("po_1".into()),
                    code: "payout_failed".into(),
                },
            ),
            // A code that is not a code is not kept.
            (
                r#"{"id":"ps_1","status":"cancelled","payout_list":[{"id":"po_1","status":"failed","error":{"code":"card 4242424242424242 refused"}}]}"#,
                Assessment::Failed {
                    bank_payout_id: Some("po_1".into()),
                    code: "bank_error".into(),
                },
            ),
            // One unreadable element does not hide ours.
            (
                r#"{"id":"ps_1","status":"accepted","payout_list":[{"id":"po_9","status":{}},{"id":"po_1","status":"succeeded"}]}"#,
                Assessment::Succeeded {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // Returned after success.
            (
                r#"{"id":"ps_1","status":"accepted","payout_list":[{"id":"po_1","status":"succeeded","refunds":[{"id":"rf_1","status":"accepted","amount_details":{"amount":"500","currency":"rub"}}]}]}"#,
                Assessment::Returned {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // A partial return leaves the payout succeeded.
            (
                r#"{"id":"ps_1","status":"accepted","payout_list":[{"id":"po_1","status":"succeeded","amount_details":{"amount":10000,"currency":"rub"},"refunds":[{"id":"rf_1","status":"accepted","amount_details":{"amount":500,"currency":"rub"}}]}]}"#,
                Assessment::Succeeded {
                    bank_payout_id: "po_1".into(),
                },
            ),
            // A return still in progress is not a return yet.
            (
                r#"{"id":"ps_1","status":"accepted","payout_list":[{"id":"po_1","status":"succeeded","refunds":[{"id":"rf_1","status":"in_progress"}]}]}"#,
                Assessment::Succeeded {
                    bank_payout_id: "po_1".into(),
                },
            ),
        ];
        for (json, want) in cases {
            assert_eq!(ours(json), want, "{json}");
        }
        // Payouts none of which is ours: unclear, never someone else's outcome.
        let foreign = r#"{"id":"ps_1","status":"accepted","payout_list":[
            {"id":"po_0","status":"succeeded","metadata":{"payout_id":"pay_other"}}]}"#;
        assert!(matches!(ours(foreign), Assessment::Unclear(_)));
        let two = r#"{"id":"ps_1","status":"accepted","payout_list":[
            {"id":"po_0","status":"failed"},{"id":"po_1","status":"succeeded"}]}"#;
        assert!(matches!(ours(two), Assessment::Unclear(_)));
        // Two payouts carrying our id: the sign of a second start; never picked.
        let doubled = r#"{"id":"ps_1","status":"accepted","payout_list":[
            {"id":"po_0","status":"succeeded","metadata":{"payout_id":"pay_1"}},
            {"id":"po_1","status":"succeeded","metadata":{"payout_id":"pay_1"}}]}"#;
        assert!(matches!(ours(doubled), Assessment::Unclear(_)));
        assert!(matches!(
            assess(&session(doubled), "pay_1", Some("po_1")),
            Assessment::Unclear(_)
        ));
        // Once the bank payout id is stored, it decides.
        assert_eq!(
            assess(&session(two), "pay_1", Some("po_1")),
            Assessment::Succeeded {
                bank_payout_id: "po_1".into()
            }
        );
        assert!(matches!(
            assess(&session(two), "pay_1", Some("po_9")),
            Assessment::Unclear(_)
        ));
    }

    #[test]
    fn bank_error_codes_are_codes_or_nothing() {
        assert_eq!(
            bank_error_code("session_wrong_state", "x"),
            "session_wrong_state"
        );
        assert_eq!(bank_error_code("", "payout_failed"), "payout_failed");
        assert_eq!(bank_error_code("Bad Code", "x"), "bank_error");
        assert_eq!(bank_error_code(&"a".repeat(65), "x"), "bank_error");
        assert_eq!(bank_error_code("4242424242424242", "x"), "bank_error");
        assert_eq!(bank_error_code("e_4242424242424242", "x"), "bank_error");
        assert_eq!(bank_error_code("error_3ds_2", "x"), "error_3ds_2");
    }
}
