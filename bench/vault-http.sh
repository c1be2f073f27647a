#!/usr/bin/env bash
# Vault HTTP throughput and latency as a share of a trivial endpoint (/healthz) on the same
# server, in one run: concurrency 1, 16 and 64; new and existing PANs; read; detokenize; peak RSS;
# database bytes per token.
#
#   bash bench/vault-http.sh [seconds per endpoint, default 10]
#
# Needs wrk and sqlite3 (apt-get install wrk sqlite3). Builds the release binary, makes a throwaway vault in a
# temporary directory, and prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
threads=2


command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --bin vault -q
bin="$PWD/target/release/vault"
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

cat >"$dir/vault.toml" <<TOML
[server]
listen = "127.0.0.1:18200"
[database]
path = "$dir/vault.db"
[keys]
master_key_file = "$dir/master.key"
[log]
filter = "warn"
TOML
export VAULT_CONFIG="$dir/vault.toml"
"$bin" init >/dev/null
key=$("$bin" clients create --name bench --tenant bench \
  --scopes tokens:create,tokens:read,tokens:detokenize | awk '/^api_key:/ {print $2}')
"$bin" serve 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18200/healthz >/dev/null && break; sleep 0.1; done
token=$(curl -sf -X POST http://127.0.0.1:18200/v1/tokens -H "authorization: Bearer $key" \
  -H 'content-type: application/json' -d '{"pan":"4242424242424242"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
export VAULT_BENCH_KEY="$key" VAULT_BENCH_TOKEN="$token"

# One wrk run; prints "req/s p50 p99".
measure() {
  local conns=$1; shift
  local threads=$threads
  [ "$conns" -lt "$threads" ] && threads=$conns
  wrk -t"$threads" -c"$conns" -d"${duration}s" --latency "$@" \
    | tee -a "$dir/wrk.txt" \
    | awk '/^Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {print rps, p50, p99}'
}

declare -A result
for c in 1 16 64; do
  result[healthz,$c]=$(measure "$c" http://127.0.0.1:18200/healthz)
  result[tokenize,$c]=$(measure "$c" -s bench/tokenize.lua http://127.0.0.1:18200)
  result[existing,$c]=$(measure "$c" -s bench/tokenize-existing.lua http://127.0.0.1:18200)
  result[read,$c]=$(measure "$c" -s bench/read.lua http://127.0.0.1:18200)
  result[detokenize,$c]=$(measure "$c" -s bench/detokenize.lua http://127.0.0.1:18200)
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
tokens=$(sqlite3 "$dir/vault.db" 'SELECT count(*) FROM tokens' 2>/dev/null || echo 0)
db_bytes=$(du -cb "$dir"/vault.db* | tail -n 1 | cut -f1)
# The tokens table and its indexes only (the audit log grows with every request, not per token).
token_bytes=$(sqlite3 "$dir/vault.db" "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('tokens', 'sqlite_autoindex_tokens_1', 'tokens_tenant_fingerprint', 'tokens_expires_at', 'tokens_key_version')" 2>/dev/null || echo 0)
non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)

echo "wrk -t$threads -d${duration}s per cell, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | c | req/s | share of /healthz | p50 | p99 |"
echo "|---|---:|---:|---:|---:|---:|"
for c in 1 16 64; do
  read -r base _ _ <<<"${result[healthz,$c]}"
  for name in healthz tokenize existing read detokenize; do
    read -r r p50 p99 <<<"${result[$name,$c]}"
    share=$(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
    echo "| $name | $c | $r | $share | $p50 | $p99 |"
  done
done
echo
echo "vault peak RSS: $((rss_kib / 1024)) MiB; tokens stored: $tokens; database (with WAL): $db_bytes bytes"
if [ "$tokens" -gt 0 ] && [ -n "$token_bytes" ]; then
  echo "tokens table + indexes: $((token_bytes / tokens)) bytes per token"
fi
echo "runs with non-2xx responses: $non2xx"
