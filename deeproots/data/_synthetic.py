"""Seeded synthetic images: learnable class prototypes plus noise (tests, throughput runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_synthetic(
    num_images: int,
    input_size: tuple[int, int, int],
    num_classes: int,
    *,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``num_images`` uint8 images (``N x C x H x W``) and balanced int64 labels.

    Each class has a smooth random prototype; an image is its class's prototype plus pixel noise,
    so a network can learn the task (a loss that falls means something) yet it is not trivial.
    """
    c, h, w = input_size
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, c, 4, 4, generator=gen)
    prototypes = F.interpolate(prototypes, size=(h, w), mode="bilinear", align_corners=False)
    labels = (torch.arange(num_images) % num_classes)[torch.randperm(num_images, generator=gen)]
    noise = torch.rand(num_images, c, h, w, generator=gen)
    images = 0.6 * prototypes[labels] + 0.4 * noise  # N x C x H x W in [0, 1]
    return (images * 255).round().to(torch.uint8), labels
