"""Text search and zero-shot label probabilities with an open_clip model (CLIP, Radford et al. 2021).

``labeler ingest DIR --text-model NAME[:CHECKPOINT]`` (or ``labeler features --text-model``
later) embeds every image with the CLIP image tower and stores the vectors as a feature
set of kind ``'clip'`` (``features/clip-<model>.npy``; not made active: suggestions keep the
project's own vectors). A sentence is then embedded with the text tower and compared by
cosine similarity (:func:`text_scores`; ``labeler search --text``), and class names become
prompts ("a photo of a {label}") whose softmax over the images' similarities gives each
image a probability per label (:func:`zero_shot`).

``NAME`` is an open_clip architecture (``ViT-B-32``, ``RN50``, ... ``open_clip.list_models()``)
or a JSON model config file (registered with ``open_clip.add_model_config`` under its stem),
or ``hf-hub:ORG/REPO``. ``CHECKPOINT`` is an open_clip pretrained tag
(``laion2b_s34b_b79k``: downloaded into the Hugging Face cache where a network exists) or a
local file (a state dict or open_clip checkpoint). What was used is recorded with the
feature set (files made absolute), so a text query re-loads the same model.

Images are prepared as open_clip's evaluation transform: the shorter side resized to the
model's input size, centre-cropped, normalised by its mean and std (bilinear here, open_clip
uses bicubic: cosine > 0.99 between the two on real photos is typical, not checked here).

A missing ``open_clip`` raises one line naming ``pip install 'labeler[models]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError, NotFoundError, ProjectError
from .byo import EmbeddingModel, require

__all__ = ["CLIP_KIND", "PROMPT", "ClipModel", "ZeroShot", "add_text_features", "clip_feature_set",
           "load_clip", "parse_text_model", "text_scores", "zero_shot", "zero_shot_predictions"]

log = logging.getLogger(__name__)

#: The ``kind`` of a CLIP feature set in the project's feature set list.
CLIP_KIND = "clip"
#: The zero-shot prompt of a class name (CLIP's ImageNet prompt, Radford et al. 2021).
PROMPT = "a photo of a {label}"


def parse_text_model(spec: str) -> tuple[str, str | None, str | None]:
    """``'ViT-B-32:laion2b_s34b_b79k'`` -> (model name, pretrained tag or absolute file, config file or None).

    A ``NAME`` ending in ``.json`` is a model config file; a ``CHECKPOINT`` that names an
    existing file is made absolute.

    Raises
    ------
    BadInputError
        An empty name, or a config file that does not exist.
    """
    spec = (spec or "").strip()
    if spec.startswith("hf-hub:"):
        return spec, None, None
    name, _, ckpt = spec.partition(":")
    if not name:
        raise BadInputError(f"--text-model {spec!r}: expected NAME[:CHECKPOINT], e.g. ViT-B-32:laion2b_s34b_b79k")
    config = None
    if name.endswith(".json"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise BadInputError(f"open_clip model config not found: {path}")
        config, name = str(path.resolve()), path.stem
    if ckpt and (Path(ckpt).expanduser().is_file() or "/" in ckpt or ckpt.endswith((".pt", ".pth", ".bin",
                                                                                      ".safetensors"))):
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise BadInputError(f"open_clip checkpoint not found: {path}")
        ckpt = str(path.resolve())
    return name, ckpt or None, config


@dataclasses.dataclass
class ClipModel:
    """A loaded open_clip model: ``model`` (eval), ``tokenizer``, input ``size``, ``mean``/``std``
    (0..1 units), ``spec`` (the text-model string as recorded), ``device``."""

    model: nn.Module
    tokenizer: object
    size: int
    mean: tuple
    std: tuple
    spec: str
    device: str

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        """(len(texts), D) float32, L2-normalised."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        z = self.model.encode_text(tokens).float()
        return torch.nn.functional.normalize(z, dim=-1).cpu().numpy()

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature, ``exp(logit_scale)`` (100 for trained CLIPs)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp()) if scale is not None else 100.0


