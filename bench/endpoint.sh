#!/usr/bin/env bash
# The receiving endpoint's throughput for 1 MB reports, beside a plain upload
# of the same bytes to a plain upload server on the same HTTP stack with the
# same durability (endpoint/examples/plain_upload.rs), in the same run.
#
#  1. intake: POST /v1/reports answered 202 (sender checked with the key
#     server, report streamed to disk, header checked, synced, queued with a
#     receipt), with wrk, against POST /upload of the same multipart bodies.
#  2. forwarding: N distinct reports posted at once, timed until every one is
#     opened with a key fetched as the service account, verified and written
#     as a plain tar into a drop folder.
#
# Usage: bench/endpoint.sh [SECONDS] [CONNECTIONS] [REPORTS]   (needs wrk, curl, python3)
set -euo pipefail
secs=${1:-10}
conns=${2:-8}
reports=${3:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-endpoint --example plain_upload --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
plain="$root/target/release/examples/plain_upload"
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-endpoint-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
fail_log() { echo "--- $1" >&2; tail -5 "$1" >&2 || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "bench: $1 did not come up" >&2; return 1; }

# Key server, a clinician and the endpoint's service account.
ks_port=$(free_port)
ks="http://127.0.0.1:$ks_port"
store=(--data-dir "$work/ks")
"$bin" keyserver org add Bench --init "${store[@]}" 2>/dev/null
printf 'a long bench password\n' > "$work/pw"
"$bin" keyserver user add --org Bench --email c@bench.example --role clinician --password-file "$work/pw" "${store[@]}" 2>/dev/null
"$bin" keyserver user add --org Bench --email endpoint@bench.example --role service --password-file "$work/pw" "${store[@]}" 2>/dev/null
"$bin" keyserver serve --listen "127.0.0.1:$ks_port" "${store[@]}" 2>"$work/ks.log" &
pids+=($!)
wait_up "$ks/healthz" || { fail_log "$work/ks.log"; exit 1; }
export MEDSEAL_CONFIG_DIR="$work/clinician"
"$bin" login --keyserver "$ks" --email c@bench.example --password-file "$work/pw" 2>/dev/null

# REPORTS distinct captured reports of about 1 MB: one small photo (PNG)
# and 1 MiB of recorded audio (WAV, random samples, so each report differs),
# sealed with a fresh key-server key; and each one's multipart body as a
# sender posts it.
mkdir -p "$work/reports" "$work/bodies" "$work/media"
python3 - "$work/media" "$reports" <<'PY'
import os, struct, sys, wave, zlib
out, n = sys.argv[1], int(sys.argv[2])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\0" + bytes([200, 120, 90]) * 64 for _ in range(64))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(f"{out}/photo.png", "wb").write(png)
for i in range(1, n + 1):
    with wave.open(f"{out}/audio-{i}.wav", "wb") as w:
        w.setnchannels(1); w.setsampwidth(1); w.setframerate(8000)
        w.writeframes(os.urandom(1 << 20))
PY
for i in $(seq "$reports"); do
  "$bin" capture --patient-id "BENCH-$i" --consent written --consent-evidence "$work/media/photo.png" \
    --photo "$work/media/photo.png" --audio "$work/media/audio-$i.wav" \
    --keyserver "$ks" --recipient c@bench.example -o "$work/reports/report-$i.mseal" 2>/dev/null
done
python3 - "$work" "$reports" <<'PY'
import json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
cfg = os.environ["MEDSEAL_CONFIG_DIR"]
token = next(iter(json.load(open(os.path.join(cfg, "sessions.json"))).values()))["token"]
device = open(os.path.join(cfg, "device-id")).read().strip()
b = b"medsealbenchboundary"
for i in range(1, n + 1):
    report = open(f"{work}/reports/report-{i}.mseal", "rb").read()
    body = b"".join([
        b"--" + b + b'\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + token.encode() + b"\r\n",
        b"--" + b + b'\r\nContent-Disposition: form-data; name="device_id"\r\n\r\n' + device.encode() + b"\r\n",
        b"--" + b + b'\r\nContent-Disposition: form-data; name="report"; filename="report-%d.mseal"\r\n' % i,
        b"Content-Type: application/octet-stream\r\n\r\n" + report + b"\r\n--" + b + b"--\r\n",
    ])
    open(f"{work}/bodies/{i}", "wb").write(body)
PY
cat > "$work/post.lua" <<LUA
local bodies = {}
for i = 1, $reports do
  local f = assert(io.open("$work/bodies/" .. i, "rb"))
  bodies[i] = f:read("*a")
  f:close()
end
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "multipart/form-data; boundary=medsealbenchboundary"}, bodies[n])
end
LUA
size=$(stat -c %s "$work/reports/report-1.mseal")

