"""Per-image evaluation results: one bit per validation image, and the standard error of an accuracy.

A search scores each schedule once on a finite validation split, so every accuracy it records is
a binomial estimate: with ``n`` images and accuracy ``p`` its standard error is
``sqrt(p (1 - p) / n)`` -- 1.5 points at 37 % on 1,000 images. Which images a model got right
(:func:`deeproots.evaluate_per_image`) is what a paired comparison of two models needs (McNemar's
test looks only at the images on which they disagree); stored as bits it costs ``n / 8`` bytes
(625 bytes for CIFAR-10's default 5,000 validation images).

Example:
    >>> import numpy as np
    >>> from deeproots import accuracy_se, pack_correct, unpack_correct
    >>> correct = np.array([True, False, True, True, False, True, True, True, False, True])
    >>> data = pack_correct(correct)
    >>> len(data), bool((unpack_correct(data, 10) == correct).all())
    (2, True)
    >>> round(accuracy_se(0.7, 10), 4)
    0.1449
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["pack_correct", "unpack_correct", "accuracy_se"]


def _as_bool_array(correct: Any) -> np.ndarray:
    if hasattr(correct, "detach"):  # a torch tensor, wherever it lives
        correct = correct.detach().to("cpu").numpy()
    arr = np.asarray(correct)
    if arr.ndim != 1:
        raise ValueError(f"per-image results must be one flag per image (1-D), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("per-image results must be booleans (or 0/1)")
        arr = arr.astype(np.bool_)
    return arr


def pack_correct(correct: Any) -> bytes:
    """Pack per-image flags into bytes, eight images a byte.

    Args:
        correct: one flag per image in split order -- a bool tensor (:func:`deeproots.evaluate_per_image`),
            a numpy array or a sequence of bools / 0-1 values.

    Returns:
        ``ceil(n / 8)`` bytes: ``numpy.packbits`` with ``bitorder="big"`` (image ``i`` is bit
        ``7 - i % 8`` of byte ``i // 8``; the unused low bits of the last byte are 0). The number of
        images is not stored: keep it beside the bytes (:func:`unpack_correct` needs it).

    Raises:
        ValueError: not one-dimensional, or values other than booleans / 0 / 1.
    """
    return np.packbits(_as_bool_array(correct), bitorder="big").tobytes()


def unpack_correct(data: bytes, count: int) -> np.ndarray:
    """The per-image flags :func:`pack_correct` packed.

    Args:
        data: the packed bytes.
        count: how many images they hold.

    Returns:
        A ``bool`` array of ``count`` flags, in split order.

    Raises:
        ValueError: ``count`` negative, ``data`` not exactly ``ceil(count / 8)`` bytes, or padding bits
            set (bytes of another split, or damaged).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative whole number of images, got {count!r}")
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    need = (int(count) + 7) // 8
    if raw.size != need:
        raise ValueError(f"{raw.size} bytes cannot hold the results of {count:,} images (need {need})")
    bits = np.unpackbits(raw, bitorder="big")
    if bits[count:].any():
        raise ValueError(f"padding bits after image {count:,} are set: these bytes do not hold {count:,} results")
    return bits[:count].astype(np.bool_)


def accuracy_se(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` images: ``sqrt(p (1 - p) / n)``.

    Each image is taken as an independent Bernoulli trial with success probability ``p`` (the
    classifier's true accuracy), so the measured accuracy has variance ``p (1 - p) / n``; the
    measured ``accuracy`` stands in for ``p`` (the Wald estimate). It is the noise of the finite
    validation sample alone -- training with another seed adds its own. At ``p`` = 0 or 1 it is 0.

    Args:
        accuracy: measured accuracy in [0, 1] (a fraction, not a percentage).
        n: images it was measured on.

    Returns:
        The standard error, a fraction like ``accuracy`` (0.0153 = 1.53 points); nan for a nan accuracy.

    Raises:
        ValueError: ``n`` < 1, or ``accuracy`` outside [0, 1].
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive whole number of images, got {n!r}")
    p = float(accuracy)
    if math.isnan(p):
        return math.nan
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r}")
    return math.sqrt(p * (1.0 - p) / int(n))
