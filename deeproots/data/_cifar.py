"""CIFAR-10: read an extracted ``cifar-10-batches-py`` folder (or download it) once, cache tensors.

torchvision's ``CIFAR10`` checks the official md5 sums on every construction and refuses a folder
whose files differ (such as a copy rebuilt from another lossless source). Here the pickles are read
directly; differing checksums give a warning, not an error. torchvision is still used to download.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._cache import _save_atomic, default_cache_dir

FOLDER = "cifar-10-batches-py"
MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50,000 training images, [0, 1] units
STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the 50,000 training images, [0, 1] units
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILES = ("test_batch",)
_META_FILE = "batches.meta"
_CACHE_VERSION = 1


def _official_md5() -> dict[str, str]:
    from torchvision.datasets import CIFAR10

    sums = dict(CIFAR10.train_list + CIFAR10.test_list)
    sums[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return sums


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_folder(root: Path | None, *, download: bool) -> Path:
    """Locate (or download into ``root``) the extracted ``cifar-10-batches-py`` folder."""
    if root is None:
        root = default_cache_dir() / "data"
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist or is not a folder")
    if root.name == FOLDER and (root / _META_FILE).exists():
        return root
    if (root / FOLDER).is_dir():
        return root / FOLDER
    if not download:
        raise FileNotFoundError(f"no {FOLDER} folder in {str(root)!r} (and download=False)")
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network or disk trouble: one clear message
        raise ConnectionError(
            f"could not download CIFAR-10 into {str(root)!r} ({type(e).__name__}: {e}); "
            f"put an extracted {FOLDER} folder there instead"
        ) from e
    return root / FOLDER


def _read_batches(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = [], []
    for name in names:
        with (folder / name).open("rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(np.asarray(entry["data"], dtype=np.uint8))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))  # N x 3 x 32 x 32
    return images, torch.tensor(labels, dtype=torch.int64)


def _decode(folder: Path) -> dict[str, Any]:
    """Read every batch and check the files against the official md5 sums."""
    official = _official_md5()
    mismatched = [n for n in sorted(official) if _md5(folder / n) != official[n]]
    train_images, train_labels = _read_batches(folder, _TRAIN_FILES)
    test_images, test_labels = _read_batches(folder, _TEST_FILES)
    with (folder / _META_FILE).open("rb") as f:
        classes = list(pickle.load(f, encoding="latin1")["label_names"])
    return {
        "version": _CACHE_VERSION,
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "classes": classes,
        "mismatched": mismatched,
    }


def _cache_key(folder: Path) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{folder.resolve()}".encode())
    for name in (*_TRAIN_FILES, *_TEST_FILES, _META_FILE):
        st = (folder / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_cifar10(
    root: str | Path | None, *, download: bool = True, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Return CIFAR-10 as uint8/int64 tensors, decoding the pickles only on the first call.

    Args:
        root: folder holding ``cifar-10-batches-py`` (or that folder itself); None uses
            ``<cache dir>/data`` and downloads there when needed.
        download: download through torchvision when the folder is absent.
        cache_dir: where the decoded tensors are cached; :func:`default_cache_dir` when None.

    Returns:
        dict with ``train_images`` (50000 x 3 x 32 x 32 uint8), ``train_labels``, ``test_images``,
        ``test_labels``, ``classes``, ``mismatched`` (files whose md5 differs) and ``source``.
    """
    folder = _find_folder(Path(root).expanduser() if root is not None else None, download=download)
    for name in (*_TRAIN_FILES, *_TEST_FILES, _META_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"CIFAR-10 folder {str(folder)!r} has no {name!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_file = cache / "cifar10" / f"{_cache_key(folder)}.pt"
    data = None
    if cache_file.is_file():
        try:
            data = torch.load(cache_file, weights_only=True, mmap=True)
        except Exception:  # a truncated or foreign file: decode again
            data = None
    if data is None or data.get("version") != _CACHE_VERSION:
        data = _decode(folder)
        try:
            _save_atomic(data, cache_file)
        except OSError as e:
            warnings.warn(f"could not cache decoded CIFAR-10 in {str(cache_file)!r}: {e}")
    if data["mismatched"]:
        warnings.warn(
            f"CIFAR-10 files in {str(folder)!r} differ from the official md5 sums "
            f"({', '.join(data['mismatched'])}); reading them anyway",
            UserWarning,
            stacklevel=3,
        )
    data["source"] = str(folder)
    return data
