"""Data sets for training candidates: CIFAR-10, ImageFolder and synthetic images.

``load_data`` returns a :class:`DataBundle` with train / validation / test splits. The validation
split is carved from the training set (seeded, class-balanced) and is what a search selects on; the
test split is only for reporting exported models. ``subset`` keeps the first N class-balanced
training images -- the fidelity knob for cheap trials -- and leaves the validation split unchanged,
so trials at different fidelities are compared on the same images.

CIFAR-sized data is decoded once into uint8 tensors (cached on disk) and can sit on the GPU, where
shuffling, random crop + flip and normalisation run in batches (:class:`TensorSplit`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import _cifar, _folder
from ._augment import normalize, random_crop_flip
from ._cache import default_cache_dir
from ._splits import FolderSplit, Split, TensorSplit, _balanced_head, _balanced_random
from ._synthetic import make_synthetic

__all__ = [
    "DATASETS",
    "DataBundle",
    "FolderSplit",
    "Split",
    "TensorSplit",
    "default_cache_dir",
    "load_data",
    "normalize",
    "random_crop_flip",
]

DATASETS = ("cifar10", "imagefolder", "synthetic")


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Splits of one data set, ready for :func:`deeproots.fit`.

    Attributes:
        name: data set name (``"cifar10"``, ``"imagefolder"``, ``"synthetic"``).
        train: the training images left after the validation split and the subset.
        val: the validation split (None when ``val_size=0``).
        test: the held-out test split (CIFAR-10's test batch, ImageFolder's ``val/``).
        num_classes: number of classes.
        input_size: ``(C, H, W)`` of the images the model sees.
        classes: class names, index order.
        info: provenance: source folder, subset, validation size, seed, checksum status.
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    input_size: tuple[int, int, int]
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"DataBundle({self.name!r}, train={self.train!r}, val={self.val!r}, "
            f"test={self.test!r}, num_classes={self.num_classes})"
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _split_train(
    labels: torch.Tensor,
    num_classes: int,
    *,
    subset: int | None,
    val_size: int,
    seed: int,
    classes: Sequence[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (train indices, validation indices) into the full training set."""
    rest, val = _balanced_random(
        labels, val_size, num_classes, seed=seed, what="val_size", classes=classes
    )
    if subset is not None:
        rest = rest[_balanced_head(labels[rest], subset, num_classes, what="subset", classes=classes)]
    return rest, val


