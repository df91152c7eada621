#!/usr/bin/env bash
# Drift check: a fresh virtual environment with the NEWEST versions pyproject.toml allows
# (no lock), then the whole suite. Run it before `bash scripts/lock.sh --upgrade`, or on a
# schedule, to see what the next releases of our dependencies would change.
#   bash scripts/test-latest.sh [pytest args]      (venv: $LABELER_LATEST_VENV or .venv-latest)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LABELER_LATEST_VENV:-.venv-latest}"

bash scripts/browser-deps.sh

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" - <<'PY'
"""Print the versions that differ from requirements/lock.txt (the drift this run tests)."""
import re
from importlib.metadata import distributions

norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
lock = dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", ln).groups() for ln in open("requirements/lock.txt")
            if re.match(r"^[A-Za-z0-9_.-]+==", ln))
lock = {norm(k): v for k, v in lock.items()}
have = {norm(d.metadata["Name"]): d.version for d in distributions()}
have.pop("labeler", None)
diff = {n: (v, lock.get(n)) for n, v in sorted(have.items()) if lock.get(n) != v and n not in ("pip",)}
print(f"== newest allowed versions: {len(have)} installed, {len(diff)} differ from the lock")
for n, (v, locked) in diff.items():
    print(f"  {n}=={v}   (lock: {locked or 'not in lock'})")
PY
exec "$VENV/bin/python" -m pytest "$@"