class _ImageTower(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x, normalize=True)


def load_clip(spec: str, *, device: str = "cpu") -> ClipModel:
    """Load an open_clip model from ``NAME[:CHECKPOINT]`` (see :func:`parse_text_model`).

    Raises
    ------
    BadInputError
        open_clip not installed (one line naming the extra), an unknown model name, or a
        checkpoint that does not fit.
    WeightsNotFoundError
        A pretrained tag whose weights cannot be downloaded here.
    """
    require("open_clip", "text search (--text-model)")
    import open_clip

    from ..errors import WeightsNotFoundError
    from .device import pick_device

    name, ckpt, config = parse_text_model(spec)
    if ckpt is None and not name.startswith("hf-hub:"):  # never silently random weights
        raise BadInputError(f"--text-model {name} names no weights: add :PRETRAINED_TAG (e.g. "
                            "ViT-B-32:laion2b_s34b_b79k) or :CHECKPOINT_FILE; open_clip.list_pretrained() lists tags")
    if config is not None:
        open_clip.add_model_config(config)
    device = pick_device(device)
    if name not in open_clip.list_models() and not name.startswith("hf-hub:"):
        raise BadInputError(f"open_clip has no model {name!r}; open_clip.list_models() lists them, or give a JSON "
                            "model config file")
    try:
        model = open_clip.create_model(name, pretrained=ckpt, device=device)
    except RuntimeError as e:
        msg = str(e).splitlines()[0][:300]
        if "download" in msg.lower():  # open_clip wraps the hub's error: no network, no such file
            raise WeightsNotFoundError(f"open_clip {name}: weights {ckpt} could not be downloaded ({msg[:160]}); give "
                                       f"a local checkpoint file as --text-model {name}:FILE, or run once with a "
                                       "network") from None
        if "Model config" in msg:
            raise BadInputError(f"open_clip has no model {name!r} ({msg}); open_clip.list_models() lists them") from None
        raise BadInputError(f"cannot load open_clip {name} from {ckpt}: {msg}") from None
    except Exception as e:  # hub download errors, no network
        raise WeightsNotFoundError(f"open_clip {name} {ckpt}: weights not found ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200]}); give a local checkpoint file as "
                                   f"--text-model {name}:FILE, or run once with a network") from None
    model.eval()
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[-1] if isinstance(size, (list, tuple)) else size)
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    recorded = ":".join(x for x in (config or name, ckpt) if x)
    return ClipModel(model, open_clip.get_tokenizer(name), size, mean, std, recorded, device)


def _image_backbone(clip: ClipModel):
    """The image tower as a :class:`~labeler.embedding.backbones.Backbone` (view 'crop':
    shorter side to the input size, centre crop), for
    :func:`~labeler.embedding.extract.embed_files`."""
    from .backbones import Backbone
    from .byo import _spec

    net = EmbeddingModel(_ImageTower(clip.model), "torch")
    with torch.inference_mode():
        dim = int(net(torch.zeros(1, 3, clip.size, clip.size, device=clip.device))[0].shape[1])
    spec = _spec(f"clip:{clip.spec}", clip.size, clip.mean, clip.std, dim, 1.0, f"open_clip {clip.spec}",
                 "open_clip's preprocess config", ("open_clip",))
    return Backbone(name=spec.name, dim=dim, input_size=clip.size, weights_id=clip.spec, weights_source=clip.spec,
                    model=net, categories=[], spec=spec)


