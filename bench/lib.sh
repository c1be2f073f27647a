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
bench_url="http://127.0.0.1:$bench_port"

# Builds the vault, makes the vault and its client, starts it. Sets dir, pid, VAULT_BENCH_KEY.
start_vault() {
  if curl -s -o /dev/null "$bench_url/healthz"; then
    echo "something already listens on port $bench_port (set BENCH_PORT)" >&2
    exit 1
  fi
  cargo build --release --bin vault -q
  bin="$PWD/target/release/vault"
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
  export VAULT_CONFIG="$dir/vault.toml"
  "$bin" init >/dev/null
  VAULT_BENCH_KEY=$("$bin" clients create --name bench --tenant bench \
    --scopes tokens:create,tokens:read,tokens:detokenize | awk '/^api_key:/ {print $2}')
  export VAULT_BENCH_KEY
  "$bin" serve 2>"$dir/serve.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "$bench_url/healthz" >/dev/null && return; sleep 0.1; done
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

# One wrk run; prints "req/s p50 p99". Arguments: connections, then wrk's.
measure() {
  local conns=$1; shift
  local threads=2
  [ "$conns" -lt "$threads" ] && threads=$conns
  wrk -t"$threads" -c"$conns" -d"${duration}s" --latency "$@" \
    | tee -a "$dir/wrk.txt" \
    | awk '/^Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} END {print rps, p50, p99}'
}
