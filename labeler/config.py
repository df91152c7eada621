"""Settings: defaults < ``labeler.toml`` < environment (``LABELER_*``) < explicit overrides.

One flat dataclass keeps the whole configuration visible in one place. Each
project writes the settings it used to ``labeler.toml`` so a later run (or a
colleague) sees how its arrays were made.

Every layer is checked on load (:func:`validate`): an unknown key in
``labeler.toml``, a value of the wrong type or out of range stops with one line
naming the file (or variable) and the key, e.g. ``labeler.toml: unknown key
'pca_dims' (did you mean 'pca_components'?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
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
        'efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2'), or a model
        of the user's own: 'onnx:FILE', 'torchscript:FILE', 'timm:NAME'
        (:mod:`labeler.embedding.byo`).
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
    prefix_cache : str
        '' (default: the first fine-tune press computes them) or where the presses
        will train from ('s16', the default press; 'last', the quick press): the
        ingest then computes the stage maps such a press reads for every new photo
        (:func:`labeler.embedding.finetune.prepare_prefix_cache`), so that the first
        press only trains and re-embeds. Costs the prefix's time at ingest (about 9 ms
        an image on 2 CPU cores with Lite0) and disk (Lite0 at 224 px: 43 KB an image
        for 's16', 19 KB for 'last').
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
    prefix_cache: str = ""

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


# -- validation -----------------------------------------------------------------------
# One rule per setting: (check, what the value must be). ``check`` returns the value
# to keep (an int given for a float setting becomes a float) or None when it fails.
# The ranges are the ones the pipeline can run with; the CLI's flag ranges agree.

def _int(low: int | None = None, high: int | None = None):
    def check(v: Any) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return None
        if (low is not None and v < low) or (high is not None and v > high):
            return None
        return v
    return check


def _float(low: float | None = None, high: float | None = None):
    def check(v: Any) -> float | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # v != v: NaN
            return None
        v = float(v)
        if (low is not None and v < low) or (high is not None and v > high):
            return None
        return v
    return check


def _choice(*options: str):
    return lambda v: v if isinstance(v, str) and v in options else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _k_range(v: Any) -> list[int] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_int(2)(x) is not None for x in v) and v[0] <= v[1]:
        return list(v)
    return None


def _rules() -> dict[str, tuple[Any, str]]:
    """Each setting's check and a phrase saying what it must be (for the error)."""
    from .embedding.registry import (BACKBONES, FEATURE_TYPES, PRECISIONS, RUNTIMES, TRAIN_FROM, VIEWS,  # torch-free
                                     is_backbone_name)

    def one_of(options) -> str:
        return "one of " + ", ".join(repr(o) for o in options)

    backbones, features, methods = ("auto", *BACKBONES), ("auto", *FEATURE_TYPES), ("hdbscan", "kmeans")
    return {
        "backbone": (lambda v: v if is_backbone_name(v) else None,
                     one_of(backbones) + ", or onnx:FILE, torchscript:FILE, timm:NAME (labeler.embedding.byo)"),
        "weights": (_str, "a string (a file path, or '' for the registry's weights)"),
        "view": (_choice(*VIEWS), one_of(VIEWS)),
        "features": (_choice(*features), one_of(features)),
        "device": (_str, "a string ('' = cuda when present, 'cpu', 'cuda', 'cuda:1' ...)"),
        "batch_size": (_int(1), "an integer >= 1"),
        "num_workers": (_int(0), "an integer >= 0"),
        "commit_every": (_int(1), "an integer >= 1"),
        "precision": (_choice(*PRECISIONS), one_of(PRECISIONS)),
        "runtime": (_choice(*RUNTIMES), one_of(RUNTIMES)),
        "pca_components": (_int(2), "an integer >= 2"),
        "umap_neighbors": (_int(2), "an integer >= 2"),
        # umap-learn refuses a min_dist above its spread (1.0).
        "umap_min_dist": (_float(0.0, 1.0), "a number in [0, 1]"),
        "cluster_dims": (_int(2), "an integer >= 2"),
        "method": (_choice(*methods), one_of(methods)),
        "min_cluster_size": (_int(2), "an integer >= 2"),
        "min_samples": (_int(0), "an integer >= 0"),
        "k": (_int(0), "an integer >= 0"),
        "k_range": (_k_range, "a list [low, high] of two integers with 2 <= low <= high"),
        "seed": (_int(0, 2**32 - 1), "an integer in [0, 2**32 - 1]"),
        "novelty_percentile": (_float(0.0, 100.0), "a number in [0, 100]"),
        "imagenet_hints": (_bool, "true or false"),
        # A threshold on a probability: above 1 hides every hint (the tests use 1.01).
        "imagenet_hint_min_prob": (_float(0.0), "a number >= 0 (a probability; above 1 hides every hint)"),
        "map_raster_threshold": (_int(0), "an integer >= 0"),
        "map_sample_points": (_int(1), "an integer >= 1"),
        "prefix_cache": (_choice("", *TRAIN_FROM), one_of(("", *TRAIN_FROM))),
    }


