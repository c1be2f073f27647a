//! The session and payout state machine of API.md §5.
//!
//! ```text
//! created ──start/init──▶ preparing ──(ready_delay)──▶ awaiting confirm ──confirm──▶ executing
//!                            │  (auto_confirm, single-request init) ──────────────▶ executing
//!                            │  (NO_CONFIRM: silent) ─┐               │ cancel ──▶ executing
//!                            │                        ▼               ▼ (confirm_timeout)
//!                            └──────────────────▶ finished ◀──(finish_delay)── executing
//! ```
//!
//! A finished payout may later be refunded (`payment_refunded`); `SESSION_ERROR` ends a session
//! in `error` instead; after a restart with a state file, `resume` arms each session's pending
//! step again.
//!
//! Every function here runs under the state lock and returns the [`Effects`] (timers to arm,
//! webhooks to send) that the caller carries out after releasing it.

use std::time::Duration;

use serde_json::Value;

use crate::sandbox::error::{ApiError, Decline};
use crate::sandbox::magic;
use crate::sandbox::model::{Amount, Decision, Fields, Payout, Phase, Refund, Session, now};
use crate::sandbox::quirks::{Channel, Quirks};
use crate::sandbox::state::State;

/// A scheduled transition.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Step {
    /// Send `ready_to_confirm`.
    Ready,
    /// No confirm came in time.
    ConfirmTimeout,
    /// Execute the decision and send `payment_finished`.
    Execute,
}

/// What a step comes to, decided before the state changes.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ready,
    /// Succeeded, debiting this amount.
    Succeeded(i64),
    Failed(Decline),
    /// `SESSION_ERROR`: the session ends in `error`, result unknown (API.md §4.2).
    SessionError,
}

#[derive(Debug)]
pub(crate) struct Timer {
    pub(crate) session: String,
    pub(crate) epoch: u64,
    pub(crate) step: Step,
    pub(crate) after: Duration,
}

/// A webhook to send, with the session as it was at the moment of the event.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) project: String,
    pub(crate) kind: &'static str,
    pub(crate) session_id: String,
    pub(crate) session: Value,
}

#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) timers: Vec<Timer>,
    pub(crate) events: Vec<Event>,
}

/// The sandbox-wide delays.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Delays {
    pub(crate) ready: Duration,
    pub(crate) finish: Duration,
}

impl Effects {
    fn timer(&mut self, s: &Session, step: Step, after: Duration) {
        self.timers.push(Timer {
            session: s.id.clone(),
            epoch: s.epoch,
            step,
            after,
        });
    }
}

/// Starts the payout of a `created` session whose fields passed `require_payout`.
pub(crate) fn begin_payout(
    state: &mut State,
    delays: Delays,
    session_id: &str,
    fields: Fields,
    via_init: bool,
) -> Result<Effects, ApiError> {
    let payout_id = state.payout_id();
    let session = state
        .sessions
        .get(session_id)
        .ok_or(ApiError::unknown_session())?;
    let project = state
        .projects
        .get(&session.project)
        .ok_or(ApiError::internal())?;
    let automatic =
        project.config.auto_confirm || (via_init && project.config.single_request_payouts);
    let confirm_timeout = project.config.confirm_timeout;
    let (Some(card), Some(amount)) = (fields.card.clone(), fields.amount.clone()) else {
        return Err(ApiError::internal());
    };
    let name = fields.recipient_name().unwrap_or_default();
    let session = state
        .sessions
        .get_mut(session_id)
        .ok_or(ApiError::unknown_session())?;
    let at = now();
    session.payout = Some(Payout {
        id: payout_id,
        status: "in_progress",
        created_at: at,
        finished_at: None,
        card,
        amount,
        fields: fields.clone(),
        transaction_info: None,
        error: None,
        refunds: Vec::new(),
    });
    session.fields = fields;
    session.status = "in_progress";
    session.slow = name == magic::SLOW_BANK;
    let mut fx = Effects::default();
    // NO_CONFIRM wins over automatic confirmation, so the timeout path is reachable in any
    // project.
    if name == magic::NO_CONFIRM {
        session.enter(Phase::Preparing { silent: true });
        fx.timer(
            session,
            Step::ConfirmTimeout,
            delays.ready + confirm_timeout,
        );
    } else if automatic {
        session.enter(Phase::Executing(Decision::Automatic));
        fx.timer(session, Step::Execute, delays.finish);
    } else {
        session.enter(Phase::Preparing { silent: false });
        fx.timer(session, Step::Ready, delays.ready);
    }
    Ok(fx)
}

