"""Network in Network for CIFAR-10 with root modules.

Lin, Chen, Yan, "Network In Network", ICLR 2014, in the form used by Ioannou et al., "Deep Roots:
Improving CNN Efficiency with Hierarchical Filter Groups", CVPR 2017 (arXiv 1605.06489), Table 1.

Three "mlpconv" blocks, each a spatial convolution followed by two 1x1 convolutions. A root module is
the spatial convolution split into ``g`` filter groups (each filter sees ``in_channels / g`` inputs)
followed by the block's own ungrouped 1x1 convolution, which mixes the groups. Every conv has a bias
(as in the paper's Caffe net) and is followed by BatchNorm + ReLU; He init; no dropout. The pools
round up as Caffe does (``ceil_mode=True``): 32 -> 16 -> 8.

Baseline (``orig``): 222,487,946 FLOPs, 966,986 parameters.

Example:
    >>> import torch, deeproots
    >>> model = deeproots.build_model("nin", schedule="root-8")
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model

__all__ = ["NIN", "nin"]

# (name, out_channels, kernel_size) in forward order; the pools sit after conv1c and conv2c.
_NIN_LAYERS: tuple[tuple[str, int, int], ...] = (
    ("conv1a", 192, 5), ("conv1b", 160, 1), ("conv1c", 96, 1),
    ("conv2a", 192, 5), ("conv2b", 192, 1), ("conv2c", 192, 1),
    ("conv3a", 192, 3), ("conv3b", 192, 1), ("conv3c", None, 1),  # conv3c: num_classes outputs
)  # fmt: skip


class NIN(nn.Module):
    """NIN with a group count per convolution.

    Args:
        num_classes: outputs of conv3c (the net has no FC layer).
        groups: conv name -> filter groups; missing names keep 1. Validate with
            :func:`deeproots.resolve_schedule` first for a readable error.
        in_channels: image channels.
    """

    def __init__(self, num_classes: int = 10, groups: Mapping[str, int] | None = None, in_channels: int = 3) -> None:
        super().__init__()
        groups = dict(groups or {})
        c_in = in_channels
        for name, c_out, k in _NIN_LAYERS:
            c_out = num_classes if c_out is None else c_out
            conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups.get(name, 1), bias=True)
            self.add_module(name, conv)
            self.add_module("bn" + name[4:], nn.BatchNorm2d(c_out))
            c_in = c_out
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.pool2 = nn.AvgPool2d(3, stride=2, ceil_mode=True)
        self.pool3 = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _block(self, x: torch.Tensor, tag: str) -> torch.Tensor:
        for sub in "abc":
            x = F.relu(getattr(self, f"bn{tag}{sub}")(getattr(self, f"conv{tag}{sub}")(x)), inplace=True)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 32 x 32
        x = self.pool1(self._block(x, "1"))  # conv1a groups split 3 -> 192; N x 96 x 16 x 16
        x = self.pool2(self._block(x, "2"))  # conv2a groups split 96 -> 192; N x 192 x 8 x 8
        x = self._block(x, "3")  # conv3a groups split 192 -> 192; N x num_classes x 8 x 8
        return torch.flatten(self.pool3(x), 1)  # N x num_classes


def _stage(name: str) -> str:
    return name[:5]  # "conv2a" -> "conv2"


@register_model(
    "nin",
    input_size=(3, 32, 32),
    num_classes=10,
    stage_of=_stage,
    # Paper Table 1: conv1a keeps 1 group; N groups on conv2a; conv3a gets N/2 (root), N (col), 2N (tree).
    families={
        "root": {"conv2": 1, "conv3": Fraction(1, 2)},
        "col": {"conv2": 1, "conv3": 1},
        "tree": {"conv2": 1, "conv3": 2},
    },
    paper_n=(2, 4, 8, 16),
    description="Network in Network, CIFAR-10 (32x32), the paper's Table 1 network",
)
def nin(groups: Mapping[str, int], num_classes: int, **kwargs) -> NIN:
    return NIN(num_classes=num_classes, groups=groups, **kwargs)
