#!/usr/bin/env bash
# Audited key fetches per second (GET /v1/keys/{id}, each durably audited
# before it is answered) with wrk on loopback, beside /healthz on the same
# server in the same run and beside the raw fsync rate of the disk holding
# the data directory.
# Each 200 carries a receipt (the audit event, the batch's signed checkpoint
# and the Merkle inclusion proof).
# Usage: bench/keyserver-fetch.sh [SECONDS] [CONNECTIONS]   (needs wrk, python3)
# With DATABASE_URL=postgres://… the key server uses that database instead of SQLite.
# With KEYRING=pkcs11:… the master keys are on that PKCS#11 token (SoftHSM2:
# also export SOFTHSM2_CONF), so every fetch is unwrapped by the token.
set -euo pipefail
secs=${1:-10}
conns=${2:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
# MEDSEAL_BIN=path runs another build (e.g. an earlier commit's, for a
# before/after comparison in one session).
if [ -z "${MEDSEAL_BIN:-}" ]; then
  cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
fi
bin=${MEDSEAL_BIN:-$root/target/release/medseal}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-ks-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
store=(--data-dir "$work/data")
[ -n "${DATABASE_URL:-}" ] && store+=(--database-url "$DATABASE_URL")
[ -n "${KEYRING:-}" ] && store+=(--keyring "$KEYRING")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" keyserver org add Bench --init "${store[@]}" 2>/dev/null
printf 'a long bench password\n' > "$work/pw"
"$bin" keyserver user add --org Bench --email c@bench.example --role clinician --password-file "$work/pw" "${store[@]}" 2>/dev/null
"$bin" keyserver serve --listen "127.0.0.1:$port" "${store[@]}" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

token=$(curl -sf -XPOST "http://127.0.0.1:$port/v1/sessions" -H 'content-type: application/json' \
  -d '{"email":"c@bench.example","password":"a long bench password","device_id":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
key_id=$(curl -sf -XPOST "http://127.0.0.1:$port/v1/keys" -H "authorization: Bearer $token" -H 'x-device-id: bench' \
  -H 'content-type: application/json' -d '{"report_id":"bench","recipients":["r@bench.example"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')

report() { # NAME WRK-OUTPUT
  awk -v n="$1" '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {p99=$2}
    /^ +50%/ {p50=$2}
    /Non-2xx/ {bad=$NF}
    END { printf "| %-44s | %9.0f | %8s | %8s | %s |\n", n, rps, p50, p99, (bad==""?"0":bad) }' <<<"$2"
}

echo "wrk: ${conns} connections, 2 threads, ${secs}s per run; server and wrk share $(nproc) cores."
echo
echo "| endpoint                                     | req/s     | p50      | p99      | non-2xx |"
echo "|----------------------------------------------|-----------|----------|----------|---------|"
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/healthz")
report "GET /healthz (no auth, no I/O)" "$out"
[ -n "${PERF:-}" ] && (perf record -e cpu-clock -F 999 -g -p "${pids[0]}" -o /tmp/ks.perf -- sleep "$secs" >/dev/null 2>&1 &)
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" -H "X-Device-Id: bench" \
  "http://127.0.0.1:$port/v1/keys/$key_id")
report "GET /v1/keys/{id} (authenticated, audited)" "$out"

fetched=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^medseal_keyserver_key_fetches_total\{outcome="released"\}/ {print $2}')
batches=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^medseal_keyserver_audit_batch_events_count/ {print $2}')
echo
echo "Audit: ${fetched} key fetches released; $(awk -v e="$fetched" -v b="$batches" 'BEGIN{printf "%.1f", e/b}') events per fsynced commit on average."

# The disk's own durable-write rate, in the same directory.
python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
n, start = 0, time.time()
while time.time() - start < 3:
    os.pwrite(fd, b"x" * 512, (n % 64) * 512)
    os.fsync(fd)
    n += 1
os.close(fd)
print(f"Raw fsync rate of the same disk: {n / (time.time() - start):.0f} fsyncs/s (512-byte write + fsync, 3 s).")
PY
