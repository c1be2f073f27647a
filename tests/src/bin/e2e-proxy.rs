//! The `proxy` command line, built inside the `tests` crate so end-to-end tests can spawn it.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    proxy::cli::main()
}
