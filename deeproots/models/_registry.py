"""Registry of architectures: ``build_model("nin", schedule="root-8")``, ``list_architectures()``.

A model family registers each named variant with :func:`register_model`, giving the builder, its
default input geometry, the rule that maps a layer name to its stage (the unit the paper's named
schedules and the search's "per stage" shorthand work on) and the paper's named-schedule table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Mapping

import torch.nn as nn

__all__ = ["ArchSpec", "register_model", "get_arch", "list_architectures"]

#: builder(groups, num_classes, **kwargs) -> nn.Module; ``groups`` maps conv name -> group count.
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ArchSpec:
    """Everything the registry knows about one architecture.

    Attributes:
        name: registry name, e.g. ``"nin"``.
        builder: ``builder(groups: Mapping[str, int], num_classes: int, **kwargs) -> nn.Module``.
        input_size: default input geometry ``(C, H, W)``.
        num_classes: default number of classes.
        stage_of: maps a conv's module name to its stage label (``"conv2"``, ``"layer3"``, ``"inception4"``).
        families: the paper's named-schedule families, as data: ``{"root": {stage: factor}}`` where the
            spatial convs of ``stage`` get ``max(1, N * factor)`` groups in schedule ``root-N``.
        paper_n: the values of N the paper evaluates (the named schedules listed by default).
        description: one line for listings.
    """

    name: str
    builder: Builder
    input_size: tuple[int, int, int]
    num_classes: int
    stage_of: Callable[[str], str]
    families: Mapping[str, Mapping[str, Fraction]] = field(default_factory=dict)
    paper_n: tuple[int, ...] = ()
    description: str = ""


_REGISTRY: dict[str, ArchSpec] = {}


def register_model(
    name: str,
    *,
    input_size: tuple[int, int, int],
    num_classes: int,
    stage_of: Callable[[str], str],
    families: Mapping[str, Mapping[str, Fraction | int]] | None = None,
    paper_n: tuple[int, ...] = (),
    description: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as architecture ``name`` (timm's ``@register_model``)."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        fams = {f: {s: Fraction(v) for s, v in table.items()} for f, table in (families or {}).items()}
        _REGISTRY[name] = ArchSpec(name, builder, input_size, num_classes, stage_of, fams, paper_n, description)
        return builder

    return wrap


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted.

    Example:
        >>> import deeproots
        >>> "nin" in deeproots.list_architectures()
        True
    """
    return sorted(_REGISTRY)


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``name``; ``ValueError`` naming the valid choices otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of: {', '.join(list_architectures())}"
        ) from None
