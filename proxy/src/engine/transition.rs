//! The state machine as two tables: for a payout waiting on a bank call whose outcome is not
//! known, which call comes next once the session is read ([`next_call`]); and what a bank
//! session, read into an [`Assessment`], makes of a payout in its current state ([`verdict`]).
//! Pure: the driver (`Engine::reconcile`, `Engine::apply`) does what they say (saves, events,
//! calls, the next look), so every row is unit-tested here without a bank or a database.

use super::assess::Assessment;
use crate::payout::{CancelReason, Payout, PayoutState};

/// Said when the start was given up on and the bank shows the cancelled, empty session we
/// asked for: not proof that nothing was paid.
pub(super) const START_ATTENTION: &str = "the bank never showed this payout's start after repeated sends; the session was cancelled: check with Bank 131 and close it with `proxy payouts resolve`";

/// What the bank's session means for the payout.
#[derive(Debug, Eq, PartialEq)]
pub(super) enum Verdict<'a> {
    /// Nothing new: the session holds no payout yet.
    Nothing,
    /// Stay, flagged for a person (`attention`), and look again later: nothing went wrong.
    Hold {
        /// What the person must do.
        attention: &'static str,
    },
    /// The session cannot be read as an outcome: flag it and retry with backoff.
    Unclear(&'static str),
    /// Move forward to `to` (the driver checks the move is forward).
    Move {
        /// The next state.
        to: PayoutState,
        /// The bank's payout id, when the session names one.
        bank_payout_id: Option<&'a str>,
        /// A return seen before the success (a missed webhook): record the success first, so
        /// the app hears both, in order.
        via_success: bool,
        /// When the bank did not pay and the payout was not being cancelled on purpose: the
        /// bank's code and the message the app sees.
        failure: Option<(&'a str, &'static str)>,
    },
}

fn to<'a>(to: PayoutState, bank_payout_id: &'a str) -> Verdict<'a> {
    Verdict::Move {
        to,
        bank_payout_id: Some(bank_payout_id),
        via_success: false,
        failure: None,
    }
}

/// The table.
pub(super) fn verdict<'a>(p: &Payout, assessment: &'a Assessment) -> Verdict<'a> {
    let cancelling = p.state == PayoutState::Cancelling;
    match assessment {
        Assessment::NotStarted => Verdict::Nothing,
        Assessment::InProgress { bank_payout_id } => to(PayoutState::Started, bank_payout_id),
        Assessment::AwaitingConfirmation { bank_payout_id } => {
            to(PayoutState::AwaitingConfirmation, bank_payout_id)
        }
        Assessment::Succeeded { bank_payout_id } => to(PayoutState::Succeeded, bank_payout_id),
        Assessment::Returned { bank_payout_id } => Verdict::Move {
            to: PayoutState::Returned,
            bank_payout_id: Some(bank_payout_id),
            via_success: p.can_move_to(PayoutState::Succeeded),
            failure: None,
        },
        Assessment::Failed {
            bank_payout_id: None,
            ..
        } if cancelling && p.cancel_reason() == Some(CancelReason::StartUnconfirmed) => {
            Verdict::Hold {
                attention: START_ATTENTION,
            }
        }
        Assessment::Failed {
            bank_payout_id,
            code,
        } => {
            let (to, failure) = match p.cancel_reason() {
                Some(CancelReason::ByApp | CancelReason::ConfirmationDeadline) if cancelling => {
                    (PayoutState::Cancelled, None)
                }
                Some(CancelReason::ConfirmationMismatch) if cancelling => {
                    (PayoutState::Failed, None)
                }
                _ => (
                    PayoutState::Failed,
                    Some((code.as_str(), "the bank did not pay out")),
                ),
            };
            Verdict::Move {
                to,
                bank_payout_id: bank_payout_id.as_deref(),
                via_success: false,
                failure,
            }
        }
        Assessment::Unclear(why) => Verdict::Unclear(why),
    }
}

/// For a payout `started`, `confirming` or `cancelling` (rule 2 of the engine: a call whose
/// outcome is unknown is never sent again blindly), the step after reading the session.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum NextCall {
    /// The bank shows no payout: the start never arrived, or is still being processed. Sent
    /// again with the same key (a duplicate is refused, not paid), a few times.
    ResendStart,
    /// The start was sent as often as allowed and the bank still shows no payout: cancel the
    /// session and flag the payout.
    GiveUpStart,
    /// The confirm did not take effect yet: send it (again, under the same key).
    Confirm,
    /// The cancel did not take effect yet (or the session never got a payout): send it.
    Cancel,
    /// The bank is processing: look again later.
    Wait,
    /// Anything else: apply what the session says ([`verdict`]).
    Apply,
}