# The endpoint (forwarding to a drop folder, as plain tars) and the plain
# upload server.
cat > "$work/endpoint.toml" <<TOML
[destinations.drop]
type = "folder"
path = "$work/drop"
payload = "plain"
TOML
mkdir -p "$work/drop" "$work/plain-uploads"
printf 'email = "endpoint@bench.example"\npassword = "a long bench password"\n' > "$work/credentials"
chmod 600 "$work/credentials"
start_endpoint() { # DATA-DIR
  ep_port=$(free_port)
  "$bin" endpoint serve --keyserver "$ks" --credentials "$work/credentials" --config "$work/endpoint.toml" \
    --forward drop --data-dir "$1" --listen "127.0.0.1:$ep_port" 2>"$1.log" &
  pids+=($!)
  wait_up "http://127.0.0.1:$ep_port/healthz" || { fail_log "$1.log"; exit 1; }
}
start_endpoint "$work/endpoint-intake"
pl_port=$(free_port)
"$plain" "127.0.0.1:$pl_port" "$work/plain-uploads" &
pids+=($!)
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$pl_port/" && break; sleep 0.05; done

report() { # NAME WRK-OUTPUT
  awk -v n="$1" -v size="$size" '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {p99=$2}
    /^ +50%/ {p50=$2}
    /Non-2xx/ {bad=$NF}
    END { printf "| %-52s | %9.1f | %7.0f | %8s | %8s | %s |\n", n, rps, rps*size/1048576, p50, p99, (bad==""?"0":bad) }' <<<"$2"
}

echo "$reports distinct reports of $size bytes; wrk: $conns connections, 2 threads, ${secs}s per run;"
echo "endpoint, key server, upload server and wrk share $(nproc) cores and one disk."
echo
echo "| intake                                               | reports/s | MiB/s   | p50      | p99      | non-2xx |"
echo "|------------------------------------------------------|-----------|---------|----------|----------|---------|"
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://127.0.0.1:$pl_port/upload")
report "plain upload: POST /upload (stream, fsync, rename)" "$out"
out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://127.0.0.1:$ep_port/v1/reports")
report "endpoint: POST /v1/reports (202, durably queued)" "$out"

# Forwarding: a fresh endpoint, every report posted once, 4 at a time;
# timed from the first post until the last tar is in the drop folder.
rm -rf "$work/drop" && mkdir -p "$work/drop"
start_endpoint "$work/endpoint-forward"
t0=$(date +%s.%N)
seq "$reports" | xargs -P 4 -I{} curl -sf -o /dev/null -H "Content-Type: multipart/form-data; boundary=medsealbenchboundary" \
  --data-binary "@$work/bodies/{}" "http://127.0.0.1:$ep_port/v1/reports"
t1=$(date +%s.%N)
deadline=$((SECONDS + ${FORWARD_TIMEOUT:-300}))
until [ "$(find "$work/drop" -name '*.tar' | wc -l)" -ge "$reports" ]; do
  [ $SECONDS -lt $deadline ] || { echo "bench: forwarding did not finish; see $work/endpoint-forward.log" >&2; exit 1; }
  sleep 0.02
done
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$reports" <<'PY'
import sys
t0, t1, t2, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print()
print(f"forwarding: {n} reports accepted in {t1 - t0:.2f} s ({n / (t1 - t0):.1f}/s); "
      f"all opened, verified and in the drop folder after {t2 - t0:.2f} s "
      f"({n / (t2 - t0):.1f} reports/s end to end)")
PY
fetches=$(grep -c 'delivered' "$work/endpoint-forward.log" || true)
echo "endpoint log: $fetches deliveries"
