//! Request counters in Prometheus text format. Labels are route templates, status codes and
//! fixed names only: nothing a caller chooses.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::Mutex;

use crate::limits::Operation;

/// The route templates the router has, and `unmatched` for everything else. A fixed list, so a
/// request's label is a `&'static str` found without allocating.
pub(crate) const ROUTES: [&str; 8] = [
    "/v1/tokens",
    "/v1/tokens/{token}",
    "/v1/tokens/{token}/detokenize",
    "/v1/clients/me",
    "/healthz",
    "/readyz",
    "/metrics",
    "unmatched",
];

/// The label for a matched route template (`unmatched` for anything unknown).
pub(crate) fn route_label(template: Option<&str>) -> &'static str {
    template
        .and_then(|t| ROUTES.iter().find(|r| **r == t))
        .copied()
        .unwrap_or("unmatched")
}

/// A route template and a status code.
type RouteStatus = (&'static str, u16);

/// Counters per (route template, status), requests in flight per route, and the vault's
/// refusals by kind.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RouteStatus, (u64, f64)>>,
    in_flight: [AtomicI64; ROUTES.len()],
    rate_limited: [AtomicU64; Operation::ALL.len()],
    auth_failures_aggregated: AtomicU64,
    shed: AtomicU64,
}

impl Metrics {
    /// A request on `route` started; the guard counts it finished when dropped.
    pub fn start(&self, route: &'static str) -> InFlight<'_> {
        let slot = ROUTES
            .iter()
            .position(|r| *r == route)
            .and_then(|i| self.in_flight.get(i));
        if let Some(slot) = slot {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { slot }
    }

    /// Counts one finished request.
    pub fn record(&self, route: &'static str, status: StatusCode, elapsed: Duration) {
        let mut map = self.requests.lock();
        let entry = map.entry((route, status.as_u16())).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_secs_f64();
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self, operation: Operation) {
        if let Some(c) = self.rate_limited.get(operation.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an authentication failure folded into an aggregated audit event.
    pub fn auth_failure_aggregated(&self) {
        self.auth_failures_aggregated
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request shed because a writer queue was full.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        {
            let map = self.requests.lock();
            out.push_str(
                "# HELP vault_http_requests_total HTTP requests by route template and status.\n",
            );
            out.push_str("# TYPE vault_http_requests_total counter\n");
            for ((route, status), (count, _)) in map.iter() {
                let _ = writeln!(
                    out,
                    "vault_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
            out.push_str("# HELP vault_http_request_seconds_sum Total time spent on requests.\n");
            out.push_str("# TYPE vault_http_request_seconds_sum counter\n");
            for ((route, status), (_, seconds)) in map.iter() {
                let _ = writeln!(
                    out,
                    "vault_http_request_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {seconds}"
                );
            }
        }
        out.push_str("# HELP vault_http_requests_in_flight Requests being handled, by route.\n");
        out.push_str("# TYPE vault_http_requests_in_flight gauge\n");
        for (route, n) in ROUTES.iter().zip(&self.in_flight) {
            let _ = writeln!(
                out,
                "vault_http_requests_in_flight{{route=\"{route}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP vault_rate_limited_total Requests refused with 429, by limited operation.\n",
        );
        out.push_str("# TYPE vault_rate_limited_total counter\n");
        for (op, n) in Operation::ALL.iter().zip(&self.rate_limited) {
            let _ = writeln!(
                out,
                "vault_rate_limited_total{{operation=\"{}\"}} {}",
                op.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP vault_auth_failures_aggregated_total Failed authentications (missing or unknown key) counted into aggregated audit events.\n");
        out.push_str("# TYPE vault_auth_failures_aggregated_total counter\n");
        let _ = writeln!(
            out,
            "vault_auth_failures_aggregated_total {}",
            self.auth_failures_aggregated.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP vault_shed_total Requests refused with 503 because a writer queue was full.\n",
        );
        out.push_str("# TYPE vault_shed_total counter\n");
        let _ = writeln!(
            out,
            "vault_shed_total {}",
            self.shed.load(Ordering::Relaxed)
        );
        out
    }
}

/// A request in flight; counted out when dropped (also when its future is cancelled).
#[derive(Debug)]
pub struct InFlight<'a> {
    slot: Option<&'a AtomicI64>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
