"""Seeded synthetic images: learnable class prototypes plus noise (tests, throughput runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_synthetic(
    sizes: tuple[int, ...],
    input_size: tuple[int, int, int],
    num_classes: int,
    *,
    seed: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return one ``(images, labels)`` pair per entry of ``sizes`` (e.g. train and test).

    Each class has a smooth random prototype; an image is its class's prototype plus pixel noise,
    so a network can learn the task (a loss that falls means something) yet it is not trivial.
    Images are ``N x C x H x W`` uint8; labels are int64 and balanced within each part.
    """
    c, h, w = input_size
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, c, 4, 4, generator=gen)
    prototypes = F.interpolate(prototypes, size=(h, w), mode="bilinear", align_corners=False)
    parts = []
    for n in sizes:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        noise = torch.rand(n, c, h, w, generator=gen)
        images = 0.6 * prototypes[labels] + 0.4 * noise  # N x C x H x W in [0, 1]
        parts.append(((images * 255).round().to(torch.uint8), labels))
    return parts
