#!/usr/bin/env bash
# Throughput and peak memory of `medseal seal` / `medseal open` on a 1 GiB file
# in tmpfs, side by side with the reference tools in the same run:
#   - `openssl speed -multi N` for AES-256-CBC and SHA-256 (the hardware limit),
#   - `openssl enc -aes-256-cbc` (unauthenticated, single-threaded),
#   - `age` / `age -d` (ChaCha20-Poly1305).
# Usage: bench/seal-open.sh [SIZE_MIB]   (needs: openssl, age, GNU time)
set -euo pipefail

size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
for tool in openssl age age-keygen /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y openssl age time)" >&2; exit 1; }
done

work=$(mktemp -d /dev/shm/medseal-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
head -c $((size_mib << 20)) /dev/urandom > plain
head -c 32 /dev/urandom > key
age-keygen -o age.key 2>/dev/null
age_recipient=$(age-keygen -y age.key)
bytes=$((size_mib << 20))
cores=$(nproc)

# run NAME OUT CMD... : best of $runs wall times, peak RSS of the best run.
# OUT is removed before every run so that no tool pays for freeing the last
# run's output.
runs=${RUNS:-5}
run() {
  local name=$1 out=$2; shift 2
  local best="" best_rss=""
  for _ in $(seq "$runs"); do
    rm -f "$out"
    /usr/bin/time -f '%e %M' -o t.txt "$@" 2>/dev/null
    read -r secs rss < t.txt
    if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$secs; best_rss=$rss; fi
  done
  awk -v n="$name" -v s="$best" -v b="$bytes" -v r="$best_rss" \
    'BEGIN{ printf "| %-44s | %6.2f s | %6.2f GB/s | %7.1f MiB |\n", n, s, b/s/1e9, r/1024 }'
}

iv=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
k=$(od -An -tx1 key | tr -d ' \n')

echo "Input: ${size_mib} MiB of random data in tmpfs; ${cores} cores; best of ${runs} runs."
echo
echo "| command                                      | time     | throughput  | peak RSS    |"
echo "|----------------------------------------------|----------|-------------|-------------|"
run "medseal seal --key-file"               sealed   "$bin" seal --key-file key -o sealed plain
run "medseal open --key-file"               opened   "$bin" open --key-file key -o opened sealed
cmp plain opened
run "medseal seal, streaming (stdin/stdout)" sealed2 sh -c "\"$bin\" seal --key-file key - < plain > sealed2"
run "medseal open, streaming (stdin/stdout)" opened2 sh -c "\"$bin\" open --key-file key -o - - < sealed > opened2"
cmp plain opened2
run "openssl enc -aes-256-cbc (no MAC)"     ossl     openssl enc -aes-256-cbc -K "$k" -iv "$iv" -in plain -out ossl
run "openssl enc -d -aes-256-cbc (no MAC)"  ossl.out openssl enc -d -aes-256-cbc -K "$k" -iv "$iv" -in ossl -out ossl.out
run "age -r (ChaCha20-Poly1305)"            aged     age -r "$age_recipient" -o aged plain
run "age -d"                                aged.out age -d -i age.key -o aged.out aged
run "cp (plain copy: the tmpfs I/O floor)"  copied   cp plain copied
echo
echo "Hardware limit, \`openssl speed -multi $cores\` on 1 MiB blocks:"
aes=$(openssl speed -elapsed -seconds 3 -multi "$cores" -bytes 1048576 -evp aes-256-cbc 2>/dev/null | awk '/^aes-256-cbc|^AES-256-CBC/{v=$NF} END{sub("k","",v); print v*1000}')
sha=$(openssl speed -elapsed -seconds 3 -multi "$cores" -bytes 1048576 -evp sha256 2>/dev/null | awk '/^sha256/{v=$NF} END{sub("k","",v); print v*1000}')
awk -v a="$aes" -v s="$sha" 'BEGIN{
  printf "- AES-256-CBC encrypt: %.2f GB/s\n- SHA-256: %.2f GB/s\n", a/1e9, s/1e9;
  printf "- both in sequence (encrypt-then-MAC ceiling): %.2f GB/s\n", 1/(1/a+1/s)/1e9 }'