def add_text_features(project, spec: str, *, name: str | None = None, device: str = "auto", batch_size: int = 32,
                      num_workers: int | None = None, progress: bool = True) -> dict:
    """Embed every image of ``project`` with the CLIP image tower of ``spec`` and store a feature set.

    Returns
    -------
    dict
        ``name``, ``dim``, ``rows``, ``seconds``, ``failures`` (list of (image id, reason)).

    Raises
    ------
    ProjectError
        The project has no images yet.
    BadInputError, WeightsNotFoundError
        As :func:`load_clip`.
    """
    from .feature_sets import save_feature_set
    from .local_features import embed_project

    if project.store.next_row() == 0:
        raise ProjectError("the project has no images yet: run `labeler ingest` first")
    clip = load_clip(spec, device=device)
    bb = _image_backbone(clip)
    t = time.perf_counter()
    feats, failures = embed_project(project, bb, view="crop", device=clip.device, batch_size=batch_size,
                                    num_workers=num_workers, progress=progress, runtime="torch")
    seconds = time.perf_counter() - t
    base, _, _ = parse_text_model(spec)
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(base.split(":")[-1]).stem)[:50]
    name = save_feature_set(project, name or f"clip-{stem}", feats, {
        "kind": CLIP_KIND, "text_model": clip.spec, "input_size": clip.size, "seconds": round(seconds, 1)})
    return {"name": name, "dim": int(feats.shape[1]), "rows": int(feats.shape[0]), "seconds": seconds,
            "failures": failures}


def clip_feature_set(project, name: str | None = None) -> tuple[str, dict]:
    """(name, info) of the CLIP feature set to search: ``name``, else the newest one.

    Raises
    ------
    NotFoundError
        No CLIP feature set (the message says how to make one), or ``name`` is not one.
    """
    from .feature_sets import list_feature_sets

    sets = {n: i for n, i in list_feature_sets(project).items() if i.get("kind") == CLIP_KIND}
    if name is not None:
        if name not in sets:
            raise NotFoundError(f"no CLIP feature set {name!r} in this project (CLIP sets: {', '.join(sets) or 'none'})")
        return name, sets[name]
    if not sets:
        raise NotFoundError("this project has no CLIP image embeddings for text search: run `labeler features "
                            "--text-model NAME:CHECKPOINT` (or ingest with --text-model), e.g. "
                            "ViT-B-32:laion2b_s34b_b79k")
    last = list(sets)[-1]  # list_feature_sets orders by creation time
    return last, sets[last]


def _vectors(project, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image vectors L2-normalised (n_rows, D), rows usable (n_rows,) bool)."""
    from .feature_sets import load_feature_set

    a = np.asarray(load_feature_set(project, name), dtype=np.float32)
    norms = np.linalg.norm(a, axis=1)
    ok = norms > 0
    if a.shape[0] < project.store.next_row():
        log.warning("CLIP feature set %r covers %d of %d images (images were added since): run `labeler features "
                    "--text-model ...` again to search the others", name, a.shape[0], project.store.next_row())
    return a / np.where(ok, norms, 1.0)[:, None], ok


def text_scores(project, texts: list[str], *, feature_set: str | None = None, device: str = "auto",
                clip: ClipModel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each text to each image of the project's CLIP feature set.

    Returns
    -------
    sims : ndarray (len(texts), n_rows) float32
        Rows of images that could not be embedded are -inf.
    row_ids : ndarray (n_rows,) int64
        The image id of each row (:meth:`Store.row_image_ids`).
    """
    name, info = clip_feature_set(project, feature_set)
    vecs, ok = _vectors(project, name)
    clip = clip or load_clip(info["text_model"], device=device)
    t = clip.encode_text(texts)
    if t.shape[1] != vecs.shape[1]:
        raise BadInputError(f"text model {clip.spec} gives {t.shape[1]}-d vectors, feature set {name} {vecs.shape[1]}-d")
    sims = t @ vecs.T
    sims[:, ~ok] = -np.inf
    return sims.astype(np.float32), project.store.row_image_ids()[: len(vecs)]


