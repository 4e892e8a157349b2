"""Batched augmentation and normalisation on tensors (any device, no PIL).

The classic CIFAR recipe -- 4-pixel zero padding, a random 32x32 crop and a random horizontal
flip -- done for a whole uint8 batch with one gather, on whatever device the batch lives on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_crop_flip", "normalize"]


def random_crop_flip(
    images: Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Randomly crop (after zero padding) and horizontally flip every image of a batch.

    Equivalent per image to torchvision's ``RandomCrop(H, padding=padding)`` followed by
    ``RandomHorizontalFlip()``, but done for the whole batch at once by one indexed gather, so it
    runs at memory speed on the device that holds ``images``.

    Args:
        images: ``N x C x H x W`` batch, any dtype (uint8 in the pipeline), any device.
        padding: pixels of zero padding on each side before cropping back to ``H x W``;
            0 disables the crop.
        flip: flip each image left-right with probability 1/2.
        generator: random generator on the same device as ``images`` (seeded epochs).

    Returns:
        A new ``N x C x H x W`` tensor of the same dtype and device; image ``i`` of the result is a
        view of image ``i`` of the input, so labels stay aligned.

    Example:
        >>> import torch
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> random_crop_flip(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    if images.dim() != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    # Per-image offsets of the crop window inside the padded image.
    dy = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    rows = dy[:, None] + torch.arange(h, device=device)  # N x H
    cols = dx[:, None] + torch.arange(w, device=device)  # N x W
    if flip:
        # Flipping the crop is reading its columns backwards: fold it into the same gather.
        flipped = torch.randint(0, 2, (n, 1), device=device, generator=generator).bool()
        cols = torch.where(flipped, cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # N x C x H x W


def normalize(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """Turn a uint8 batch into float32 ``(x / 255 - mean) / std`` in the given memory format.

    Args:
        images: ``N x C x H x W`` uint8 batch.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation, in [0, 1] units.
        memory_format: ``torch.channels_last`` or ``torch.contiguous_format``; it should match
            the model's so that the first convolution does not convert its input.

    Returns:
        The float32 batch on the same device.

    Example:
        >>> import torch
        >>> x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
        >>> normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).max().item()
        1.0
    """
    c = images.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std need {c} values (one per channel), got {len(mean)}/{len(std)}")
    shift, scale = _constants(tuple(mean), tuple(std), images.device)
    x = images.contiguous(memory_format=memory_format).float()  # layout set once, on uint8
    return x.sub_(shift).div_(scale)


@functools.lru_cache(maxsize=64)
def _constants(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """``1 x C x 1 x 1`` shift and scale in 0..255 units, made once per device: a fresh host
    tensor per batch would be a blocking host-to-device copy, stalling the GPU queue."""
    c = len(mean)
    shift = torch.tensor([255.0 * m for m in mean], device=device).view(1, c, 1, 1)
    scale = torch.tensor([255.0 * s for s in std], device=device).view(1, c, 1, 1)
    return shift, scale
