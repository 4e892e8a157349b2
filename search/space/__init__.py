"""What to search: a space file -> schema -> parameters over an architecture -> one resolved bundle.

:func:`load_space` is the entry point; ``spaces/README.md`` documents every key of a space file.
"""

from __future__ import annotations

from ._load import load_space, read_space
from ._schema import SearchSpace, SpaceError

__all__ = ["load_space", "read_space", "SearchSpace", "SpaceError", "ResolvedSpace", "resolve", "ParamSpace", "Param",
           "build_param_space"]  # fmt: skip


def __getattr__(name: str):  # noqa: ANN202 (PEP 562: the torch-importing parts load on first use)
    if name in ("ResolvedSpace", "resolve"):
        from . import _resolve  # noqa: PLC0415

        return getattr(_resolve, name)
    if name in ("ParamSpace", "Param", "build_param_space"):
        from . import _params  # noqa: PLC0415

        return getattr(_params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
