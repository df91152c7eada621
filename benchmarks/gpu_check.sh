#!/usr/bin/env bash
# GPU embedding check for one lent GPU machine (one H200, 16 cores, Python 3.12, torch + torchvision).
# Run from the repository root; finishes in under 6 minutes (the timeout below enforces it):
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke    # anywhere: tiny sizes on the CPU, checks it runs end to end
#
# It imports only labeler.embedding (torch, torchvision, numpy, Pillow): no wheels to carry.
# Were a pure-Python package missing there, carry .whl/ and prepend:
#   pip install --no-index --no-deps --target .site .whl/*.whl && export PYTHONPATH="$PWD/.site"
set -euo pipefail
cd "$(dirname "$0")/.."
# The checkout itself is the package there (no pip install on that machine).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
"$PY" - <<'PY'
# Fail early and clearly if the embedding stage would drag in what that machine lacks.
import sys
blocked = ("umap", "hdbscan", "dash", "faiss", "click", "tqdm", "tomli_w")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is blocked: labeler.embedding must not import it")
sys.meta_path.insert(0, Block())
import labeler.embedding.extract, labeler.embedding.decode  # noqa: E401
print("imports ok: labeler.embedding pulls none of", ", ".join(blocked))
PY
exec timeout 360 "$PY" benchmarks/gpu_check.py "$@"
