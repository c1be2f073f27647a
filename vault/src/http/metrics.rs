//! Request counters in Prometheus text format. Labels are route templates and status codes
//! only: nothing a caller chooses.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::Mutex;

/// Counters per (route template, status).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
}

impl Metrics {
    /// Counts one request.
    pub fn record(&self, route: &str, status: StatusCode, elapsed: Duration) {
        let mut map = self.requests.lock();
        let entry = map.entry((route.to_owned(), status.as_u16())).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_secs_f64();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let map = self.requests.lock();
        let mut out = String::new();
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
        out
    }
}
