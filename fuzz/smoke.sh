#!/usr/bin/env bash
# Short, bounded fuzzing: every target for SECONDS seconds (default 20).
#   header, open   the sealed-file parsers
#   http_body      the key server's request bodies, through the real app
#   photo          photo intake (JPEG and PNG metadata stripping); only
#                  with FUZZ_PHOTO=1, as its dependencies add minutes to a
#                  cold build of the harness
# Seeds kept in seeds/TARGET start each run; what the fuzzer finds goes to
# corpus/TARGET (not committed).
#
# cargo-fuzz needs nightly compiler flags. With a nightly toolchain it is
# used; otherwise the installed toolchain is asked to accept them
# (RUSTC_BOOTSTRAP=1), so that fuzzing runs wherever the project builds.
# Leak detection is off, both libFuzzer's per-input check and the sanitizer's
# check at exit: glibc's per-thread destructor list, used by the worker
# threads, is reported as a leak when a worker is still exiting.
set -euo pipefail
secs=${1:-20}
cd "$(dirname "$0")"
if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain; using $(cargo --version) with RUSTC_BOOTSTRAP=1"
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
export ASAN_OPTIONS=detect_leaks=0
# The harness links the key server but never serves its web app, whose
# WebAssembly build would need the wasm32 target for this toolchain too.
export MEDSEAL_WEB_APP=off
targets=(header open http_body)
features=()
if [ "${FUZZ_PHOTO:-0}" = 1 ]; then
  targets+=(photo)
  features=(--features photo)
fi
cargo "${toolchain[@]}" fuzz build "${features[@]}" >/dev/null 2>&1 || cargo "${toolchain[@]}" fuzz build "${features[@]}"
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${secs}s"
  mkdir -p "corpus/$target"
  dirs=("corpus/$target")
  [ -d "seeds/$target" ] && dirs+=("seeds/$target")
  log=$(mktemp)
  status=0
  cargo "${toolchain[@]}" fuzz run "${features[@]}" "$target" "${dirs[@]}" -- -max_total_time="$secs" -detect_leaks=0 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::number_of_executed_units|panicked|ERROR|SUMMARY' "$log" || true
  if [ "$status" -ne 0 ]; then tail -40 "$log"; rm -f "$log"; exit "$status"; fi
  rm -f "$log"
done