/// The first table.
pub(super) fn next_call(p: &Payout, assessment: &Assessment, max_start_resends: u32) -> NextCall {
    match (p.state, assessment) {
        (PayoutState::Started, Assessment::NotStarted) if p.start_sends >= max_start_resends => {
            NextCall::GiveUpStart
        }
        (PayoutState::Started, Assessment::NotStarted) => NextCall::ResendStart,
        (PayoutState::Confirming, Assessment::AwaitingConfirmation { .. }) => NextCall::Confirm,
        (
            PayoutState::Cancelling,
            Assessment::AwaitingConfirmation { .. } | Assessment::NotStarted,
        ) => NextCall::Cancel,
        (_, Assessment::InProgress { .. }) => NextCall::Wait,
        _ => NextCall::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payout::{ConfirmMode, PayoutRequest};

    fn payout(state: PayoutState, reason: Option<CancelReason>) -> Payout {
        let mut p = Payout::created(
            PayoutRequest {
                id: crate::ids::PayoutId::generate().unwrap(),
                tenant: "acme".into(),
                client_id: crate::ids::AppClientId::generate().unwrap(),
                idempotency_key: "k".into(),
                request_hash: [0; 32],
                card_token: "tok_1".into(),
                amount: 100,
                currency: "RUB".into(),
                recipient_name: "Ivanov Ivan".into(),
                metadata: None,
                confirm_mode: ConfirmMode::Auto,
            },
            0,
        );
        p.state = state;
        if let Some(r) = reason {
            p.set_cancel_reason(r);
        }
        p
    }

    fn failed(bank_payout_id: Option<&str>) -> Assessment {
        Assessment::Failed {
            bank_payout_id: bank_payout_id.map(str::to_owned),
            code: "insufficient_funds".into(),
        }
    }

    #[test]
    fn what_the_bank_shows_moves_the_payout_to_the_matching_state() {
        let id = || "po_1".to_owned();
        let p = payout(PayoutState::Started, None);
        for (assessment, state) in [
            (
                Assessment::InProgress {
                    bank_payout_id: id(),
                },
                PayoutState::Started,
            ),
            (
                Assessment::AwaitingConfirmation {
                    bank_payout_id: id(),
                },
                PayoutState::AwaitingConfirmation,
            ),
            (
                Assessment::Succeeded {
                    bank_payout_id: id(),
                },
                PayoutState::Succeeded,
            ),
        ] {
            assert_eq!(
                verdict(&p, &assessment),
                to(state, "po_1"),
                "{assessment:?}"
            );
        }
        assert_eq!(verdict(&p, &Assessment::NotStarted), Verdict::Nothing);
        assert_eq!(
            verdict(&p, &Assessment::Unclear("in error")),
            Verdict::Unclear("in error")
        );
    }

    #[test]
    fn a_return_goes_through_success_only_when_the_success_was_missed() {
        let returned = Assessment::Returned {
            bank_payout_id: "po_1".into(),
        };
        for (state, via_success) in [
            (PayoutState::Started, true),
            (PayoutState::Confirming, true),
            (PayoutState::Succeeded, false),
        ] {
            let Verdict::Move {
                to, via_success: v, ..
            } = verdict(&payout(state, None), &returned)
            else {
                panic!("a return moves the payout");
            };
            assert_eq!((to, v), (PayoutState::Returned, via_success), "{state}");
        }
    }

    #[test]
    fn a_failed_session_ends_the_payout_by_why_it_was_being_cancelled() {
        use CancelReason as R;
        use PayoutState as S;
        let cases = [
            // (state, reason, bank payout id, next, bank code kept as the failure)
            (S::Cancelling, Some(R::ByApp), None, S::Cancelled, false),
            (
                S::Cancelling,
                Some(R::ConfirmationDeadline),
                Some("po_1"),
                S::Cancelled,
                false,
            ),
            (
                S::Cancelling,
                Some(R::ConfirmationMismatch),
                Some("po_1"),
                S::Failed,
                false,
            ),
            (
                S::Cancelling,
                Some(R::StartUnconfirmed),
                Some("po_1"),
                S::Failed,
                true,
            ),
            (S::Started, None, Some("po_1"), S::Failed, true),
            (S::Confirming, None, None, S::Failed, true),
            // A reason left from a cancel that is no longer under way does not decide.
            (S::Started, Some(R::ByApp), None, S::Failed, true),
        ];
        for (state, reason, id, next, bank_code) in cases {
            let assessment = failed(id);
            let got = verdict(&payout(state, reason), &assessment);
            let want = Verdict::Move {
                to: next,
                bank_payout_id: id,
                via_success: false,
                failure: bank_code.then_some(("insufficient_funds", "the bank did not pay out")),
            };
            assert_eq!(got, want, "{state} {reason:?} {id:?}");
        }
    }

    #[test]
    fn a_call_whose_outcome_is_unknown_is_sent_again_only_when_the_bank_shows_it_never_took_effect()
    {
        use PayoutState as S;
        let waiting = Assessment::AwaitingConfirmation {
            bank_payout_id: "po_1".into(),
        };
        let processing = Assessment::InProgress {
            bank_payout_id: "po_1".into(),
        };
        let paid = Assessment::Succeeded {
            bank_payout_id: "po_1".into(),
        };
        let none = Assessment::NotStarted;
        let at = |state| payout(state, None);
        let mut resent = at(S::Started);
        resent.start_sends = 3;
        let cases = [
            (at(S::Started), &none, NextCall::ResendStart),
            (resent, &none, NextCall::GiveUpStart),
            (at(S::Started), &processing, NextCall::Wait),
            (at(S::Started), &waiting, NextCall::Apply),
            (at(S::Confirming), &waiting, NextCall::Confirm),
            (at(S::Confirming), &processing, NextCall::Wait),
            (at(S::Confirming), &paid, NextCall::Apply),
            (at(S::Confirming), &none, NextCall::Apply),
            (at(S::Cancelling), &waiting, NextCall::Cancel),
            (at(S::Cancelling), &none, NextCall::Cancel),
            (at(S::Cancelling), &processing, NextCall::Wait),
            (at(S::Cancelling), &failed(None), NextCall::Apply),
        ];
        for (p, assessment, want) in cases {
            assert_eq!(
                next_call(&p, assessment, 3),
                want,
                "{} {assessment:?}",
                p.state
            );
        }
    }

    #[test]
    fn an_empty_cancelled_session_after_giving_up_the_start_is_held_for_a_person() {
        let p = payout(
            PayoutState::Cancelling,
            Some(CancelReason::StartUnconfirmed),
        );
        assert_eq!(
            verdict(&p, &failed(None)),
            Verdict::Hold {
                attention: START_ATTENTION
            }
        );
    }
}
