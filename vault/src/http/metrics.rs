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
pub(crate) const ROUTES: [&str; 14] = [
    "/v1/tokens",
    "/v1/tokens/{token}",
    "/v1/tokens/{token}/detokenize",
    "/v1/clients/me",
    "/v1/collect_sessions",
    "/v1/collect_sessions/{id}",
    "/collect/{id}",
    "/collect/{id}/submit",
    "/collect/assets/{asset}",
    "/collect.js",
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
            let labels =
                |(route, status): &RouteStatus| format!("route=\"{route}\",status=\"{status}\"");
            family(
                &mut out,
                "vault_http_requests_total",
                "counter",
                "HTTP requests by route template and status.",
                map.iter().map(|(key, (count, _))| (labels(key), *count)),
            );
            family(
                &mut out,
                "vault_http_request_seconds_sum",
                "counter",
                "Total time spent on requests.",
                map.iter()
                    .map(|(key, (_, seconds))| (labels(key), *seconds)),
            );
        }
        family(
            &mut out,
            "vault_http_requests_in_flight",
            "gauge",
            "Requests being handled, by route.",
            ROUTES
                .iter()
                .zip(&self.in_flight)
                .map(|(route, n)| (format!("route=\"{route}\""), n.load(Ordering::Relaxed))),
        );
        family(
            &mut out,
            "vault_rate_limited_total",
            "counter",
            "Requests refused with 429, by limited operation.",
            Operation::ALL
                .iter()
                .zip(&self.rate_limited)
                .map(|(op, n)| {
                    let labels = format!("operation=\"{}\"", op.as_str());
                    (labels, n.load(Ordering::Relaxed))
                }),
        );
        family(
            &mut out,
            "vault_auth_failures_aggregated_total",
            "counter",
            "Failed authentications (missing or unknown key) counted into aggregated audit events.",
            [(
                String::new(),
                self.auth_failures_aggregated.load(Ordering::Relaxed),
            )],
        );
        family(
            &mut out,
            "vault_shed_total",
            "counter",
            "Requests refused with 503 because a writer queue was full.",
            [(String::new(), self.shed.load(Ordering::Relaxed))],
        );
        out
    }
}

/// Appends the key figures: the data key version in use, how many versions are held, and the
/// tokens rewrapped (a rewrap is done when `vault_data_key_versions` is back to the versions
/// you keep and the counter stops moving; `vault keys status` has the per-version counts).
pub(crate) fn render_keys(out: &mut String, keys: &crate::service::KeyGauges) {
    family(
        out,
        "vault_data_key_version_in_use",
        "gauge",
        "The data key version new card numbers are sealed under.",
        [(String::new(), keys.sealing_version)],
    );
    family(
        out,
        "vault_data_key_versions",
        "gauge",
        "Data key versions held (active or decrypt-only).",
        [(String::new(), keys.data_versions)],
    );
    family(
        out,
        "vault_tokens_rewrapped_total",
        "counter",
        "Tokens this process resealed under the active data key.",
        [(String::new(), keys.rewrapped)],
    );
}

/// Writes one metric family: its `# HELP` and `# TYPE` lines, then a line per sample, each a
/// label set (empty: no labels) and a value.
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, V)>,
) {
    // Writing to a String cannot fail, so the results are dropped.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
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
