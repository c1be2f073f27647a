#!/usr/bin/env bash
# Does detokenize stay as fast as the vault grows? Fills one vault to 10,000 tokens, measures
# detokenize of random stored tokens (p50 and p99 at concurrency 1, req/s at 16), fills it to
# 1,000,000 tokens and measures again.
#
#   bash bench/vault-growth.sh [seconds per measurement, default 10] [large size, default 1000000]
#   BENCH_DATABASE_URL=postgres://user:pass@host/db bash bench/vault-growth.sh
#
# Needs what bench/vault-http.sh needs. Filling to a million tokens takes a few minutes and
# about 1 GB of disk (tokens plus one audit event each).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
large="${2:-1000000}"
source bench/lib.sh

start_vault


# Prints "tokens p50 p99 req/s(c=16)" for detokenizing random stored tokens.
detokenize_at() {
  local n
  n=$(fill_to "$1")
  export VAULT_BENCH_TOKENS="$dir/tokens.txt"
  vault_sql 'SELECT token FROM tokens ORDER BY random() LIMIT 100000' >"$VAULT_BENCH_TOKENS"
  local one sixteen
  one=$(measure 1 -s bench/detokenize-random.lua "$bench_url")
  sixteen=$(measure 16 -s bench/detokenize-random.lua "$bench_url")
  read -r _ p50 p99 <<<"$one"
  read -r rps _ _ <<<"$sixteen"
  echo "$n $p50 $p99 $rps"
}

small=$(detokenize_at 10000)
big=$(detokenize_at "$large")
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)

to_us() { awk -v v="$1" 'BEGIN { u = v; sub(/[a-z]+$/, "", u); if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else f = 1000000; printf "%.1f", u * f }'; }
echo "$backend; detokenize of random stored tokens; wrk -d${duration}s; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
echo "| tokens stored | p50 (c=1) | p99 (c=1) | req/s (c=16) |"
echo "|---:|---:|---:|---:|"
for row in "$small" "$big"; do
  read -r n p50 p99 rps <<<"$row"
  echo "| $n | $p50 | $p99 | $rps |"
done
read -r _ small_p50 _ _ <<<"$small"
read -r _ big_p50 _ _ <<<"$big"
echo
echo "p50 at the large size / p50 at 10k: $(awk -v a="$(to_us "$big_p50")" -v b="$(to_us "$small_p50")" 'BEGIN { printf "%.2f", a / b }')"
echo "vault peak RSS: $((rss_kib / 1024)) MiB; runs with non-2xx responses: $non2xx"
