"""Cost of a network in the paper's convention, and its measured latency.

FLOPs are the multiply-adds of every convolution and fully-connected layer
(``k*k*c_in/g*c_out*H_out*W_out``) plus one for each bias *parameter* (once per output channel,
not per pixel); BatchNorm, ReLU and pooling are not counted. Parameters are the weights and biases of
the convolutions and FC layers that run, each tensor once (BatchNorm is not counted). A model's
auxiliary classifiers (``model.aux_heads``, GoogLeNet's) are counted too, as the paper counted them.
FLOPs are measured with ``thop`` and rules for this convention, on a deep copy of the model so that no
counting state leaks into the caller's model or its ``state_dict``.

Latency follows one recorded protocol (DESIGN.md): inference mode, BatchNorm folded into the convs,
auxiliary classifiers dropped, the faster memory format, a stated batch size and thread count, median
of interleaved repeats after warm-up. FLOPs are not time: measure both.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import thop
import torch
import torch.nn as nn

from ._meta import shape_ops_only
from .models import aux_heads, drop_aux

__all__ = ["Cost", "count_cost", "Latency", "measure_latency", "compare_latency", "fold_batchnorm", "LatencyCache"]


@dataclass(frozen=True)
class Cost:
    """Parameters and FLOPs (multiply-adds) of one network for one input size."""

    params: int
    flops: int

    def ratio(self, reference: Cost) -> tuple[float, float]:
        """``(params, flops)`` as fractions of ``reference``'s."""
        return self.params / reference.params, self.flops / reference.flops


