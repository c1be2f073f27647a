//! The `proxy` binary: everything is in the library.
#![forbid(unsafe_code)]

// mimalloc, as in the vault: glibc's malloc and free were about 9% of the proxy's CPU per payout
// in `bench/payouts.sh --profile` (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    proxy::cli::main()
}
