//! The live bank's latitude (API.md §14) that a project can be set to show, so that a client
//! tested only against the sandbox's tidy defaults can still fail here first.
//!
//! Most quirks reshape what the sandbox sends (answers and webhooks alike) after the session is
//! rendered; `cancel_leaves_payout_pending` changes the lifecycle instead. The control API's own
//! session view (`GET /__sandbox/sessions/{id}`) is never reshaped: it is the truth tests check
//! against.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// How amounts are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountForm {
    /// `10000`, the documented form.
    #[default]
    Integer,
    /// `10000.0`: one transfers page types amounts as float (API.md §14.5).
    Float,
    /// `"10000"`: the SDK's `settype()` would take it (API.md §14.5).
    String,
}

/// A project's quirks; all off by default.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// Sessions carry both `payout_list` and `payments`, payouts both `payout_details` and
    /// `payment_method` (the SDK keeps both, API.md §14.4).
    pub both_spellings: bool,
    /// How amounts are written.
    pub amounts_as: AmountForm,
    /// `null` where a string is expected: `customer.reference`, `error.code`, and absent
    /// optional fields sent as `null` (API.md §14.5).
    pub nulls: bool,
    /// Every session lists another payout before the partner's own (a session may hold
    /// several, API.md §14.1): failed, for another amount and card, naming another payout id.
    pub other_payout_first: bool,
    /// A session cancelled (by the partner or the confirm timeout) ends `cancelled` with its
    /// payout still `pending` or `in_progress` (API.md §14.7: the final shape is undocumented).
    pub cancel_leaves_payout_pending: bool,
    /// Webhooks carry about 200 KiB of fiscalisation detail, as fees, refunds and receipts can
    /// make them (API.md §14.11).
    pub large_webhooks: bool,
}

/// Where a rendered session is going.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Channel {
    /// An API answer.
    Answer,
    /// A webhook body.
    Webhook,
}

impl Quirks {
    /// Reshapes a rendered session object.
    pub(crate) fn apply(&self, session: &mut Value, channel: Channel) {
        let Some(s) = session.as_object_mut() else {
            return;
        };
        let list_key = ["payout_list", "payments"]
            .into_iter()
            .find(|k| s.contains_key(*k));
        if let Some(key) = list_key {
            if self.other_payout_first
                && let Some(list) = s.get_mut(key).and_then(Value::as_array_mut)
            {
                let id = format!("po_other_{}", list.len());
                list.insert(0, other_payout(&id));
            }
            if let Some(list) = s.get_mut(key).and_then(Value::as_array_mut) {
                for payout in list.iter_mut().filter_map(Value::as_object_mut) {
                    self.payout(payout);
                }
                // Only the partner's own payout (the last) carries the receipt, and only in one
                // spelling, so that the body stays near 200 KiB whatever else is on.
                if self.large_webhooks
                    && channel == Channel::Webhook
                    && let Some(own) = list.last_mut().and_then(Value::as_object_mut)
                {
                    own.insert("fiscalization_details".into(), receipt());
                }
            }
            if self.both_spellings {
                let other = if key == "payout_list" {
                    "payments"
                } else {
                    "payout_list"
                };
                let mut copy = s.get(key).cloned().unwrap_or(Value::Null);
                for p in copy.as_array_mut().into_iter().flatten() {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("fiscalization_details");
                    }
                }
                s.insert(other.to_owned(), copy);
            }
        }
        if self.nulls {
            for k in ["finished_at", "next_action", "error", "payment_list"] {
                s.entry(k).or_insert(Value::Null);
            }
        }
        if self.amounts_as != AmountForm::Integer {
            amounts(session, self.amounts_as);
        }
    }

    fn payout(&self, p: &mut Map<String, Value>) {
        if self.both_spellings {
            for (a, b) in [
                ("payout_details", "payment_method"),
                ("payment_method", "payout_details"),
            ] {
                if let Some(v) = p.get(a).cloned() {
                    p.entry(b).or_insert(v);
                }
            }
        }
        if self.nulls {
            match p.get_mut("customer").and_then(Value::as_object_mut) {
                Some(c) => {
                    c.insert("reference".into(), Value::Null);
                }
                None => {
                    p.insert("customer".into(), json!({"reference": null}));
                }
            }
            if let Some(e) = p.get_mut("error").and_then(Value::as_object_mut) {
                e.insert("code".into(), Value::Null);
                e.entry("description").or_insert(Value::Null);
            }
            for k in ["finished_at", "transaction_info", "refunds", "error"] {
                p.entry(k).or_insert(Value::Null);
            }
        }
    }
}