/// `session/confirm`: only while the session waits for it.
pub(crate) fn confirm(session: &mut Session, delays: Delays) -> Result<Effects, ApiError> {
    if session.phase != Phase::AwaitingConfirm {
        return Err(ApiError::wrong_state());
    }
    // The payout stays `pending` and only `next_action` goes: that is what the one published
    // example shows (SG2), and it makes clients key on `next_action`, not on the payout status.
    session.next_action = None;
    session.enter(Phase::Executing(Decision::Confirmed));
    let mut fx = Effects::default();
    fx.timer(session, Step::Execute, delays.finish);
    Ok(fx)
}

/// `session/cancel`: a `created` session is cancelled at once (it has no payout to report); one
/// waiting for confirmation is cancelled asynchronously, like the bank's (SG3).
pub(crate) fn cancel(session: &mut Session, delays: Delays) -> Result<Effects, ApiError> {
    let mut fx = Effects::default();
    match session.phase {
        Phase::Created => {
            session.status = "cancelled";
            session.finished_at = Some(now());
            session.enter(Phase::Finished);
        }
        Phase::AwaitingConfirm => {
            session.next_action = None;
            session.enter(Phase::Executing(Decision::Cancelled));
            fx.timer(session, Step::Execute, delays.finish);
        }
        _ => return Err(ApiError::wrong_state()),
    }
    Ok(fx)
}

/// Carries out `step` now. With `epoch`, only if the session has not moved since the timer was
/// armed; without (the control API's advance), whenever the step fits the phase.
pub(crate) fn apply(
    state: &mut State,
    session_id: &str,
    epoch: Option<u64>,
    step: Step,
) -> Result<Effects, &'static str> {
    let session = state.sessions.get(session_id).ok_or("no such session")?;
    if epoch.is_some_and(|e| e != session.epoch) {
        return Ok(Effects::default());
    }
    let project_id = session.project.clone();
    let project = state
        .projects
        .get(&project_id)
        .ok_or("the session's project is gone")?;
    let confirm_timeout = project.config.confirm_timeout;
    let version = project.config.webhook_api_version;
    let quirks = project.config.quirks;
    let payout = session.payout.as_ref().ok_or("the session has no payout")?;
    let session_error = session.fields.recipient_name().as_deref() == Some(magic::SESSION_ERROR);
    // Decide first, with shared borrows; then change the state.
    let outcome = match (session.phase, step) {
        (Phase::Preparing { silent: false }, Step::Ready) => Outcome::Ready,
        (Phase::Preparing { .. } | Phase::AwaitingConfirm, Step::ConfirmTimeout) => {
            Outcome::Failed(Decline::ConfirmTimeout)
        }
        (Phase::Executing(Decision::Cancelled), Step::Execute) => {
            Outcome::Failed(Decline::CancelledByPartner)
        }
        (Phase::Executing(_), Step::Execute) if session_error => Outcome::SessionError,
        (Phase::Executing(_), Step::Execute) => {
            let amount = payout.amount.amount;
            match payout
                .card
                .decline
                .or((amount == magic::AMOUNT_TOO_SMALL).then_some(Decline::AmountTooSmall))
                .or((amount > project.config.wallet_balance).then_some(Decline::InsufficientWallet))
            {
                Some(d) => Outcome::Failed(d),
                None => Outcome::Succeeded(amount),
            }
        }
        _ => return Err("the session is not at that step"),
    };
    let mut transaction = None;
    if let Outcome::Succeeded(amount) = outcome {
        if let Some(p) = state.projects.get_mut(&project_id) {
            p.config.wallet_balance -= amount;
        }
        transaction = Some(state.transaction_info());
    }
    let session = state
        .sessions
        .get_mut(session_id)
        .ok_or("no such session")?;
    let mut fx = Effects::default();
    let kind = match outcome {
        Outcome::Ready => {
            if let Some(p) = session.payout.as_mut() {
                p.status = "pending";
            }
            session.next_action = Some("confirm");
            session.enter(Phase::AwaitingConfirm);
            fx.timer(session, Step::ConfirmTimeout, confirm_timeout);
            "ready_to_confirm"
        }
        Outcome::Succeeded(_) => {
            succeed(session, transaction.unwrap_or_default());
            "payment_finished"
        }
        Outcome::Failed(d) => {
            let leave_pending = quirks.cancel_leaves_payout_pending
                && matches!(d, Decline::CancelledByPartner | Decline::ConfirmTimeout);
            fail(session, d, leave_pending);
            "payment_finished"
        }
        Outcome::SessionError => {
            in_error(session);
            "payment_finished"
        }
    };
    fx.events
        .push(event(session, &project_id, kind, version, quirks));
    Ok(fx)
}

