"""ImageFolder data (ImageNet or a user's own): ``train/`` and ``val/`` class folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MEAN = (0.485, 0.456, 0.406)  # ImageNet per-channel mean, [0, 1] units
STD = (0.229, 0.224, 0.225)  # ImageNet per-channel std, [0, 1] units


def scan_image_folder(root: str | Path) -> dict[str, Any]:
    """List the files of ``root/train`` and ``root/val`` (torchvision's ImageFolder rules).

    Returns:
        dict with ``train_samples`` / ``test_samples`` (``(path, class)`` tuples), their labels as
        int64 tensors, ``classes`` and ``loader`` (opens a path as an RGB PIL image).
    """
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist or is not a folder")
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"imagefolder root {str(root)!r} has no {part}/ folder")
    train = ImageFolder(str(root / "train"))
    test = ImageFolder(str(root / "val"))
    if test.classes != train.classes:
        raise ValueError(
            f"class folders of {str(root / 'val')!r} differ from those of {str(root / 'train')!r}"
        )
    return {
        "train_samples": tuple(train.samples),
        "train_labels": torch.tensor(train.targets, dtype=torch.int64),
        "test_samples": tuple(test.samples),
        "test_labels": torch.tensor(test.targets, dtype=torch.int64),
        "classes": list(train.classes),
        "loader": train.loader,
        "source": str(root),
    }
