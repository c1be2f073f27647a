//! Fault switches: make chosen calls slow, fail or hang, and chosen webhooks late, lost,
//! doubled or out of order.
//!
//! A fault targets (`on`) one API method by its path without the version prefix
//! (`session/start/payout`, `wallet/balance`), `*` for every API call, `webhook:<type>` for one
//! webhook type, or `webhook:*` for all webhooks. `count` makes it one-shot (or n-shot); without
//! it the fault stays until cleared.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Calls: answer `delay_ms` later. Webhooks: send `delay_ms` later.
    Delay,
    /// Calls: answer `internal_error` (HTTP `status`, default 500) without doing anything.
    Error,
    /// Calls: do the work, then answer `internal_error` anyway (the client cannot know).
    ErrorAfter,
    /// Calls: take the request's idempotency key, then answer `internal_error` without doing
    /// the work: a bank that lost a request it had admitted, so that a re-send with the same key
    /// is refused as "already in progress or processed" while the session shows nothing.
    Lose,
    /// Calls: hold the request without doing anything until the client gives up (bounded by
    /// the sandbox's `hang_limit`, then `internal_error`).
    Hang,
    /// Calls: do the work, then hold the response as [`FaultAction::Hang`] does.
    HangAfter,
    /// Calls: answer a redirect (`status`, default 307) to `location` without doing anything,
    /// as a hijacked or misconfigured bank endpoint might.
    Redirect,
    /// Webhooks: never send it.
    Drop,
    /// Webhooks: send it twice.
    Duplicate,
    /// Webhooks: hold it and send it after the next webhook.
    Reorder,
}

impl FaultAction {
    fn for_webhooks(self) -> bool {
        matches!(
            self,
            Self::Delay | Self::Drop | Self::Duplicate | Self::Reorder
        )
    }

    fn for_calls(self) -> bool {
        matches!(
            self,
            Self::Delay
                | Self::Error
                | Self::ErrorAfter
                | Self::Lose
                | Self::Hang
                | Self::HangAfter
                | Self::Redirect
        )
    }
}

/// One fault switch, as the control API and `--fault` take it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The target: `session/confirm`, `*`, `webhook:payment_finished`, `webhook:*`.
    pub on: String,
    /// What to do.
    pub action: FaultAction,
    /// For `delay`: milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// For `error`/`error_after`/`lose`: the HTTP status (500–599; default 500). For `redirect`:
    /// 300–399 (default 307).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// For `redirect`: where to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For `error`/`error_after`/`lose`/`hang`/`hang_after`: the error code of the answer
    /// (default `internal_error`). The bank's status-to-code mapping is undocumented (API.md
    /// §14.3): a 5xx may carry any code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How many times it fires; absent means until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl FaultSpec {
    /// Checks that the action fits the target and carries its parameters.
    ///
    /// # Errors
    ///
    /// A human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        let webhook = self.on.starts_with("webhook:");
        if self.on.is_empty() || self.on == "webhook:" {
            return Err("`on` is empty".to_owned());
        }
        if webhook && !self.action.for_webhooks() {
            return Err(format!("{:?} does not apply to webhooks", self.action));
        }
        if !webhook && !self.action.for_calls() {
            return Err(format!("{:?} does not apply to API calls", self.action));
        }
        if self.action == FaultAction::Delay && self.delay_ms.is_none() {
            return Err("delay needs delay_ms".to_owned());
        }
        let redirect = self.action == FaultAction::Redirect;
        if redirect && self.location.as_deref().is_none_or(str::is_empty) {
            return Err("redirect needs location".to_owned());
        }
        if !redirect && self.location.is_some() {
            return Err("only redirect takes a location".to_owned());
        }
        if let Some(code) = &self.code {
            let answers = matches!(
                self.action,
                FaultAction::Error
                    | FaultAction::ErrorAfter
                    | FaultAction::Lose
                    | FaultAction::Hang
                    | FaultAction::HangAfter
            );
            if !answers {
                return Err(format!("{:?} takes no code", self.action));
            }
            let fits = !code.is_empty()
                && code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !fits {
                return Err("code must be 1-64 of a-z, 0-9 and _".to_owned());
            }
        }
        match self.status {
            Some(s) if redirect && !(300..=399).contains(&s) => {
                return Err("a redirect status must be 300–399".to_owned());
            }
            Some(s) if !redirect && !(500..=599).contains(&s) => {
                return Err("status must be 500–599".to_owned());
            }
            _ => {}
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".to_owned());
        }
        Ok(())
    }

    /// `action` on `on`, with none of the optional parameters.
    fn bare(on: &str, action: FaultAction, count: Option<u32>) -> Self {
        Self {
            on: on.to_owned(),
            action,
            delay_ms: None,
            status: None,
            location: None,
            code: None,
            count,
        }
    }

    fn matches(&self, target: &str) -> bool {
        self.on == target
            || (self.on == "*" && !target.starts_with("webhook:"))
            || (self.on == "webhook:*" && target.starts_with("webhook:"))
    }
}

