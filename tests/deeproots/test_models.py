"""Every registered architecture x several schedules: builds, forward shape, no NaN, exact cost.

Generated from the registry (timm's ``parametrize('model_name', list_models())``), so a new
architecture is tested without touching this file.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

import deeproots

ARCHS = deeproots.list_architectures()
# Full ImageNet-size forwards are seconds each on 2 CPU cores: these run at a reduced input size in the
# fast suite, and at full size under the slow marker.
SMALL_INPUT = {"resnet50": (3, 64, 64), "resnet200": (3, 64, 64), "googlenet": (3, 64, 64)}


def _random_schedule(arch: str, seed: int) -> deeproots.Schedule:
    rng = random.Random(seed)
    return deeproots.resolve_schedule(arch, [rng.choice(l.valid_groups) for l in deeproots.describe_layers(arch)])


def _schedules(arch: str) -> list:
    named = sorted(deeproots.paper_schedules(arch))
    return ["orig", next(n for n in named if n.startswith("root-8")), _random_schedule(arch, seed=len(arch))]


def analytic_cost(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int]:
    """(params, FLOPs) from the paper's formula and the output shapes seen by plain forward hooks (no thop)."""
    flops = 0
    ran: list[nn.Module] = []

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal flops
        ran.append(m)
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            flops += kh * kw * (m.in_channels // m.groups) * m.out_channels * out.shape[2] * out.shape[3]
        else:
            flops += m.in_features * m.out_features
        flops += m.out_channels if isinstance(m, nn.Conv2d) and m.bias is not None else 0
        flops += m.out_features if isinstance(m, nn.Linear) and m.bias is not None else 0

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    params = sum(p.numel() for m in set(ran) for p in m.parameters(recurse=False))
    return params, flops


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", [0, 1, 2], ids=["orig", "root", "random"])
def test_builds_forward_and_cost(arch: str, which: int) -> None:
    schedule = _schedules(arch)[which]
    torch.manual_seed(0)
    model = deeproots.build_model(arch, schedule, num_classes=7)
    assert model.arch == arch and isinstance(model.schedule, deeproots.Schedule)
    # every conv really has the scheduled groups
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert list(convs) == list(model.schedule.groups)
    assert all(convs[n].groups == g for n, g in model.schedule.groups.items())

    size = SMALL_INPUT.get(arch, model.default_input_size)
    model.train()
    out = model(torch.randn(2, *size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()

    # cost at the architecture's own geometry, on the meta device (shapes only)
    full = model.default_input_size
    with torch.device("meta"):
        meta_model = deeproots.build_model(arch, model.schedule, num_classes=7)
    cost = deeproots.count_cost(meta_model, full)
    assert (cost.params, cost.flops) == analytic_cost(meta_model, full)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHS if a in SMALL_INPUT])
def test_full_size_forward(arch: str) -> None:
    model = deeproots.build_model(arch, "root-8").eval()
    with torch.no_grad():
        out = model(torch.randn(1, *model.default_input_size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert (c := deeproots.count_cost(model)) and (c.params, c.flops) == analytic_cost(model, model.default_input_size)


def test_paper_anchors() -> None:
    """DESIGN.md's baseline costs."""
    nin = deeproots.count_cost(deeproots.build_model("nin"), (3, 32, 32))
    assert (nin.flops, nin.params) == (222_487_946, 966_986)
    biases = sum(m.bias.numel() for m in deeproots.build_model("nin").modules() if isinstance(m, nn.Conv2d))
    assert biases == 1_418
    with torch.device("meta"):
        r50 = deeproots.count_cost(deeproots.build_model("resnet50"), (3, 224, 224))
    assert (r50.flops, r50.params) == (3_857_974_312, 25_503_976)


def test_nin_geometry_follows_caffe() -> None:
    """Pools round up: 32 -> 16 -> 8, and the paper's Table 1 layer widths."""
    model = deeproots.build_model("nin")
    shapes = {}
    for name in ("conv1c", "conv2c", "conv3c"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    model(torch.zeros(1, 3, 32, 32))
    assert shapes == {
        "conv1c": (1, 96, 32, 32),
        "conv2c": (1, 192, 16, 16),
        "conv3c": (1, 10, 8, 8),
    }


def test_resnet50_stride_on_first_1x1() -> None:
    """MSRA ResNet-50: the downsampling bottleneck strides in conv1 (1x1), not in the 3x3."""
    model = deeproots.build_model("resnet50")
    block = model.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert model.conv1.bias is not None and block.conv2.bias is None


def test_googlenet_has_real_5x5_branches() -> None:
    model = deeproots.build_model("googlenet")
    assert model.inception3a.branch5x5.kernel_size == (5, 5)
    assert model.aux1 is None  # auxiliary classifiers off by default
    aux = deeproots.build_model("googlenet_cifar", aux_logits=True).train()
    outs = aux(torch.randn(2, 3, 32, 32))
    assert isinstance(outs, tuple) and [o.shape for o in outs] == [(2, 10)] * 3
    assert aux.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_variants_share_the_grouped_layers() -> None:
    for imagenet, cifar in (("resnet50", "resnet50_cifar"), ("googlenet", "googlenet_cifar")):
        a = [(l.name, l.kind, l.in_channels, l.out_channels) for l in deeproots.describe_layers(imagenet)]
        b = [(l.name, l.kind, l.in_channels, l.out_channels) for l in deeproots.describe_layers(cifar)]
        assert a[1:] == b[1:]  # all but the stem conv1 (7x7/2 vs 3x3/1)
