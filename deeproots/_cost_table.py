"""Exact per-layer cost tables: the FLOPs and parameters of any schedule without building a model.

In every registered network the widths never change with the grouping, so a convolution's FLOPs and
parameters depend only on its own group count (``k*k*c_in/g*c_out*H_out*W_out`` multiply-adds and
``k*k*c_in/g*c_out`` weights, plus a bias that does not depend on ``g``). A schedule's cost is
therefore the ungrouped network's cost plus one delta per grouped layer::

    flops(schedule) = flops(orig) + sum_l dflops_l(g_l)        (dflops_l(1) = 0)

:meth:`CostTable.build` measures each delta with :func:`deeproots.count_cost` itself (the paper's
convention lives in one place): the ungrouped model is built on the meta device, one forward records
the input shape of every call of every convolution, and each convolution is then costed alone at
each group count it accepts. Nothing here is specific to one architecture, so a family whose
geometry changes needs no change here; ``tests/deeproots/test_cost_table.py`` checks the sum
against :func:`deeproots.count_cost` of whole models for random schedules of every registered
architecture, and would fail if a layer's cost ever came to depend on another layer's groups.

The search uses the table to cost every proposal at ask time (constraint breaches) and the search
benchmark to cost whole spaces at once (:meth:`CostTable.flops_many`: NIN's 559,872 schedules of
``spaces/nin.yaml`` in well under a second).

Example:
    >>> import deeproots
    >>> table = deeproots.CostTable.build("nin")
    >>> table.flops("root-8"), table.params({"conv2a": 8})
    (103343498, 563786)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ._cost import count_cost
from ._build import build_model
from .models import get_arch
from .schedules import Schedule, describe_layers, resolve_schedule

__all__ = ["CostTable"]


def _conv_like(conv: nn.Conv2d, groups: int) -> nn.Conv2d:
    """``conv`` with another group count, on the meta device (shapes only)."""
    with torch.device("meta"):
        return nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
        )  # fmt: skip


def _call_shapes(model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, list[tuple[int, ...]]]:
    """Conv module name -> the (C, H, W) input of each of its calls in one eval-mode forward.

    The forward runs in eval mode (a deep copy, batch 1, no grad), so an auxiliary classifier's conv
    (which runs only in training) has no call here; it is never grouped, so it has no delta either
    (its fixed cost is in the base, which :func:`count_cost` counts with the auxiliary classifiers).
    """
    probe = copy.deepcopy(model).eval()
    shapes: dict[str, list[tuple[int, ...]]] = {}
    hooks = []
    for name, m in probe.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(
                m.register_forward_hook(lambda mod, x, y, name=name: shapes.setdefault(name, []).append(tuple(x[0].shape[1:])))
            )
    param = next(probe.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        probe(torch.zeros(1, *input_size, device=device))
    for h in hooks:
        h.remove()
    return shapes


@dataclass(frozen=True)
class CostTable:
    """The exact FLOPs and parameters of every schedule of one architecture at one input size.

    Build with :meth:`build`. Costs follow :func:`deeproots.count_cost` (the paper's convention:
    multiply-adds of convs and FC layers plus one per bias parameter; weights and biases of the layers
    that run, auxiliary classifiers included).

    Attributes:
        arch: the architecture.
        input_size: ``(C, H, W)`` the costs are counted at.
        num_classes: outputs of the network.
        layers: every conv a schedule covers (:func:`deeproots.describe_layers` but the auxiliary
            classifiers' convs, which keep 1 group), forward order: :attr:`Schedule.groups`' keys, the
            columns of the arrays :meth:`flops_many` / :meth:`params_many` take.
        base_flops: FLOPs of the ungrouped network (``orig``).
        base_params: parameters of the ungrouped network.
        valid_groups: per layer (same order), the group counts it accepts, ascending.
        flops_delta: per layer, ``{groups: FLOPs(groups) - FLOPs(1)}`` (<= 0) for every valid count.
        params_delta: per layer, ``{groups: params(groups) - params(1)}`` (<= 0).
    """

    arch: str
    input_size: tuple[int, int, int]
    num_classes: int
    layers: tuple[str, ...]
    base_flops: int
    base_params: int
    valid_groups: tuple[tuple[int, ...], ...]
    flops_delta: tuple[Mapping[int, int], ...]
    params_delta: tuple[Mapping[int, int], ...]

    @classmethod
    def build(
        cls,
        arch: str,
        input_size: Sequence[int] | None = None,
        num_classes: int | None = None,
        **model_options: Any,
    ) -> CostTable:
        """Cost every conv of ``arch`` at every group count it accepts.

        Args:
            arch: a registered architecture (:func:`deeproots.list_architectures`).
            input_size: ``(C, H, W)``; default: the architecture's.
            num_classes: outputs; default: the architecture's.
            **model_options: keyword arguments of :func:`deeproots.build_model` (e.g. GoogLeNet's
                auxiliary classifiers), which the costs must reflect.

        Returns:
            The table. Building costs one meta-device forward of the network plus one
            :func:`count_cost` of a single conv per (layer, valid group count): well under a second for
            NIN, a few seconds for ResNet-200.

        Raises:
            ValueError: unknown architecture or an input size the network cannot take.
        """
        spec = get_arch(arch)
        num_classes = spec.num_classes if num_classes is None else int(num_classes)
        size = tuple(int(s) for s in (spec.input_size if input_size is None else input_size))
        infos = [info for info in describe_layers(arch, num_classes) if not info.aux]  # a schedule's layers
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = build_model(arch, "orig", num_classes, **model_options)
        base = count_cost(model, size)
        calls = _call_shapes(model, size)
        modules = dict(model.named_modules())
        flops_delta: list[dict[int, int]] = []
        params_delta: list[dict[int, int]] = []
        for info in infos:
            conv = modules.get(info.name)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"{arch}: layer {info.name!r} is not a Conv2d of the model built with {model_options or 'no options'}")
            shapes = calls.get(info.name, [])
            if not shapes:  # never runs in an inference forward: count_cost counts none of it
                flops_delta.append({g: 0 for g in info.valid_groups})
                params_delta.append({g: 0 for g in info.valid_groups})
                continue
            costs = {}
            for g in info.valid_groups:
                single = _conv_like(conv, g)
                per_call = [count_cost(single, shape) for shape in shapes]
                costs[g] = (sum(c.flops for c in per_call), per_call[0].params)
            f1, p1 = costs[1]
            flops_delta.append({g: f - f1 for g, (f, _) in costs.items()})
            params_delta.append({g: p - p1 for g, (_, p) in costs.items()})
        return cls(
            arch, size, num_classes, tuple(i.name for i in infos), base.flops, base.params,
            tuple(i.valid_groups for i in infos), tuple(flops_delta), tuple(params_delta),
        )  # fmt: skip

    # ------------------------------------------------------------------ one schedule
    def _groups(self, schedule: Schedule | Mapping[str, int] | str) -> list[int]:
        """Group counts in :attr:`layers` order; layers a mapping leaves out keep 1."""
        if isinstance(schedule, str):
            schedule = resolve_schedule(self.arch, schedule, self.num_classes)
        if isinstance(schedule, Schedule):
            if schedule.arch != self.arch:
                raise ValueError(f"schedule {schedule.id!r} is for {schedule.arch}, not {self.arch}")
            schedule = schedule.groups
        index = {name: i for i, name in enumerate(self.layers)}
        aux = {info.name for info in describe_layers(self.arch, self.num_classes) if info.aux}
        for name in aux & set(schedule):  # an auxiliary classifier's conv may be named, at its only count
            if schedule[name] != 1:
                raise ValueError(f"layer {name!r} belongs to an auxiliary classifier and keeps 1 group, got {schedule[name]!r}")
        schedule = {k: g for k, g in schedule.items() if k not in aux}
        unknown = [k for k in schedule if k not in index]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r} for {self.arch} (deeproots.describe_layers lists its convs)")
        out = [1] * len(self.layers)
        for name, g in schedule.items():
            i = index[name]
            if g not in self.flops_delta[i]:
                raise ValueError(
                    f"layer {name!r} cannot use {g!r} groups; valid: {', '.join(map(str, self.valid_groups[i]))}"
                )
            out[i] = int(g)
        return out

    def flops(self, schedule: Schedule | Mapping[str, int] | str) -> int:
        """FLOPs of one schedule (a :class:`Schedule`, a name or id, or a layer -> groups mapping).

        Raises:
            ValueError: another architecture's schedule, an unknown layer or an invalid group count.
        """
        groups = self._groups(schedule)
        return self.base_flops + sum(d[g] for d, g in zip(self.flops_delta, groups))

    def params(self, schedule: Schedule | Mapping[str, int] | str) -> int:
        """Parameters of one schedule (as :meth:`flops`)."""
        groups = self._groups(schedule)
        return self.base_params + sum(d[g] for d, g in zip(self.params_delta, groups))

    # ------------------------------------------------------------------ many schedules
    def _many(self, groups: np.ndarray, deltas: tuple[Mapping[int, int], ...], base: int) -> np.ndarray:
        g = np.asarray(groups)
        if g.ndim != 2 or g.shape[1] != len(self.layers):
            raise ValueError(f"groups must have shape (N, {len(self.layers)}) (one column per conv of {self.arch}), got {g.shape}")
        if not np.issubdtype(g.dtype, np.integer):
            raise ValueError(f"groups must be an integer array, got {g.dtype}")
        total = np.full(g.shape[0], base, dtype=np.int64)
        for i, d in enumerate(deltas):
            col = g[:, i]
            top = max(d)
            lut = np.zeros(top + 1, dtype=np.int64)
            ok = np.zeros(top + 1, dtype=bool)
            for count, delta in d.items():
                lut[count], ok[count] = delta, True
            inside = (col >= 0) & (col <= top)
            valid = np.zeros(col.shape, dtype=bool)
            valid[inside] = ok[col[inside]]
            if not valid.all():
                bad = int(col[~valid][0])
                raise ValueError(
                    f"layer {self.layers[i]!r} cannot use {bad} groups; valid: {', '.join(map(str, self.valid_groups[i]))}"
                )
            total += lut[col]
        return total

    def flops_many(self, groups: np.ndarray) -> np.ndarray:
        """FLOPs of many schedules at once.

        Args:
            groups: integer array, shape ``(N, len(layers))``: row n holds schedule n's group counts in
                :attr:`layers` order.

        Returns:
            int64 array, shape ``(N,)``.

        Raises:
            ValueError: wrong shape or dtype, or a count a layer cannot take (naming the layer).
        """
        return self._many(groups, self.flops_delta, self.base_flops)

    def params_many(self, groups: np.ndarray) -> np.ndarray:
        """Parameters of many schedules at once (as :meth:`flops_many`)."""
        return self._many(groups, self.params_delta, self.base_params)
