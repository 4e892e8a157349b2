"""Data sets for training candidates: CIFAR-10, ImageFolder and synthetic images.

``load_data`` returns a :class:`DataBundle` with train / validation / test splits. The validation
split is carved from the training set (seeded, class-balanced) and is what a search selects on; the
test split is only for reporting exported models. ``subset`` keeps the first N class-balanced
training images -- the fidelity knob for cheap trials -- and leaves the validation split unchanged,
so trials at different fidelities are compared on the same images.

CIFAR-sized data is decoded once into uint8 tensors (cached on disk) and can sit on the GPU, where
shuffling, random crop + flip and normalisation run in batches (:class:`TensorSplit`).

Where the data is: ``root=``, else the folder ``$DEEPROOTS_DATA`` names (one that holds
``cifar-10-batches-py``, or an ImageFolder root with ``train/`` and ``val/``), else -- CIFAR-10 only --
``<cache dir>/data``, downloaded there on first use. :func:`dataset_info` answers what a data set
holds (sizes, classes, input size, a content fingerprint) without decoding it. Data that cannot be
used -- absent, damaged, too small for the sizes asked -- raises :class:`DataError`, one line naming
the file or folder and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import _cifar, _folder
from ._augment import normalize, random_crop_flip
from ._cache import DATA_ENV, default_cache_dir
from ._errors import DataError
from ._splits import FolderSplit, Split, TensorSplit, _balanced_head, _balanced_random
from ._synthetic import make_synthetic

__all__ = [
    "CIFAR10_PUBLISHED",
    "DATASETS",
    "DATA_ENV",
    "DataBundle",
    "DataError",
    "DatasetInfo",
    "check_sizes",
    "dataset_info",
    "FolderSplit",
    "Split",
    "TensorSplit",
    "default_cache_dir",
    "load_data",
    "normalize",
    "random_crop_flip",
]

DATASETS = ("cifar10", "imagefolder", "synthetic")
#: CIFAR-10 as published (Krizhevsky 2009): what a check can use before a copy is at hand. A copy's
#: own counts, classes and fingerprint are :func:`dataset_info`'s.
CIFAR10_PUBLISHED: dict[str, Any] = {
    "num_train": _cifar.NUM_TRAIN, "num_test": _cifar.NUM_TEST, "num_classes": _cifar.NUM_CLASSES,
    "input_size": _cifar.INPUT_SIZE,
}  # fmt: skip
#: load_data / dataset_info options per data set, with their defaults.
_OPTIONS: dict[str, dict[str, Any]] = {
    "cifar10": {"augment": True},
    "synthetic": {
        "num_train": 2000, "num_test": 500, "input_size": (3, 32, 32), "num_classes": 10, "data_seed": 0,
        "augment": True,
    },  # fmt: skip
    "imagefolder": {"image_size": 224, "workers": None},
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set holds, known without decoding it (:func:`dataset_info`).

    Attributes:
        name: ``"cifar10"``, ``"imagefolder"`` or ``"synthetic"``.
        num_train: training images, before a validation split is carved from them.
        num_test: test images (CIFAR-10's test batch, ImageFolder's ``val/``).
        num_classes: number of classes.
        classes: class names, index order.
        input_size: ``(C, H, W)`` of the images a model sees.
        root: the folder read (``cifar-10-batches-py`` itself, or the ImageFolder root); None for
            synthetic data.
        fingerprint: the data's identity by content -- ``"sha256:<hex>"`` of CIFAR-10's files, of
            an ImageFolder's relative paths, classes and file sizes, of synthetic data's generation
            parameters. Equal data gives an equal fingerprint wherever it sits.
    """

    name: str
    num_train: int
    num_test: int
    num_classes: int
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]
    root: str | None
    fingerprint: str

    def check_sizes(self, *, val_size: int, subset: int | None = None) -> None:
        """:func:`check_sizes` against this data set's training images."""
        check_sizes(self.num_train, val_size=val_size, subset=subset, what=self.name + (f" in {self.root}" if self.root else ""))


