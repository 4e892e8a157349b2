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
# fast suite, and at full size under the slow marker. (The paper's googlenet takes 224x224 only: its FC
# widths fix the map sizes.)
SMALL_INPUT = {"resnet50": (3, 64, 64), "resnet200": (3, 64, 64), "googlenet_bvlc": (3, 64, 64)}
# The paper's raw GoogLeNet table (Ioannou's thesis repository, rootdata/googlenetma.csv and
# googlenetmaconvonly.csv): schedule -> (multiply-adds, parameters), auxiliary classifiers included.
GOOGLENET_PAPER = {
    "orig": (1_716_324_392, 18_809_576),
    "root-2": (1_542_916_136, 18_754_280),
    "root-4": (1_291_032_616, 18_515_944),
    "root-8": (964_383_656, 17_504_744),
    "root-16": (756_887_912, 16_308_968),
}


def _random_schedule(arch: str, seed: int) -> deeproots.Schedule:
    rng = random.Random(seed)
    layers = [l for l in deeproots.describe_layers(arch) if not l.aux]
    return deeproots.resolve_schedule(arch, [rng.choice(l.valid_groups) for l in layers])


def _schedules(arch: str) -> list:
    named = sorted(deeproots.paper_schedules(arch))
    return ["orig", next(n for n in named if n.startswith("root-8")), _random_schedule(arch, seed=len(arch))]


