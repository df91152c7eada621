#!/usr/bin/env bash
# Resolve every direct and transitive dependency (the [test] extra included) into
# requirements/lock.txt, which the README's install and test commands use, and derive
# requirements/lock-cpu.txt from it (the CPU-only torch build, no CUDA libraries).
#
#   bash scripts/lock.sh                  # re-resolve, keeping the pinned versions that still fit
#   bash scripts/lock.sh --upgrade        # take the newest versions pyproject.toml allows
#   bash scripts/lock.sh -P dash          # upgrade one package (pip-compile's --upgrade-package)
#
# Then run `bash scripts/test.sh` and commit pyproject.toml + requirements/ together.
# The lock is resolved for Linux x86_64 and CPython 3.11 (what CI runs); pip-compile
# (pip-tools) writes it, pip installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q "pip-tools>=7.4,<8"
python3 -m piptools compile -q --extra test --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --annotation-style line \
    --output-file requirements/lock.txt "$@" pyproject.toml
# The [test] extra names labeler[backbones]: pip-compile pins labeler itself as a file: URL
# of this checkout; labeler is installed with `pip install --no-deps -e .` instead.
sed -i '/^labeler @ /d' requirements/lock.txt

python3 - <<'PY'
"""lock-cpu.txt = lock.txt with torch/torchvision's CPU builds (PyTorch's CPU wheel index)
and without the CUDA runtime that only the CUDA build of torch needs."""
import re
from pathlib import Path

src = Path("requirements/lock.txt").read_text().splitlines()
pins, via = {}, {}
for line in src:
    m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s*(?:#\s*via\s+(.*))?$", line)
    if m:
        pins[m[1]] = m[2]
        via[m[1]] = {v.strip() for v in (m[3] or "").split(",") if v.strip()}
# The CUDA build's own requirements (torch's METADATA: cuda-toolkit, cuda-bindings,
# nvidia-*, triton; all with platform_system == "Linux"), then whatever only they need.
cuda = {n for n in pins if re.match(r"^(nvidia-|cuda-|triton$)", n)}
while True:
    more = {n for n in pins if n not in cuda and via[n] and via[n] <= cuda}
    if not more:
        break
    cuda |= more
out = [
    "# requirements/lock.txt for machines without an NVIDIA GPU: the CPU-only build of",
    "# torch/torchvision from PyTorch's CPU wheel index, no CUDA libraries. Written by",
    "# scripts/lock.sh from lock.txt; do not edit. Install with",
    "#   pip install -r requirements/lock-cpu.txt && pip install --no-deps -e .",
    "--extra-index-url https://download.pytorch.org/whl/cpu",
]
for line in src:
    name = line.split("==")[0]
    if name in cuda:
        continue
    if name in ("torch", "torchvision"):
        line = re.sub(r"==([^\s+]+)", r"==\1+cpu", line, count=1)
    out.append(line)
Path("requirements/lock-cpu.txt").write_text("\n".join(out) + "\n")
print(f"requirements/lock.txt: {len(pins)} pins; lock-cpu.txt leaves out {len(cuda)} CUDA packages: "
      + ", ".join(sorted(cuda)))
PY
