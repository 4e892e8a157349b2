"""Networks built as shapes only: on the meta device, without running their weight initialisers.

A module built under ``torch.device("meta")`` still runs its initialisers (``kaiming_normal_``...), and
on meta tensors PyTorch routes the random fills through its Python reference implementations, which
import ``torch._dynamo`` (~2 s on a first call). Shapes need none of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["shapes_only"]

# The in-place fills of torch.nn.init; each keeps its tensor's shape, so skipping them on a meta
# tensor (which holds no values) changes nothing a shape-only build can see.
_INIT_OPS = frozenset({"normal_", "uniform_", "zero_", "fill_", "erfinv_", "random_", "exponential_", "bernoulli_"})


class _SkipInitOnMeta(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if getattr(func, "__name__", None) in _INIT_OPS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Build modules on the meta device and skip their initialisers' fills (shapes only, no memory).

    Example:
        >>> import torch
        >>> from deeproots._meta import shapes_only
        >>> with shapes_only():
        ...     conv = torch.nn.Conv2d(3, 8, 3)
        >>> conv.weight.shape, conv.weight.is_meta
        (torch.Size([8, 3, 3, 3]), True)
    """
    with torch.device("meta"), _SkipInitOnMeta():
        yield
