#!/usr/bin/env bash
# End-to-end payouts per second through proxy + vault + Bank 131 sandbox (zero bank delay), all
# on this machine, and the CPU each process spends per payout; with --profile, a perf profile of
# the three services (issue 6). Prints a Markdown report for BENCHMARKS.md.
#
#   bash bench/payouts.sh [payout-bench flags]
#   bash bench/payouts.sh --seconds 10 --concurrency 16
#   bash bench/payouts.sh --profile                      # needs perf (linux-perf)
#   bash bench/payouts.sh --tls                          # every hop over TLS, mutual TLS to the vault
#   bash bench/payouts.sh --database-url postgres://user:pass@127.0.0.1:5432/db
#   BENCH_DATABASE_URL=postgres://user:pass@host/db bash bench/payouts.sh   # the same
#
# Builds the four release binaries; payout-bench runs the others from target/release as separate
# processes on a throwaway stack in a temporary directory (see tests/src/bin/payout-bench/main.rs, or
# `target/release/payout-bench --help` for every flag).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q --bin vault --bin proxy --bin bank131-sandbox --bin payout-bench
exec target/release/payout-bench "$@"
