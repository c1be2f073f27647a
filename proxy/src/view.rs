//! What apps see of a payout and of a payout link, in API responses and webhooks alike. Built
//! only from the stored payout or link, which hold no card number: the card appears as its last
//! four digits (and a link's as its brand too).

use serde::Serialize;

use crate::link::PayoutLink;
use crate::payout::{OutboxEvent, Payout};

/// Unix microseconds as RFC 3339 UTC with second precision.
pub fn rfc3339(micros: i64) -> String {
    let secs = u64::try_from(micros.max(0) / 1_000_000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// A payout as apps see it.
#[derive(Debug, Serialize)]
pub struct PayoutView<'a> {
    id: &'a str,
    status: &'static str,
    amount: i64,
    currency: &'a str,
    card_token: &'a str,
    card: CardView<'a>,
    recipient: RecipientView<'a>,
    confirm: &'static str,
    bank: BankView<'a>,
    failure: Option<FailureView<'a>>,
    needs_attention: Option<&'a str>,
    confirm_deadline: Option<String>,
    metadata: Option<serde_json::Value>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct CardView<'a> {
    last4: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct RecipientView<'a> {
    full_name: &'a str,
}

#[derive(Debug, Serialize)]
struct BankView<'a> {
    session_id: Option<&'a str>,
    payout_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct FailureView<'a> {
    code: &'a str,
    message: Option<&'a str>,
}

impl<'a> PayoutView<'a> {
    /// The view of `p`.
    pub fn new(p: &'a Payout) -> Self {
        Self {
            id: p.id.as_str(),
            status: p.state.as_str(),
            amount: p.amount,
            currency: &p.currency,
            card_token: &p.card_token,
            card: CardView {
                last4: p.card_last4.as_deref(),
            },
            recipient: RecipientView {
                full_name: &p.recipient_name,
            },
            confirm: p.confirm_mode.as_str(),
            bank: BankView {
                session_id: p.bank.as_ref().map(|b| b.id.as_str()),
                payout_id: p.bank_payout_id(),
            },
            failure: p
                .failure_code
                .as_deref()
                .filter(|_| p.state.is_final())
                .map(|code| FailureView {
                    code,
                    message: p.failure_message.as_deref(),
                }),
            needs_attention: p.attention.as_deref(),
            confirm_deadline: p
                .bank
                .as_ref()
                .and_then(|b| b.confirm_deadline)
                .map(rfc3339),
            metadata: p
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// The app webhook for the payout's current state, if the app hears about this state.
pub fn event_for(p: &Payout, now: i64) -> Option<OutboxEvent> {
    let event_type = p.event_type()?;
    let id = shared::ids::random_id("evt_").ok()?;
    let payload = serde_json::json!({
        "id": id,
        "type": event_type,
        "created_at": rfc3339(now),
        "data": { "payout": PayoutView::new(p) },
    });
    Some(OutboxEvent {
        id,
        payout_id: Some(p.id.clone()),
        payout_link_id: None,
        client_id: p.client_id.clone(),
        event_type: event_type.to_owned(),
        payload: payload.to_string(),
        attempts: 0,
        next_attempt_at: now,
        delivered_at: None,
        abandoned_at: None,
        last_error: None,
        created_at: now,
    })
}

/// A payout link as apps see it. `url` (the vault's page, the client secret in its fragment) is
/// shown to the app that made the link while it is open, and in nothing else: not in webhooks,
/// not to other apps of the tenant.
#[derive(Debug, Serialize)]
pub struct LinkView<'a> {
    id: &'a str,
    status: &'static str,
    url: Option<&'a str>,
    amount: i64,
    currency: &'a str,
    recipient: Option<RecipientView<'a>>,
    payout_id: Option<&'a str>,
    card: Option<LinkCardView<'a>>,
    metadata: Option<serde_json::Value>,
    expires_at: String,
    completed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct LinkCardView<'a> {
    last4: &'a str,
    brand: &'a str,
}

impl<'a> LinkView<'a> {
    /// The view of `l`, with `url` when the caller may see it.
    pub fn new(l: &'a PayoutLink, url: Option<&'a str>) -> Self {
        let done = l.completion.as_ref();
        Self {
            id: l.id.as_str(),
            status: l.state.as_str(),
            url,
            amount: l.amount,
            currency: &l.currency,
            recipient: l
                .recipient_name
                .as_deref()
                .map(|full_name| RecipientView { full_name }),
            payout_id: done.map(|c| c.payout_id.as_str()),
            card: done.map(|c| LinkCardView {
                last4: &c.last4,
                brand: &c.brand,
            }),
            metadata: l
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            expires_at: rfc3339(l.expires_at),
            completed_at: done.map(|c| rfc3339(c.at)),
            created_at: rfc3339(l.created_at),
            updated_at: rfc3339(l.updated_at),
        }
    }
}

/// The app webhook for a link's closing (`payout_link.completed`, naming its payout, or
/// `payout_link.expired`); none for an open link.
pub fn link_event(l: &PayoutLink, now: i64) -> Option<OutboxEvent> {
    let event_type = l.event_type()?;
    let id = shared::ids::random_id("evt_").ok()?;
    let payload = serde_json::json!({
        "id": id,
        "type": event_type,
        "created_at": rfc3339(now),
        "data": { "payout_link": LinkView::new(l, None) },
    });
    Some(OutboxEvent {
        id,
        payout_id: l.completion.as_ref().map(|c| c.payout_id.clone()),
        payout_link_id: Some(l.id.clone()),
        client_id: l.client_id.clone(),
        event_type: event_type.to_owned(),
        payload: payload.to_string(),
        attempts: 0,
        next_attempt_at: now,
        delivered_at: None,
        abandoned_at: None,
        last_error: None,
        created_at: now,
    })
}
