"""Cost accounting and the latency protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import deeproots
from deeproots._cost import LatencyCache

ROOT = Path(__file__).resolve().parents[2]


def test_costing_leaves_the_model_untouched() -> None:
    model = deeproots.build_model("nin", "root-4")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    deeproots.count_cost(model, (3, 32, 32))
    after = model.state_dict()
    assert list(after) == list(before)  # no total_ops / total_params buffers leaked
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training
    assert not any(hasattr(m, "total_ops") for m in model.modules())


def test_cost_scales_with_input_and_rejects_bad_sizes() -> None:
    model = deeproots.build_model("resnet50_cifar")
    small, large = deeproots.count_cost(model, (3, 32, 32)), deeproots.count_cost(model, (3, 64, 64))
    assert small.params == large.params and large.flops > 3.9 * small.flops
    with pytest.raises(ValueError, match="input_size"):
        deeproots.count_cost(model, (3, 32))
    with pytest.raises(ValueError, match="does not fit"):
        deeproots.count_cost(deeproots.build_model("nin"), (5, 32, 32))


def test_grouping_cuts_cost_as_the_formula_says() -> None:
    """conv2a (5x5, 96->192 at 16x16) split into 8 groups saves 7/8 of its weights and multiply-adds."""
    orig = deeproots.count_cost(deeproots.build_model("nin"), (3, 32, 32))
    g8 = deeproots.count_cost(deeproots.build_model("nin", {"conv2a": 8}), (3, 32, 32))
    weights = 5 * 5 * 96 * 192
    assert orig.params - g8.params == weights - weights // 8
    assert orig.flops - g8.flops == (weights - weights // 8) * 16 * 16


def test_fold_batchnorm_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = deeproots.build_model("resnet50_cifar", "root-8")
    model.train()
    model(torch.randn(8, 3, 32, 32))  # give BN non-trivial running statistics
    model.eval()
    folded = deeproots.fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_compare_latency_protocol_and_cache(tmp_path) -> None:
    nets = {s: deeproots.build_model("nin", s) for s in ("orig", "root-8")}
    lat = deeproots.compare_latency(nets, (3, 32, 32), threads=1, warmup=2, repeats=3)
    for v in lat.values():
        assert v.ms > 0
        assert v.protocol["batch_size"] == 1 and v.protocol["threads"] == 1 and v.protocol["bn_folded"]
        assert v.protocol["memory_format"] in ("channels_last", "contiguous")
    assert torch.get_num_threads() != 0  # restored, not left at 1 by accident below
    cache = tmp_path / "latency.json"
    first = deeproots.measure_latency(nets["root-8"], threads=1, warmup=1, repeats=2, cache=cache)
    second = deeproots.measure_latency(nets["root-8"], threads=1, warmup=1, repeats=2, cache=cache)
    assert second == first  # answered from the cache, not re-timed
    assert len(json.loads(cache.read_text())) == 1
    other = deeproots.measure_latency(nets["orig"], threads=1, warmup=1, repeats=2, cache=cache)
    assert other.ms > 0 and len(json.loads(cache.read_text())) == 2
    key = LatencyCache.key("x", {"b": 1, "a": 2})
    assert key == "x|a=2|b=1"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeproots.cost", *args], capture_output=True, text=True, timeout=900)


def test_cli_json_reports_ratios() -> None:
    out = _cli("nin", "root-8", "col-4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {r["schedule"]: r for r in data["schedules"]}
    assert list(rows) == ["orig", "root-8", "col-4"]  # orig always measured, first
    assert rows["orig"]["flops"] == 222_487_946 and rows["orig"]["flops_ratio"] == 1.0
    assert rows["root-8"]["id"] == "nin:1-1-1-8-1-1-4-1-1"
    assert rows["root-8"]["flops_ratio"] == pytest.approx(103_343_498 / 222_487_946)


def test_cli_table_with_latency() -> None:
    out = _cli("nin", "orig", "root-8", "--latency", "--repeats", "3", "--threads", "1")
    assert out.returncode == 0, out.stderr
    assert "root-8" in out.stdout and "speed-up" in out.stdout and "BN folded" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nin", "root-7x"), "unknown schedule 'root-7x'"),
        (("alexnet",), "unknown architecture 'alexnet'"),
        (("nin", "tree-64"), "layer 'conv2a'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


class _TiedConvs(torch.nn.Module):
    """Two 3x3 convs (8 -> 4, no bias) that share one weight tensor: 288 parameters, run twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.b = torch.nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


def test_tied_weights_count_once_flops_per_execution() -> None:
    cost = deeproots.count_cost(_TiedConvs(), (8, 5, 5))
    assert cost.params == 3 * 3 * 8 * 4  # one tensor, whichever layers use it
    assert cost.flops == 2 * 3 * 3 * 8 * 4 * 5 * 5  # but each conv runs: two executions
    shared = torch.nn.Linear(6, 6)
    twice = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)  # one module called twice
    assert deeproots.count_cost(twice, (1, 1, 6)) == deeproots.Cost(params=42, flops=2 * (36 + 6))


