#!/usr/bin/env bash
# Vault HTTP throughput and latency as a share of a trivial endpoint (/healthz) on the same
# server, in one run: concurrency 1, 16 and 64; new and existing PANs; read; detokenize; the
# vault's CPU time per request; peak RSS; database bytes per token. VAULT_BIN=<binary> measures
# another build (BENCH_LIMITS=none for one older than [limits]), so two builds can be compared
# in one sitting.
#
#   bash bench/vault-http.sh [seconds per cell, default 10]
#   BENCH_DATABASE_URL=postgres://user:pass@host/db bash bench/vault-http.sh [seconds]
#
# Needs wrk, and sqlite3 or psql (apt-get install wrk sqlite3 postgresql-client). Builds the
# release binary, makes a throwaway vault (SQLite in a temporary directory, or a fresh schema in
# the given PostgreSQL database, dropped at the end), and prints a Markdown table for
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
source bench/lib.sh

start_vault
VAULT_BENCH_TOKEN=$(curl -sf -X POST "$bench_url/v1/tokens" -H "authorization: Bearer $VAULT_BENCH_KEY" \
  -H 'content-type: application/json' -d '{"pan":"4242424242424242"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
export VAULT_BENCH_TOKEN

declare -A result
for c in 1 16 64; do
  result[healthz,$c]=$(measure "$c" "$bench_url/healthz")
  result[tokenize,$c]=$(measure "$c" -s bench/tokenize.lua "$bench_url")
  result[existing,$c]=$(measure "$c" -s bench/tokenize-existing.lua "$bench_url")
  result[read,$c]=$(measure "$c" -s bench/read.lua "$bench_url")
  result[detokenize,$c]=$(measure "$c" -s bench/detokenize.lua "$bench_url")
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
tokens=$(vault_sql 'SELECT count(*) FROM tokens')
# The tokens table and its indexes only (the audit log grows with every request, not per token).
if [ "$backend" = postgresql ]; then
  token_bytes=$(vault_sql "SELECT pg_total_relation_size('tokens')")
else
  token_bytes=$(vault_sql "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('tokens', 'sqlite_autoindex_tokens_1', 'tokens_tenant_fingerprint', 'tokens_expires_at', 'tokens_key_version')")
fi
non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)

echo "$backend; wrk -t2 -d${duration}s per cell; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | c | req/s | share of /healthz | p50 | p99 | vault CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in 1 16 64; do
  read -r base _ _ _ <<<"${result[healthz,$c]}"
  for name in healthz tokenize existing read detokenize; do
    read -r r p50 p99 cpu <<<"${result[$name,$c]}"
    share=$(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
    echo "| $name | $c | $r | $share | $p50 | $p99 | $cpu |"
  done
done
echo
echo "vault peak RSS: $((rss_kib / 1024)) MiB; tokens stored: $tokens"
if [ "$tokens" -gt 0 ] && [ -n "$token_bytes" ]; then
  echo "tokens table + indexes: $((token_bytes / tokens)) bytes per token"
fi
echo "runs with non-2xx responses: $non2xx"
