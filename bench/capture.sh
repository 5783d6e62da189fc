#!/usr/bin/env bash
# Capturing a report of COUNT 12-megapixel photos plus a VIDEO_MB MB video
# (built, PDF made, bundled and sealed), beside img2pdf making a PDF of the
# same photos, in the same run; peak memory of each.
# Usage: bench/capture.sh [COUNT] [VIDEO_MB]     (needs img2pdf, GNU time)
set -euo pipefail
count=${1:-20}
video_mb=${2:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in img2pdf /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y img2pdf time)" >&2; exit 1; }
done
cargo build --release -q -p medseal --manifest-path "$root/Cargo.toml"
cargo build --release -q -p medseal-capture --features fixtures --example bench_media --manifest-path "$root/Cargo.toml"
bin="$root/target/release/medseal"
work=$(mktemp -d /dev/shm/medseal-capture-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$root/target/release/examples/bench_media" "$work" "$count" "$video_mb"
head -c 32 /dev/urandom > "$work/key"
cd "$work"
photos=(photo-*.jpg)
echo "Input: ${#photos[@]} photos of 4000x3000 ($(du -ch photo-*.jpg | tail -1 | cut -f1) in all), a ${video_mb} MB video; tmpfs; best of 3."
echo
echo "| command | time | peak RSS |"
echo "|---|---|---|"
run() { # NAME OUT CMD...
  local name=$1 out=$2; shift 2
  local best="" rss=""
  for _ in 1 2 3; do
    rm -f "$out"
    /usr/bin/time -f '%e %M' -o t.txt "$@" >/dev/null 2>&1
    read -r s m < t.txt
    if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$s; rss=$m; fi
  done
  printf '| %s | %.2f s | %.0f MiB |\n' "$name" "$best" "$(awk -v m="$rss" 'BEGIN{print m/1024}')"
  echo "$best" > "$out.time"
}
run "img2pdf (PDF of the photos only)" ref.pdf img2pdf "${photos[@]}" -o ref.pdf
run "medseal capture (photos + video, PDF, sealed)" report.mseal \
  "$bin" capture --patient-id P1 --consent verbal-witnessed --witness "Nurse B" \
  --photo "${photos[@]}" --video video.mp4 --key-file key -o report.mseal
echo
awk -v a="$(cat report.mseal.time)" -v b="$(cat ref.pdf.time)" 'BEGIN{printf "Ratio: medseal capture takes %.2f x the time of img2pdf.\n", a/b}'