def load_data(
    name: str = "cifar10",
    root: str | Path | None = None,
    *,
    subset: int | None = None,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = True,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> DataBundle:
    """Load a data set and carve its validation split and training subset.

    Args:
        name: ``"cifar10"``, ``"imagefolder"`` or ``"synthetic"``.
        root: cifar10: folder holding ``cifar-10-batches-py`` (or that folder); None uses
            ``<cache dir>/data`` and downloads there through torchvision when absent.
            imagefolder: folder with ``train/`` and ``val/`` class folders (required).
            synthetic: unused.
        subset: keep only the first ``subset`` training images, class-balanced (after the
            validation split is taken out); None keeps all.
        val_size: images drawn from the training set for validation, class-balanced; 0 for none.
        seed: seed of the validation draw (the same seed gives the same split).
        download: cifar10 only: allow downloading when the folder is absent.
        cache_dir: where decoded tensors (and default downloads) are kept;
            :func:`default_cache_dir` when None.
        **options: per data set. synthetic: ``num_train`` (2000), ``num_test`` (500),
            ``input_size`` ((3, 32, 32)), ``num_classes`` (10), ``data_seed`` (0).
            imagefolder: ``image_size`` (224, pixels), ``workers`` (DataLoader processes).
            cifar10 and synthetic: ``augment`` (True: pad-4 random crop + flip when training).

    Returns:
        The :class:`DataBundle`.

    Raises:
        ValueError: unknown data set or option, or sizes that cannot be met (naming which).
        FileNotFoundError: ``root`` or a required file is missing.
        ConnectionError: a needed download failed.

    Example:
        >>> from deeproots.data import load_data
        >>> data = load_data("synthetic", num_train=200, num_test=50, val_size=50, subset=100)
        >>> len(data.train), len(data.val), len(data.test), data.input_size
        (100, 50, 50, (3, 32, 32))
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    _check_int("val_size", val_size, 0)
    if subset is not None:
        _check_int("subset", subset, 1)
    _check_int("seed", seed, 0)
    allowed = {
        "cifar10": {"augment"},
        "synthetic": {"num_train", "num_test", "input_size", "num_classes", "data_seed", "augment"},
        "imagefolder": {"image_size", "workers"},
    }[name]
    if unknown := sorted(set(options) - allowed):
        raise ValueError(
            f"unknown option(s) for dataset {name!r}: {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(allowed)) or 'none'}"
        )
    info: dict[str, Any] = {"subset": subset, "val_size": val_size, "seed": seed}
    if name == "imagefolder":
        return _load_folder(root, info=info, **options)

    augment = options.pop("augment", True)
    if name == "cifar10":
        raw = _cifar.load_cifar10(root, download=download, cache_dir=cache_dir)
        mean, std, classes = _cifar.MEAN, _cifar.STD, tuple(raw["classes"])
        info.update(source=raw["source"], checksums_match=not raw["mismatched"])
    else:
        num_train = options.get("num_train", 2000)
        num_test = options.get("num_test", 500)
        input_size = tuple(options.get("input_size", (3, 32, 32)))
        num_classes = options.get("num_classes", 10)
        data_seed = options.get("data_seed", 0)
        _check_int("num_train", num_train, 1)
        _check_int("num_test", num_test, 1)
        _check_int("num_classes", num_classes, 2)
        _check_int("data_seed", data_seed, 0)
        if len(input_size) != 3 or not all(isinstance(s, int) and s > 0 for s in input_size):
            raise ValueError(f"input_size must be (C, H, W) positive integers, got {input_size!r}")
        (train_images, train_labels), (test_images, test_labels) = make_synthetic(
            (num_train, num_test), input_size, num_classes, seed=data_seed
        )
        raw = {
            "train_images": train_images,
            "train_labels": train_labels,
            "test_images": test_images,
            "test_labels": test_labels,
        }
        classes = tuple(f"class{i}" for i in range(num_classes))
        # Statistics of the generated training images, [0, 1] units.
        as_float = raw["train_images"].float().div_(255)
        mean = tuple(as_float.mean(dim=(0, 2, 3)).tolist())
        std = tuple(as_float.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        info.update(source="synthetic", data_seed=data_seed)

    train_idx, val_idx = _split_train(
        raw["train_labels"], len(classes), subset=subset, val_size=val_size, seed=seed,
        classes=classes,
    )  # fmt: skip

    def split(images: torch.Tensor, labels: torch.Tensor) -> TensorSplit:
        return TensorSplit(
            images.contiguous(), labels.contiguous(), mean, std, padding=4 if augment else 0,
            flip=augment,
        )  # fmt: skip

    train_images, train_labels = raw["train_images"], raw["train_labels"]
    return DataBundle(
        name=name,
        train=split(train_images[train_idx], train_labels[train_idx]),
        val=split(train_images[val_idx], train_labels[val_idx]) if val_size else None,
        test=split(raw["test_images"], raw["test_labels"]),
        num_classes=len(classes),
        input_size=tuple(train_images.shape[1:]),
        classes=classes,
        info=info,
    )


def _load_folder(
    root: str | Path | None, *, info: dict[str, Any], image_size: int = 224,
    workers: int | None = None,
) -> DataBundle:  # fmt: skip
    if root is None:
        raise ValueError("dataset 'imagefolder' needs a root folder with train/ and val/")
    _check_int("image_size", image_size, 8)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    _check_int("workers", workers, 0)
    raw = _folder.scan_image_folder(root)
    classes = tuple(raw["classes"])
    train_idx, val_idx = _split_train(
        raw["train_labels"], len(classes), subset=info["subset"], val_size=info["val_size"],
        seed=info["seed"], classes=classes,
    )  # fmt: skip

    def split(samples: tuple, labels: torch.Tensor, idx: torch.Tensor | None) -> FolderSplit:
        if idx is not None:
            samples, labels = tuple(samples[i] for i in idx.tolist()), labels[idx]
        return FolderSplit(
            samples, raw["loader"], labels, _folder.MEAN, _folder.STD, image_size=image_size,
            workers=workers,
        )  # fmt: skip

    info.update(source=raw["source"], image_size=image_size)
    return DataBundle(
        name="imagefolder",
        train=split(raw["train_samples"], raw["train_labels"], train_idx),
        val=split(raw["train_samples"], raw["train_labels"], val_idx) if info["val_size"] else None,
        test=split(raw["test_samples"], raw["test_labels"], None),
        num_classes=len(classes),
        input_size=(3, image_size, image_size),
        classes=classes,
        info=info,
    )
