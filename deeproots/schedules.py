"""Grouping schedules: the group count of every convolution of an architecture.

A :class:`Schedule` maps each conv of an architecture (by its module name in the PyTorch model, in
forward order) to a number of filter groups, and has one canonical text id: the counts in forward
order (root-8 NIN is ``nin:1-1-1-8-1-1-4-1-1``), or a short hash for long ones
(``resnet50:h3f2a...``). The id is what file names, dedup and the search's user attributes use.

The paper's named schedules (``orig``, ``root-N``, ``col-N``, ``tree-N``) are data in the model
registry (:attr:`ArchSpec.families`): a factor per stage, applied to the stage's spatial convs.

Example:
    >>> import deeproots
    >>> deeproots.resolve_schedule("nin", "root-8").id
    'nin:1-1-1-8-1-1-4-1-1'
    >>> deeproots.resolve_schedule("nin", {"conv2a": 4}).name is None
    True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ._meta import shapes_only
from .models import aux_heads
from .models._registry import get_arch

__all__ = ["LayerInfo", "Schedule", "describe_layers", "resolve_schedule", "paper_schedules", "ScheduleLike"]

#: Ids longer than this many characters (after ``arch:``) are replaced by a hash.
_MAX_ID_CHARS = 48
_NAMED = re.compile(r"^(?P<family>[a-z]+)-(?P<n>[0-9]+)$")
_ID_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an architecture name
_ID_BODY = re.compile(r"^(h[0-9a-f]+|[0-9]+(-[0-9]+)*)$")


@dataclass(frozen=True)
class LayerInfo:
    """One convolution of an architecture, as a search space needs to know it.

    Attributes:
        name: module name in the PyTorch model (``"conv2a"``, ``"layer1.0.conv2"``).
        kind: ``"spatial"`` (kernel > 1, the paper groups these) or ``"pointwise"`` (1x1).
        kernel_size: k of a k x k kernel.
        in_channels: input channels.
        out_channels: output channels.
        stage: the unit the paper's schedules and the "per stage" shorthand use
            (``"conv2"``, ``"layer3"``, ``"inception4"``).
        valid_groups: the group counts that divide both channel counts, ascending; ``(1,)`` for a
            conv of an auxiliary classifier.
        aux: the conv belongs to an auxiliary classifier (GoogLeNet's ``aux1.conv``): trained and
            counted, never grouped, and not part of a :class:`Schedule` (so schedule ids do not
            depend on whether a model was built with its auxiliary classifiers).
    """

    name: str
    kind: str
    kernel_size: int
    in_channels: int
    out_channels: int
    stage: str
    valid_groups: tuple[int, ...]
    aux: bool = False


def _common_divisors(a: int, b: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, min(a, b) + 1) if a % d == 0 and b % d == 0)


@lru_cache(maxsize=None)
def _describe(arch: str, num_classes: int) -> tuple[LayerInfo, ...]:
    spec = get_arch(arch)
    with shapes_only():  # shapes only: no memory, no init cost
        model = spec.builder({}, num_classes)
    aux = tuple(f"{head}." for head in aux_heads(model))
    layers = []
    for name, m in model.named_modules():  # registration order is forward order in every family
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0]
            is_aux = name.startswith(aux) if aux else False
            layers.append(
                LayerInfo(
                    name=name,
                    kind="spatial" if k > 1 else "pointwise",
                    kernel_size=k,
                    in_channels=m.in_channels,
                    out_channels=m.out_channels,
                    stage=spec.stage_of(name),
                    valid_groups=(1,) if is_aux else _common_divisors(m.in_channels, m.out_channels),
                    aux=is_aux,
                )
            )
    return tuple(layers)


def describe_layers(arch: str, num_classes: int | None = None) -> list[LayerInfo]:
    """The convolutions of ``arch`` in forward order, with the group counts each one accepts.

    Auxiliary classifiers' convs (GoogLeNet) are listed with ``aux=True`` and ``valid_groups=(1,)``;
    a :class:`Schedule` covers the others.

    Args:
        arch: a registered architecture (:func:`deeproots.list_architectures`).
        num_classes: outputs of the network, when it changes a conv's width (NIN's conv3c).

    Raises:
        ValueError: unknown architecture, or ``num_classes`` not a whole number >= 1.

    Example:
        >>> import deeproots
        >>> [(l.name, l.valid_groups) for l in deeproots.describe_layers("nin")][3]
        ('conv2a', (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96))
    """
    spec = get_arch(arch)
    return list(_describe(arch, spec.num_classes if num_classes is None else check_num_classes(num_classes)))


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` if it is a whole number >= 1 (not a bool); else a ValueError naming it."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1 (or None for the default), got {num_classes!r}")
    return num_classes


@dataclass(frozen=True)
class Schedule:
    """A group count for every convolution of one architecture.

    Build with :func:`resolve_schedule`, which validates it. Two schedules with the same counts are
    equal and share one :attr:`id`, whatever name they were built from.

    Attributes:
        arch: the architecture.
        groups: layer name -> group count, every conv but the auxiliary classifiers' (which always
            keep 1), in forward order (treat as read-only).
        name: the paper name it was built from (``"root-8"``), else ``None``.
    """

    arch: str
    groups: Mapping[str, int]
    name: str | None = None

    @property
    def sequence(self) -> tuple[int, ...]:
        """The group counts in forward order."""
        return tuple(self.groups.values())

    @property
    def full_id(self) -> str:
        """``arch:`` followed by every count, ``-``-separated; always resolvable."""
        return f"{self.arch}:" + "-".join(map(str, self.sequence))

    @property
    def id(self) -> str:
        """The canonical id: :attr:`full_id`, or ``arch:h<12 hex>`` when that is long."""
        body = "-".join(map(str, self.sequence))
        if len(body) <= _MAX_ID_CHARS:
            return f"{self.arch}:{body}"
        return f"{self.arch}:h" + hashlib.sha1(body.encode()).hexdigest()[:12]

    @property
    def grouped(self) -> dict[str, int]:
        """Only the layers with more than one group."""
        return {k: v for k, v in self.groups.items() if v != 1}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON: arch, id, name, groups."""
        return {"arch": self.arch, "id": self.id, "name": self.name, "groups": dict(self.groups)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and (self.arch, self.sequence) == (other.arch, other.sequence)

    def __hash__(self) -> int:
        return hash((self.arch, self.sequence))

    def __str__(self) -> str:
        return self.name or self.id


ScheduleLike = Schedule | str | Mapping[str, int] | Sequence[int]


def _check_count(layer: LayerInfo, g: Any) -> int:
    if isinstance(g, bool) or not isinstance(g, int):
        if isinstance(g, float) and g.is_integer():
            g = int(g)
        else:
            raise ValueError(f"layer {layer.name!r}: group count must be a whole number, got {g!r}")
    if layer.aux and g != 1:
        raise ValueError(f"layer {layer.name!r} belongs to an auxiliary classifier and keeps 1 group, got {g}")
    if g not in layer.valid_groups:
        raise ValueError(
            f"layer {layer.name!r} ({layer.in_channels}->{layer.out_channels} channels) cannot use {g} groups; "
            f"valid: {', '.join(map(str, layer.valid_groups))}"
        )
    return g


def _from_named(arch: str, name: str, layers: Sequence[LayerInfo]) -> dict[str, int]:
    spec = get_arch(arch)
    if name == "orig":
        return {}
    m = _NAMED.match(name)
    choices = "orig, " + ", ".join(f"{f}-N" for f in spec.families) if spec.families else "orig"
    if not m or m["family"] not in spec.families:
        raise ValueError(
            f"unknown schedule {name!r} for {arch}; named schedules: {choices} (N a whole number of groups >= 1; "
            f"the paper uses {', '.join(map(str, spec.paper_n)) or 'none'}); or an id such as {arch}:1-1-..., "
            "a layer -> groups mapping or a sequence of counts"
        )
    n = int(m["n"])
    if n < 1:
        raise ValueError(f"schedule {name!r}: N must be a whole number of groups >= 1")
    table = spec.families[m["family"]]
    return {
        layer.name: max(1, int(n * table[layer.stage]))
        for layer in layers
        if layer.kind == "spatial" and layer.stage in table and not layer.aux
    }


def resolve_schedule(arch: str, schedule: ScheduleLike = "orig", num_classes: int | None = None) -> Schedule:
    """Validate ``schedule`` for ``arch`` and return its :class:`Schedule`.

    Args:
        arch: a registered architecture.
        schedule: a paper name (``"orig"``, ``"root-8"``, ``"col-4"``, ``"tree-2"``); a mapping of
            layer name -> groups (unnamed layers keep 1); a full sequence of counts in forward order;
            a canonical id (``"nin:1-1-1-8-1-1-4-1-1"``); or a :class:`Schedule`.
        num_classes: as in :func:`describe_layers`.

    Raises:
        ValueError: unknown architecture, schedule name or layer; a count that does not divide the
            layer's channels; a sequence of the wrong length. The message names what is wrong and
            what would be valid.

    Example:
        >>> import deeproots
        >>> deeproots.resolve_schedule("resnet50", "root-64").groups["layer4.2.conv2"]
        8
    """
    every = describe_layers(arch, num_classes)
    by_name = {layer.name: layer for layer in every}
    layers = [layer for layer in every if not layer.aux]  # what a schedule covers
    name: str | None = None
    if isinstance(schedule, Schedule):
        if schedule.arch != arch:
            raise ValueError(f"schedule {schedule.id!r} is for {schedule.arch}, not {arch}")
        name, raw = schedule.name, dict(schedule.groups)
    elif isinstance(schedule, str):
        if schedule != schedule.strip() or not schedule:
            raise ValueError(
                f"schedule {schedule!r} is empty or has surrounding spaces; write it as {schedule.strip() or 'orig'!r}"
            )
        if ":" in schedule:
            prefix, _, body = schedule.partition(":")
            if not _ID_PREFIX.match(prefix):
                raise ValueError(
                    f"schedule {schedule!r} is not a schedule name or id; accepted: a paper name "
                    f"(orig, root-8, ...), an id such as {arch}:1-1-..., or (from Python) a layer -> groups "
                    "mapping, a sequence of counts or a Schedule"
                )
            if prefix != arch:
                raise ValueError(f"schedule id {schedule!r} is for {prefix!r}, not {arch!r}")
            if body.startswith("h"):
                raise ValueError(
                    f"schedule id {schedule!r} is a hash and cannot be expanded; pass the full sequence "
                    f"(Schedule.full_id) or a layer -> groups mapping"
                )
            if not _ID_BODY.match(body):
                raise ValueError(f"schedule id {schedule!r}: expected {arch}:<count>-<count>-... (whole numbers)")
            seq = [int(v) for v in body.split("-")]
            raw = _from_sequence(arch, seq, layers)
        else:
            raw = _from_named(arch, schedule, layers)
            name = schedule
            try:  # a count the named table gives that a layer cannot take: say which name gave it
                groups = {layer.name: _check_count(layer, raw.get(layer.name, 1)) for layer in layers}
            except ValueError as exc:
                raise ValueError(f"schedule {name!r} for {arch}: {exc}") from None
    elif isinstance(schedule, Mapping):
        raw = dict(schedule)
        unknown = [k for k in raw if k not in by_name]
        if unknown:
            spatial = [layer.name for layer in layers if layer.kind == "spatial"]
            raise ValueError(
                f"unknown layer {unknown[0]!r} for {arch}; its spatial convs are: {', '.join(spatial[:12])}"
                + (" ..." if len(spatial) > 12 else "")
                + " (deeproots.describe_layers lists all)"
            )
    elif isinstance(schedule, Sequence) and not isinstance(schedule, (bytes, bytearray)):
        raw = _from_sequence(arch, list(schedule), layers)
    else:
        raise ValueError(
            "schedule must be a name or id (str), a layer -> groups mapping, a sequence of counts or a "
            f"Schedule, got {type(schedule).__name__} {schedule!r:.60}"
        )
    for layer in every:  # an auxiliary classifier's conv may be named, at its only count
        if layer.aux and layer.name in raw:
            _check_count(layer, raw[layer.name])
    groups = {layer.name: _check_count(layer, raw.get(layer.name, 1)) for layer in layers}
    return Schedule(arch, groups, name)


def _from_sequence(arch: str, seq: list[Any], layers: Sequence[LayerInfo]) -> dict[str, int]:
    if len(seq) != len(layers):
        raise ValueError(f"schedule for {arch} needs {len(layers)} group counts (one per conv), got {len(seq)}")
    return {layer.name: g for layer, g in zip(layers, seq)}


def paper_schedules(arch: str, num_classes: int | None = None) -> dict[str, Schedule]:
    """The paper's named schedules for ``arch``: ``orig`` and every family at the paper's N values.

    Example:
        >>> import deeproots
        >>> list(deeproots.paper_schedules("nin"))[:3]
        ['orig', 'root-2', 'root-4']
    """
    spec = get_arch(arch)
    names = ["orig"] + [f"{family}-{n}" for family in spec.families for n in spec.paper_n]
    return {name: resolve_schedule(arch, name, num_classes) for name in names}
