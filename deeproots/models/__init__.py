"""The model families. Importing this package registers every architecture.

Build a model with :func:`deeproots.build_model` (it needs the schedules too, which sit above this
package: ``models._registry`` <- ``schedules`` <- ``build_model``).
"""

from __future__ import annotations

from . import googlenet, nin, resnet  # noqa: F401  (registration side effects)
from ._registry import ArchSpec, get_arch, list_architectures, register_model

__all__ = ["list_architectures", "get_arch", "register_model", "ArchSpec"]
