"""The model families. Importing this package registers every architecture."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from . import googlenet, nin, resnet  # noqa: F401  (registration side effects)
from ._registry import ArchSpec, get_arch, list_architectures, register_model

__all__ = ["build_model", "list_architectures", "get_arch", "register_model", "ArchSpec", "aux_heads", "drop_aux"]


def build_model(arch: str, schedule: Any = "orig", num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build ``arch`` with the filter groups of ``schedule``.

    Args:
        arch: a registered architecture (:func:`list_architectures`): ``nin``, ``resnet50``,
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
        ValueError: unknown architecture or invalid schedule, naming the layer and the valid counts.

    Example:
        >>> import torch, deeproots
        >>> model = deeproots.build_model("resnet50_cifar", schedule="root-16")
        >>> model.schedule.groups["layer1.0.conv2"], model(torch.zeros(1, 3, 32, 32)).shape
        (16, torch.Size([1, 10]))
    """
    from ..schedules import resolve_schedule  # schedules needs the registry filled first

    spec = get_arch(arch)
    num_classes = spec.num_classes if num_classes is None else num_classes
    sched = resolve_schedule(arch, schedule, num_classes)
    model = spec.builder(sched.groups, num_classes, **kwargs)
    model.arch = arch
    model.schedule = sched
    model.default_input_size = spec.input_size
    return model


def aux_heads(model: nn.Module) -> tuple[str, ...]:
    """Names of ``model``'s auxiliary classifiers: its ``aux_heads`` attribute, ``()`` without one.

    The convention (GoogLeNet here, as torchvision's): auxiliary classifiers are sub-modules that run
    only while the model itself is in training mode.
    """
    return tuple(getattr(model, "aux_heads", ()) or ())


def drop_aux(model: nn.Module) -> nn.Module:
    """Remove ``model``'s auxiliary classifiers, in place; return ``model``.

    The deployment form of a network trained with auxiliary classifiers (Szegedy et al. 2015 discard
    them at inference): the forward is unchanged in eval mode, the ``state_dict`` loses their tensors.
    A model without any is returned unchanged.

    Example:
        >>> import deeproots
        >>> model = deeproots.drop_aux(deeproots.build_model("googlenet"))
        >>> model.aux_heads, model.aux1
        ((), None)
    """
    for name in aux_heads(model):
        setattr(model, name, None)
    if hasattr(model, "aux_heads"):
        model.aux_heads = ()
    return model