@dataclasses.dataclass
class ZeroShot:
    """Zero-shot label probabilities: ``probs[i, j]`` = P(``labels[j]`` | image ``image_ids[i]``),
    a softmax over the labels of the model's scaled cosine similarities (rows sum to 1);
    ``prompts`` are the texts the labels became."""

    image_ids: np.ndarray
    labels: list[str]
    probs: np.ndarray
    prompts: list[str]

    def top(self) -> dict[int, tuple[str, float]]:
        """Image id -> (most probable label, its probability)."""
        j = self.probs.argmax(axis=1)
        return {int(i): (self.labels[k], float(self.probs[n, k])) for n, (i, k) in enumerate(zip(self.image_ids, j))}


def zero_shot(project, labels: list[str] | None = None, *, template: str = PROMPT, feature_set: str | None = None,
              device: str = "auto", clip: ClipModel | None = None) -> ZeroShot:
    """Per-image label probabilities from class-name prompts (CLIP zero-shot classification).

    Parameters
    ----------
    labels : list of str, optional
        Class names (default: the labels in use in the project, sorted).
    template : str
        Prompt with ``{label}`` (default :data:`PROMPT`); ``_`` and ``-`` in a label become spaces.

    Raises
    ------
    BadInputError
        No labels (none given, none in use), or a template without ``{label}``.
    NotFoundError
        No CLIP feature set.
    """
    if "{label}" not in template:
        raise BadInputError(f"zero-shot template {template!r} needs {{label}}")
    if labels is None:
        ids = [int(i) for i in project.store.row_image_ids() if i >= 0]
        labels = sorted(set(project.store.labels_for(ids).values()))
    labels = list(dict.fromkeys(labels))
    if not labels:
        raise BadInputError("zero-shot needs class names: give labels, or label a few images first")
    name, info = clip_feature_set(project, feature_set)
    clip = clip or load_clip(info["text_model"], device=device)
    prompts = [template.format(label=lab.replace("_", " ").replace("-", " ")) for lab in labels]
    sims, row_ids = text_scores(project, prompts, feature_set=name, clip=clip)
    keep = np.isfinite(sims[0]) & (row_ids >= 0)
    logits = clip.logit_scale * sims[:, keep].T.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return ZeroShot(image_ids=row_ids[keep].astype(np.int64), labels=labels, probs=p.astype(np.float32),
                    prompts=prompts)


def zero_shot_predictions(project, labels: list[str] | None = None, *, template: str = PROMPT,
                          feature_set: str | None = None, source: str | None = None, top: int = 3,
                          device: str = "auto") -> dict:
    """Store zero-shot label probabilities as a source of predictions: one more suggestion expert.

    The ``top`` most probable labels of each image, with their probabilities as scores, are
    written as the predictions of ``source`` (default ``'zero-shot <feature set>'``), replacing
    that source's earlier ones, exactly as ``labeler import-predictions`` stores a classifier's:
    the suggestion model weighs the source by how often it is right on the held-out hand
    labels (:mod:`labeler.assist.experts`), so prompts that do not fit the photos get no say.

    Returns
    -------
    dict
        ``source``, ``rows`` written, ``images``, ``labels``.

    Raises
    ------
    BadInputError
        As :func:`zero_shot`; a label that is not a valid label name.
    """
    from ..labels import clean_label

    name, _ = clip_feature_set(project, feature_set)
    zs = zero_shot(project, [clean_label(lab) for lab in labels] if labels is not None else None,
                   template=template, feature_set=name, device=device)
    source = (source or f"zero-shot {name}").strip()[:80]
    k = max(1, min(int(top), len(zs.labels)))
    order = np.argsort(-zs.probs, axis=1, kind="stable")[:, :k]
    rows = [(int(i), zs.labels[j], float(zs.probs[n, j])) for n, i in enumerate(zs.image_ids) for j in order[n]]
    written = project.store.replace_predictions(source, rows)
    return {"source": source, "rows": written, "images": len(zs.image_ids), "labels": zs.labels}
