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


class ResNetFeatures(nn.Module):
    """torchvision ResNet -> ``(pooled features, logits)``; the ResNet is ``.net``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = x.contiguous(memory_format=torch.channels_last)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        feats = torch.flatten(n.avgpool(x), 1)
        return feats, n.fc(feats)


class EfficientNetFeatures(nn.Module):
    """efficientnet-lite-pytorch EfficientNet -> ``(pooled features, logits)``; the net is ``.net``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = n.extract_features(x.contiguous(memory_format=torch.channels_last))
        feats = torch.flatten(n._avg_pooling(x), 1)  # before dropout (identity in eval) and FC
        return feats, n._fc(feats)


def resnet50() -> ResNetFeatures:
    """torchvision ResNet-50 with random weights, wrapped."""
    from torchvision.models import resnet50 as build

    return ResNetFeatures(build(weights=None))


def efficientnet_lite(variant: str) -> EfficientNetFeatures:
    """EfficientNet-Lite ``variant`` (e.g. ``'efficientnet-lite0'``) with random weights, wrapped."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNetFeatures(EfficientNet.from_name(variant))