def check_sizes(num_train: int, *, val_size: int, subset: int | None = None, what: str = "the data set") -> None:
    """Raise :class:`DataError` when a validation split and a training subset cannot both come out of
    ``num_train`` training images.

    The validation split is drawn first and must leave at least one training image; ``subset``
    training images must remain beside it. (Class balance is checked when the split is drawn.)

    Args:
        num_train: training images of the data set (:attr:`DatasetInfo.num_train`; CIFAR-10 as
            published: ``CIFAR10_PUBLISHED["num_train"]``).
        val_size: validation images asked for.
        subset: training images asked for; None: all that remain.
        what: how the message names the data set.

    Raises:
        DataError: with ``key`` ``"val_size"`` or ``"subset"``, naming the largest value that fits.

    Example:
        >>> from deeproots.data import check_sizes
        >>> check_sizes(50_000, val_size=60_000, what="cifar10")
        Traceback (most recent call last):
        ...
        deeproots.data._errors.DataError: val_size=60,000 leaves none of the 50,000 training images of cifar10 to train on; at most 49,999
    """
    where = f"the {num_train:,} training images of {what}"
    if val_size >= num_train:
        raise DataError(f"val_size={val_size:,} leaves none of {where} to train on; at most {num_train - 1:,}", key="val_size")
    if subset is not None and subset + val_size > num_train:
        raise DataError(
            f"subset={subset:,} + val_size={val_size:,} exceeds {where}; subset can be at most {num_train - val_size:,}",
            key="subset",
        )


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
        info: provenance: source folder, subset, validation size, seed, checksum status, content
            fingerprint.
        dataset: what the whole data set holds (:func:`dataset_info`'s answer), None when built by hand.
    """

    name: str
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    input_size: tuple[int, int, int]
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetInfo | None = None

    def __repr__(self) -> str:
        return (
            f"DataBundle({self.name!r}, train={self.train!r}, val={self.val!r}, "
            f"test={self.test!r}, num_classes={self.num_classes})"
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over the data set's defaults; ValueError for an unknown data set, option or value."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    allowed = _OPTIONS[name]
    if unknown := sorted(set(options) - set(allowed)):
        raise ValueError(
            f"unknown option(s) for dataset {name!r}: {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(allowed)) or 'none'}"
        )
    opts = {**allowed, **options}
    if name == "synthetic":
        _check_int("num_train", opts["num_train"], 1)
        _check_int("num_test", opts["num_test"], 1)
        _check_int("num_classes", opts["num_classes"], 2)
        _check_int("data_seed", opts["data_seed"], 0)
        size = opts["input_size"]
        if not isinstance(size, (tuple, list)) or len(size) != 3 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
        ):
            raise ValueError(f"input_size must be (C, H, W) positive integers, got {size!r}")
        opts["input_size"] = tuple(size)
    elif name == "imagefolder":
        _check_int("image_size", opts["image_size"], 8)
        if opts["workers"] is None:
            opts["workers"] = min(8, os.cpu_count() or 1)
        _check_int("workers", opts["workers"], 0)
    return opts


def _cache_path(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def dataset_info(
    name: str = "cifar10",
    root: str | Path | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
    verify: bool = False,
    **options: Any,
) -> DatasetInfo:
    """What a data set holds -- sizes, classes, input size, where it is, a content fingerprint -- cheaply.

    Nothing is decoded into tensors. CIFAR-10: every file is read once to check it (a readable batch
    of ``N x 3072`` bytes and ``N`` labels) and to hash it; both are cached by file size and mtime, so
    a second call is instant. ImageFolder: the tree is listed (paths and sizes, no image opened unless
    ``verify``). Synthetic: computed from the options. Call it before starting work that needs the
    data: it fails the way :func:`load_data` would, at once and in one line.

    Args:
        name: ``"cifar10"``, ``"imagefolder"`` or ``"synthetic"``.
        root: as in :func:`load_data` (None: ``$DEEPROOTS_DATA``, then, for CIFAR-10, the cache dir).
        download: CIFAR-10 only: download into the cache dir when no copy is found.
        cache_dir: where checks, checksums and downloads are kept; :func:`default_cache_dir` when None.
        verify: ImageFolder only: also decode every image once (cached by size and mtime), as
            :func:`load_data` does for the images it uses.
        **options: as in :func:`load_data` (``image_size`` sets an ImageFolder's input size;
            synthetic's ``num_train``, ``num_test``, ``input_size``, ``num_classes``, ``data_seed``).

    Returns:
        The :class:`DatasetInfo`.

    Raises:
        DataError: no data (and no download possible), a missing or damaged file, an unusable
            ImageFolder tree -- one line naming it and the fix (``root=`` / ``data.root`` /
            ``--data-root``, ``$DEEPROOTS_DATA``, a new download or copy).
        ValueError: an unknown data set or option.

    Example:
        >>> from deeproots.data import dataset_info
        >>> info = dataset_info("synthetic", num_train=300, num_classes=3)
        >>> info.num_train, info.num_classes, info.input_size
        (300, 3, (3, 32, 32))
    """
    opts = _resolve_options(name, options)
    cache = _cache_path(cache_dir)
    if name == "cifar10":
        folder = _cifar.find_folder(Path(root).expanduser() if root is not None else None, download=download, cache_dir=cache)
        return _cifar_info(_cifar.inspect(folder, cache))
    if name == "imagefolder":
        raw = _folder.scan_image_folder(root)
        if verify:
            paths = [p for p, _ in raw["train_samples"] + raw["test_samples"]]
            _folder.verify(paths, raw["stats"], cache, opts["workers"])
        return _folder_info(raw, opts["image_size"])
    return _synthetic_info(opts)


def _cifar_info(facts: dict[str, Any]) -> DatasetInfo:
    classes = tuple(facts["classes"])
    return DatasetInfo(
        "cifar10", facts["num_train"], facts["num_test"], len(classes), classes, _cifar.INPUT_SIZE,
        facts["folder"], facts["fingerprint"],
    )  # fmt: skip


def _folder_info(raw: dict[str, Any], image_size: int) -> DatasetInfo:
    classes = tuple(raw["classes"])
    return DatasetInfo(
        "imagefolder", len(raw["train_samples"]), len(raw["test_samples"]), len(classes), classes,
        (3, image_size, image_size), raw["source"], raw["fingerprint"],
    )  # fmt: skip


def _synthetic_info(opts: dict[str, Any]) -> DatasetInfo:
    params = {k: opts[k] for k in ("num_train", "num_test", "input_size", "num_classes", "data_seed")}
    digest = hashlib.sha256(json.dumps({"generator": 1, **params}, sort_keys=True).encode()).hexdigest()
    return DatasetInfo(
        "synthetic", opts["num_train"], opts["num_test"], opts["num_classes"],
        tuple(f"class{i}" for i in range(opts["num_classes"])), opts["input_size"], None, f"sha256:{digest}",
    )  # fmt: skip


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
        root: cifar10: folder holding ``cifar-10-batches-py`` (or that folder); imagefolder: folder
            with ``train/`` and ``val/`` class folders; synthetic: unused. None: the folder
            ``$DEEPROOTS_DATA`` names; then, for cifar10, ``<cache dir>/data``, downloaded there
            through torchvision when absent.
        subset: keep only the first ``subset`` training images, class-balanced (after the
            validation split is taken out); None keeps all.
        val_size: images drawn from the training set for validation, class-balanced; 0 for none.
        seed: seed of the validation draw (the same seed gives the same split).
        download: cifar10 only: allow downloading when no copy is found.
        cache_dir: where decoded tensors, file checks and default downloads are kept;
            :func:`default_cache_dir` when None.
        **options: per data set. synthetic: ``num_train`` (2000), ``num_test`` (500),
            ``input_size`` ((3, 32, 32)), ``num_classes`` (10), ``data_seed`` (0).
            imagefolder: ``image_size`` (224, pixels), ``workers`` (DataLoader processes; also the
            threads that verify the images). cifar10 and synthetic: ``augment`` (True: pad-4 random
            crop + flip when training).

    ImageFolder images are verified (decoded once, cached by size and mtime) before the bundle is
    returned: the training subset, the validation split and the test images.

    Returns:
        The :class:`DataBundle`; ``bundle.dataset`` is the :class:`DatasetInfo` of the whole data set
        and ``bundle.info["fingerprint"]`` its content fingerprint.

    Raises:
        DataError: absent data (and no download possible), a missing or damaged file or image, a
            ``val_size``/``subset`` larger than the training images or a class holds -- one line
            naming it and the fix.
        ValueError: an unknown data set or option, or an out-of-range argument.

    Example:
        >>> from deeproots.data import load_data
        >>> data = load_data("synthetic", num_train=200, num_test=50, val_size=50, subset=100)
        >>> len(data.train), len(data.val), len(data.test), data.input_size
        (100, 50, 50, (3, 32, 32))
    """
    opts = _resolve_options(name, options)
    _check_int("val_size", val_size, 0)
    if subset is not None:
        _check_int("subset", subset, 1)
    _check_int("seed", seed, 0)
    cache = _cache_path(cache_dir)
    info: dict[str, Any] = {"subset": subset, "val_size": val_size, "seed": seed}
    if name == "imagefolder":
        raw = _folder.scan_image_folder(root)
        facts = _folder_info(raw, opts["image_size"])
        facts.check_sizes(val_size=val_size, subset=subset)
        return _load_folder(raw, facts, info, cache=cache, image_size=opts["image_size"], workers=opts["workers"])

    augment = opts["augment"]
    if name == "cifar10":
        folder = _cifar.find_folder(Path(root).expanduser() if root is not None else None, download=download, cache_dir=cache)
        facts = _cifar_info(_cifar.inspect(folder, cache))
        facts.check_sizes(val_size=val_size, subset=subset)  # before decoding anything
        raw = _cifar.load_cifar10(folder, download=False, cache_dir=cache)
        mean, std, classes = _cifar.MEAN, _cifar.STD, tuple(raw["classes"])
        info.update(source=raw["source"], checksums_match=not raw["mismatched"])
    else:
        facts = _synthetic_info(opts)
        (train_images, train_labels), (test_images, test_labels) = make_synthetic(
            (facts.num_train, facts.num_test), facts.input_size, facts.num_classes, seed=opts["data_seed"]
        )
        raw = {
            "train_images": train_images,
            "train_labels": train_labels,
            "test_images": test_images,
            "test_labels": test_labels,
        }
        classes = facts.classes
        # Statistics of the generated training images, [0, 1] units.
        as_float = raw["train_images"].float().div_(255)
        mean = tuple(as_float.mean(dim=(0, 2, 3)).tolist())
        std = tuple(as_float.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        info.update(source="synthetic", data_seed=opts["data_seed"])
    info["fingerprint"] = facts.fingerprint
    facts.check_sizes(val_size=val_size, subset=subset)

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
        dataset=facts,
    )


def _load_folder(
    raw: dict[str, Any], facts: DatasetInfo, info: dict[str, Any], *, cache: Path, image_size: int, workers: int
) -> DataBundle:
    classes = tuple(raw["classes"])
    train_idx, val_idx = _split_train(
        raw["train_labels"], len(classes), subset=info["subset"], val_size=info["val_size"],
        seed=info["seed"], classes=classes,
    )  # fmt: skip
    used = [raw["train_samples"][i][0] for i in torch.cat([train_idx, val_idx]).sort().values.tolist()]
    _folder.verify(used + [p for p, _ in raw["test_samples"]], raw["stats"], cache, workers)

    def split(samples: tuple, labels: torch.Tensor, idx: torch.Tensor | None) -> FolderSplit:
        if idx is not None:
            samples, labels = tuple(samples[i] for i in idx.tolist()), labels[idx]
        return FolderSplit(
            samples, raw["loader"], labels, _folder.MEAN, _folder.STD, image_size=image_size,
            workers=workers,
        )  # fmt: skip

    info.update(source=raw["source"], image_size=image_size, fingerprint=facts.fingerprint)
    return DataBundle(
        name="imagefolder",
        train=split(raw["train_samples"], raw["train_labels"], train_idx),
        val=split(raw["train_samples"], raw["train_labels"], val_idx) if info["val_size"] else None,
        test=split(raw["test_samples"], raw["test_labels"], None),
        num_classes=len(classes),
        input_size=(3, image_size, image_size),
        classes=classes,
        info=info,
        dataset=facts,
    )
