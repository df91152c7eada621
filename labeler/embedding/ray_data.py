"""Distributed embedding on a Ray cluster (Ray Data), for ``labeler ingest --engine ray``.

The pending images become a Ray Dataset of ``(id, path)`` rows;
``map_batches`` sends batches to a pool of actors, each holding one copy of the
backbone (loaded once, in the actor's constructor) on one GPU or CPU slot. An
actor decodes, writes the thumbnail, preprocesses (the same code as the local
path: :func:`labeler.embedding.extract.embed_files` in the actor's process) and
runs the forward pass. The
driver receives the batches as :class:`~labeler.embedding.extract.EmbedBatch`
and commits them exactly as the local path does (chunk file, then database), so
the project, its ids and its resume behaviour are the same.

Every worker node must see the image folder and the project's ``thumbs/`` at the
same paths as the driver (a shared file system: NFS, a mounted bucket through
``s3fs``/``gcsfuse``, or one machine). Optional dependency:
``pip install 'labeler[ray]'``. Source: Ray Data batch inference,
https://docs.ray.io/en/latest/data/batch_inference.html.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from .extract import EmbedBatch


def require_ray():
    """The ``ray`` module. Raises :class:`BadInputError` naming the pip command when missing."""
    try:
        import ray
    except ImportError:
        raise BadInputError("--engine ray needs Ray: pip install 'labeler[ray]'") from None
    return ray


class EmbedActor:
    """A Ray Data actor: one backbone, called on batches of ``{"id", "path"}`` columns."""

    def __init__(self, backbone: str, weights: str | None, view: str, device: str, precision: str,
                 thumbs_dir: str | None, features: str = "global"):
        import torch

        from .backbones import load_backbone
        from .device import pick_device
        from .local_features import feature_backbone

        from .runtime import TorchEngine

        self.device = torch.device(pick_device(device))
        self.bb = feature_backbone(load_backbone(backbone, weights=weights or None, device=str(self.device)),
                                   features)
        self.engine = TorchEngine(self.bb, self.device, precision)
        self.view = view
        self.thumbs_dir = Path(thumbs_dir) if thumbs_dir else None

    def __call__(self, batch: dict) -> dict:
        from .extract import embed_files

        items = [(int(i), Path(str(p))) for i, p in zip(batch["id"], batch["path"])]
        [b] = embed_files(items, self.bb, view=self.view, batch_size=len(items), num_workers=0,
                          thumbs_dir=self.thumbs_dir, progress=False, engine=self.engine)
        ids, w, h, failures = b.ids, b.width, b.height, b.failures
        feats, top1, prob = b.features, b.top1, b.top1_prob
        n_ok = len(ids)
        n_bad = len(failures)
        return {
            "id": np.concatenate([ids, np.array([i for i, _ in failures], np.int64)]),
            "ok": np.array([True] * n_ok + [False] * n_bad),
            "reason": np.array([""] * n_ok + [r for _, r in failures], dtype=object),
            "features": np.concatenate([feats, np.zeros((n_bad, self.bb.dim), np.float32)]),
            "top1": np.concatenate([top1, np.full(n_bad, -1, np.int64)]),
            "top1_prob": np.concatenate([prob, np.zeros(n_bad, np.float32)]),
            "width": np.concatenate([w, np.zeros(n_bad, np.int64)]),
            "height": np.concatenate([h, np.zeros(n_bad, np.int64)]),
        }


def embed_files_ray(items: Sequence[tuple[int, Path]], backbone: str, *, weights: str | None = None,
                    view: str = "whole", batch_size: int = 32, device: str = "auto",
                    thumbs_dir: Path | None = None, precision: str = "fp32", address: str | None = None,
                    num_actors: int | None = None, progress: bool = True,
                    features: str = "global") -> Iterator[EmbedBatch]:
    """Embed image files on Ray; yields :class:`EmbedBatch` like :func:`embed_files`.

    Parameters
    ----------
    items : sequence of (int, Path)
        ``(image id, absolute path)``; paths must be readable on every worker.
    backbone : str
        Registry name (e.g. ``"efficientnet-lite0"``); each actor loads it.
    weights, view, precision
        As for the local path.
    batch_size : int
        Images per actor call.
    device : str
        ``"auto"``: one GPU per actor when the cluster has GPUs, else CPU.
    thumbs_dir : Path or None
        Written by the actors (a shared folder).
    address : str or None
        A running cluster (``"ray://head:10001"``, ``"auto"``); None starts or joins
        a local instance.
    num_actors : int or None
        Actor pool size; default one per GPU, else one per two CPUs (at least 1).
    progress : bool
        Ray Data's progress bars and log lines (off: warnings only).
    features : str, default 'global'
        Feature type (:mod:`labeler.embedding.local_features`), as the local path.

    Yields
    ------
    EmbedBatch
        Batches in input order (the Dataset preserves order).

    Raises
    ------
    BadInputError
        Ray is not installed, or ``batch_size`` < 1.
    """
    ray = require_ray()
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    if not items:
        return
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0)) if device in ("auto", "cuda") or device.startswith("cuda") else 0
    use_gpu = gpus > 0
    size = num_actors or (gpus if use_gpu else max(1, int(res.get("CPU", 1)) // 2))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    if not progress:
        import logging

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ds = ray.data.from_items([{"id": int(i), "path": str(p)} for i, p in items])
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={"backbone": backbone, "weights": weights, "view": view,
                               "device": "cuda" if use_gpu else "cpu", "precision": precision,
                               "thumbs_dir": str(thumbs_dir) if thumbs_dir else None, "features": features},
        batch_size=batch_size, concurrency=size, num_gpus=1 if use_gpu else 0,
        num_cpus=0 if use_gpu else max(1, int(res.get("CPU", 1)) // size), batch_format="numpy",
    )
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ok = np.asarray(b["ok"], bool)
        yield EmbedBatch(ids=np.asarray(b["id"], np.int64)[ok], features=np.asarray(b["features"], np.float32)[ok],
                         top1=np.asarray(b["top1"], np.int64)[ok], top1_prob=np.asarray(b["top1_prob"], np.float32)[ok],
                         width=np.asarray(b["width"], np.int64)[ok], height=np.asarray(b["height"], np.int64)[ok],
                         failures=[(int(i), str(r)) for i, r in zip(np.asarray(b["id"])[~ok], np.asarray(b["reason"])[~ok])])
