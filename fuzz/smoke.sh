#!/usr/bin/env bash
# Short, bounded fuzzing of the sealed-file parsers: every target for
# SECONDS seconds (default 20). Needs a nightly toolchain and cargo-fuzz;
# without them it says so and exits 0, so that CI on stable still passes.
# Leak detection is off, both libFuzzer's per-input check and the sanitizer's
# check at exit: glibc's per-thread destructor list, used by the worker
# threads, is reported as a leak when a worker is still exiting.
set -euo pipefail
secs=${1:-20}
cd "$(dirname "$0")"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain here; skipped (see docs/format.md, Fuzzing)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
for target in header open; do
  echo "fuzz: $target for ${secs}s"
  log=$(mktemp)
  status=0
  ASAN_OPTIONS=detect_leaks=0 cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -detect_leaks=0 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::number_of_executed_units|panicked|ERROR|SUMMARY' "$log" || true
  if [ "$status" -ne 0 ]; then tail -40 "$log"; rm -f "$log"; exit "$status"; fi
  rm -f "$log"
done