class _StandardisedConv(torch.nn.Conv2d):
    """A weight-standardised conv (Qiao et al. 2019): a Conv2d subclass with its own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class _QuantLinear(torch.nn.Linear):
    """A stand-in for a quantisation-aware linear layer (a Linear subclass)."""


class _Grandchild(_StandardisedConv):
    """Two levels below Conv2d: still costed as a Conv2d."""


def test_conv_and_linear_subclasses_are_costed_as_their_parent() -> None:
    def net(conv: type, linear: type) -> torch.nn.Module:
        return torch.nn.Sequential(
            conv(4, 8, 3, padding=1, groups=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), linear(32, 6),
        )  # fmt: skip

    plain = deeproots.count_cost(net(torch.nn.Conv2d, torch.nn.Linear), (4, 6, 6))
    # grouped 3x3 (4 -> 8, 2 groups) at 6x6 + its bias; FC 32 -> 6 + bias
    assert plain == deeproots.Cost(params=3 * 3 * 2 * 8 + 8 + 32 * 6 + 6, flops=3 * 3 * 2 * 8 * 36 + 8 + 32 * 6 + 6)
    for conv in (_StandardisedConv, _Grandchild):
        assert deeproots.count_cost(net(conv, _QuantLinear), (4, 6, 6)) == plain


def test_a_model_thop_has_profiled_is_costed_silently(capfd, caplog) -> None:
    model = deeproots.build_model("nin", "root-4")
    for m in model.modules():  # what thop's older releases leave behind on every module
        m.register_buffer("total_ops", torch.zeros(1, dtype=torch.float64))
        m.register_buffer("total_params", torch.zeros(1, dtype=torch.float64))
    keys = list(model.state_dict())
    with caplog.at_level("DEBUG"):
        cost = deeproots.count_cost(model, (3, 32, 32))
    assert cost == deeproots.count_cost(deeproots.build_model("nin", "root-4"), (3, 32, 32))
    out, err = capfd.readouterr()
    assert (out, err, caplog.records) == ("", "", [])
    assert list(model.state_dict()) == keys  # the caller's buffers are left as they were


def test_aux_heads_are_counted_unless_asked(capfd) -> None:
    with torch.device("meta"):
        with_aux = deeproots.build_model("googlenet_cifar", aux_logits=True)
        without = deeproots.build_model("googlenet_cifar")
    assert deeproots.count_cost(with_aux, aux=False) == deeproots.count_cost(without)
    extra = deeproots.count_cost(with_aux).params - deeproots.count_cost(without).params
    assert extra == 2 * (128 + 2048 * 1024 + 1024 + 1024 * 10 + 10) + (512 + 528) * 128  # 4x4 pool on 8x8 maps


def test_cli_googlenet_reproduces_the_papers_table() -> None:
    out = _cli("googlenet", "orig", "root-2", "root-4", "root-8", "root-16", "--input-size", "3", "224", "224", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["schedule"]: (r["flops"], r["params"]) for r in json.loads(out.stdout)["schedules"]}
    assert rows == {  # Ioannou et al.'s raw GoogLeNet table, multiply-adds and parameters
        "orig": (1_716_324_392, 18_809_576),
        "root-2": (1_542_916_136, 18_754_280),
        "root-4": (1_291_032_616, 18_515_944),
        "root-8": (964_383_656, 17_504_744),
        "root-16": (756_887_912, 16_308_968),
    }


@pytest.mark.parametrize(
    "op",
    [
        lambda x: torch.nn.functional.batch_norm(x, None, None, training=True),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, (2, None)),
        lambda x: torch.nn.functional.adaptive_max_pool2d(x, 3),
        lambda x: x + x[:, :1],
        lambda x: torch.add(x, 1.0),
        lambda x: torch.cat([x, x[:, :2]], dim=-3),
        lambda x: torch.nn.functional.linear(x, torch.ones(7, x.shape[-1], device=x.device)),
        lambda x: torch.nn.functional.dropout(x, 0.5, training=True),
    ],
)
def test_meta_shortcuts_give_the_shapes_the_real_ops_give(op: Any) -> None:
    """``shape_ops_only`` skips the Python meta kernels of some ops (each would import torch._dynamo):
    on meta tensors it must give the real op's shape, on real tensors the real op's values."""
    from deeproots._meta import shape_ops_only

    x = torch.randn(2, 5, 6, 4)
    real = op(x)
    with shape_ops_only():
        assert op(x.to("meta")).shape == real.shape
        torch.manual_seed(0)
        again = op(x)
    torch.manual_seed(0)
    assert torch.equal(again, op(x))


def test_costing_a_meta_build_does_not_import_the_compiler() -> None:
    """Costing every registry network built as shapes only stays off torch._dynamo (~1 s of start-up)."""
    script = (
        "import sys, deeproots\nfrom deeproots._meta import shapes_only\n"
        "from deeproots.models import list_architectures\nfor arch in list_architectures():\n"
        "    with shapes_only():\n        m = deeproots.build_model(arch)\n    deeproots.count_cost(m)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"
