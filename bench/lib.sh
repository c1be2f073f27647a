# Shared by the vault benchmark scripts (sourced, not run): a throwaway vault in a temporary
# directory, on SQLite or, with BENCH_DATABASE_URL=postgres://…, on PostgreSQL in a fresh schema.

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  command -v psql >/dev/null || { echo "psql is not installed (apt-get install postgresql-client)" >&2; exit 1; }
  backend=postgresql
else
  command -v sqlite3 >/dev/null || { echo "sqlite3 is not installed (apt-get install sqlite3)" >&2; exit 1; }
  backend=sqlite
fi
bench_port="${BENCH_PORT:-18200}"
# BENCH_TLS=1 serves the vault over TLS (a self-signed P-256 certificate made by openssl; wrk and
# curl do not verify it, which costs them nothing the vault would see).
set_bench_url() {
  if [ -n "${BENCH_TLS:-}" ]; then bench_url="https://127.0.0.1:$bench_port"; else bench_url="http://127.0.0.1:$bench_port"; fi
}
set_bench_url

# Builds the vault, makes the vault and its client, starts it. Sets dir, pid, VAULT_BENCH_KEY.
start_vault() {
  set_bench_url
  if curl -sk -o /dev/null "$bench_url/healthz"; then
    echo "something already listens on port $bench_port (set BENCH_PORT)" >&2
    exit 1
  fi
  if [ -n "${VAULT_BIN:-}" ]; then
    bin="$VAULT_BIN"   # another build, e.g. an older commit's, to compare in one sitting
  else
    cargo build --release --bin vault -q
    bin="$PWD/target/release/vault"
  fi
  dir=$(mktemp -d)
  schema="bench_$(date +%s)_$$"
  trap stop_vault EXIT
  local database
  if [ "$backend" = postgresql ]; then
    psql "$BENCH_DATABASE_URL" -qc "CREATE SCHEMA $schema" >/dev/null
    local sep='?'
    case "$BENCH_DATABASE_URL" in *\?*) sep='&' ;; esac
    database="url = \"$BENCH_DATABASE_URL${sep}options=-c%20search_path%3D$schema\""
  else
    database="path = \"$dir/vault.db\""
  fi
  cat >"$dir/vault.toml" <<TOML
[server]
listen = "127.0.0.1:$bench_port"
[database]
$database
[keys]
master_key_file = "$dir/master.key"
[log]
filter = "warn"
TOML
  if [ -n "${BENCH_TLS:-}" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench \
      -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
    chmod 600 "$dir/tls.key"
    cat >>"$dir/vault.toml" <<TOML
[server.tls]
cert_file = "$dir/tls.crt"
key_file = "$dir/tls.key"
TOML
  fi
  # Rate limits far above what one machine can send: the bench measures their cost, not their
  # effect. BENCH_LIMITS=none leaves the section out, for builds older than limits.
  if [ "${BENCH_LIMITS:-high}" != none ]; then
    cat >>"$dir/vault.toml" <<TOML
[limits]
tokenize_per_second = 10000000
tokenize_burst = 10000000
read_per_second = 10000000
read_burst = 10000000
detokenize_per_second = 10000000
detokenize_burst = 10000000
TOML
  fi
  export VAULT_CONFIG="$dir/vault.toml"
  "$bin" init >/dev/null
  VAULT_BENCH_KEY=$("$bin" clients create --name bench --tenant bench \
    --scopes tokens:create,tokens:read,tokens:detokenize | awk '/^api_key:/ {print $2}')
  export VAULT_BENCH_KEY
  # BENCH_CALLGRIND=1 runs the vault under callgrind (bench/vault-instructions.sh).
  local wrapper=() tries=100
  if [ -n "${BENCH_CALLGRIND:-}" ]; then
    wrapper=(valgrind --tool=callgrind "--callgrind-out-file=$dir/callgrind.out")
    tries=1200
  fi
  "${wrapper[@]}" "$bin" serve 2>"$dir/serve.log" &
  pid=$!
  for _ in $(seq 1 "$tries"); do curl -skf "$bench_url/healthz" >/dev/null && return; sleep 0.1; done
  echo "the vault did not start:" >&2
  cat "$dir/serve.log" >&2
  exit 1
}

stop_vault() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ "$backend" = postgresql ]; then
    psql "$BENCH_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

# Runs one SQL query against the vault's database and prints the result.
vault_sql() {
  if [ "$backend" = postgresql ]; then
    PGOPTIONS="-c search_path=$schema" psql "$BENCH_DATABASE_URL" -Atc "$1"
  else
    sqlite3 "$dir/vault.db" "$1"
  fi
}

# The vault process's CPU time so far (user + system), in clock ticks.
vault_ticks() {
  awk '{print $14 + $15}' "/proc/$pid/stat"
}

# One wrk run; prints "req/s p50 p99 cpu", cpu being the vault's CPU time per request in µs
# (user + system, from /proc: steadier than req/s on a shared machine, since it does not depend
# on how the cores were shared with wrk). Arguments: connections, then wrk's.
measure() {
  local conns=$1; shift
  local threads=2
  [ "$conns" -lt "$threads" ] && threads=$conns
  local before after
  before=$(vault_ticks)
  wrk -t"$threads" -c"$conns" -d"${duration}s" --latency "$@" >"$dir/wrk.last"
  after=$(vault_ticks)
  cat "$dir/wrk.last" >>"$dir/wrk.txt"
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    '/^Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /requests in/ {n=$1}
     END {printf "%s %s %s %.1f\n", rps, p50, p99, (n > 0 ? ticks / hz * 1e6 / n : 0)}' "$dir/wrk.last"
}

# Tokenizes new random cards at concurrency 64 until the vault holds $1 tokens (each of the two
# wrk threads stops after its share; a round is at most 30 s). Prints how many it holds.
fill_to() {
  local have
  while true; do
    have=$(vault_sql 'SELECT count(*) FROM tokens')
    [ "$have" -ge "$1" ] && break
    local share=$(( ($1 - have + 1) / 2 ))
    VAULT_BENCH_LIMIT=$share wrk -t2 -c64 -d30s -s bench/tokenize.lua "$bench_url" >/dev/null
  done
  echo "$have"
}
