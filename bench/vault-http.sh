#!/usr/bin/env bash
# Vault HTTP throughput as a share of a trivial endpoint (/healthz) on the same server, in one run.
#
#   bash bench/vault-http.sh [seconds per endpoint, default 10]
#
# Needs wrk (apt-get install wrk). Builds the release binary, makes a throwaway vault in a
# temporary directory, and prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
threads=2
connections=32

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

rps() {
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$@" http://127.0.0.1:18200/healthz \
    | tee -a "$dir/wrk.txt" | awk '/^Requests\/sec/ {print $2}'
}
rps_of() {
  local script=$1
  wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "bench/$script" http://127.0.0.1:18200 \
    | tee -a "$dir/wrk.txt" | awk '/^Requests\/sec/ {print $2}'
}
p99_last() { grep ' 99%' "$dir/wrk.txt" | tail -n 1 | awk '{print $2}'; }

healthz=$(rps); healthz_p99=$(p99_last)
tokenize=$(rps_of tokenize.lua); tokenize_p99=$(p99_last)
detokenize=$(rps_of detokenize.lua); detokenize_p99=$(p99_last)
read=$(rps_of read.lua); read_p99=$(p99_last)
non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)

ratio() { awk -v a="$1" -v b="$healthz" 'BEGIN { printf "%.3f", a / b }'; }
echo "wrk -t$threads -c$connections -d${duration}s, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| endpoint | req/s | share of /healthz | p99 |"
echo "|---|---:|---:|---:|"
echo "| GET /healthz (trivial) | $healthz | 1.000 | $healthz_p99 |"
echo "| POST /v1/tokens (new PAN each) | $tokenize | $(ratio "$tokenize") | $tokenize_p99 |"
echo "| POST /v1/tokens/{t}/detokenize | $detokenize | $(ratio "$detokenize") | $detokenize_p99 |"
echo "| GET /v1/tokens/{t} | $read | $(ratio "$read") | $read_p99 |"
echo
echo "runs with non-2xx responses: $non2xx"
