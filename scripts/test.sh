#!/usr/bin/env bash
# Install everything the test suite needs, at the locked versions, then run it. This is
# the README's test command and what CI runs (.ci/run).
#   - Debian's chromium + chromium-driver for the dashboard's browser tests
#   - every dependency, [test] extra included, from requirements/lock.txt (pinned)
#   - the package itself, editable, without letting pip re-resolve anything
# LABELER_LOCK=requirements/lock-cpu.txt bash scripts/test.sh takes the CPU-only torch
# build instead; scripts/test-latest.sh runs the suite on the newest allowed versions.
# Arguments go to pytest (bash scripts/test.sh -q -k store).
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK="${LABELER_LOCK:-requirements/lock.txt}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m pip install -q -r "$LOCK"
python3 -m pip install -q --no-deps -e .
python3 -m pip check
exec python3 -m pytest "$@"