/// A self-employed receipt with many service lines: about 200 KiB.
fn receipt() -> Value {
    let services: Vec<Value> = (0..1300)
        .map(|i| json!({"name": format!("service line {i:05} {}", "x".repeat(64)), "amount_details": {"amount": 100, "currency": "rub"}, "quantity": 1}))
        .collect();
    json!({"professional_income_taxpayer": {"services": services, "tax_reference": "ru-npd"}})
}

/// Another partner system's payout in the same session.
fn other_payout(id: &str) -> Value {
    json!({
        "id": id,
        "status": "failed",
        "created_at": crate::sandbox::model::now(),
        "payout_details": {"type": "card", "card": {"brand": "visa", "last4": "0000", "bin": "400000"}},
        "amount_details": {"amount": 1, "currency": "rub"},
        "metadata": {"payout_id": "pay_someone_else"},
        "error": {"code": "declined_by_issuer_bank", "description": "another payout of this session"},
    })
}

/// Rewrites every `amount_details.amount` in `v`.
fn amounts(v: &mut Value, form: AmountForm) {
    match v {
        Value::Object(m) => {
            if let Some(a) = m
                .get_mut("amount_details")
                .and_then(|d| d.get_mut("amount"))
                && let Some(n) = a.as_i64()
            {
                *a = match form {
                    AmountForm::Integer => json!(n),
                    #[allow(clippy::cast_precision_loss, reason = "test amounts are small")]
                    AmountForm::Float => json!(n as f64),
                    AmountForm::String => json!(n.to_string()),
                };
            }
            for child in m.values_mut() {
                amounts(child, form);
            }
        }
        Value::Array(a) => {
            for child in a {
                amounts(child, form);
            }
        }
        _ => {}
    }
}

/// The names `--quirk` takes: a flag (`both_spellings`) or `amounts_as=float|string`.
impl FromStr for Quirks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut q = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            q.set(item)?;
        }
        Ok(q)
    }
}

impl Quirks {
    /// Turns on one quirk by name.
    ///
    /// # Errors
    ///
    /// An unknown name or value.
    pub fn set(&mut self, item: &str) -> Result<(), String> {
        match item.split_once('=') {
            Some(("amounts_as", form)) => {
                self.amounts_as = serde_json::from_value(Value::from(form)).map_err(|_| {
                    format!("amounts_as takes integer, float or string, not {form:?}")
                })?;
            }
            Some((name, _)) => return Err(format!("{name} takes no value")),
            None => {
                let flag = match item {
                    "both_spellings" => &mut self.both_spellings,
                    "nulls" => &mut self.nulls,
                    "other_payout_first" => &mut self.other_payout_first,
                    "cancel_leaves_payout_pending" => &mut self.cancel_leaves_payout_pending,
                    "large_webhooks" => &mut self.large_webhooks,
                    _ => return Err(format!("unknown quirk {item:?}; see SANDBOX.md")),
                };
                *flag = true;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Quirks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Value {
        json!({"id": "ps_1", "status": "accepted", "payout_list": [{"id": "po_1", "status": "succeeded",
            "payout_details": {"type": "card", "card": {"last4": "4242"}},
            "amount_details": {"amount": 10000, "currency": "rub"},
            "refunds": [{"id": "rf_1", "status": "accepted", "amount_details": {"amount": 500, "currency": "rub"}}]}]})
    }

    #[test]
    fn each_quirk_reshapes_as_documented() {
        let mut s = session();
        "both_spellings,amounts_as=string,nulls,other_payout_first"
            .parse::<Quirks>()
            .unwrap()
            .apply(&mut s, Channel::Answer);
        assert_eq!(s["payments"], s["payout_list"]);
        let list = s["payout_list"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["metadata"]["payout_id"], "pay_someone_else");
        assert_eq!(list[1]["payment_method"], list[1]["payout_details"]);
        assert_eq!(list[1]["amount_details"]["amount"], "10000");
        assert_eq!(list[1]["refunds"][0]["amount_details"]["amount"], "500");
        assert!(list[1]["customer"]["reference"].is_null());
        assert!(s.as_object().unwrap()["next_action"].is_null());

        let mut s = session();
        "amounts_as=float"
            .parse::<Quirks>()
            .unwrap()
            .apply(&mut s, Channel::Answer);
        assert_eq!(
            s["payout_list"][0]["amount_details"]["amount"],
            json!(10000.0)
        );

        let mut s = session();
        let large: Quirks = "large_webhooks".parse().unwrap();
        let mut answer = session();
        large.apply(&mut answer, Channel::Answer);
        assert_eq!(answer, session(), "answers stay small");
        large.apply(&mut s, Channel::Webhook);
        let size = s.to_string().len();
        assert!((180_000..230_000).contains(&size), "{size}");

        assert!("nope".parse::<Quirks>().is_err());
        assert!("amounts_as=hex".parse::<Quirks>().is_err());
    }
}
