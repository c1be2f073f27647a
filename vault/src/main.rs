//! The `vault` binary: everything is in the library.
#![forbid(unsafe_code)]

// mimalloc: about 10% more audited reads and detokenizes per second than glibc's allocator in
// `bench/vault-http.sh` (BENCHMARKS.md); every request allocates and frees across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vault::cli::main()
}