def _unknown_key(where: str, name: str) -> BadInputError:
    names = [f.name for f in fields(Settings)]
    # The one setting of the same family ('pca_dims' -> 'pca_components') before
    # spelling likeness ('umap_neighbours' -> 'umap_neighbors').
    head = name.split("_")[0]
    family = [n for n in names if n == head or n.startswith(head + "_")] if "_" in name else []
    close = family if len(family) == 1 else difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (settings: {', '.join(names)})"
    return BadInputError(f"{where}: unknown key {name!r}{hint}")


def validate(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check settings read from ``where`` (a file, an environment variable, a caller).

    Parameters
    ----------
    values : dict
        Setting name -> value, as read (TOML types, or coerced environment strings).
    where : str
        Named first in the error (the toml path, ``'LABELER_K'``, ``'settings'``).

    Returns
    -------
    dict
        The same settings; an integer given for a float setting becomes a float.

    Raises
    ------
    BadInputError
        One line naming ``where`` and the first unknown key (with the closest
        setting name), or the first value of the wrong type or out of range.
    """
    rules = _rules()
    out = {}
    for name, value in values.items():
        if name not in rules:
            raise _unknown_key(where, name)
        check, must = rules[name]
        kept = check(value)
        if kept is None:
            raise BadInputError(f"{where}: {name!r} must be {must}, got {value!r}")
        out[name] = kept
    return out


def _coerce(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        return [int(x) for x in raw.replace(",", " ").split()]
    return raw


def _read_toml(toml_path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(toml_path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(f"{toml_path}: {e}") from e


def load_settings(toml_path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings: defaults < toml file < ``LABELER_<NAME>`` variables < overrides.

    Every layer is validated (:func:`validate`): types, ranges and, in the toml
    file, unknown keys.

    Raises
    ------
    BadInputError
        A malformed toml file, an unknown key in it, or a value of the wrong type
        or out of range (in the file, an environment variable or ``overrides``).
    """
    s = Settings()
    if toml_path is not None and Path(toml_path).is_file():
        s = s.updated(**validate(_read_toml(toml_path), str(toml_path)))
    env = os.environ if env is None else env
    from_env = {}
    for f in fields(s):
        key = f"LABELER_{f.name.upper()}"
        if key in env and env[key] != "":
            try:
                value = _coerce(f.name, env[key], getattr(s, f.name))
            except ValueError as e:
                raise BadInputError(f"{key}={env[key]!r}: {e}") from e
            from_env.update(validate({f.name: value}, key))
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - {f.name for f in fields(s)}
    if unknown:  # a caller's mistake, as Settings.updated says it
        raise TypeError(f"unknown setting(s): {sorted(unknown)}")
    return s.updated(**from_env).updated(**validate(clean, "settings"))


def save_setting(toml_path: Path, name: str, value: Any) -> None:
    """Set one setting in ``toml_path``, leaving the file's other entries as they are
    (atomic replace; the file is created when missing).

    Raises
    ------
    BadInputError
        ``name`` is not a setting, ``value`` does not fit it (:func:`validate`),
        or the file is malformed.
    """
    import tomli_w

    toml_path = Path(toml_path)
    value = validate({name: value}, str(toml_path))[name]
    data = _read_toml(toml_path) if toml_path.is_file() else {}
    data[name] = value
    with atomic_write(toml_path) as f:
        f.write(tomli_w.dumps(data).encode())


def save_settings(settings: Settings, toml_path: Path) -> None:
    """Write the settings used to ``toml_path`` (atomic replace)."""
    import tomli_w  # only writing needs it (tomllib in the stdlib reads)

    with atomic_write(toml_path) as f:
        f.write(tomli_w.dumps(settings.to_dict()).encode())
