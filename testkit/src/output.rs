//! What the tests of the binaries ask of a command that has run: its output as text, and success
//! that, when it is missing, shows what the command said (a failure names its cause).
#![allow(
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::process::Output;

/// The command's standard output, as text (invalid UTF-8 replaced).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The command's standard error, as text (invalid UTF-8 replaced).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command exited 0.
///
/// # Panics
///
/// It did not; the message holds its exit status and standard error.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "{}: {}", out.status, stderr(out));
}
