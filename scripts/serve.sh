#!/usr/bin/env bash
# Builds and runs the key server on the embedded default (SQLite in
# ./medseal-data, loopback only), with the web app at
# http://127.0.0.1:8600/app/. Installs the one system library the build
# links first: libheif (HEIC photos are decoded by it), found with
# pkg-config. Extra arguments go to `keyserver serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/debian.sh
. scripts/lib/debian.sh
ensure_debian_packages pkg-config libheif-dev
exec cargo run --release --locked -p medseal -- keyserver serve "$@"
