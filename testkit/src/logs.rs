//! The logs of a test binary, captured: the services under test run in-process and log through
//! `shared::telemetry` (JSON, `debug`) into one buffer the tests scan for card data.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

/// Every log line this test binary wrote, since the first call of [`capture`].
static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&logs);
    shared::telemetry::init(shared::telemetry::LogFormat::Json, "debug", move || {
        LogWriter(Arc::clone(&sink))
    })
    .expect("logging starts once per test binary");
    logs
});

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (once per binary; later calls do nothing): call it before the code under
/// test first logs.
pub fn capture() {
    LazyLock::force(&LOGS);
}

/// Everything captured so far.
pub fn logs() -> Vec<u8> {
    LOGS.lock().unwrap().clone()
}
