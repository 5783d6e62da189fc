#!/usr/bin/env bash
# Builds and runs the key server on the embedded default (SQLite in
# ./medseal-data, loopback only), with the web app at
# http://127.0.0.1:8600/app/. Installs the one system library the build
# links first: libheif (HEIC photos are decoded by it), found with
# pkg-config. Extra arguments go to `keyserver serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(pkg-config libheif-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo apt-get install -y "${missing[@]}"
  fi
fi
exec cargo run --release --locked -p medseal -- keyserver serve "$@"
