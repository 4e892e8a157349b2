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

__all__ = ["shapes_only", "shape_ops_only"]

# The in-place fills of torch.nn.init; each keeps its tensor's shape, so skipping them on a meta
# tensor (which holds no values) changes nothing a shape-only build can see.
_INIT_OPS = frozenset({"normal_", "uniform_", "zero_", "fill_", "erfinv_", "random_", "exponential_", "bernoulli_"})


class _SkipInitOnMeta(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if getattr(func, "__name__", None) in _INIT_OPS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


# Ops whose meta kernels are Python decompositions (which import ``torch._dynamo``, ~1 s, on a first
# call) and whose output shape is plain: these keep their input's shape; adaptive pools take theirs
# from ``output_size``; a sum broadcasts; ``cat`` adds up one dimension;
# ``linear`` ends in its weight's out_features.
_SHAPE_KEEPING = frozenset({"batch_norm", "instance_norm", "layer_norm", "group_norm", "dropout", "dropout2d"})


_ADAPTIVE_POOLS = frozenset({"adaptive_avg_pool2d", "adaptive_max_pool2d"})
_ADDS = frozenset({"add", "__add__", "__radd__", "add_", "__iadd__"})


def _pair(size: Any, x: torch.Tensor) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (x.shape[-2] if h is None else int(h), x.shape[-1] if w is None else int(w))


class _ShapeKeepingOnMeta(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None)
        if args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            x = args[0]
            if name in _SHAPE_KEEPING:
                return torch.empty_like(x)
            if name in _ADAPTIVE_POOLS and not kwargs.get("return_indices") and x.dim() in (3, 4):
                size = args[1] if len(args) > 1 else kwargs["output_size"]
                return x.new_empty((*x.shape[:-2], *_pair(size, x)))
            if name == "linear" and len(args) >= 2 and isinstance(args[1], torch.Tensor):
                return x.new_empty((*x.shape[:-1], args[1].shape[0]))
            if name in _ADDS and len(args) == 2 and not kwargs:  # a residual sum: broadcast shapes
                other = args[1]
                shape = torch.broadcast_shapes(x.shape, other.shape) if isinstance(other, torch.Tensor) else x.shape
                return x if name.endswith("_") or name == "__iadd__" else x.new_empty(shape)
        if name == "cat" and args and isinstance(args[0], (list, tuple)) and args[0]:
            parts = args[0]
            if all(isinstance(t, torch.Tensor) and t.is_meta and t.dim() == parts[0].dim() for t in parts):
                dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % parts[0].dim()
                shape = list(parts[0].shape)
                shape[dim] = sum(t.shape[dim] for t in parts)
                return parts[0].new_empty(shape)
        return func(*args, **kwargs)


@contextlib.contextmanager
def shape_ops_only() -> Iterator[None]:
    """Run a forward on meta tensors without the Python meta kernels of shape-keeping ops.

    BatchNorm (and the other norms, dropout) return a tensor of their input's shape, adaptive pools one
    of ``(..., *output_size)``, sums the broadcast shape, ``cat`` the joined one, ``linear``
    ``(..., out_features)``; on real tensors
    nothing changes. Used when only shapes matter (counting FLOPs on a meta build).
    """
    with _ShapeKeepingOnMeta():
        yield


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
