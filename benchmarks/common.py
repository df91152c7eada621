"""What several benchmarks share: the default data paths and the synthetic vector generators.

Every ``bench_*.py`` imports this module as ``import common`` (a script run as
``python benchmarks/bench_x.py`` has ``benchmarks/`` first on ``sys.path``); no
benchmark imports another benchmark, and none edits ``sys.path``: ``labeler`` comes
from the installed package (``pip install --no-deps -e .``, the README's install).

Default paths are the ones ``labeler demo --no-serve`` writes, relative to the
repository root (run the benchmarks from there, as the demo):

- :data:`DEFAULT_PROJECT` = ``data/projects/elpv``, the ingested 2,624 ELPV photos;
- :data:`DEFAULT_TRUTH` = ``data/elpv/truth.csv``, their truth columns
  (``cell_type``, ``defective``, ``defect_level``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_PROJECT = Path("data/projects/elpv")
DEFAULT_TRUTH = Path("data/elpv/truth.csv")
DEMO_HINT = "run `labeler demo --no-serve` from the repository root first, or pass the path"


def add_project_argument(ap: argparse.ArgumentParser, help: str = "an ingested project") -> None:
    """``--project``, by default :data:`DEFAULT_PROJECT`."""
    ap.add_argument("--project", type=Path, default=DEFAULT_PROJECT,
                    help=f"{help} (default: {DEFAULT_PROJECT}, written by `labeler demo --no-serve`)")


def add_truth_argument(ap: argparse.ArgumentParser, help: str = "truth CSV of the project's images") -> None:
    """``--truth``, by default :data:`DEFAULT_TRUTH`."""
    ap.add_argument("--truth", type=Path, default=DEFAULT_TRUTH,
                    help=f"{help} (default: {DEFAULT_TRUTH}, written by `labeler demo --no-serve`)")


def existing(path: Path, what: str = "path") -> Path:
    """``path`` if it exists, else exit with a message that says how to make the default."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{what} {path} not found: {DEMO_HINT}")
    return path


def synthetic_embeddings(n: int, dim: int, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 clustered embeddings and (n,) int64 true clusters.

    ``n_clusters`` Gaussian clusters of Zipf-like sizes whose centres span a 64-d
    subspace, plus isotropic noise, then ReLU: roughly how CNN embeddings of a photo
    collection look before PCA (bench_reduce.py), and the hardest case for a graph
    index after it (bench_search.py ``--data isotropic``).
    """
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    y = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    basis = np.linalg.qr(rng.normal(size=(dim, 64)))[0].T.astype(np.float32)  # (64, dim) orthonormal
    centres = rng.normal(size=(n_clusters, 64)).astype(np.float32) * 1.0
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 50_000):
        j = slice(i, min(n, i + 50_000))
        latent = centres[y[j]] + 0.9 * rng.standard_normal((len(y[j]), 64), dtype=np.float32)
        x[j] = latent @ basis + 0.08 * rng.standard_normal((len(y[j]), dim), dtype=np.float32)
    np.maximum(x, 0, out=x)  # CNN features after ReLU + pooling are non-negative
    return x, y.astype(np.int64)


def project_embeddings(project: Path) -> np.ndarray:
    """The (n_rows, D) backbone embeddings of an ingested project (``embeddings.npy``)."""
    from labeler.project import Project

    return np.asarray(Project(existing(project, "project")).load_array("embeddings"))


def realistic_vectors(n: int, embeddings: np.ndarray, dim: int = 256, *, noise: float | None = None,
                      seed: int = 0, chunk: int = 100_000) -> tuple[np.ndarray, float]:
    """(n, dim) float32 unit-norm vectors with the PCA spectrum of real embeddings.

    Each row is a random real embedding's PCA coordinates plus ``noise`` x a
    standard normal in the whitened space, mapped back by sqrt(variance) per
    component (the inverse of PCA whitening), then L2-normalised.

    Parameters
    ----------
    embeddings : ndarray (m, D) float
        Real backbone embeddings.
    noise : float or None
        Noise standard deviation in whitened units; None: the median nearest-
        neighbour distance of the real rows over the root of the total variance.

    Returns
    -------
    vectors : ndarray (n, dim) float32
    noise : float
        The scale used.
    """
    from sklearn.decomposition import PCA

    e = np.asarray(embeddings, dtype=np.float32)
    k = int(min(dim, len(e) - 1, e.shape[1]))
    pca = PCA(k, random_state=seed).fit(e)
    z = pca.transform(e).astype(np.float32)
    scale = np.sqrt(pca.explained_variance_).astype(np.float32)
    if noise is None:
        sq = (z * z).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2 * z @ z.T
        np.fill_diagonal(d2, np.inf)
        noise = float(np.sqrt(np.median(np.maximum(d2.min(1), 0)) / pca.explained_variance_.sum()))
    rng = np.random.default_rng(seed)
    out = np.zeros((n, dim), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        part = z[rng.integers(0, len(z), m)] + noise * scale * rng.standard_normal((m, k), dtype=np.float32)
        out[i : i + m, :k] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out, noise
