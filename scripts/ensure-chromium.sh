#!/usr/bin/env bash
# Makes sure a headless Chromium, its WebDriver and the Node driver used by
# the browser tests are present; prints the Chromium binary path.
#   scripts/ensure-chromium.sh          # install if missing, print the path
# Installs the Debian packages `chromium` and `chromium-driver` with apt-get
# (needs root, as on the developer and CI machines) and `playwright-core`
# from npm under tests/browser/ (the driver only: it downloads no browser).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

find_chromium() {
    for c in chromium chromium-browser; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    return 1
}

if ! find_chromium >/dev/null || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure-chromium: chromium is missing and installing it needs root (apt-get install chromium chromium-driver)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
fi

if [ ! -d "$here/tests/browser/node_modules/playwright-core" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "ensure-chromium: npm is missing (apt-get install nodejs npm)" >&2
        exit 1
    fi
    (cd "$here/tests/browser" && npm install --no-audit --no-fund --silent >&2)
fi

find_chromium
