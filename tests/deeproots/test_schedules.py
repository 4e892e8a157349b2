"""Schedules: every input form, the paper's named tables, canonical ids, and errors that name the layer."""

from __future__ import annotations

import copy
import pickle

import pytest

import deeproots
from deeproots import resolve_schedule


def test_describe_layers_nin() -> None:
    layers = deeproots.describe_layers("nin")
    assert [l.name for l in layers] == [
        "conv1a", "conv1b", "conv1c", "conv2a", "conv2b", "conv2c", "conv3a", "conv3b", "conv3c",
    ]  # fmt: skip
    conv2a = layers[3]
    assert (conv2a.kind, conv2a.kernel_size, conv2a.in_channels, conv2a.out_channels, conv2a.stage) == (
        "spatial", 5, 96, 192, "conv2",
    )  # fmt: skip
    assert conv2a.valid_groups == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96)
    assert layers[0].valid_groups == (1, 3)  # 3 input channels
    assert layers[1].kind == "pointwise"
    assert deeproots.describe_layers("nin", num_classes=100)[-1].out_channels == 100


@pytest.mark.parametrize("arch", deeproots.list_architectures())
def test_describe_layers_is_forward_order_with_stages(arch: str) -> None:
    every = deeproots.describe_layers(arch)
    layers = [l for l in every if not l.aux]
    assert layers[0].name.startswith("conv1") and layers[0].stage == "conv1"
    stages = list(dict.fromkeys(l.stage for l in layers))
    if arch.startswith("resnet"):
        assert stages == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    elif arch.startswith("googlenet"):
        assert stages == ["conv1", "conv2", "inception3", "inception4", "inception5"]
    for l in layers:
        assert all(l.in_channels % g == 0 and l.out_channels % g == 0 for g in l.valid_groups)
    aux = [(l.name, l.stage, l.valid_groups) for l in every if l.aux]
    if arch == "googlenet":  # listed in forward order (after 4a and after 4d), never grouped
        assert aux == [("aux1.conv", "aux1", (1,)), ("aux2.conv", "aux2", (1,))]
        names = [l.name for l in every]
        assert names.index("inception4a.pool_proj") < names.index("aux1.conv") < names.index("inception4b.branch1x1")
    else:
        assert aux == []


def test_googlenet_schedule_ids_do_not_depend_on_its_aux_heads() -> None:
    """The ids recorded before the paper geometry (and its auxiliary classifiers) came in: unchanged."""
    before = {"orig": "h01e41ecac670", "root-2": "h0f9e25f19b9c", "root-8": "ha36858b7dda1", "root-16": "had09d0776a1e"}
    for arch in ("googlenet", "googlenet_bvlc", "googlenet_cifar"):
        assert {n: resolve_schedule(arch, n).id for n in before} == {n: f"{arch}:{h}" for n, h in before.items()}
    g = resolve_schedule("googlenet", "root-8")
    assert "aux1.conv" not in g.groups and len(g.sequence) == 57
    assert resolve_schedule("googlenet", {"inception3a.branch3x3": 4, "aux1.conv": 1}) == resolve_schedule(
        "googlenet", {"inception3a.branch3x3": 4}
    )


def test_nin_named_schedules_match_the_paper() -> None:
    seq = {name: s.sequence for name, s in deeproots.paper_schedules("nin").items()}
    assert seq["orig"] == (1,) * 9
    # conv1a, conv2a, conv3a are positions 0, 3, 6
    expected = {"root-8": (1, 8, 4), "col-8": (1, 8, 8), "tree-8": (1, 8, 16), "root-2": (1, 2, 1), "tree-16": (1, 16, 32)}
    for name, spatial in expected.items():
        assert (seq[name][0], seq[name][3], seq[name][6]) == spatial
        assert sum(seq[name]) - sum(spatial) == 6  # every 1x1 keeps one group
    assert resolve_schedule("nin", "root-8").id == "nin:1-1-1-8-1-1-4-1-1"
    assert len(deeproots.paper_schedules("nin")) == 13
    assert resolve_schedule("nin", "root-32").groups["conv3a"] == 16  # beyond the paper's table


