//! Logging setup shared by the services.
//!
//! Logs go to stderr as text or JSON lines. The panic hook replaces the default one because a
//! panic payload is arbitrary text that could carry request data: it logs where the panic
//! happened, never what it said.

use std::str::FromStr;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, Eq, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The filter directive did not parse.
    #[error("invalid log filter")]
    Filter,
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadySet,
}

/// Installs the global subscriber writing to `writer`. Services also call
/// [`install_panic_hook`]; tests do not, so their failures still print.
///
/// # Errors
///
/// A bad filter string, or a subscriber installed already.
pub fn init<W>(format: LogFormat, filter: &str, writer: W) -> Result<(), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, filter::FilterExt};

    // Both filters are static (by target and level), so each callsite's verdict is cached once:
    // a disabled `debug!` in hyper costs nothing per request. A closure filter would be asked
    // at every event.
    let filter = EnvFilter::from_str(filter)
        .map_err(|_| TelemetryError::Filter)?
        .and(caps());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true);
    let layer = match format {
        LogFormat::Text => layer.with_ansi(false).with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)
}

/// Library targets whose verbose levels print request data, capped at `info` whatever the
/// configured filter says: tokio-postgres logs every statement's parameters at `debug` (the
/// vault's ciphertexts and fingerprints, the proxy's payouts).
const CAPPED_TARGETS: &[&str] = &["tokio_postgres", "postgres_protocol"];

/// Everything passes but [`CAPPED_TARGETS`] above `info`.
fn caps() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::INFO),
    )
}

#[cfg(test)]
fn within_caps(target: &str, level: tracing::Level) -> bool {
    caps().would_enable(target, &level)
}

/// Replaces the panic hook with one that logs the location only.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if tracing::dispatcher::has_been_set() {
            tracing::error!(%location, "panic (payload withheld: it may contain request data)");
        } else {
            // Before logging is set up (while the configuration loads), stderr directly.
            eprintln!("panic at {location} (payload withheld: it may contain request data)");
        }
    }));
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::within_caps;

    /// Through the real subscriber, with the most verbose filter a user could set.
    #[test]
    fn postgres_statement_logs_never_reach_the_log() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = Arc::clone(&seen);
        super::init(
            super::LogFormat::Json,
            "trace,tokio_postgres=trace",
            move || Sink(Arc::clone(&sink)),
        )
        .unwrap();
        tracing::debug!(target: "tokio_postgres::query", "executing statement s1 with parameters: [4242424242424242]");
        tracing::info!(target: "tokio_postgres::connection", "connection closed");
        tracing::debug!(target: "vault::access", "request");
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("4242"), "{text}");
        assert!(
            text.contains("connection closed") && text.contains("\"request\""),
            "{text}"
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn postgres_statement_logs_are_capped_at_info() {
        assert!(!within_caps("tokio_postgres::query", Level::DEBUG));
        assert!(!within_caps("tokio_postgres", Level::TRACE));
        assert!(within_caps("tokio_postgres::connection", Level::INFO));
        assert!(within_caps("tokio::runtime", Level::DEBUG));
        assert!(within_caps("vault::access", Level::DEBUG));
    }
}
