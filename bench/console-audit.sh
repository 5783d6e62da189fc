#!/usr/bin/env bash
# The organisation console's searches of a big audit log: a store of N audit
# events (default 1,000,000) over R reports (default 10,000), then, on the
# running key server, with an auditor's session and one kept-alive
# connection, the latency of
#   - "who opened report R"  (GET /v1/audit?report_id=R&action=key.fetched:
#     every opening of a random report, about 90 events), and
#   - the first page of a filtered search (GET /v1/audit?…&order=newest&
#     limit=50, by action, by user, by outcome, in turn),
# beside GET /healthz on the same server in the same run — on SQLite and on
# PostgreSQL (its own, initdb into a temp dir). Every search is itself
# recorded (audit.read) before it is answered, as in production.
# Usage: bench/console-audit.sh [N] [REPORTS] [REQUESTS]   (needs python3, curl, postgresql)
set -euo pipefail
n=${1:-1000000}
reports=${2:-10000}
requests=${3:-300}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-keyserver --example console_fill --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
fill="$root/target/release/examples/console_fill"
. "$root/bench/lib/postgres.sh"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-console-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pg_stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT
printf 'a long bench password\n' > "$work/pw"

run() { # NAME DATA_DIR DATABASE_URL|-
  local name=$1 dir=$2 url=$3 store=(--data-dir "$2")
  [ "$url" != - ] && store+=(--database-url "$url")
  "$bin" keyserver org add Bench --init "${store[@]}" 2>/dev/null
  "$bin" keyserver user add --org Bench --email ig@bench.example --role auditor --password-file "$work/pw" "${store[@]}" 2>/dev/null
  local start; start=$(date +%s.%N)
  "$fill" "$dir" "$url" "$n" "$reports" >/dev/null
  printf 'store (%s): %d events over %d reports, written in %.1f s\n' "$name" "$n" "$reports" "$(echo "$(date +%s.%N) - $start" | bc)"
  local port; port=$(free_port)
  "$bin" keyserver serve --listen "127.0.0.1:$port" "${store[@]}" 2>>"$work/server.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  python3 - "$port" "$requests" "$reports" "$name" <<'PY'
import http.client, json, random, sys, time
port, requests, reports, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("POST", "/v1/sessions", json.dumps({"email": "ig@bench.example", "password": "a long bench password", "device_id": "bench"}), {"content-type": "application/json"})
r = c.getresponse()
token = json.loads(r.read())["token"]
auth = {"authorization": f"Bearer {token}", "x-device-id": "bench"}
rng = random.Random(7)
def measure(paths, headers):
    times, sizes = [], []
    for p in paths:
        t = time.perf_counter()
        c.request("GET", p, headers=headers)
        r = c.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, (p, r.status, body[:200])
        sizes.append(len(json.loads(body).get("events", [])) if p.startswith("/v1/audit") else 0)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return pick(0.5), pick(0.99), times[-1], sum(sizes) / len(sizes)
filters = ["action=key.denied", "actor=clinician{}@bench.example", "outcome=denied", "action=key.created"]
rows = [
    ("GET /healthz", measure(["/healthz"] * requests, {})),
    ("who opened report R", measure([f"/v1/audit?report_id=report-{rng.randrange(reports)}&action=key.fetched" for _ in range(requests)], auth)),
    ("first page of a filtered search (50, newest first)", measure([
        "/v1/audit?" + filters[i % len(filters)].format(rng.randrange(200)) + "&order=newest&limit=50" for i in range(requests)], auth)),
]
for what, (p50, p99, worst, events) in rows:
    print(f"| {name} | {what} | {p50:.2f} | {p99:.2f} | {worst:.2f} | {events:.0f} |")
PY
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

echo "$requests requests per row, one kept-alive connection; the server and the client share $(nproc) cores."
echo
echo "| store | request | p50 ms | p99 ms | max ms | events per answer |"
echo "|---|---|---|---|---|---|"
run SQLite "$work/sqlite" -
pg_start "$work"
run PostgreSQL "$work/pgdata" "$pg_url"
