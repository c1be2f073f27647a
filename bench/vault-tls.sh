#!/usr/bin/env bash
# What TLS costs the vault: /healthz, read and detokenize at concurrency 64 over plain HTTP and
# then over TLS (TLS 1.3, P-256 certificate), in one sitting, each as requests per second and as
# the vault's CPU time per request, and TLS against plain. wrk keeps its connections open, so
# this is the steady state (one handshake per connection, then records), which is what a proxy
# holding keep-alive connections to the vault sees.
#
#   bash bench/vault-tls.sh [seconds per cell, default 10]
#
# Needs wrk, sqlite3, openssl and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
source bench/lib.sh

declare -A result
for mode in plain tls; do
  if [ "$mode" = tls ]; then export BENCH_TLS=1; else unset BENCH_TLS; fi
  start_vault
  VAULT_BENCH_TOKEN=$(curl -skf -X POST "$bench_url/v1/tokens" -H "authorization: Bearer $VAULT_BENCH_KEY" \
    -H 'content-type: application/json' -d '{"pan":"4242424242424242"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
  export VAULT_BENCH_TOKEN
  result[healthz,$mode]=$(measure 64 "$bench_url/healthz")
  result[read,$mode]=$(measure 64 -s bench/read.lua "$bench_url")
  result[detokenize,$mode]=$(measure 64 -s bench/detokenize.lua "$bench_url")
  non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)
  [ "$non2xx" -eq 0 ] || { echo "$mode: $non2xx runs with non-2xx responses" >&2; exit 1; }
  stop_vault
  trap - EXIT
done

echo "$backend; wrk -t2 -c64 -d${duration}s per cell; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | plain req/s | TLS req/s | TLS / plain | plain CPU µs/req | TLS CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|"
for name in healthz read detokenize; do
  read -r pr _ _ pc <<<"${result[$name,plain]}"
  read -r tr _ _ tc <<<"${result[$name,tls]}"
  ratio=$(awk -v a="$tr" -v b="$pr" 'BEGIN { printf "%.3f", a / b }')
  echo "| $name | $pr | $tr | $ratio | $pc | $tc |"
done
