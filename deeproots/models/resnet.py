"""ResNet-50 / ResNet-200 with root modules.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet-50, the
original MSRA Caffe definition) and "Identity Mappings in Deep Residual Networks", ECCV 2016
(pre-activation ResNet-200, as trained by fb.resnet.torch), with the 3x3 convolution of every
bottleneck turned into a root module as in Ioannou et al., CVPR 2017, Section 4.2: the 3x3 is split
into filter groups and the bottleneck's own 1x1 expansion mixes them.

Variants:
    ``resnet50``: ImageNet geometry (224x224). MSRA definition: the stride-2 of a downsampling
        bottleneck sits on its *first 1x1* conv (torchvision's "v1.5" puts it on the 3x3); conv1 has
        a bias, the other convs do not. 3,857,974,312 FLOPs, 25,503,976 parameters.
    ``resnet200``: pre-activation bottlenecks [3, 24, 36, 3], stride on the 3x3 (fb.resnet.torch);
        ImageNet geometry. No exact cost anchor in the paper.
    ``resnet50_cifar``: the ResNet-50 blocks and grouped layers with a 32x32 stem (3x3 conv1,
        stride 1, no max-pool): stages at 32, 16, 8, 4 pixels. For searches on CIFAR-10.

Layer names follow torchvision: ``conv1``, ``layer1.0.conv2``, ``layer2.0.downsample.0``, ``fc``.
The paper's res2..res5 are ``layer1..layer4``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ._registry import register_model

__all__ = ["Bottleneck", "PreActBottleneck", "ResNet", "resnet50", "resnet200", "resnet50_cifar"]


class Bottleneck(nn.Module):
    """MSRA bottleneck: 1x1 (stride) -> 3x3 (groups) -> 1x1 expand, post-activation."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, groups: Mapping[str, int] | None = None) -> None:
        super().__init__()
        g = dict(groups or {})  # sub-module name ("conv2", "downsample.0") -> groups
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, groups=g.get("conv1", 1), bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, groups=g.get("conv2", 1), bias=False)  # the root module's groups
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, groups=g.get("conv3", 1), bias=False)  # mixes the groups
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=g.get("downsample.0", 1), bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (BN-ReLU before each conv), stride on the 3x3, as in fb.resnet.torch."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, groups: Mapping[str, int] | None = None) -> None:
        super().__init__()
        g = dict(groups or {})
        out_channels = width * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, groups=g.get("conv1", 1), bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=g.get("conv2", 1), bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, groups=g.get("conv3", 1), bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=g.get("downsample.0", 1), bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


class ResNet(nn.Module):
    """Bottleneck ResNet with a group count per convolution.

    Args:
        block: :class:`Bottleneck` (post-activation, MSRA) or :class:`PreActBottleneck`.
        layers: number of blocks per stage (``layer1..layer4``).
        num_classes: outputs of ``fc``.
        groups: conv name -> filter groups (``"layer3.2.conv2": 4``); missing names keep 1.
        cifar_stem: a 3x3 stride-1 ``conv1`` with no max-pool, for 32x32 inputs.
        stem_bias: ``conv1`` has a bias (MSRA's Caffe ResNet-50 does).
        in_channels: image channels.
    """

    def __init__(
        self,
        block: type[Bottleneck] | type[PreActBottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        groups: Mapping[str, int] | None = None,
        cifar_stem: bool = False,
        stem_bias: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        groups = dict(groups or {})
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=stem_bias, groups=groups.get("conv1", 1))
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=stem_bias, groups=groups.get("conv1", 1))
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        c_in = 64
        for i, (n_blocks, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = []
            for j in range(n_blocks):
                prefix = f"layer{i}.{j}."
                block_groups = {k[len(prefix):]: v for k, v in groups.items() if k.startswith(prefix)}
                blocks.append(block(c_in, width, 2 if (j == 0 and i > 1) else 1, block_groups))
                c_in = width * block.expansion
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.final_bn = nn.BatchNorm2d(c_in) if block is PreActBottleneck else None  # pre-activation nets end with BN-ReLU
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224 (ImageNet) or N x 3 x 32 x 32 (CIFAR stem)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # N x 64 x 56 x 56 (ImageNet) / 32 x 32 (CIFAR)
        x = self.layer1(x)  # N x 256 x 56 x 56
        x = self.layer2(x)  # N x 512 x 28 x 28
        x = self.layer3(x)  # N x 1024 x 14 x 14
        x = self.layer4(x)  # N x 2048 x 7 x 7
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))  # N x num_classes


def _stage(name: str) -> str:
    return name.split(".")[0]  # "layer3.2.conv2" -> "layer3"


# Paper Section 4.2: root-N has N groups in res2 (layer1), halving per stage, never below 1.
_RESNET_FAMILIES: dict[str, dict[str, Fraction | int]] = {
    "root": {"layer1": 1, "layer2": Fraction(1, 2), "layer3": Fraction(1, 4), "layer4": Fraction(1, 8)},
}
_RESNET_PAPER_N = (2, 4, 8, 16, 32, 64)


def _register(name: str, input_size: tuple[int, int, int], num_classes: int, description: str) -> Callable:
    return register_model(
        name, input_size=input_size, num_classes=num_classes, stage_of=_stage,
        families=_RESNET_FAMILIES, paper_n=_RESNET_PAPER_N, description=description,
    )  # fmt: skip


@_register("resnet50", (3, 224, 224), 1000, "ResNet-50, ImageNet, MSRA definition (stride on the first 1x1)")
def resnet50(groups: Mapping[str, int], num_classes: int, **kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, groups, stem_bias=True, **kwargs)


@_register("resnet200", (3, 224, 224), 1000, "ResNet-200, ImageNet, pre-activation (fb.resnet.torch)")
def resnet200(groups: Mapping[str, int], num_classes: int, **kwargs) -> ResNet:
    return ResNet(PreActBottleneck, (3, 24, 36, 3), num_classes, groups, **kwargs)


@_register("resnet50_cifar", (3, 32, 32), 10, "ResNet-50 blocks with a 32x32 stem (3x3 conv1, no max-pool), CIFAR-10")
def resnet50_cifar(groups: Mapping[str, int], num_classes: int, **kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, groups, cifar_stem=True, stem_bias=True, **kwargs)
