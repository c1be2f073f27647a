//! Time as the vault stores it: Unix microseconds, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with second precision, as the API shows times.
pub fn rfc3339(micros: i64) -> String {
    let secs = u64::try_from(micros.max(0) / 1_000_000).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// RFC 3339 UTC with microsecond precision, for the audit log.
pub fn rfc3339_micros(micros: i64) -> String {
    let micros = u64::try_from(micros.max(0)).unwrap_or(0);
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(micros)).to_string()
}
