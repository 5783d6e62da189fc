#!/usr/bin/env bash
# `medseal keyserver audit verify` over a store of N audit events (default
# 1,000,000): events per second for the whole check (hash chain, Merkle tree
# and checkpoints, state MACs and the state replay), beside the time the same
# machine takes just to read those rows out of SQLite (python3's sqlite3),
# the floor any verifier of this store pays.
# Usage: bench/audit-verify.sh [N]
set -euo pipefail
n=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-keyserver --example audit_fill --manifest-path "$root/Cargo.toml"
bin=${MEDSEAL_BIN:-$root/target/release/medseal}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/medseal-verify-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin" keyserver org add Bench --init --data-dir "$work/data" 2>/dev/null
start=$(date +%s.%N)
"$root/target/release/examples/audit_fill" "$work/data" "$n" >/dev/null
fill=$(echo "$(date +%s.%N) - $start" | bc)
events=$((n + 1))
echo "store: $events events ($(du -sh "$work/data/keyserver.sqlite3" | cut -f1)), written in ${fill}s through the ledger"
echo
echo "| check | seconds | events/s |"
echo "|---|---|---|"
for run in 1 2; do
  start=$(date +%s.%N)
  "$bin" keyserver audit verify --data-dir "$work/data" >/dev/null
  t=$(echo "$(date +%s.%N) - $start" | bc)
  printf '| medseal keyserver audit verify (run %d) | %.2f | %.0f |\n' "$run" "$t" "$(echo "$events / $t" | bc -l)"
done
python3 - "$work/data/keyserver.sqlite3" "$events" <<'PY'
import sqlite3, sys, time
db, events = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
start = time.time()
rows = 0
for _ in c.execute("SELECT * FROM audit_events ORDER BY seq"):
    rows += 1
t = time.time() - start
print(f"| reading the rows only (python3 sqlite3, no check) | {t:.2f} | {rows / t:.0f} |")
PY
