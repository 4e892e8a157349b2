"""``build_model``: an architecture from the registry with the filter groups of a schedule.

It sits above both the model registry (:mod:`deeproots.models`) and the schedules
(:mod:`deeproots.schedules`), so neither imports the other at call time: the arrows go
``models._registry`` <- ``schedules`` <- ``_build``.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from .models import get_arch
from .schedules import resolve_schedule

__all__ = ["build_model"]


def build_model(arch: str, schedule: Any = "orig", num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build ``arch`` with the filter groups of ``schedule``.

    Args:
        arch: a registered architecture (:func:`deeproots.list_architectures`): ``nin``, ``resnet50``,
            ``resnet200``, ``googlenet``, ``googlenet_bvlc``, ``resnet50_cifar``, ``googlenet_cifar``.
        schedule: anything :func:`deeproots.resolve_schedule` accepts: a paper name (``"root-8"``),
            a mapping layer -> groups, a full sequence, a canonical id or a ``Schedule``.
        num_classes: outputs; the architecture's default (10 for CIFAR nets, 1000 for ImageNet) if None.
        **kwargs: passed to the family's constructor (GoogLeNet's ``aux_logits``: the auxiliary
            classifiers, on by default for ``googlenet``, off for the others).

    Returns:
        The model, with ``model.arch``, ``model.schedule`` (the validated ``Schedule``) and
        ``model.default_input_size`` set.

    Raises:
        ValueError: unknown architecture; invalid schedule, naming the layer and the valid counts;
            ``num_classes`` not a whole number >= 1; a family option of the wrong type
            (``aux_logits`` not a bool).

    Example:
        >>> import torch, deeproots
        >>> model = deeproots.build_model("resnet50_cifar", schedule="root-16")
        >>> model.schedule.groups["layer1.0.conv2"], model(torch.zeros(1, 3, 32, 32)).shape
        (16, torch.Size([1, 10]))
    """
    spec = get_arch(arch)
    num_classes = spec.num_classes if num_classes is None else num_classes
    sched = resolve_schedule(arch, schedule, num_classes)
    model = spec.builder(sched.groups, num_classes, **kwargs)
    model.arch = arch
    model.schedule = sched
    model.default_input_size = spec.input_size
    return model
