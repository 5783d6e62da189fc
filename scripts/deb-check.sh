#!/usr/bin/env bash
# Builds the Debian package and checks it as an administrator meets it:
#   1. `cargo deb -p medseal` (installs cargo-deb first if it is missing);
#   2. unpacks it into a clean directory with `dpkg -x`: the binary runs
#      (`medseal --version`), is stripped, its line tables are in a separate
#      debug file, and a key server started from it answers /healthz and
#      serves the web app;
#   3. as root, installs it with `dpkg -i`: the medseal system user, its
#      0700 data directory, the systemd unit and the 0640 settings file; a
#      key server runs as that user with the packaged settings. A package
#      that was not installed before is purged again afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb@3.8.0
# DEB_PROFILE=dev packages the binary the test suite already built (same
# files, modes and scripts; only the compiler's optimisation differs), which
# saves the suite a second, optimised build of everything.
cargo deb -p medseal --profile "${DEB_PROFILE:-release}" -- --locked
deb=$(ls -t target/debian/medseal_*.deb | head -1)
echo "deb-check: $deb ($(du -h "$deb" | cut -f1))"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits for a server, then checks /healthz and /app/.
check_server() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request
base = sys.argv[1]
deadline = time.time() + 30
while True:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            assert r.status == 200
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("deb-check: the packaged key server did not answer " + base)
        time.sleep(0.2)
with urllib.request.urlopen(base + "/app/", timeout=5) as r:
    page = r.read().decode()
    assert r.status == 200 and "<html" in page.lower(), "no web app at /app/"
print("deb-check: key server at " + base + " answers /healthz and serves /app/")
PY
}

# 2. Unpacked into a clean directory.
dpkg -x "$deb" "$work/root"
bin="$work/root/usr/bin/medseal"
"$bin" --version
if readelf -S "$bin" | grep -Eq '\.debug_(info|line|str)'; then
  echo "deb-check: the packaged binary still has debug sections" >&2
  exit 1
fi
debug=$(find "$work/root/usr/lib/debug" -type f -name '*.debug' | head -1)
if [ -z "$debug" ] || ! readelf -S "$debug" 2>/dev/null | grep -q '\.debug_line'; then
  echo "deb-check: no separate debug file with line tables" >&2
  exit 1
fi
echo "deb-check: binary $(du -h "$bin" | cut -f1) stripped; line tables in $(du -h "$debug" | cut -f1) ${debug#"$work/root"}"
port=$(free_port)
"$bin" keyserver --data-dir "$work/data" serve --listen "127.0.0.1:$port" 2>"$work/serve.log" &
pids+=($!)
check_server "http://127.0.0.1:$port"
kill "${pids[-1]}"

# 3. Installed, as root.
if [ "$(id -u)" -ne 0 ]; then
  echo "deb-check: not root: dpkg -i skipped"
  exit 0
fi
was_installed=no
dpkg-query -W -f='${Status}' medseal 2>/dev/null | grep -q "install ok installed" && was_installed=yes
command -v adduser >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adduser >/dev/null
dpkg -i "$deb" >/dev/null
/usr/bin/medseal --version
getent passwd medseal >/dev/null || { echo "deb-check: no medseal user" >&2; exit 1; }
[ "$(stat -c '%a %U' /var/lib/medseal)" = "700 medseal" ] || { echo "deb-check: /var/lib/medseal is $(stat -c '%a %U' /var/lib/medseal)" >&2; exit 1; }
[ "$(stat -c '%a %U:%G' /etc/medseal/keyserver.env)" = "640 root:medseal" ] || { echo "deb-check: /etc/medseal/keyserver.env is $(stat -c '%a %U:%G' /etc/medseal/keyserver.env)" >&2; exit 1; }
unit=$(ls /lib/systemd/system/medseal-keyserver.service /usr/lib/systemd/system/medseal-keyserver.service 2>/dev/null | head -1)
[ -n "$unit" ] || { echo "deb-check: no systemd unit" >&2; exit 1; }
grep -q '^User=medseal' "$unit"
if command -v systemd-analyze >/dev/null && [ -d /run/systemd/system ]; then
  systemd-analyze verify "$unit"
fi
# The service's command line, as systemd would run it: its user, its
# settings file, its working directory (on another port, to leave any
# running server alone).
port=$(free_port)
(
  set -a
  # shellcheck disable=SC1091
  . /etc/medseal/keyserver.env
  set +a
  cd /var/lib/medseal
  exec runuser -u medseal -- /usr/bin/medseal keyserver serve --listen "127.0.0.1:$port"
) 2>"$work/service.log" &
pids+=($!)
check_server "http://127.0.0.1:$port"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
[ "$(stat -c '%U' /var/lib/medseal/master.keyring)" = medseal ] || { echo "deb-check: the keyring is not the service user's" >&2; exit 1; }
if [ "$was_installed" = no ]; then
  dpkg --purge medseal >/dev/null
  rm -rf /var/lib/medseal
  deluser --system --quiet medseal >/dev/null 2>&1 || true
fi
echo "deb-check: installed with dpkg -i: user, data directory, unit and settings as intended"