/// The compact form taken by `--fault`: `TARGET=ACTION[:ARG[:CODE]][@COUNT]`, where ARG is the
/// delay in milliseconds for `delay`, the HTTP status for `error`/`error_after`/`lose` (then CODE
/// the error code answered) and the location for `redirect` (answered with 307). Examples:
/// `session/start/payout=hang@1`, `webhook:*=delay:300`, `session/confirm=error:503@2`,
/// `session/start/payout=error_after:502:session_wrong_state@1`,
/// `session/start/payout=redirect:http://127.0.0.1:9999/steal`.
impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (on, rest) = s.split_once('=').ok_or("expected TARGET=ACTION")?;
        if let Some(location) = rest.strip_prefix("redirect:") {
            let (location, count) = match location.rsplit_once('@') {
                Some((l, c)) if c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty() => {
                    (l, Some(c.parse::<u32>().map_err(|_| "bad @COUNT")?))
                }
                _ => (location, None),
            };
            let spec = Self {
                location: Some(location.to_owned()),
                ..Self::bare(on, FaultAction::Redirect, count)
            };
            spec.validate()?;
            return Ok(spec);
        }
        let (rest, count) = match rest.split_once('@') {
            Some((r, c)) => (r, Some(c.parse::<u32>().map_err(|_| "bad @COUNT")?)),
            None => (rest, None),
        };
        let (rest, code) = match rest.split_once(':') {
            Some((a, more)) => match more.split_once(':') {
                Some((n, code)) => (format!("{a}:{n}"), Some(code.to_owned())),
                None => (rest.to_owned(), None),
            },
            None => (rest.to_owned(), None),
        };
        let (action, arg) = match rest.split_once(':') {
            Some((a, n)) => (a, Some(n.parse::<u64>().map_err(|_| "bad :ARG")?)),
            None => (rest.as_str(), None),
        };
        let action: FaultAction = serde_json::from_value(serde_json::Value::from(action))
            .map_err(|_| format!("unknown action {action:?}"))?;
        let mut spec = Self {
            code,
            ..Self::bare(on, action, count)
        };
        match (action, arg) {
            (FaultAction::Delay, a) => spec.delay_ms = a,
            (FaultAction::Error | FaultAction::ErrorAfter | FaultAction::Lose, Some(a)) => {
                spec.status = Some(u16::try_from(a).map_err(|_| "bad status")?);
            }
            (_, None) => {}
            (_, Some(_)) => return Err(format!("{action:?} takes no :ARG")),
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// An active fault, as listed by the control API.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ActiveFault {
    /// `f_<n>`, for `DELETE /__sandbox/faults/{id}`.
    pub id: String,
    /// The switch.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Firings left; absent for persistent faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
}

