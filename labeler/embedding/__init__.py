"""The embedding stage: pretrained backbones turn image files into feature vectors.

Modules
-------
registry
    One :class:`BackboneSpec` per backbone (network, weights, input size,
    preprocessing, cost). No torch.
backbones
    :func:`load_backbone`: build a registered network and load real weights.
byo
    Backbones of the user's own: ``onnx:FILE``, ``torchscript:FILE``, ``timm:ARCH``.
text
    open_clip image embeddings as a feature set; text search and zero-shot label probabilities.
device
    :func:`pick_device`.
decode
    Worker-side decoding (uint8 handover) and batched JPEG decoding on the GPU.
runtime
    The forward pass on torch or ONNX Runtime (fp32, int8), exported models cached.
extract
    :func:`embed_files`: batched decoding in worker processes + inference.
local_features
    Feature types that keep local evidence (pooled mid-level stages, two scales).
feature_sets
    Named feature arrays beside the embeddings (features/<name>.npy); the active one.
finetune
    Fine-tune the backbone's last stages on the annotator's labels, re-embed.

Only this subpackage imports torch, and only when one of the torch-side names
(``load_backbone``, ``Backbone``, ``embed_files``, ``pick_device``, ...) is first
used: ``import labeler.embedding`` itself stays cheap.
"""

from __future__ import annotations

from importlib import import_module

from .registry import AUTO_ORDER, BACKBONES, FEATURE_TYPES, PRECISIONS, REGISTRY, RUNTIMES, VIEWS, BackboneSpec, get_spec

_LAZY = {
    "Backbone": "backbones",
    "load_backbone": "backbones",
    "WeightsNotFoundError": "backbones",
    "pick_device": "device",
    "EmbedBatch": "extract",
    "embed_files": "extract",
    "default_num_workers": "extract",
    "feature_backbone": "local_features",
    "gem": "local_features",
    "make_engine": "runtime",
}

__all__ = sorted(["AUTO_ORDER", "BACKBONES", "FEATURE_TYPES", "PRECISIONS", "REGISTRY", "RUNTIMES", "VIEWS", "BackboneSpec",
                  "get_spec", *_LAZY])


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
