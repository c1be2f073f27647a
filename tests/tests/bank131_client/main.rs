//! The proxy's Bank 131 client against the sandbox over real HTTP, in both API versions: the
//! whole payout lifecycle, cancel, every magic outcome, wrong state, idempotency reuse, a bad
//! signature, timeouts and 5xx, and the card-data boundary of the client's logs and errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod env;
mod errors;
mod lifecycle;
mod tls;
