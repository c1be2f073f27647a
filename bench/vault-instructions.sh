#!/usr/bin/env bash
# Instructions the vault executes per request, counted by callgrind, for /healthz, read,
# detokenize and tokenize of a known card, one connection at a time. Unlike req/s these barely
# move with whatever else the machine is doing, so they show what a change to the hot path
# costs (BENCHMARKS.md). Under valgrind the CPU has no SHA extensions, so HMAC and SHA-256 count
# several times what they cost on hardware that has them.
#
#   bash bench/vault-instructions.sh [seconds per endpoint, default 10]
#   VAULT_BIN=<other build> BENCH_LIMITS=none bash bench/vault-instructions.sh   # an older build
#
# Needs valgrind, wrk and sqlite3 (apt-get install valgrind wrk sqlite3).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
command -v callgrind_control >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
source bench/lib.sh
export BENCH_CALLGRIND=1
start_vault
VAULT_BENCH_TOKEN=$(curl -sf -X POST "$bench_url/v1/tokens" -H "authorization: Bearer $VAULT_BENCH_KEY" \
  -H 'content-type: application/json' -d '{"pan":"4242424242424242"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
export VAULT_BENCH_TOKEN

echo "| endpoint | requests | instructions per request |"
echo "|---|---:|---:|"
for name in healthz read detokenize existing; do
  case $name in
    healthz) args=("$bench_url/healthz") ;;
    read) args=(-s bench/read.lua "$bench_url") ;;
    detokenize) args=(-s bench/detokenize.lua "$bench_url") ;;
    existing) args=(-s bench/tokenize-existing.lua "$bench_url") ;;
  esac
  wrk -t1 -c1 -d2s "${args[@]}" >/dev/null     # warm up caches and statements
  callgrind_control -z "$pid" >/dev/null 2>&1
  n=$(wrk -t1 -c1 -d"${duration}s" "${args[@]}" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  out=$(ls -t "$dir"/callgrind.out* | head -1)
  ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  rm -f "$out"
  echo "| $name | $n | $((ir / n)) |"
done
