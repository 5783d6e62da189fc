#!/usr/bin/env bash
# Audited key fetches on PostgreSQL: one key server vs two key servers on the
# same database (load split evenly, as behind a load balancer), beside
# pgbench's single-row INSERT rate on the same PostgreSQL, all in one run.
# Starts its own PostgreSQL (initdb into a temp dir, free port; as the
# `postgres` user when run as root).
# Usage: bench/keyserver-scaleout.sh [SECONDS] [CONNECTIONS]   (needs wrk, python3, curl, postgresql)
set -euo pipefail
secs=${1:-10}
conns=${2:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
. "$root/bench/lib/postgres.sh"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-scaleout.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pg_stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT

pg_start "$work" max_connections=300
pgport=$pg_port
url=$pg_url

store_a=(--data-dir "$work/a" --database-url "$url")
"$bin" keyserver org add Bench --init "${store_a[@]}" 2>/dev/null
printf 'a long bench password\n' > "$work/pw"
"$bin" keyserver user add --org Bench --email c@bench.example --role clinician --password-file "$work/pw" "${store_a[@]}" 2>/dev/null
store_b=(--data-dir "$work/b" --database-url "$url" --keyring "$work/a/master.keyring")

start() { # PORT STORE...
  local port=$1; shift
  "$bin" keyserver serve --listen "127.0.0.1:$port" "$@" 2>>"$work/server.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "bench: the key server did not start" >&2; exit 1
}
pa=$(free_port); pb=$(free_port)
start "$pa" "${store_a[@]}"
start "$pb" "${store_b[@]}"

token=$(curl -sf -XPOST "http://127.0.0.1:$pa/v1/sessions" -H 'content-type: application/json' \
  -d '{"email":"c@bench.example","password":"a long bench password","device_id":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
key_id=$(curl -sf -XPOST "http://127.0.0.1:$pa/v1/keys" -H "authorization: Bearer $token" -H 'x-device-id: bench' \
  -H 'content-type: application/json' -d '{"report_id":"bench","recipients":["r@bench.example"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
fetch() { # PORT CONNS THREADS
  wrk -t"$3" -c"$2" -d"${secs}s" --latency -H "Authorization: Bearer $token" -H "X-Device-Id: bench" \
    "http://127.0.0.1:$1/v1/keys/$key_id"
}
field() { awk -v k="$1" '$1==k {print $2}'; }
rps() { awk '/Requests\/sec/ {print $2}'; }

echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on loopback; wrk ${conns} connections, ${secs}s per run; everything shares $(nproc) cores."
echo
echo "| setup | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
one=$(fetch "$pa" "$conns" 2)
printf '| one key server, %s connections | %.0f | %s | %s | %s |\n' "$conns" "$(rps <<<"$one")" "$(field 50% <<<"$one")" "$(field 99% <<<"$one")" "$(awk '/Non-2xx/ {print $NF}' <<<"$one" | grep . || echo 0)"
half=$((conns / 2))
fetch "$pa" "$half" 1 >"$work/wa" & w1=$!
fetch "$pb" "$half" 1 >"$work/wb" & w2=$!
wait "$w1" "$w2"
total=$(awk '/Requests\/sec/ {s+=$2} END {printf "%.0f", s}' "$work/wa" "$work/wb")
p50=$(cat "$work/wa" "$work/wb" | field 50% | sort -V | tail -1)
p99=$(cat "$work/wa" "$work/wb" | field 99% | sort -V | tail -1)
bad=$(cat "$work/wa" "$work/wb" | awk '/Non-2xx/ {s+=$NF} END {print s+0}')
printf '| two key servers, %s + %s connections | %s | %s (worse of two) | %s (worse of two) | %s |\n' "$half" "$half" "$total" "$p50" "$p99" "$bad"

# pgbench: one-row INSERT transactions, same server, same client count.
"$pgbin/psql" -q -h 127.0.0.1 -p "$pgport" -U medseal medseal -c 'CREATE TABLE bench_rows (id bigserial PRIMARY KEY, at bigint NOT NULL, v text NOT NULL)'
echo "INSERT INTO bench_rows (at, v) VALUES (extract(epoch from now())::bigint, md5(random()::text));" > "$work/insert.sql"
pg=$("$pgbin/pgbench" -n -h 127.0.0.1 -p "$pgport" -U medseal -c "$conns" -j 2 -T "$secs" -f "$work/insert.sql" medseal 2>&1)
tps=$(awk '/^tps/ {printf "%.0f", $3}' <<<"$pg")
lat=$(awk '/latency average/ {print $4" "$5}' <<<"$pg")
printf '| pgbench, single-row INSERT, %s clients | %s tps | avg %s | – | – |\n' "$conns" "$tps" "$lat"
events=$("$pgbin/psql" -tA -h 127.0.0.1 -p "$pgport" -U medseal medseal -c 'SELECT count(*) FROM audit_events')
echo
echo "Audit events written during the run: $events (one per fetch, in one chain)."
"$bin" keyserver audit verify "${store_a[@]}"
