#!/usr/bin/env bash
# Capturing a report of 10 twelve-megapixel photos in the web app in
# headless Chromium (built and sealed in the browser by medseal-capture
# compiled to WebAssembly), beside `medseal capture` of the same photos on
# the same machine in the same run. Both take a fresh key from the same key
# server; the browser saves the sealed file (no upload is timed). Reports
# both times, their ratio (goal: the browser within 4x the CLI), and the
# peak JavaScript heap of the page and its workers plus the capture
# worker's WebAssembly memory (goal < 256 MiB), read over DevTools.
# Usage: bench/browser-capture.sh [PHOTOS] [RUNS]   (needs chromium, node >= 20, python3, curl)
set -euo pipefail
photos=${1:-10}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in chromium node python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y chromium nodejs python3 curl)" >&2; exit 1; }
done
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-capture --features fixtures --example bench_media --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-capture-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work" 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

store=(--data-dir "$work/data")
port=$(free_port)
base="http://127.0.0.1:$port"
"$bin" keyserver org add Bench --init "${store[@]}" 2>/dev/null
printf 'a long bench password\n' > "$work/pw"
"$bin" keyserver user add --org Bench --email alice@bench.example --role clinician --password-file "$work/pw" "${store[@]}" 2>/dev/null
"$bin" keyserver serve --listen "127.0.0.1:$port" "${store[@]}" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

"$root/target/release/examples/bench_media" "$work" "$photos" 1 >/dev/null
mapfile -t files < <(ls "$work"/photo-*.jpg | head -n "$photos")
bytes=$(cat "${files[@]}" | wc -c)
export MEDSEAL_CONFIG_DIR="$work/alice"
"$bin" login --keyserver "$base" --email alice@bench.example --password-file "$work/pw" 2>/dev/null

# The CLI: best of RUNS.
cli_best=""
for _ in $(seq "$runs"); do
  s=$(date +%s.%N)
  "$bin" capture --patient-id P1 --consent verbal-witnessed --witness "Nurse B" --photo "${files[@]}" \
    --keyserver "$base" --recipient alice@bench.example -o "$work/cli.mseal" --force 2>/dev/null
  e=$(date +%s.%N)
  t=$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')
  if [ -z "$cli_best" ] || awk -v a="$t" -v b="$cli_best" 'BEGIN{exit !(a<b)}'; then cli_best=$t; fi
done

dt=$(free_port)
chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --disable-extensions --disable-background-networking --disable-component-update --disable-sync \
  --enable-precise-memory-info --user-data-dir="$work/profile" \
  --remote-debugging-address=127.0.0.1 --remote-debugging-port="$dt" about:blank >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$dt/json/version" >/dev/null && break; sleep 0.1; done
browser=$(node --experimental-websocket --no-warnings "$root/bench/browser-capture.mjs" "$dt" "$base/app/#/capture" \
  alice@bench.example "a long bench password" "$runs" "${files[@]}")

python3 - "$photos" "$bytes" "$cli_best" "$browser" "$(nproc)" <<'PY'
import json, sys
n, size, cli, b = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
cores = sys.argv[5]
print(f"{n} photos of 12 MP, {size/1e6:.1f} MB of JPEG; {cores} cores; best of {len(b['runs'])}; a fresh key from a local key server each time.")
print()
print("| capture | time | peak memory |")
print("|---|---|---|")
print(f"| `medseal capture` (CLI) | {cli:.2f} s | – |")
print(f"| web app in headless Chromium (wasm) | {b['best_seconds']:.2f} s | {b['peak_bytes']/2**20:.0f} MiB JS heap (page and workers) + capture worker's wasm memory |")
print()
best = min(b['runs'], key=lambda r: r['seconds'])
st = best.get('stages')
if st:
    print(f"Browser stages (best run): files handed to the worker {st['intake']/1000:.2f} s, report built {(st['build']-st['intake'])/1000:.2f} s, sealed {st['seal']/1000:.2f} s; the rest {(b['best_seconds']*1000-st['build']-st['seal'])/1000:.2f} s (key, keeping, page).")
print(f"Browser time = {b['best_seconds']/cli:.2f} x the CLI's (goal <= 4); memory peak {b['peak_bytes']/2**20:.0f} MiB (goal < 256 MiB).")
PY
