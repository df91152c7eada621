"""Settings: defaults < ``labeler.toml`` < environment (``LABELER_*``) < explicit overrides.

One flat dataclass keeps the whole configuration visible in one place. Each
project writes the settings it used to ``labeler.toml`` so a later run (or a
colleague) sees how its arrays were made.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import BadInputError


@dataclass
class Settings:
    """Pipeline settings.

    Attributes
    ----------
    backbone : str
        'auto' (resnet50 where its weights can be had, else efficientnet-lite0) or a
        name in ``labeler.embedding.registry.REGISTRY`` ('resnet50',
        'efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2').
    weights : str
        Path of a state_dict for the chosen backbone ('' = the registry's source:
        bundled package, hub cache or download).
    view : str
        'whole' (resize the full frame, nothing cut away) or 'crop' (resize +
        centre crop, the ImageNet evaluation protocol).
    features : str
        Feature type stored as the embeddings (labeler.embedding.local_features).
        'auto' keeps the type a project already has (projects from before
        feature types: 'global'), and gives a new project 'multistage' (pooled
        stride-8, stride-16 and last stages; measured better than 'global', the
        average-pooled last layer, on every ELPV truth column at the same cost,
        docs/features.md). Also 'global', or 'multiscale' (GeM at 1x and 2x the
        input size; best on most figures, ~5x the cost). Every type runs on
        ONNX Runtime on the CPU (checked against torch before use).
    device : str
        '' = cuda when present, else cpu.
    batch_size, num_workers : int
        Embedding batch size and decoding worker processes.
    precision : str
        'fp32' (default), 'bf16' (opt-in: bfloat16 autocast, ~2x faster on CPUs
        with AVX-512 BF16) or 'int8' (opt-in: ONNX Runtime static quantisation
        calibrated on the collection, CPU only); see benchmarks/bench_precision.py
        for their accuracy.
    runtime : str
        'auto' (ONNX Runtime on the CPU, torch on GPUs), 'torch' or 'onnxruntime'
        (labeler.embedding.runtime; benchmarks/bench_embed.py measures both).
    commit_every : int
        Images per committed chunk: an interrupted ingest loses at most this much work.
    pca_components : int
        PCA dimensions kept (capped at min(n_samples, n_features)). 256 by default.
    umap_neighbors, umap_min_dist : int, float
        UMAP parameters for the 2-D map (McInnes et al. 2018; umap-learn defaults
        are 15 and 0.1).
    cluster_dims : int
        Dimensions of the UMAP embedding HDBSCAN runs on. HDBSCAN on 256-d vectors
        slows sharply past ~20k points; a 10-d UMAP stays fast to 100k+ and
        clusters better (umap-learn docs, "Using UMAP for Clustering").
    method : str
        'hdbscan' or 'kmeans'.
    min_cluster_size, min_samples : int
        HDBSCAN parameters (Campello et al. 2013); min_samples 0 = same as
        min_cluster_size.
    k : int
        KMeans clusters; 0 = choose by silhouette over ``k_range``.
    k_range : list[int]
        [low, high] inclusive for the silhouette search.
    seed : int
        Random seed for PCA, UMAP and KMeans.
    novelty_percentile : float
        A query is novel when its best cosine similarity is below this percentile
        of the collection's held-out-style similarities (:mod:`labeler.novelty`:
        each image's 5th nearest other image, so bursts of near-copies do not
        count). 5 flagged 1-2 % of new in-domain ELPV photos and 89-95 % of
        out-of-domain photos (``benchmarks/bench_novelty.py``).
    imagenet_hints : bool
        Show the backbone's ImageNet top-1 class as a hint ("ImageNet hint: X
        (p=0.62)") in the dashboard and ``labeler search``; the dashboard's toggle
        writes it (:func:`labeler.hints.set_hints_shown`).
    imagenet_hint_min_prob : float
        A hint is shown only when the backbone's softmax probability of its top-1
        class is at least this (:mod:`labeler.hints`). 0.5 hides the hint for
        98.4 % of the ELPV solar-cell images (ImageNet has no such class; 0.3
        would show 10.8 %), keeps it where the backbone is sure (a cat p=0.79,
        espresso p=0.90) and hides its unsure guesses (an astronaut as 'bobsled'
        p=0.29, a rocket as 'drilling platform' p=0.42): ``benchmarks/bench_hints.py``.
    map_raster_threshold : int
        A dashboard map of more points than this is drawn as a server-rendered
        raster of every point plus a sample of ``map_sample_points`` WebGL points
        (:mod:`labeler.app.map_raster`); a zoomed view holding at most
        ``map_sample_points`` points shows them all as points. In headless Chromium
        with software WebGL the plain map's first render took 2.6 s at 5k points,
        2.95 s at 20k, 4.5 s at 50k and 51 s at 1M
        (``benchmarks/bench_dashboard.py``): 20k is the largest map that meets
        the 3 s goal drawn point by point.
    map_sample_points : int
        The most WebGL points a raster-drawn map sends (hover and click work on
        them; a lasso selects every point inside it, sampled or not).
    """

    backbone: str = "auto"
    weights: str = ""
    view: str = "whole"
    features: str = "auto"
    device: str = ""
    batch_size: int = 16
    num_workers: int = 1
    commit_every: int = 256
    precision: str = "fp32"
    runtime: str = "auto"
    pca_components: int = 256
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    cluster_dims: int = 10
    method: str = "hdbscan"
    min_cluster_size: int = 15
    min_samples: int = 5
    k: int = 0
    k_range: list[int] = dataclasses.field(default_factory=lambda: [2, 20])
    seed: int = 0
    novelty_percentile: float = 5.0
    imagenet_hints: bool = True
    imagenet_hint_min_prob: float = 0.5
    map_raster_threshold: int = 20_000
    map_sample_points: int = 10_000

    def updated(self, **overrides: Any) -> "Settings":
        """A copy with the non-None ``overrides`` applied (unknown keys raise TypeError)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        names = {f.name for f in fields(self)}
        unknown = set(clean) - names
        if unknown:
            raise TypeError(f"unknown setting(s): {sorted(unknown)}")
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        return [int(x) for x in raw.replace(",", " ").split()]
    return raw


