#!/usr/bin/env bash
# Opening a ~200 MB captured report (two 12-MP photos and a video) in the
# web app in headless Chromium, beside `medseal open --extract` of the same
# report on the same machine in the same run. Both fetch the key from the
# same key server (audited) and verify every chunk and every file against
# the manifest. Reports the browser's time and throughput against the
# CLI's, the peak JavaScript heap plus WebAssembly memory of the page and
# its workers (and every ArrayBuffer they held, garbage included), read over
# the DevTools protocol, and the size of the wasm bundle gzipped.
# Usage: bench/browser-open.sh [VIDEO_MB] [RUNS]   (needs chromium, node >= 20, python3, gzip)
set -euo pipefail
video_mb=${1:-190}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in chromium node python3 gzip curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y chromium nodejs python3 gzip curl)" >&2; exit 1; }
done
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-capture --features fixtures --example bench_media --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-browser-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work" 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

store=(--data-dir "$work/data")
port=$(free_port)
base="http://127.0.0.1:$port"
"$bin" keyserver org add Bench --init "${store[@]}" 2>/dev/null
printf 'a long bench password\n' > "$work/pw"
for who in alice bob; do
  "$bin" keyserver user add --org Bench --email "$who@bench.example" --role clinician --password-file "$work/pw" "${store[@]}" 2>/dev/null
done
"$bin" keyserver serve --listen "127.0.0.1:$port" "${store[@]}" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

"$root/target/release/examples/bench_media" "$work" 2 "$video_mb" >/dev/null
as() { MEDSEAL_CONFIG_DIR="$work/$1" "${@:2}"; }
for who in alice bob; do
  as "$who" "$bin" login --keyserver "$base" --email "$who@bench.example" --password-file "$work/pw" 2>/dev/null
done
(cd "$work" && as alice "$bin" capture --patient-id P1 --consent verbal-witnessed --witness "Nurse B" \
  --photo photo-*.jpg --video video.mp4 --keyserver "$base" --recipient bob@bench.example -o report.mseal 2>/dev/null)
size=$(stat -c %s "$work/report.mseal")

# The CLI: best of RUNS.
cli_best=""
for _ in $(seq "$runs"); do
  rm -rf "$work/extracted"
  s=$(date +%s.%N)
  as bob "$bin" open --extract "$work/extracted" "$work/report.mseal" 2>/dev/null
  e=$(date +%s.%N)
  t=$(awk -v a="$s" -v b="$e" 'BEGIN{print b-a}')
  if [ -z "$cli_best" ] || awk -v a="$t" -v b="$cli_best" 'BEGIN{exit !(a<b)}'; then cli_best=$t; fi
done

# The browser: one Chromium, its own profile, DevTools on loopback.
dt=$(free_port)
chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --disable-extensions --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --remote-debugging-address=127.0.0.1 --remote-debugging-port="$dt" \
  about:blank >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$dt/json/version" >/dev/null && break; sleep 0.1; done
browser=$(node --experimental-websocket --no-warnings "$root/bench/browser-open.mjs" "$dt" "$base/app/#/open" \
  "$work/report.mseal" bob@bench.example "a long bench password" "$runs")

wasm_raw=$(curl -sf "$base/app/medseal_web_bg.wasm" | wc -c)
wasm_gz=$(curl -sf "$base/app/medseal_web_bg.wasm" | gzip -9 | wc -c)

python3 - "$size" "$cli_best" "$browser" "$wasm_raw" "$wasm_gz" "$(nproc)" <<'EOF'
import json, sys
size, cli, b, raw, gz, cores = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
mb = size / 1e6
print(f"Report: {mb:.1f} MB sealed (2 photos of 12 MP, a video); {cores} cores; best of {len(b['runs'])}; key fetched from a local key server each time.")
print()
print("| opener | time | throughput | peak memory |")
print("|---|---|---|---|")
print(f"| `medseal open --extract` (CLI) | {cli:.2f} s | {mb/cli:.0f} MB/s | – |")
print(f"| web app in headless Chromium | {b['best_seconds']:.2f} s | {b['mb_per_s']:.0f} MB/s | {b['peak_heap_bytes']/2**20:.1f} MiB JS heap + wasm memory (page and workers); {b['peak_with_buffers']/2**20:.0f} MiB counting every ArrayBuffer held, garbage awaiting collection included |")
print()
ratio = (mb / b['best_seconds']) / (mb / cli)
print(f"Browser throughput = {ratio:.2f} x the CLI's (goal >= 0.25); JS heap + wasm memory peak {b['peak_heap_bytes']/2**20:.1f} MiB (goal < 64 MiB).")
print(f"Wasm bundle: {raw/1000:.0f} kB, {gz/1000:.0f} kB gzipped (goal <= 400 kB gzipped).")
EOF
