"""GoogLeNet (Inception-v1) with root modules.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, with root modules as in Ioannou et al.,
"Deep Roots: Improving CNN Efficiency with Hierarchical Filter Groups", CVPR 2017, Section 4.3: the
3x3 conv of the stem (``conv2``) and the 3x3 and 5x5 convs of every inception module are split into
filter groups; the 1x1 convs that follow (the next module's reductions) mix them.

This is the original network with *real* 5x5 branches (torchvision's ``googlenet`` uses a 3x3 there)
and the Caffe layer layout: every conv has a bias and is followed by BatchNorm + ReLU (BN replaces the
two LRN layers, which carry no parameters or multiply-adds); pools round up as Caffe does.

Variants (the geometry is data, :data:`_GEOMETRIES`):
    ``googlenet``: the network the paper trained and counted. Its raw results table (Ioannou's thesis
        repository, ``rootdata/googlenetma.csv`` and ``googlenetmaconvonly.csv``) gives the exact
        multiply-adds and parameters of orig and root-2..16; they are reproduced exactly by this
        geometry: conv2 at 56x56 and inception 3x at 28x28 as in BVLC, but pool3 and pool4 are 3x3
        stride 2 with pad 1 (ceil), so inception 4x runs at 15x15 and 5x at 8x8; the final average
        pool is 7x7 stride 1, leaving 2x2x1024 -> FC 4096 -> 1000; both auxiliary classifiers (after
        4a and 4d: 5x5/3 average pool (ceil) -> 5x5, 1x1 conv to 128, FC 3200 -> 1024 -> 1000) are
        built, trained (loss weight 0.3, :func:`deeproots.fit`) and counted. Baseline:
        1,716,324,392 FLOPs, 18,809,576 parameters. 224x224 inputs only (the FC widths fix the map).
    ``googlenet_bvlc``: Caffe's ``bvlc_googlenet`` geometry, 224x224 -> inception 3x at 28, 4x at 14,
        5x at 7 pixels, global average pool -> FC 1024 -> 1000; auxiliary classifiers optional
        (``aux_logits=True``), off by default. Baseline: 1,582,680,152 FLOPs, 6,998,552 parameters.
    ``googlenet_cifar``: the BVLC layout with a stride-1 3x3 conv1 and no stem pooling, for 32x32:
        conv1/conv2 at 32, inception 3x at 16, 4x at 8, 5x at 4 pixels.

Auxiliary classifiers are named in ``model.aux_heads`` (``("aux1", "aux2")`` or ``()``). They run only
in training mode, where the forward returns ``(logits, aux1, aux2)``; their convs are listed by
:func:`deeproots.describe_layers` but never grouped, so they are not part of a schedule.
:func:`deeproots.drop_aux` removes them (the deployment form: export, latency).

Layer names: ``conv1``, ``conv2_reduce``, ``conv2``, ``inception3a.branch3x3``,
``inception4e.branch5x5_reduce``, ``aux1.conv``, ``fc``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Mapping, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model

__all__ = ["Inception", "GoogLeNet", "googlenet", "googlenet_bvlc", "googlenet_cifar"]


class _InceptionCfg(NamedTuple):
    branch1x1: int
    branch3x3_reduce: int
    branch3x3: int
    branch5x5_reduce: int
    branch5x5: int
    pool_proj: int


# Szegedy et al., Table 1: output channels of every branch.
_INCEPTION_CFGS: dict[str, _InceptionCfg] = {
    "3a": _InceptionCfg(64, 96, 128, 16, 32, 32),
    "3b": _InceptionCfg(128, 128, 192, 32, 96, 64),
    "4a": _InceptionCfg(192, 96, 208, 16, 48, 64),
    "4b": _InceptionCfg(160, 112, 224, 24, 64, 64),
    "4c": _InceptionCfg(128, 128, 256, 24, 64, 64),
    "4d": _InceptionCfg(112, 144, 288, 32, 64, 64),
    "4e": _InceptionCfg(256, 160, 320, 32, 128, 128),
    "5a": _InceptionCfg(256, 160, 320, 32, 128, 128),
    "5b": _InceptionCfg(384, 192, 384, 48, 128, 128),
}


class _ConvStack(nn.Module):
    """Base for modules whose convs are named layers: conv ``x`` is followed by BN ``x_bn`` + ReLU."""

    def _add_conv(self, name: str, c_in: int, c_out: int, k: int, groups: Mapping[str, int], stride: int = 1) -> None:
        self.add_module(name, nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups.get(name, 1)))
        self.add_module(name + "_bn", nn.BatchNorm2d(c_out))

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)), inplace=True)


class Inception(_ConvStack):
    """One inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1, concatenated.

    Args:
        in_channels: input channels.
        cfg: output channels of the six convs.
        groups: sub-module name (``"branch3x3"``) -> filter groups.
    """

    def __init__(self, in_channels: int, cfg: _InceptionCfg, groups: Mapping[str, int]) -> None:
        super().__init__()
        self._add_conv("branch1x1", in_channels, cfg.branch1x1, 1, groups)
        self._add_conv("branch3x3_reduce", in_channels, cfg.branch3x3_reduce, 1, groups)
        self._add_conv("branch3x3", cfg.branch3x3_reduce, cfg.branch3x3, 3, groups)
        self._add_conv("branch5x5_reduce", in_channels, cfg.branch5x5_reduce, 1, groups)
        self._add_conv("branch5x5", cfg.branch5x5_reduce, cfg.branch5x5, 5, groups)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self._add_conv("pool_proj", in_channels, cfg.pool_proj, 1, groups)
        self.out_channels = cfg.branch1x1 + cfg.branch3x3 + cfg.branch5x5 + cfg.pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self._run("branch1x1", x)
        b2 = self._run("branch3x3", self._run("branch3x3_reduce", x))  # grouped 3x3
        b3 = self._run("branch5x5", self._run("branch5x5_reduce", x))  # grouped 5x5
        b4 = self._run("pool_proj", self.pool(x))
        return torch.cat([b1, b2, b3, b4], 1)


class _AuxClassifier(nn.Module):
    """Szegedy et al., Sec. 5: average pool -> 1x1 conv to 128 (+ReLU) -> FC 1024 (+ReLU, dropout 0.7) -> FC."""

    def __init__(self, in_channels: int, num_classes: int, geometry: _Geometry) -> None:
        super().__init__()
        # paper: 5x5/3 average pool (ceil) on 15x15 -> 5x5; BVLC/CIFAR: 4x4 (= 5x5/3 on ImageNet's 14x14)
        self.pool: nn.Module = (
            nn.AvgPool2d(geometry.aux_pool, stride=3, ceil_mode=True)
            if geometry.aux_pool
            else nn.AdaptiveAvgPool2d(4)
        )
        self.conv = nn.Conv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(geometry.aux_features, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.relu(self.conv(self.pool(x)), inplace=True), 1)  # N x 3200 (paper) / 2048
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class _Geometry(NamedTuple):
    """Where the variants differ; everything else (widths, branch layout) is shared."""

    cifar_stem: bool  # a stride-1 3x3 conv1 and no pool1, for 32x32 inputs
    pool_padding: int  # padding of pool3 and pool4 (3x3 stride 2, ceil): 0 -> 28/14/7, 1 -> 28/15/8
    head_pool: int | None  # final average pool: kernel (stride 1), or None for a global average
    head_features: int  # inputs of fc: 1024 x the head pool's output pixels
    aux_pool: int | None  # auxiliary classifiers' average pool kernel (stride 3, ceil); None: to 4x4
    aux_features: int  # inputs of their fc1: 128 x pooled pixels
    aux_default: bool  # build the auxiliary classifiers unless told otherwise


_GEOMETRIES: dict[str, _Geometry] = {
    # Ioannou et al.'s counted network (module docstring): 15x15 / 8x8 maps, 2x2x1024 head, aux counted.
    "paper": _Geometry(False, 1, 7, 4096, 5, 3200, True),
    "bvlc": _Geometry(False, 0, None, 1024, None, 2048, False),
    "cifar": _Geometry(True, 0, None, 1024, None, 2048, False),
}


class GoogLeNet(_ConvStack):
    """GoogLeNet with a group count per convolution.

    Args:
        num_classes: outputs of ``fc`` (and of the auxiliary classifiers).
        groups: conv name -> filter groups (``"inception4a.branch5x5": 4``); missing names keep 1.
            The auxiliary classifiers' convs always keep 1.
        geometry: ``"paper"`` (the network Ioannou et al. counted; 224x224 inputs only), ``"bvlc"``
            (Caffe's bvlc_googlenet, 224x224; its global average pool takes other sizes too) or
            ``"cifar"`` (the BVLC layout with a 32x32 stem).
        aux_logits: build the two auxiliary classifiers (after 4a and 4d); default: the geometry's
            (on for ``"paper"``, off otherwise). In training mode the forward then returns
            ``(logits, aux1, aux2)``, each ``N x num_classes``; in eval mode only ``logits``.
        dropout: dropout before ``fc`` (0.4 in the paper).
        in_channels: image channels.

    Raises:
        ValueError: an unknown geometry; ``aux_logits`` not None/True/False; ``dropout`` not in [0, 1).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        groups: Mapping[str, int] | None = None,
        geometry: str = "paper",
        aux_logits: bool | None = None,
        dropout: float = 0.4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if geometry not in _GEOMETRIES:
            raise ValueError(f"unknown GoogLeNet geometry {geometry!r}; choose one of: {', '.join(_GEOMETRIES)}")
        if aux_logits is not None and not isinstance(aux_logits, bool):
            raise ValueError(f"aux_logits must be True, False or None (the geometry's default), got {aux_logits!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        geo = _GEOMETRIES[geometry]
        aux = geo.aux_default if aux_logits is None else aux_logits
        self.geometry = geometry
        groups = dict(groups or {})
        if geo.cifar_stem:
            self._add_conv("conv1", in_channels, 64, 3, groups)
            self.pool1: nn.Module = nn.Identity()
        else:
            self._add_conv("conv1", in_channels, 64, 7, groups, stride=2)
            self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._add_conv("conv2_reduce", 64, 64, 1, groups)
        self._add_conv("conv2", 64, 192, 3, groups)  # grouped 3x3
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        c_in = 192
        # Registration order is forward order (describe_layers relies on it): aux1 after 4a, aux2 after 4d.
        for key, cfg in _INCEPTION_CFGS.items():
            prefix = f"inception{key}."
            sub = {k[len(prefix):]: v for k, v in groups.items() if k.startswith(prefix)}
            module = Inception(c_in, cfg, sub)
            self.add_module(f"inception{key}", module)
            c_in = module.out_channels
            if key in ("4a", "4d"):
                head = _AuxClassifier(c_in, num_classes, geo) if aux else None
                self.add_module("aux1" if key == "4a" else "aux2", head)
            if key in ("3b", "4e"):
                pool = nn.MaxPool2d(3, stride=2, padding=geo.pool_padding, ceil_mode=True)
                self.add_module(f"pool{int(key[0])}", pool)
        #: names of the auxiliary classifiers (deeproots.drop_aux removes them)
        self.aux_heads: tuple[str, ...] = ("aux1", "aux2") if aux else ()
        self.avgpool: nn.Module = nn.AvgPool2d(geo.head_pool, stride=1) if geo.head_pool else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(geo.head_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # N x 3 x 224 x 224 (ImageNet) or N x 3 x 32 x 32 (CIFAR stem); maps below: paper / bvlc / cifar
        x = self.pool1(self._run("conv1", x))  # N x 64 x 56 x 56 / 56 / 32
        x = self._run("conv2", self._run("conv2_reduce", x))  # grouped 3x3: N x 192 x 56 x 56 / 56 / 32
        x = self.pool2(x)  # N x 192 x 28 x 28 / 28 / 16
        x = self.inception3b(self.inception3a(x))  # N x 480 x 28 x 28 / 28 / 16
        x = self.inception4a(self.pool3(x))  # N x 512 x 15 x 15 / 14 / 8
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # N x 528 x 15 x 15 / 14 / 8
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.pool4(self.inception4e(x))  # N x 832 x 8 x 8 / 7 / 4
        x = self.inception5b(self.inception5a(x))  # N x 1024 x 8 x 8 / 7 / 4
        x = torch.flatten(self.avgpool(x), 1)  # N x 4096 (7x7/1 pool -> 2x2) / 1024 / 1024
        x = self.fc(self.dropout(x))  # N x num_classes
        if aux1 is not None and aux2 is not None:
            return x, aux1, aux2
        return x


def _stage(name: str) -> str:
    head = name.split(".")[0]  # "inception4a.branch3x3" -> "inception4"; "conv2_reduce" -> "conv2"
    return head[:10] if head.startswith("inception") else head.split("_")[0]


# Paper Section 4.3: root-N has N groups on conv2's 3x3, then N/2, N/4, N/8 on the 3x3 and 5x5 convs
# of the inception modules 3x, 4x, 5x (never below 1).
_GOOGLENET_FAMILIES: dict[str, dict[str, Fraction | int]] = {
    "root": {"conv2": 1, "inception3": Fraction(1, 2), "inception4": Fraction(1, 4), "inception5": Fraction(1, 8)},
}


@register_model(
    "googlenet", input_size=(3, 224, 224), num_classes=1000, stage_of=_stage,
    families=_GOOGLENET_FAMILIES, paper_n=(2, 4, 8, 16),
    description="GoogLeNet / Inception-v1 as the paper counted it (15x15/8x8 maps, FC 4096, aux heads), ImageNet",
)  # fmt: skip
def googlenet(groups: Mapping[str, int], num_classes: int, **kwargs) -> GoogLeNet:
    return GoogLeNet(num_classes, groups, geometry="paper", **kwargs)


@register_model(
    "googlenet_bvlc", input_size=(3, 224, 224), num_classes=1000, stage_of=_stage,
    families=_GOOGLENET_FAMILIES, paper_n=(2, 4, 8, 16),
    description="GoogLeNet / Inception-v1 in Caffe's bvlc_googlenet geometry, ImageNet, real 5x5 branches",
)  # fmt: skip
def googlenet_bvlc(groups: Mapping[str, int], num_classes: int, **kwargs) -> GoogLeNet:
    return GoogLeNet(num_classes, groups, geometry="bvlc", **kwargs)


@register_model(
    "googlenet_cifar", input_size=(3, 32, 32), num_classes=10, stage_of=_stage,
    families=_GOOGLENET_FAMILIES, paper_n=(2, 4, 8, 16),
    description="GoogLeNet inception modules with a 32x32 stem, CIFAR-10",
)  # fmt: skip
def googlenet_cifar(groups: Mapping[str, int], num_classes: int, **kwargs) -> GoogLeNet:
    return GoogLeNet(num_classes, groups, geometry="cifar", **kwargs)