def load_settings(toml_path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings: defaults < toml file < ``LABELER_<NAME>`` variables < overrides.

    Raises
    ------
    BadInputError
        A malformed toml file or an environment value of the wrong type.
    """
    s = Settings()
    if toml_path is not None and Path(toml_path).is_file():
        try:
            data = tomllib.loads(Path(toml_path).read_text())
        except tomllib.TOMLDecodeError as e:
            raise BadInputError(f"{toml_path}: {e}") from e
        s = s.updated(**{k: v for k, v in data.items() if k in {f.name for f in fields(s)}})
    env = os.environ if env is None else env
    from_env = {}
    for f in fields(s):
        key = f"LABELER_{f.name.upper()}"
        if key in env and env[key] != "":
            try:
                from_env[f.name] = _coerce(f.name, env[key], getattr(s, f.name))
            except ValueError as e:
                raise BadInputError(f"{key}={env[key]!r}: {e}") from e
    return s.updated(**from_env).updated(**overrides)


def save_setting(toml_path: Path, name: str, value: Any) -> None:
    """Set one setting in ``toml_path``, leaving the file's other entries as they are
    (atomic replace; the file is created when missing).

    Raises
    ------
    BadInputError
        ``name`` is not a setting, or the file is malformed.
    """
    import tomli_w

    if name not in {f.name for f in fields(Settings)}:
        raise BadInputError(f"unknown setting {name!r}")
    toml_path = Path(toml_path)
    data = {}
    if toml_path.is_file():
        try:
            data = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise BadInputError(f"{toml_path}: {e}") from e
    data[name] = value
    with atomic_write(toml_path) as f:
        f.write(tomli_w.dumps(data).encode())


def save_settings(settings: Settings, toml_path: Path) -> None:
    """Write the settings used to ``toml_path`` (atomic replace)."""
    import tomli_w  # only writing needs it (tomllib in the stdlib reads)

    with atomic_write(toml_path) as f:
        f.write(tomli_w.dumps(settings.to_dict()).encode())