def analytic_cost(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int]:
    """(params, FLOPs) from the paper's formula and the output shapes seen by plain forward hooks (no thop).

    Auxiliary classifiers run (they only do in training mode) with every layer in eval mode; a tensor
    shared by two layers counts once.
    """
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
    model.training = bool(getattr(model, "aux_heads", ()))  # the model's own flag only: its aux heads run
    with torch.no_grad():
        model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    model.training = False
    for h in handles:
        h.remove()
    params = {id(p): p.numel() for m in ran for p in m.parameters(recurse=False)}
    return sum(params.values()), flops


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", [0, 1, 2], ids=["orig", "root", "random"])
def test_builds_forward_and_cost(arch: str, which: int) -> None:
    schedule = _schedules(arch)[which]
    torch.manual_seed(0)
    model = deeproots.build_model(arch, schedule, num_classes=7)
    assert model.arch == arch and isinstance(model.schedule, deeproots.Schedule)
    # every conv really has the scheduled groups; auxiliary classifiers' convs keep 1, outside the schedule
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    layers = deeproots.describe_layers(arch, num_classes=7)
    assert list(convs) == [l.name for l in layers]
    assert [l.name for l in layers if not l.aux] == list(model.schedule.groups)
    assert all(convs[n].groups == g for n, g in model.schedule.groups.items())
    assert all(convs[l.name].groups == 1 and l.valid_groups == (1,) for l in layers if l.aux)

    size = SMALL_INPUT.get(arch, model.default_input_size)
    model.train()
    out = model(torch.randn(2, *size))
    heads = getattr(model, "aux_heads", ())
    outs = out if heads else (out,)  # training mode: (logits, aux1, aux2) with auxiliary classifiers
    assert isinstance(out, tuple) == bool(heads)
    assert [o.shape for o in outs] == [(2, 7)] * (1 + len(heads))
    assert all(torch.isfinite(o).all() for o in outs)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, *size)).shape == (1, 7)  # eval: the logits only

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
    """DESIGN.md's baseline costs; GoogLeNet's five rows of the paper's table, exactly."""
    nin = deeproots.count_cost(deeproots.build_model("nin"), (3, 32, 32))
    assert (nin.flops, nin.params) == (222_487_946, 966_986)
    biases = sum(m.bias.numel() for m in deeproots.build_model("nin").modules() if isinstance(m, nn.Conv2d))
    assert biases == 1_418
    with torch.device("meta"):
        r50 = deeproots.count_cost(deeproots.build_model("resnet50"), (3, 224, 224))
        google = {s: deeproots.count_cost(deeproots.build_model("googlenet", s)) for s in GOOGLENET_PAPER}
        bvlc = deeproots.count_cost(deeproots.build_model("googlenet_bvlc"))
        inference = deeproots.count_cost(deeproots.build_model("googlenet"), aux=False)
    assert (r50.flops, r50.params) == (3_857_974_312, 25_503_976)
    assert {s: (c.flops, c.params) for s, c in google.items()} == GOOGLENET_PAPER
    assert (bvlc.flops, bvlc.params) == (1_582_680_152, 6_998_552)  # Caffe's bvlc_googlenet, no aux heads
    # the two auxiliary classifiers: 5x5x512 and 5x5x528 -> 128 (1x1), FC 3200 -> 1024 -> 1000, biases counted
    aux_flops = (512 + 528) * 128 * 25 + 2 * (128 + 3200 * 1024 + 1024 + 1024 * 1000 + 1000)
    aux_params = (512 + 528) * 128 + 2 * (128 + 3200 * 1024 + 1024 + 1024 * 1000 + 1000)
    assert (inference.flops, inference.params) == (1_716_324_392 - aux_flops, 18_809_576 - aux_params)


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
    for arch in ("googlenet", "googlenet_bvlc", "googlenet_cifar"):
        assert deeproots.build_model(arch).inception3a.branch5x5.kernel_size == (5, 5)
    assert deeproots.build_model("googlenet").aux_heads == ("aux1", "aux2")  # the paper trained and counted them
    assert deeproots.build_model("googlenet_bvlc").aux1 is None  # BVLC / CIFAR: off by default
    aux = deeproots.build_model("googlenet_cifar", aux_logits=True).train()
    outs = aux(torch.randn(2, 3, 32, 32))
    assert isinstance(outs, tuple) and [o.shape for o in outs] == [(2, 10)] * 3
    assert aux.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_googlenet_geometry_is_the_papers() -> None:
    """Inception 4x at 15x15 and 5x at 8x8 (pool3/pool4 pad 1, ceil); 7x7/1 pool -> 2x2x1024; aux pool -> 5x5."""
    with torch.device("meta"):
        model = deeproots.build_model("googlenet").train()
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("inception3b", "inception4a", "inception4e", "inception5b", "avgpool", "aux1.pool", "aux2.pool"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    model(torch.zeros(1, 3, 224, 224, device="meta"))
    assert shapes == {
        "inception3b": (1, 480, 28, 28),
        "inception4a": (1, 512, 15, 15),
        "inception4e": (1, 832, 15, 15),
        "inception5b": (1, 1024, 8, 8),
        "avgpool": (1, 1024, 2, 2),
        "aux1.pool": (1, 512, 5, 5),
        "aux2.pool": (1, 528, 5, 5),
    }
    assert (model.fc.in_features, model.aux1.fc1.in_features) == (4096, 3200)


def test_drop_aux_is_the_deployment_form() -> None:
    torch.manual_seed(0)
    model = deeproots.build_model("googlenet_cifar", "root-4", aux_logits=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    kept = deeproots.fold_batchnorm(model)  # the latency form: folded, aux heads dropped, outputs kept
    assert not any(n.startswith("aux") for n, _ in kept.named_modules()) and model.aux_heads == ("aux1", "aux2")
    with torch.no_grad():
        torch.testing.assert_close(kept(x), expected, rtol=1e-4, atol=1e-4)
    deeproots.drop_aux(model)
    assert model.aux_heads == () and not any(k.startswith("aux") for k in model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    assert deeproots.drop_aux(deeproots.build_model("nin")).arch == "nin"  # no aux heads: unchanged


def test_cifar_variants_share_the_grouped_layers() -> None:
    for imagenet, cifar in (("resnet50", "resnet50_cifar"), ("googlenet", "googlenet_cifar"), ("googlenet_bvlc", "googlenet_cifar")):
        a = [(l.name, l.kind, l.in_channels, l.out_channels) for l in deeproots.describe_layers(imagenet) if not l.aux]
        b = [(l.name, l.kind, l.in_channels, l.out_channels) for l in deeproots.describe_layers(cifar) if not l.aux]
        assert a[1:] == b[1:]  # all but the stem conv1 (7x7/2 vs 3x3/1)
