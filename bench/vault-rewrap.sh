#!/usr/bin/env bash
# What a data key rotation costs while serving: detokenize of random stored tokens (p50, p99 at
# concurrency 1 and 16) before a rotation and while the background rewrap moves every token to
# the new version; how fast that paced job moves them; and how fast `vault keys rewrap` does
# with no pause between batches (the vault stopped).
#
#   bash bench/vault-rewrap.sh [seconds per measurement, default 10] [tokens, default 100000]
#   BENCH_DATABASE_URL=postgres://user:pass@host/db bash bench/vault-rewrap.sh
#
# Needs what bench/vault-http.sh needs. The background job runs with the default pace
# (keys.rewrap_batch_size 200, keys.rewrap_pause_ms 50), or BENCH_REWRAP_PAUSE_MS.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
size="${2:-100000}"
source bench/lib.sh
pause_ms="${BENCH_REWRAP_PAUSE_MS:-50}"
export VAULT__KEYS__REWRAP_PAUSE_MS="$pause_ms"

start_vault


under() { vault_sql "SELECT count(*) FROM tokens WHERE key_version = $1"; }
now_ms() { date +%s%3N; }

stored=$(fill_to "$size")
export VAULT_BENCH_TOKENS="$dir/tokens.txt"
vault_sql 'SELECT token FROM tokens ORDER BY random() LIMIT 100000' >"$VAULT_BENCH_TOKENS"

quiet1=$(measure 1 -s bench/detokenize-random.lua "$bench_url")
quiet16=$(measure 16 -s bench/detokenize-random.lua "$bench_url")

# Rotate: the serving vault seals under v2 within a second and its rewrap job starts moving.
"$bin" keys rotate >/dev/null 2>&1
rotated_at=$(now_ms)
while [ "$(under 2)" -eq 0 ]; do sleep 0.05; done
busy1=$(measure 1 -s bench/detokenize-random.lua "$bench_url")
busy16=$(measure 16 -s bench/detokenize-random.lua "$bench_url")
left_after_measuring=$(under 1)
while [ "$(under 1)" -gt 0 ]; do sleep 0.2; done
paced_ms=$(( $(now_ms) - rotated_at ))

# The command line, unpaced, with the vault stopped: v2 rotated to v3.
kill "$pid"; wait "$pid" 2>/dev/null || true
"$bin" keys rotate >/dev/null 2>&1
started=$(now_ms)
unset VAULT__KEYS__REWRAP_PAUSE_MS
VAULT__KEYS__REWRAP_PAUSE_MS=0 "$bin" keys rewrap >/dev/null 2>&1
cli_ms=$(( $(now_ms) - started ))
[ "$(under 2)" -eq 0 ] || { echo "keys rewrap left tokens under v2" >&2; exit 1; }
non2xx=$(grep -c 'Non-2xx' "$dir/wrk.txt" || true)

rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", n / (ms / 1000) }'; }
echo "$backend; $stored tokens; detokenize of random stored tokens; wrk -d${duration}s; $(nproc) cores; $(date -u +%Y-%m-%d)"
echo
echo "| detokenize | p50 (c=1) | p99 (c=1) | req/s (c=16) | p99 (c=16) |"
echo "|---|---:|---:|---:|---:|"
for row in "no rewrap running:$quiet1:$quiet16" "background rewrap running:$busy1:$busy16"; do
  IFS=: read -r name one sixteen <<<"$row"
  read -r _ p50 p99 _ <<<"$one"
  read -r rps _ p99_16 _ <<<"$sixteen"
  echo "| $name | $p50 | $p99 | $rps | $p99_16 |"
done
echo
echo "tokens still under v1 when the two measurements under rewrap ended: $left_after_measuring"
echo "background rewrap (paced, batch 200, pause $pause_ms ms, serving meanwhile): $stored tokens in ${paced_ms} ms = $(rate "$stored" "$paced_ms") tokens/s"
echo "vault keys rewrap (vault stopped, no pause): $stored tokens in ${cli_ms} ms = $(rate "$stored" "$cli_ms") tokens/s"
echo "runs with non-2xx responses: $non2xx"