def test_resnet_and_googlenet_root_halve_per_stage() -> None:
    r = resolve_schedule("resnet50", "root-64").groups
    assert [r["layer1.0.conv2"], r["layer2.3.conv2"], r["layer3.5.conv2"], r["layer4.2.conv2"]] == [64, 32, 16, 8]
    assert r["conv1"] == 1 and r["layer1.0.conv1"] == 1 and r["layer2.0.downsample.0"] == 1
    r2 = resolve_schedule("resnet50", "root-4").groups
    assert [r2["layer1.1.conv2"], r2["layer2.0.conv2"], r2["layer3.0.conv2"], r2["layer4.0.conv2"]] == [4, 2, 1, 1]
    g = resolve_schedule("googlenet", "root-16").groups
    assert (g["conv2"], g["conv2_reduce"]) == (16, 1)
    assert (g["inception3a.branch3x3"], g["inception3b.branch5x5"]) == (8, 8)
    assert (g["inception4e.branch3x3"], g["inception5b.branch5x5"], g["inception5b.branch1x1"]) == (4, 2, 1)
    assert set(deeproots.paper_schedules("resnet50")) == {"orig"} | {f"root-{n}" for n in (2, 4, 8, 16, 32, 64)}


def test_every_input_form_gives_the_same_schedule() -> None:
    named = resolve_schedule("nin", "root-8")
    assert resolve_schedule("nin", {"conv2a": 8, "conv3a": 4}) == named
    assert resolve_schedule("nin", [1, 1, 1, 8, 1, 1, 4, 1, 1]) == named
    assert resolve_schedule("nin", "nin:1-1-1-8-1-1-4-1-1") == named
    assert resolve_schedule("nin", named) == named
    assert named.name == "root-8" and resolve_schedule("nin", {"conv2a": 8, "conv3a": 4}).name is None
    assert hash(named) == hash(resolve_schedule("nin", [1, 1, 1, 8, 1, 1, 4, 1, 1]))
    assert named.grouped == {"conv2a": 8, "conv3a": 4}


def test_long_ids_are_hashes_and_full_ids_round_trip() -> None:
    a = resolve_schedule("resnet50", "root-16")
    assert a.id.startswith("resnet50:h") and len(a.id) == len("resnet50:h") + 12
    assert a.id != resolve_schedule("resnet50", "root-32").id
    assert resolve_schedule("resnet50", a.full_id) == a
    with pytest.raises(ValueError, match="hash"):
        resolve_schedule("resnet50", a.id)


def test_schedules_copy_and_pickle() -> None:
    s = resolve_schedule("nin", "root-4")
    assert pickle.loads(pickle.dumps(s)) == s and copy.deepcopy(s) == s
    assert s.to_dict() == {"arch": "nin", "id": s.id, "name": "root-4", "groups": dict(s.groups)}


@pytest.mark.parametrize(
    ("arch", "schedule", "message"),
    [
        ("vgg16", "orig", "unknown architecture 'vgg16'; choose one of: googlenet"),
        ("nin", "roots-8", "unknown schedule 'roots-8' for nin; named schedules: orig, root-N"),
        ("nin", "tree-64", "layer 'conv2a' (96->192 channels) cannot use 64 groups; valid: 1, 2, 3"),
        ("nin", {"conv9z": 2}, "unknown layer 'conv9z' for nin; its spatial convs are: conv1a, conv2a, conv3a"),
        ("nin", {"conv2a": 5}, "layer 'conv2a' (96->192 channels) cannot use 5 groups"),
        ("nin", {"conv3a": 0}, "layer 'conv3a' (192->192 channels) cannot use 0 groups"),
        ("nin", {"conv3a": -4}, "layer 'conv3a' (192->192 channels) cannot use -4 groups"),
        ("nin", {"conv3a": 2.5}, "layer 'conv3a': group count must be a whole number"),
        ("nin", [1, 2, 3], "needs 9 group counts (one per conv), got 3"),
        ("nin", "resnet50:1-1", "is for 'resnet50', not 'nin'"),
        ("resnet50", {"layer1.0.conv2": 3}, "layer 'layer1.0.conv2' (64->64 channels) cannot use 3 groups"),
        ("googlenet", "root-64", "layer 'inception3a.branch5x5' (16->32 channels) cannot use 32 groups"),
        ("googlenet", {"aux2.conv": 2}, "layer 'aux2.conv' belongs to an auxiliary classifier and keeps 1 group, got 2"),
    ],
)
def test_invalid_schedules_name_what_is_wrong(arch: str, schedule: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        deeproots.build_model(arch, schedule)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
