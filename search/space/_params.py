"""The one module that turns a space's ``groups:`` rules into Optuna parameters and back into schedules.

Each rule selects layers from :func:`deeproots.describe_layers` (name globs, ``kind``, stage globs),
later rules overriding earlier ones, and ties them: one parameter per layer, per stage (the paper's
unit: ``conv2``, ``layer3``, ``inception4``) or one for all. A rule's choices are intersected with
what each layer accepts (a group count must divide its channels), so "every spatial conv in
``[1, 2, 4, 8]``" is one line. A layer with a single valid choice is fixed, not a parameter. The
parameters are **ordered**: each searched group count is an Optuna ``IntDistribution`` over the index
into its sorted choices (``[1, 2, 4, 8]`` -> 0..3, i.e. log2 for powers of two), so samplers see that
8 groups lie between 4 and 16 (a categorical parameter loses that order). The encoding is recorded in
the run record (:data:`ENCODING`); "values" below always means these indices.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ._schema import SearchSpace, SpaceError

if TYPE_CHECKING:
    import optuna

    from deeproots import LayerInfo, Schedule

__all__ = ["Param", "ParamSpace", "build_param_space", "ENCODING"]

#: How group counts are Optuna parameters (recorded in the study; another encoding is not resumed).
ENCODING = "index"

#: Spaces at most this large are enumerated (exhaustion check, picking unseen schedules).
_ENUMERATE_LIMIT = 200_000


@dataclass(frozen=True)
class Param:
    """One searched quantity: a group count shared by ``layers``.

    Attributes:
        name: the Optuna parameter name (a layer, a stage, or a rule's name).
        choices: group counts, ascending.
        layers: the layers that take this count, forward order.
    """

    name: str
    choices: tuple[int, ...]
    layers: tuple[str, ...]


@dataclass(frozen=True)
class ParamSpace:
    """A space's searchable parameters over one architecture.

    Attributes:
        arch: architecture name.
        num_classes: classes the network is built for.
        input_size: (C, H, W) the cost is counted at.
        layers: every conv of the architecture (forward order).
        fixed: layer -> group count of every layer that is not searched.
        params: the searched parameters, in forward order of their first layer.
        seeds: (label, parameter values) of the schedules to evaluate first.

    Parameter *values* are indices into each parameter's ``choices`` (see the module docstring).
    """

    arch: str
    num_classes: int
    input_size: tuple[int, int, int]
    layers: tuple[LayerInfo, ...]
    fixed: Mapping[str, int]
    params: tuple[Param, ...]
    seeds: tuple[tuple[str, dict[str, int]], ...]

    # --- size and enumeration -----------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of distinct schedules in the space."""
        return math.prod(len(p.choices) for p in self.params)

    @property
    def enumerable(self) -> bool:
        """Whether the space is small enough to list."""
        return self.size <= _ENUMERATE_LIMIT

    def all_values(self) -> Iterator[dict[str, int]]:
        """Every point of the space (use only when :attr:`enumerable`)."""
        names = [p.name for p in self.params]
        for combo in itertools.product(*(range(len(p.choices)) for p in self.params)):
            yield dict(zip(names, combo))

    def random_values(self, rng: random.Random) -> dict[str, int]:
        """A uniformly drawn point."""
        return {p.name: rng.randrange(len(p.choices)) for p in self.params}

    def key(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        """The point as a tuple of indices in parameter order (dedup key).

        Raises:
            KeyError: a parameter is missing.
        """
        return tuple(int(values[p.name]) for p in self.params)

    # --- Optuna ---------------------------------------------------------------------------------
    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The parameters as Optuna distributions: ``IntDistribution(0, len(choices) - 1)`` each."""
        from optuna.distributions import IntDistribution  # noqa: PLC0415

        return {p.name: IntDistribution(0, len(p.choices) - 1) for p in self.params}

    # --- schedules ------------------------------------------------------------------------------
    def choices_of(self, values: Mapping[str, int]) -> dict[str, int]:
        """Parameter -> group count of parameter ``values`` (indices)."""
        return {p.name: p.choices[int(values[p.name])] for p in self.params}

    def groups_of(self, values: Mapping[str, int]) -> dict[str, int]:
        """Layer -> group count for parameter ``values`` (every conv, forward order)."""
        by_layer = dict(self.fixed)
        for p in self.params:
            g = p.choices[int(values[p.name])]
            for layer in p.layers:
                by_layer[layer] = g
        return {layer.name: by_layer[layer.name] for layer in self.layers}

    def schedule(self, values: Mapping[str, int]) -> Schedule:
        """The validated :class:`deeproots.Schedule` of parameter ``values``."""
        from deeproots import resolve_schedule  # noqa: PLC0415

        return resolve_schedule(self.arch, self.groups_of(values), num_classes=self.num_classes)

    def schedule_id(self, values: Mapping[str, int]) -> str:
        """Canonical schedule id of parameter ``values``."""
        return self.schedule(values).id

    def values_of(self, groups: Mapping[str, int], what: str = "schedule") -> dict[str, int]:
        """Parameter values of a full layer -> groups mapping; SpaceError if it is not in the space."""
        for layer, g in self.fixed.items():
            if groups[layer] != g:
                raise SpaceError("", f"{what} sets {layer} to {groups[layer]} groups, but the space fixes it at {g}")
        values = {}
        for p in self.params:
            counts = {groups[layer] for layer in p.layers}
            if len(counts) > 1:
                raise SpaceError(
                    "", f"{what} gives the layers tied in parameter {p.name!r} different group counts {sorted(counts)}"
                )
            (g,) = counts
            if g not in p.choices:
                raise SpaceError(
                    "", f"{what} needs {g} groups for {p.name!r}; the space allows {', '.join(map(str, p.choices))}"
                )
            values[p.name] = p.choices.index(g)
        return values

    def extremes(self) -> tuple[dict[str, int], dict[str, int]]:
        """(fewest groups everywhere, most groups everywhere): the FLOPs/params maximum and minimum.

        Per layer, cost only falls as groups rise and layers add up independently, so these two
        points bound the cost of every schedule in the space.
        """
        return (
            {p.name: 0 for p in self.params},
            {p.name: len(p.choices) - 1 for p in self.params},
        )


def _as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def build_param_space(
    space: SearchSpace, data_size: tuple[int, int, int] | None = None, data_classes: int | None = None
) -> ParamSpace:
    """Resolve the space's rules against the architecture's layers.

    Args:
        space: the schema-valid space.
        data_size: (C, H, W) of the data's images (None: the architecture's default input).
        data_classes: classes of the data (None: the architecture's default).

    Raises:
        SpaceError: unknown architecture, a rule that matches no layer, a choice that no layer the
            rule selects accepts (named), a seed that is not in the space -- naming the key.
    """
    import deeproots  # noqa: PLC0415

    cfg = space.model
    if cfg.arch not in deeproots.list_architectures():
        raise SpaceError("model.arch", f"unknown architecture {cfg.arch!r}; choose one of: {', '.join(deeproots.list_architectures())}")
    num_classes = cfg.num_classes or data_classes
    from deeproots.models import get_arch  # noqa: PLC0415

    spec = get_arch(cfg.arch)
    num_classes = num_classes or spec.num_classes
    input_size = tuple(cfg.input_size or data_size or spec.input_size)
    if data_size is not None and tuple(data_size) != input_size:
        raise SpaceError("model.input_size", f"{list(input_size)} differs from the data's {list(data_size)}")
    # auxiliary classifiers' convs (GoogLeNet) are never grouped and not part of a schedule
    layers = tuple(layer for layer in deeproots.describe_layers(cfg.arch, num_classes) if not layer.aux)
    by_name = {layer.name: layer for layer in layers}

    try:
        base = deeproots.resolve_schedule(cfg.arch, space.base, num_classes=num_classes)
    except ValueError as e:
        raise SpaceError("base", str(e)) from None

    # owner[layer] = (rule index, parameter key): later rules override earlier ones.
    owner: dict[str, tuple[int, str]] = {}
    for i, rule in enumerate(space.groups):
        pats, stages = _as_list(rule.layers), _as_list(rule.stages)
        for pat in pats:
            if not any(ch in pat for ch in "*?[") and pat not in by_name:
                names = [layer.name for layer in layers]
                shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
                raise SpaceError(f"groups.{i}.layers", f"{cfg.arch} has no layer {pat!r}; its convs: {shown}")
        matched = [
            layer
            for layer in layers
            if any(fnmatch.fnmatchcase(layer.name, p) for p in pats)
            and (rule.kind == "any" or layer.kind == rule.kind)
            and any(fnmatch.fnmatchcase(layer.stage, s) for s in stages)
        ]
        if not matched:
            stage_names = sorted({layer.stage for layer in layers})
            raise SpaceError(
                f"groups.{i}",
                f"selects no layer of {cfg.arch} (layers {pats}, kind {rule.kind}, stages {stages}); stages: {', '.join(stage_names)}",
            )
        explicit = all(not any(ch in p for ch in "*?[") for p in pats)
        impossible = [c for c in rule.choices if not any(c in layer.valid_groups for layer in matched)]
        if impossible and not explicit:  # (an explicit layer list gets the per-layer message below)
            takes = sorted({g for layer in matched for g in layer.valid_groups})
            shown = ", ".join(map(str, takes[:16])) + (" ..." if len(takes) > 16 else "")
            raise SpaceError(
                f"groups.{i}.choices",
                f"{', '.join(map(str, impossible))} {'fits' if len(impossible) == 1 else 'fit'} no layer this rule "
                f"selects ({len(matched)}: {', '.join(layer.name for layer in matched[:3])}{' ...' if len(matched) > 3 else ''}; "
                f"a group count must divide a layer's input and output channels); they take: {shown}",
            )
        for layer in matched:
            key = {"layer": layer.name, "stage": layer.stage, "all": rule.name or f"groups{i}"}[rule.tie]
            owner[layer.name] = (i, key)

    # Group layers by (rule, key) and intersect the choices with what every layer accepts.
    members: dict[tuple[int, str], list[LayerInfo]] = {}
    for layer in layers:
        if layer.name in owner:
            members.setdefault(owner[layer.name], []).append(layer)
    fixed = {name: g for name, g in base.groups.items() if name not in owner}
    params: list[Param] = []
    seen_keys: dict[str, int] = {}
    untied: dict[int, set[int]] = {}  # rule -> choices dropped because not every layer of a tie takes them
    for (i, key), group in members.items():
        rule = space.groups[i]
        explicit = all(not any(ch in p for ch in "*?[") for p in _as_list(rule.layers))
        choices = [c for c in rule.choices if all(c in layer.valid_groups for layer in group)]
        if len(group) > 1:
            untied.setdefault(i, set()).update(set(rule.choices) - set(choices))
        if explicit:
            for c in rule.choices:
                for layer in group:
                    if c not in layer.valid_groups:
                        raise SpaceError(
                            f"groups.{i}.choices",
                            f"layer {layer.name} ({layer.in_channels}->{layer.out_channels} channels) cannot use {c} groups; "
                            f"valid: {', '.join(map(str, layer.valid_groups))}",
                        )
        if not choices:
            layer = group[0]
            raise SpaceError(
                f"groups.{i}.choices",
                f"none of {rule.choices} is valid for layer {layer.name} ({layer.in_channels}->{layer.out_channels} channels); "
                f"valid: {', '.join(map(str, layer.valid_groups))}",
            )
        if len(choices) == 1:
            fixed.update({layer.name: choices[0] for layer in group})
            continue
        if key in seen_keys:
            raise SpaceError(
                f"groups.{i}", f"parameter {key!r} is also made by groups.{seen_keys[key]}; give one rule another tie or a name"
            )
        seen_keys[key] = i
        params.append(Param(key, tuple(choices), tuple(layer.name for layer in group)))
    if not params:
        why = "; ".join(
            f"groups.{i}: {', '.join(map(str, sorted(cs)))} {'is' if len(cs) == 1 else 'are'} not valid for every "
            f"layer tied by tie: {space.groups[i].tie}"
            for i, cs in sorted(untied.items())
            if cs
        )
        raise SpaceError(
            "groups",
            "the rules leave nothing to search: every selected layer has a single valid choice" + (f" ({why})" if why else ""),
        )
    order = {layer.name: n for n, layer in enumerate(layers)}
    params.sort(key=lambda p: order[p.layers[0]])

    pspace = ParamSpace(cfg.arch, num_classes, input_size, layers, fixed, tuple(params), ())
    seeds = _resolve_seeds(space, pspace)
    return ParamSpace(cfg.arch, num_classes, input_size, layers, fixed, tuple(params), seeds)


def _resolve_seeds(space: SearchSpace, pspace: ParamSpace) -> tuple[tuple[str, dict[str, int]], ...]:
    import deeproots  # noqa: PLC0415

    out: list[tuple[str, dict[str, int]]] = []
    seen: set[tuple[int, ...]] = set()
    if space.seeds == "paper":
        for label, sched in deeproots.paper_schedules(pspace.arch, pspace.num_classes).items():
            try:
                values = pspace.values_of(sched.groups, f"seed {label}")
            except SpaceError:
                continue  # "paper" means the paper schedules that fit the space
            key = tuple(values.values())
            if key not in seen:
                seen.add(key)
                out.append((label, values))
        return tuple(out)
    for i, label in enumerate(space.seeds):
        try:
            sched = deeproots.resolve_schedule(pspace.arch, label, num_classes=pspace.num_classes)
        except ValueError as e:
            raise SpaceError(f"seeds.{i}", str(e)) from None
        try:
            values = pspace.values_of(sched.groups, f"seed {label}")
        except SpaceError as e:
            raise SpaceError(f"seeds.{i}", str(e)) from None
        key = tuple(values.values())
        if key not in seen:
            seen.add(key)
            out.append((label, values))
    return tuple(out)


def describe(pspace: ParamSpace) -> list[tuple[str, str, str]]:
    """(parameter, layers, choices) rows for printing."""
    rows = []
    for p in pspace.params:
        layers = ", ".join(p.layers) if len(p.layers) <= 3 else f"{p.layers[0]} ... ({len(p.layers)} layers)"
        rows.append((p.name, layers, " ".join(map(str, p.choices))))
    return rows


def to_jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain ints (Optuna may hand back numpy ints)."""
    return {k: int(v) for k, v in values.items()}
