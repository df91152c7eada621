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

bash scripts/browser-deps.sh

python3 -m pip install -q -r "$LOCK"
python3 -m pip install -q --no-deps -e .
# pip check, limited to what the lock installs: a machine's own Python may carry unrelated
# packages (here: botocore wants python-dateutil<3) whose conflicts are not ours to fail on.
python3 - "$LOCK" <<'PY'
import re, subprocess, sys
locked = {re.split(r"[=<>~ ;\[]", l, maxsplit=1)[0].lower().replace("_", "-")
          for l in open(sys.argv[1]) if l[:1].isalnum()} | {"labeler"}
out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
ours = [l for l in out.splitlines() if l.split(" ")[0].lower().replace("_", "-") in locked]
others = [l for l in out.splitlines() if l and l not in ours and not l.startswith("No broken")]
if others:
    print(f"pip check: {len(others)} conflict(s) among packages outside the lock (ignored)", file=sys.stderr)
if ours:
    sys.exit("pip check failed for locked packages:\n" + "\n".join(ours))
PY
exec python3 -m pytest "$@"
