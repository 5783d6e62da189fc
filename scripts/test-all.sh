#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust:
#   1. installs the system packages the tests drive (as root, with apt-get),
#   2. installs the Python packages the test servers use (aiosmtpd for a
#      real SMTP server, fhir.resources for a validating FHIR server),
#   3. runs every Rust test in the workspace (unit, property, vectors, CLI
#      end-to-end; the key-server suite against SQLite and a real PostgreSQL,
#      delivery against SMTP, Box/Dropbox fakes, FHIR and a real Orthanc —
#      all started by the tests themselves on loopback),
#   4. builds the Debian package and checks it unpacked (dpkg -x) and, as
#      root, installed (dpkg -i): scripts/deb-check.sh;
#   5. fuzzes the sealed-file parsers and the key server's request bodies for
#      a short, bounded time.
# Usage: scripts/test-all.sh        (FUZZ_SECONDS=N to change step 5; 0 skips
#        it; DEB_CHECK=0 skips step 4)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: PostgreSQL server binaries (initdb, postgres),
# poppler-utils (pdfinfo, pdftoppm: the report PDF is checked by rendering it),
# exiftool (an independent reader to prove photos carry no metadata),
# Orthanc with its DICOMweb plugin (the PACS the DICOMweb destination is
# tested against), SoftHSM2 and OpenSC (pkcs11-tool: the token the master keys
# are kept on, and an independent look at it), python3-pip for the packages below,
# nodejs (the web app's viewer is run from its served files under Node),
# chromium and chromium-driver (the web app is tested in a real headless
# browser, driven over WebDriver), pkg-config and libheif-dev (the build links
# libheif to decode HEIC photos) with libheif-examples (heif-enc makes the
# HEIC test photos), openssl (the private-CA recipe of docs/keyserver.md is
# run as written).
packages=(postgresql poppler-utils libimage-exiftool-perl orthanc orthanc-dicomweb softhsm2 opensc python3-pip nodejs chromium chromium-driver pkg-config libheif-dev libheif-examples openssl)
# shellcheck source=scripts/lib/debian.sh
. scripts/lib/debian.sh
ensure_debian_packages "${packages[@]}"

# PyPI packages for the test servers, unless already importable.
if ! python3 -c 'import aiosmtpd, fhir.resources.R4B' 2>/dev/null; then
  echo "test-all: installing aiosmtpd and fhir.resources"
  python3 -m pip install --quiet aiosmtpd 'fhir.resources>=8' \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd 'fhir.resources>=8'
fi

# The web app is compiled to WebAssembly by the key server's build; the
# target is listed in rust-toolchain.toml, added here too for older rustup.
if command -v rustup >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi

# The OpenID Provider the single sign-on tests sign in through: the npm
# package oidc-provider (OpenID-certified), at the version package-lock.json
# pins, installed once into tests/oidc/node_modules.
command -v npm >/dev/null || ensure_debian_packages npm
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "test-all: installing oidc-provider"
  (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo test --workspace --locked
if [ "${DEB_CHECK:-1}" != 0 ]; then
  # The package's layout, scripts and service are checked on the binary
  # the tests built; `scripts/deb-check.sh` alone checks the release build.
  DEB_PROFILE=${DEB_PROFILE:-dev} scripts/deb-check.sh
fi
fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" -gt 0 ]; then
  fuzz/smoke.sh "$fuzz_seconds"
fi
