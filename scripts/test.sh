#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's test
# command and what CI runs (.ci/run).
#   - Debian's chromium + chromium-driver for the dashboard's browser tests
#   - the package with its [test] extra (pytest, dash[testing], nbmake, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m pip install -q -e ".[test]"
exec python3 -m pytest "$@"