/// The timer a session read back from the state file waits on, armed afresh: its whole delay
/// runs again from the restart.
pub(crate) fn resume(
    session: &Session,
    delays: Delays,
    confirm_timeout: Duration,
) -> Option<Timer> {
    let (step, after) = match session.phase {
        Phase::Preparing { silent: false } => (Step::Ready, delays.ready),
        Phase::Preparing { silent: true } => (Step::ConfirmTimeout, delays.ready + confirm_timeout),
        Phase::AwaitingConfirm => (Step::ConfirmTimeout, confirm_timeout),
        Phase::Executing(_) => (Step::Execute, delays.finish),
        Phase::Created | Phase::Finished => return None,
    };
    Some(Timer {
        session: session.id.clone(),
        epoch: session.epoch,
        step,
        after,
    })
}

/// The natural next step of a session, for the control API's advance.
pub(crate) fn next_step(session: &Session) -> Result<Step, &'static str> {
    match session.phase {
        Phase::Preparing { silent: false } => Ok(Step::Ready),
        Phase::Preparing { silent: true } => Ok(Step::ConfirmTimeout),
        Phase::Executing(_) => Ok(Step::Execute),
        Phase::AwaitingConfirm => Err(
            "the session waits for the partner's confirm or cancel; advance with \
             {\"step\":\"confirm_timeout\"} to time it out",
        ),
        Phase::Created => Err("the session has not been started"),
        Phase::Finished => Err("the session is finished"),
    }
}

/// Returns (part of) a succeeded payout: adds a refund, restores the balance, and sends
/// `payment_refunded`.
pub(crate) fn refund(
    state: &mut State,
    session_id: &str,
    amount: Option<i64>,
) -> Result<Effects, &'static str> {
    let refund_id = state.refund_id();
    let session = state
        .sessions
        .get_mut(session_id)
        .ok_or("no such session")?;
    let payout = session
        .payout
        .as_mut()
        .filter(|p| p.status == "succeeded")
        .ok_or("only a succeeded payout can be refunded")?;
    let refunded: i64 = payout.refunds.iter().map(|r| r.amount.amount).sum();
    let left = payout.amount.amount - refunded;
    let amount = amount.unwrap_or(left);
    if amount <= 0 || amount > left {
        return Err("the amount must be positive and at most what is left to refund");
    }
    payout.refunds.push(Refund {
        id: refund_id,
        at: now(),
        amount: Amount {
            amount,
            currency: payout.amount.currency.clone(),
        },
    });
    session.updated_at = now();
    let project_id = session.project.clone();
    let project = state
        .projects
        .get_mut(&project_id)
        .ok_or("the session's project is gone")?;
    project.config.wallet_balance += amount;
    let version = project.config.webhook_api_version;
    let quirks = project.config.quirks;
    let session = state.sessions.get(session_id).ok_or("no such session")?;
    let mut fx = Effects::default();
    fx.events.push(event(
        session,
        &project_id,
        "payment_refunded",
        version,
        quirks,
    ));
    Ok(fx)
}

fn event(
    session: &Session,
    project: &str,
    kind: &'static str,
    version: crate::sandbox::ApiVersion,
    quirks: Quirks,
) -> Event {
    let mut rendered = session.render(version);
    quirks.apply(&mut rendered, Channel::Webhook);
    Event {
        project: project.to_owned(),
        kind,
        session_id: session.id.clone(),
        session: rendered,
    }
}

fn succeed(session: &mut Session, transaction: (String, String)) {
    let at = now();
    if let Some(p) = session.payout.as_mut() {
        p.status = "succeeded";
        p.finished_at = Some(at.clone());
        p.transaction_info = Some(transaction);
    }
    session.status = "accepted";
    session.next_action = None;
    session.finished_at = Some(at);
    session.enter(Phase::Finished);
}

/// A decline ends the session `cancelled` [INF]: `error` would tell the client the result is
/// unknown (API.md §4.2), and a decline is a known, final result. With `leave_pending` (the
/// `cancel_leaves_payout_pending` quirk) the payout keeps the status it had.
fn fail(session: &mut Session, decline: Decline, leave_pending: bool) {
    let at = now();
    if let Some(p) = session.payout.as_mut()
        && !leave_pending
    {
        p.status = "failed";
        p.finished_at = Some(at.clone());
        p.error = Some(decline.error());
    }
    session.status = "cancelled";
    session.next_action = None;
    session.finished_at = Some(at);
    session.enter(Phase::Finished);
}

/// `SESSION_ERROR`: the session goes to `error` (not final, result unknown) with its payout
/// `failed`, the shape a sibling API documents as not final (API.md §14.7).
fn in_error(session: &mut Session) {
    if let Some(p) = session.payout.as_mut() {
        p.status = "failed";
        p.error = Some(ApiError::internal());
    }
    session.status = "error";
    session.next_action = None;
    session.enter(Phase::Finished);
}
