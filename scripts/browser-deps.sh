#!/usr/bin/env bash
# Debian's chromium + chromium-driver for the dashboard's browser tests, installed only when
# missing (apt-get, with sudo unless root). Run by scripts/test.sh and scripts/test-latest.sh.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
