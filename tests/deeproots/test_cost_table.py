"""deeproots.CostTable: per-layer cost deltas add up to count_cost of the whole model, for every architecture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import deeproots

#: Full-size ImageNet networks cost seconds per whole-model count on 2 CPU cores.
_SLOW = {"resnet200", "googlenet", "resnet50"}
ARCHS = [pytest.param(a, marks=pytest.mark.slow) if a in _SLOW else a for a in deeproots.list_architectures()]


def _whole_model_cost(arch: str, schedule: dict[str, int], **options) -> deeproots.Cost:
    with torch.device("meta"):
        model = deeproots.build_model(arch, schedule, **options)
    return deeproots.count_cost(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_table_equals_count_cost_for_random_schedules(arch: str) -> None:
    table = deeproots.CostTable.build(arch)
    layers = deeproots.describe_layers(arch)
    rng = random.Random(arch)
    schedules = [{layer.name: rng.choice(layer.valid_groups) for layer in layers} for _ in range(3)]
    # the most-grouped corner: every layer at its largest count
    schedules.append({layer.name: layer.valid_groups[-1] for layer in layers})
    rows = np.array([[s[name] for name in table.layers] for s in schedules], dtype=np.int64)
    flops, params = table.flops_many(rows), table.params_many(rows)
    assert flops.dtype == np.int64 and flops.shape == (len(schedules),)
    for n, schedule in enumerate(schedules):
        cost = _whole_model_cost(arch, schedule)
        assert (table.flops(schedule), table.params(schedule)) == (cost.flops, cost.params), schedule
        assert (int(flops[n]), int(params[n])) == (cost.flops, cost.params)


def test_table_matches_paper_schedules_and_orig() -> None:
    table = deeproots.CostTable.build("nin")
    for name, schedule in deeproots.paper_schedules("nin").items():
        cost = _whole_model_cost("nin", dict(schedule.groups))
        assert table.flops(schedule) == table.flops(name) == cost.flops
        assert table.params(schedule) == cost.params
    assert (table.flops({}), table.params({})) == (table.base_flops, table.base_params) == (222487946, 966986)


def test_table_follows_geometry_and_model_options() -> None:
    """Another input size and class count change the deltas; auxiliary heads (training only) add nothing."""
    table = deeproots.CostTable.build("resnet50_cifar", input_size=(3, 64, 64), num_classes=100)
    schedule = {"layer2.0.conv2": 8, "layer4.1.conv2": 32}
    with torch.device("meta"):
        model = deeproots.build_model("resnet50_cifar", schedule, num_classes=100)
    cost = deeproots.count_cost(model, (3, 64, 64))
    assert (table.flops(schedule), table.params(schedule)) == (cost.flops, cost.params)
    aux = deeproots.CostTable.build("googlenet_cifar", aux_logits=True)
    layer = next(l for l in deeproots.describe_layers("googlenet_cifar") if l.kind == "spatial" and 4 in l.valid_groups)
    cost = _whole_model_cost("googlenet_cifar", {layer.name: 4}, aux_logits=True)
    assert (aux.flops({layer.name: 4}), aux.params({layer.name: 4})) == (cost.flops, cost.params)
    assert aux.layers == tuple(deeproots.resolve_schedule("googlenet_cifar", "orig").groups)  # no aux-head columns


def test_grouping_one_layer_saves_what_the_formula_says() -> None:
    """conv2a (5x5, 96->192 at 16x16) at 8 groups saves 7/8 of its weights and multiply-adds."""
    table = deeproots.CostTable.build("nin")
    i = table.layers.index("conv2a")
    weights = 5 * 5 * 96 * 192
    assert table.params_delta[i][8] == -(weights - weights // 8)
    assert table.flops_delta[i][8] == -(weights - weights // 8) * 16 * 16
    assert table.flops_delta[i][1] == table.params_delta[i][1] == 0


def test_bad_schedules_are_named() -> None:
    table = deeproots.CostTable.build("nin")
    with pytest.raises(ValueError, match="conv2a.*cannot use 5 groups; valid: 1, 2, 3"):
        table.flops({"conv2a": 5})
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        table.params({"conv9": 2})
    with pytest.raises(ValueError, match="is for resnet50_cifar"):
        table.flops(deeproots.resolve_schedule("resnet50_cifar", "root-2"))
    rows = np.ones((2, len(table.layers)), dtype=np.int64)
    rows[1, table.layers.index("conv3a")] = 7
    with pytest.raises(ValueError, match="conv3a.*cannot use 7 groups"):
        table.flops_many(rows)
    with pytest.raises(ValueError, match=r"shape \(N, 9\)"):
        table.flops_many(np.ones((2, 3), dtype=np.int64))
