//! What the tests of the binaries ask of a command: to run from a directory of their choosing,
//! its output as text, and its exit code asserted so that, when it is not the one expected, the
//! message shows what the command said (a failure names its cause).
#![allow(
    clippy::panic,
    reason = "test helpers: a failure here is the test's failure"
)]

use std::path::Path;
use std::process::{Command, Output};

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

/// Asserts the command exited with `code`; returns its standard error (which the message shows
/// when the code is another).
///
/// # Panics
///
/// It exited otherwise.
#[track_caller]
pub fn failed_with(out: &Output, code: i32) -> String {
    let stderr = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

/// Runs `bin --config config args…` to the end from the directory `cwd`, as an operator would
/// type it there: relative paths stay relative.
///
/// # Panics
///
/// The binary cannot be started.
pub fn run_in(cwd: &Path, bin: &str, config: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(cwd)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"))
}