/// What the faults matching one call or webhook add up to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Effect {
    pub(crate) delay: Duration,
    /// The first fault of the kind that decides the outcome (error, hang, drop...).
    pub(crate) terminal: Option<(FaultAction, u16)>,
    /// Where a `redirect` fault points.
    pub(crate) location: Option<String>,
    /// The error code of an error answer, when not `internal_error`.
    pub(crate) code: Option<String>,
    pub(crate) duplicate: bool,
    pub(crate) reorder: bool,
}

/// The registry of active faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    inner: Mutex<(u64, Vec<ActiveFault>)>,
}

impl Faults {
    pub(crate) fn add(&self, spec: FaultSpec) -> Result<String, String> {
        spec.validate()?;
        let mut inner = self.inner.lock();
        inner.0 += 1;
        let id = format!("f_{}", inner.0);
        let remaining = spec.count;
        inner.1.push(ActiveFault {
            id: id.clone(),
            spec,
            remaining,
        });
        Ok(id)
    }

    pub(crate) fn list(&self) -> Vec<ActiveFault> {
        self.inner.lock().1.clone()
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().1.clear();
    }

    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut inner = self.inner.lock();
        let before = inner.1.len();
        inner.1.retain(|f| f.id != id);
        inner.1.len() != before
    }

    /// Fires every fault matching `target` (using up one of each one's count) and sums them up.
    pub(crate) fn fire(&self, target: &str) -> Effect {
        let mut effect = Effect::default();
        let mut inner = self.inner.lock();
        for fault in inner.1.iter_mut().filter(|f| f.spec.matches(target)) {
            if let Some(n) = fault.remaining.as_mut() {
                *n = n.saturating_sub(1);
            }
            let spec = &fault.spec;
            match spec.action {
                FaultAction::Delay => {
                    effect.delay += Duration::from_millis(spec.delay_ms.unwrap_or(0));
                }
                FaultAction::Duplicate => effect.duplicate = true,
                FaultAction::Reorder => effect.reorder = true,
                action => {
                    if effect.terminal.is_none() {
                        let default = if action == FaultAction::Redirect {
                            307
                        } else {
                            500
                        };
                        effect.terminal = Some((action, spec.status.unwrap_or(default)));
                        effect.location.clone_from(&spec.location);
                        effect.code.clone_from(&spec.code);
                    }
                }
            }
        }
        inner.1.retain(|f| f.remaining != Some(0));
        effect
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.on, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_syntax() {
        let f: FaultSpec = "session/start/payout=hang@1".parse().unwrap();
        assert_eq!((f.action, f.count), (FaultAction::Hang, Some(1)));
        let f: FaultSpec = "webhook:*=delay:300".parse().unwrap();
        assert_eq!((f.action, f.delay_ms), (FaultAction::Delay, Some(300)));
        let f: FaultSpec = "session/confirm=error:503@2".parse().unwrap();
        assert_eq!((f.status, f.count), (Some(503), Some(2)));
        let f: FaultSpec = "session/start/payout=redirect:http://127.0.0.1:9/x@2"
            .parse()
            .unwrap();
        assert_eq!(f.action, FaultAction::Redirect);
        assert_eq!(f.location.as_deref(), Some("http://127.0.0.1:9/x"));
        assert_eq!(f.count, Some(2));
        for bad in [
            "nothing",
            "x=explode",
            "webhook:*=hang",
            "session/create=drop",
            "x=delay",
            "x=error:200",
            "x=hang@0",
            "x=hang:5",
            "x=redirect:",
            "webhook:*=redirect:http://a/",
        ] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_run_out_and_targets_match() {
        let faults = Faults::default();
        faults
            .add("session/create=error@1".parse().unwrap())
            .unwrap();
        faults.add("webhook:*=duplicate".parse().unwrap()).unwrap();
        assert!(faults.fire("session/status").terminal.is_none());
        assert!(faults.fire("session/create").terminal.is_some());
        assert!(faults.fire("session/create").terminal.is_none());
        assert!(faults.fire("webhook:ready_to_confirm").duplicate);
        assert!(!faults.fire("session/create").duplicate);
        assert_eq!(faults.list().len(), 1);
    }
}
