"""The networks behind the registry's builders, wrapped to return pooled features and logits.

Each wrapper's ``forward(x)`` returns ``(features, logits)``: the global-average-pooled
penultimate layer, shape (B, dim) float32, and the (B, 1000) ImageNet logits. The
wrapped torchvision / efficientnet-lite-pytorch network is ``.net``, which is what
pretrained state dicts are loaded into.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EfficientNetFeatures", "ResNetFeatures", "efficientnet_lite", "resnet50"]


class _PooledFeatures(nn.Module):
    """A network ``.net`` -> ``(pooled features, logits)`` (see the module docstring):
    a subclass says how its network pools (``pool``) and classifies (``classify``)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.pool(x.contiguous(memory_format=torch.channels_last))
        return feats, self.classify(feats)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim) global-average-pooled penultimate features of the images ``x``."""
        raise NotImplementedError

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, 1000) ImageNet logits of the pooled features."""
        raise NotImplementedError


class ResNetFeatures(_PooledFeatures):
    """torchvision ResNet -> ``(pooled features, logits)``; the ResNet is ``.net``."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net.fc(feats)


class EfficientNetFeatures(_PooledFeatures):
    """efficientnet-lite-pytorch EfficientNet -> ``(pooled features, logits)``; the net is ``.net``."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return torch.flatten(n._avg_pooling(n.extract_features(x)), 1)  # before dropout (identity in eval) and FC

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net._fc(feats)


def resnet50() -> ResNetFeatures:
    """torchvision ResNet-50 with random weights, wrapped."""
    from torchvision.models import resnet50 as build

    return ResNetFeatures(build(weights=None))


def efficientnet_lite(variant: str) -> EfficientNetFeatures:
    """EfficientNet-Lite ``variant`` (e.g. ``'efficientnet-lite0'``) with random weights, wrapped."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNetFeatures(EfficientNet.from_name(variant))