def _conv_rule(m: nn.Conv2d, x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
    k = m.kernel_size[0] * m.kernel_size[1]
    macs = k * (m.in_channels // m.groups) * m.out_channels * (y.numel() // y.shape[0] // m.out_channels)
    m.total_ops += macs + (m.out_channels if m.bias is not None else 0)
    m.__dict__["_deeproots_ran"] = True


def _linear_rule(m: nn.Linear, x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
    rows = y.numel() // y.shape[0] // m.out_features  # 1 for an (N, features) input
    m.total_ops += m.in_features * m.out_features * rows + (m.out_features if m.bias is not None else 0)
    m.__dict__["_deeproots_ran"] = True


def _no_ops(m: nn.Module, x: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
    """BatchNorm, activations, pooling, dropout: not counted in the paper's convention."""


#: Counting rule per layer type. A subclass (a weight-standardised conv, a quantisation-aware linear)
#: takes the rule of its nearest ancestor here; any other layer counts nothing.
_RULES: dict[type, Any] = {nn.Conv2d: _conv_rule, nn.Linear: _linear_rule}
#: Attributes thop (older releases) leaves on a profiled model; they would shadow its own.
_THOP_LEFTOVERS = ("total_ops", "total_params")


def _rule_for(cls: type) -> Any:
    return next((_RULES[t] for t in cls.__mro__ if t in _RULES), _no_ops)


class _TrainingTop(nn.Module):
    """Runs ``net`` with only its own ``training`` flag up, so that the branches it takes in training
    (auxiliary classifiers) run while every layer inside stays in eval mode (thop sets eval first)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        self.net.training = True
        try:
            return self.net(x)
        finally:
            self.net.training = False


def check_input_size(input_size: Any, name: str = "input_size") -> tuple[int, int, int]:
    """``input_size`` as a ``(C, H, W)`` tuple of whole numbers >= 1; else a ValueError naming it."""
    try:
        size = tuple(input_size)
    except TypeError:
        size = None
    if (
        size is None
        or isinstance(input_size, (str, bytes))
        or len(size) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
    ):
        raise ValueError(f"{name} must be (C, H, W), three whole numbers >= 1, got {input_size!r}")
    return size  # type: ignore[return-value]


def _fits(model: nn.Module, size: tuple[int, int, int], aux: bool) -> bool:
    try:
        _count(model, size, aux)
    except RuntimeError:
        return False
    return True


def _misfit(model: nn.Module, input_size: tuple[int, int, int], aux: bool, exc: Exception) -> str:
    """One line on why ``input_size`` does not fit ``model``: its channels, or the smallest size that fits."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first[1].in_channels != input_size[0]:
        return (
            f"input_size {input_size} does not fit this network: {input_size[0]} channels, but its first conv "
            f"{first[0]!r} takes {first[1].in_channels}; use input_size ({first[1].in_channels}, H, W)"
        )
    model = copy.deepcopy(model).to(torch.device("meta"))  # shapes only: each probe is cheap
    c, h, w = input_size
    hi = max(h, w, 8)
    while hi <= 4096 and not _fits(model, (c, hi, hi), aux):
        hi *= 2
    if hi <= 4096 and not _fits(model, (c, h, w), aux):
        lo = 1  # binary search for the smallest square side that fits (the pools shrink the map to nothing below it)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if _fits(model, (c, mid, mid), aux) else (mid + 1, hi)
        return (
            f"input_size {input_size} does not fit this network: too small (its pools shrink the map to nothing); "
            f"the smallest square input that fits is ({c}, {hi}, {hi})"
        )
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"input_size {input_size} does not fit this network: {detail}"


def count_cost(model: nn.Module, input_size: tuple[int, int, int] | None = None, *, aux: bool = True) -> Cost:
    """Parameters and FLOPs of ``model`` for one image of ``input_size``, in the paper's convention.

    The model is deep-copied and run once (batch 1, eval mode, no grad) on its own device; build it
    under ``torch.device("meta")`` to cost many schedules without allocating weights. A layer run
    twice counts its FLOPs twice; a parameter tensor shared by several layers counts once. A subclass
    of ``nn.Conv2d`` or ``nn.Linear`` is counted as its parent class.

    Args:
        model: any network made of ``nn.Conv2d`` / ``nn.Linear`` (and uncounted layers).
        input_size: ``(C, H, W)``; defaults to ``model.default_input_size`` for registry models.
        aux: also count the auxiliary classifiers named in ``model.aux_heads`` -- the network that
            trains, which is what Ioannou et al. counted for GoogLeNet (1,716,324,392 FLOPs,
            18,809,576 parameters ungrouped). False: only what runs at inference.

    Returns:
        :class:`Cost` with ``params`` (count) and ``flops`` (multiply-adds per image).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no or a malformed ``input_size`` (three whole numbers >= 1), or one the network
            cannot take (the message names the channels the first conv takes, or the smallest
            square size that fits); ``aux`` not a bool.

    Example:
        >>> import deeproots
        >>> deeproots.count_cost(deeproots.build_model("nin"), (3, 32, 32))
        Cost(params=966986, flops=222487946)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"count_cost needs a built model (torch.nn.Module), got {type(model).__name__} {model!r:.40}; "
            "build one with deeproots.build_model(arch, schedule)"
        )
    if not isinstance(aux, bool):
        raise ValueError(f"aux must be True or False, got {aux!r}")
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ValueError("count_cost needs input_size=(C, H, W) for a model that is not from build_model")
    input_size = check_input_size(input_size)
    try:
        return _count(model, input_size, aux)
    except RuntimeError as exc:
        raise ValueError(_misfit(model, input_size, aux, exc)) from None


def _count(model: nn.Module, input_size: tuple[int, int, int], aux: bool) -> Cost:
    """:func:`count_cost` on checked arguments; a RuntimeError when the input does not fit."""
    probe = copy.deepcopy(model)
    for m in probe.modules():  # a model thop has profiled before may carry its counters: drop them from the copy
        for name in _THOP_LEFTOVERS:
            if name in dict(m.named_buffers(recurse=False)) or name in vars(m):
                delattr(m, name)
    param = next(probe.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, *input_size, device=device)
    # Every leaf type in the model gets a rule, so thop neither warns nor counts anything else.
    rules: dict[type, Any] = {type(m): _rule_for(type(m)) for m in probe.modules() if not list(m.children())}
    rules.update(_RULES)
    runner: nn.Module = _TrainingTop(probe) if aux and aux_heads(probe) else probe
    with shape_ops_only():  # on a meta build BatchNorm's Python meta kernel would import torch._dynamo (~1 s)
        flops, _ = thop.profile(runner, inputs=(x,), custom_ops=rules, verbose=False)
    counted: dict[int, int] = {}  # id(tensor) -> elements: a tied tensor is one set of parameters
    for m in probe.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.__dict__.get("_deeproots_ran"):
            for p in (m.weight, m.bias):
                if p is not None:
                    counted[id(p)] = p.numel()
    return Cost(params=int(sum(counted.values())), flops=int(round(flops)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded into the conv.

    The deployment form: auxiliary classifiers (``model.aux_heads``), which never run at inference,
    are dropped from the copy. Uses ``torch.fx`` (``torch.fx.experimental.optimization.fuse``); a model
    that cannot be traced is returned as an unfolded eval copy. The outputs equal the original's in
    eval mode.
    """
    from torch.fx.experimental.optimization import fuse

    eval_copy = drop_aux(copy.deepcopy(model)).eval()
    try:
        return fuse(eval_copy, inplace=True)
    except Exception:  # untraceable control flow: keep the plain eval copy
        return eval_copy


@dataclass(frozen=True)
class Latency:
    """Forward time per image in milliseconds, and the protocol that measured it."""

    ms: float
    protocol: Mapping[str, Any] = field(default_factory=dict)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextmanager
def _threads(n: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    model(x)
    _sync(device)
    return time.perf_counter() - t0


def compare_latency(
    models: Mapping[str, nn.Module],
    input_size: tuple[int, int, int],
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
    warmup: int = 10,
    repeats: int = 30,
) -> dict[str, Latency]:
    """Latency of several models measured side by side: their repeats are interleaved, so that load
    from other processes or clock changes hit all of them alike.

    Args:
        models: name -> model (left untouched: each is copied, folded and moved; auxiliary
            classifiers are dropped from the copy).
        input_size: ``(C, H, W)``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        batch_size: images per forward; 1 is deployment latency.
        threads: CPU threads (``torch.set_num_threads``) for the measurement; None keeps the current.
        memory_format: ``"channels_last"``, ``"contiguous"`` or ``"auto"`` (time both during warm-up,
            keep the faster one per model).
        fold_bn: fold BatchNorm into the preceding convs first (the deployment form).
        warmup: untimed forwards per model (per format with ``"auto"``).
        repeats: timed forwards per model; the median is reported.

    Returns:
        name -> :class:`Latency` (milliseconds per image, protocol).

    Example:
        >>> import deeproots
        >>> nets = {s: deeproots.build_model("nin", s) for s in ("orig", "root-8")}
        >>> lat = deeproots.compare_latency(nets, (3, 32, 32), repeats=5)
        >>> lat["orig"].ms > 0
        True
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if device.type == "meta":
        raise ValueError("device 'meta' holds no data and cannot be timed; use 'cpu' or 'cuda'")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or a whole number >= 1, got {threads!r}")
    if memory_format not in ("auto", "channels_last", "contiguous"):
        raise ValueError(f"memory_format must be auto, channels_last or contiguous, got {memory_format!r}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch_size and repeats must be >= 1 and warmup >= 0")
    formats = ["channels_last", "contiguous"] if memory_format == "auto" else [memory_format]
    torch_formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    x_base = torch.randn(batch_size, *input_size, device=device)
    inputs = {f: x_base.contiguous(memory_format=torch_formats[f]) for f in formats}
    with _threads(threads) as n_threads, torch.inference_mode():
        prepared: dict[str, dict[str, nn.Module]] = {}
        for name, model in models.items():
            base = fold_batchnorm(model) if fold_bn else drop_aux(copy.deepcopy(model)).eval()
            prepared[name] = {f: copy.deepcopy(base).to(device, memory_format=torch_formats[f]) for f in formats}
        chosen: dict[str, str] = {}
        for name, variants in prepared.items():
            trial: dict[str, list[float]] = {f: [] for f in formats}
            for _ in range(max(warmup, 1 if len(formats) > 1 else 0)):
                for f, m in variants.items():
                    trial[f].append(_time_once(m, inputs[f], device))
            chosen[name] = min(formats, key=lambda f: statistics.median(trial[f]) if trial[f] else 0.0)
        times: dict[str, list[float]] = {name: [] for name in models}
        names = list(models)
        for r in range(repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order every round
                f = chosen[name]
                times[name].append(_time_once(prepared[name][f], inputs[f], device))
    protocol_base = {
        "device": str(device),
        "device_name": _device_name(device),
        "batch_size": batch_size,
        "threads": n_threads if device.type == "cpu" else None,
        "bn_folded": fold_bn,
        "warmup": warmup,
        "repeats": repeats,
        "statistic": "median of interleaved repeats",
        "mode": "torch.inference_mode, eval",
        "torch": torch.__version__,
        "input_size": list(input_size),
    }
    return {
        name: Latency(
            ms=statistics.median(times[name]) * 1000.0 / batch_size,
            protocol={**protocol_base, "memory_format": chosen[name]},
        )
        for name in models
    }


class LatencyCache:
    """A JSON file of measured latencies, keyed by schedule id, device and protocol.

    Latency is measured once per schedule: the search asks the cache first.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def key(schedule_id: str, protocol: Mapping[str, Any]) -> str:
        parts = [schedule_id] + [f"{k}={protocol[k]}" for k in sorted(protocol)]
        return "|".join(parts)

    def get(self, key: str) -> Latency | None:
        entry = self._load().get(key)
        return Latency(entry["ms"], entry["protocol"]) if entry else None

    def put(self, key: str, latency: Latency) -> None:
        data = self._load()
        data[key] = asdict(latency)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: a reader never sees half a file


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int, int] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    memory_format: str = "auto",
    fold_bn: bool = True,
    warmup: int = 10,
    repeats: int = 30,
    cache: str | os.PathLike[str] | None = None,
) -> Latency:
    """Forward latency per image of one model, in the protocol of :func:`compare_latency`.

    With ``cache`` (a JSON file path) and a registry model (it has ``model.schedule``), a latency
    already measured for the same schedule id, device and protocol is returned without timing.

    Example:
        >>> import deeproots
        >>> lat = deeproots.measure_latency(deeproots.build_model("nin", "root-8"), (3, 32, 32), repeats=5)
        >>> sorted(lat.protocol)[:3]
        ['batch_size', 'bn_folded', 'device']
    """
    input_size = input_size or getattr(model, "default_input_size", None)
    if input_size is None:
        raise ValueError("measure_latency needs input_size=(C, H, W) for a model that is not from build_model")
    schedule = getattr(model, "schedule", None)
    store = LatencyCache(cache) if cache is not None and schedule is not None else None
    key = None
    if store is not None:
        dev = torch.device(device)
        with _threads(threads) as n:
            protocol_key = {
                "device_name": _device_name(dev), "batch_size": batch_size, "threads": n if dev.type == "cpu" else None,
                "memory_format": memory_format, "bn_folded": fold_bn, "input_size": list(input_size),
                "torch": torch.__version__,
            }  # fmt: skip
        key = LatencyCache.key(schedule.full_id, protocol_key)
        hit = store.get(key)
        if hit is not None:
            return hit
    result = compare_latency(
        {"model": model}, input_size, device, batch_size, threads, memory_format, fold_bn, warmup, repeats
    )["model"]
    if store is not None and key is not None:
        store.put(key, result)
    return result
