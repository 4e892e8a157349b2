"""The model families. Importing this package registers every architecture.

Build a model with :func:`deeproots.build_model` (it needs the schedules too, which sit above this
package: ``models._registry`` <- ``schedules`` <- ``build_model``). :func:`aux_heads` and
:func:`drop_aux` handle auxiliary classifiers (GoogLeNet's) on any model.
"""

from __future__ import annotations

import torch.nn as nn

from . import googlenet, nin, resnet  # noqa: F401  (registration side effects)
from ._registry import ArchSpec, get_arch, list_architectures, register_model

__all__ = ["list_architectures", "get_arch", "register_model", "ArchSpec", "aux_heads", "drop_aux"]


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
