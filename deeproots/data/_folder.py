"""ImageFolder data (ImageNet or a user's own): ``train/`` and ``val/`` class folders.

The files are listed as torchvision's ``ImageFolder`` lists them (class folders sorted by name,
files in sorted walk order, symbolic links followed, torchvision's image extensions), except that
every file and folder whose name starts with ``.`` is ignored: ``.ipynb_checkpoints`` is not a class,
a ``.thumbnails`` folder adds no images, macOS ``._x.jpg`` sidecars are not images.

:func:`verify` decodes images once before training and fails on the first damaged one with one line
naming the file (a truncated JPEG would otherwise end a run mid-epoch, in a DataLoader worker). What
it has checked is remembered by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._cache import DATA_ENV, env_data_root
from ._errors import DataError

MEAN = (0.485, 0.456, 0.406)  # ImageNet per-channel mean, [0, 1] units
STD = (0.229, 0.224, 0.225)  # ImageNet per-channel std, [0, 1] units
_WHERE = f"pass root= (data.root in a space, --data-root on the command line) or set {DATA_ENV}"


def find_root(root: str | Path | None) -> Path:
    """The ImageFolder root to read: ``root``, else ``$DEEPROOTS_DATA``; it must hold ``train/`` and ``val/``.

    Raises:
        DataError: no root given or set, or one without ``train/`` and ``val/`` folders.
    """
    if root is None:
        root = env_data_root()
        if root is None:
            raise DataError(f"dataset 'imagefolder' needs a folder with train/ and val/ class folders; {_WHERE}", key="root")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data root {str(root)!r} does not exist or is not a folder; {_WHERE} to a folder with train/ and val/", root, key="root"
        )
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise DataError(
                f"imagefolder root {root} has no {part}/ folder; {_WHERE} to a folder with train/ and val/", root, key="root"
            )
    return root


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _list_part(folder: Path) -> tuple[list[str], list[tuple[str, int]], list[tuple[int, int]]]:
    """(classes, (path, class) samples, (size, mtime_ns) per sample) of one split folder."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name))
    if not classes:
        raise DataError(f"{folder} holds no class folder (one folder of images per class)", folder)
    samples: list[tuple[str, int]] = []
    stats: list[tuple[int, int]] = []
    empty = []
    for index, name in enumerate(classes):
        walked = []
        for here, dirs, files in os.walk(os.path.join(str(folder), name), followlinks=True):
            dirs[:] = [d for d in dirs if _visible(d)]  # prune hidden folders before the walk enters them
            walked.append((here, files))
        before = len(samples)
        for here, files in sorted(walked):  # torchvision's order: sorted walk, then sorted names
            for fname in sorted(files):
                path = os.path.join(here, fname)
                if _visible(fname) and has_file_allowed_extension(path, IMG_EXTENSIONS):
                    st = os.stat(path)
                    samples.append((path, index))
                    stats.append((st.st_size, st.st_mtime_ns))
        if len(samples) == before:
            empty.append(name)
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(empty)} of {folder} hold no image ({', '.join(IMG_EXTENSIONS)}); "
            "add images or remove the folder",
            folder / empty[0],
        )
    return classes, samples, stats


def scan_image_folder(root: str | Path | None) -> dict[str, Any]:
    """List the images of ``root/train`` and ``root/val`` (no image is opened).

    Args:
        root: the ImageFolder root; None: ``$DEEPROOTS_DATA``.

    Returns:
        dict with ``train_samples`` / ``test_samples`` (``(path, class)`` tuples), their labels as
        int64 tensors, ``classes``, ``loader`` (opens a path as an RGB PIL image), ``source``,
        ``stats`` (path -> (size, mtime_ns)) and ``fingerprint`` (``"sha256:<hex>"`` of the relative
        paths and sizes of every image: the data's identity, wherever it sits).

    Raises:
        DataError: a missing folder, no class folders, an empty class, ``val/`` classes that differ
            from ``train/``'s.
    """
    from torchvision.datasets.folder import default_loader

    root = find_root(root)
    classes, train, train_stats = _list_part(root / "train")
    val_classes, test, test_stats = _list_part(root / "val")
    if val_classes != classes:
        only = sorted(set(classes) ^ set(val_classes))
        raise DataError(
            f"class folders of {root / 'val'} differ from those of {root / 'train'} "
            f"({', '.join(only[:5]) or 'order'}{' ...' if len(only) > 5 else ''}); both need the same classes",
            root / "val",
        )
    digest = hashlib.sha256()
    for (path, label), (size, _) in zip(train + test, train_stats + test_stats):
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0{size}\n".encode())
    return {
        "train_samples": tuple(train),
        "train_labels": torch.tensor([c for _, c in train], dtype=torch.int64),
        "test_samples": tuple(test),
        "test_labels": torch.tensor([c for _, c in test], dtype=torch.int64),
        "classes": classes,
        "loader": default_loader,
        "source": str(root),
        "stats": {p: s for (p, _), s in zip(train + test, train_stats + test_stats)},
        "fingerprint": f"sha256:{digest.hexdigest()}",
    }


def _check_image(path: str) -> str | None:
    """None if ``path`` decodes, else PIL's reason (one line)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; every byte of the scan is still read
            im.load()
    except Exception as e:  # UnidentifiedImageError, OSError("image file is truncated ..."), ...
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
    return None


def _key(path: str, size: int, mtime_ns: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{path}\0{size}\0{mtime_ns}".encode(), digest_size=8).digest(), "little")


def verify(paths: list[str], stats: dict[str, tuple[int, int]], cache_dir: Path, workers: int = 1) -> None:
    """Decode every image of ``paths`` that was not verified before at its current size and mtime.

    Args:
        paths: image files, in the order a failure is reported in.
        stats: path -> (size in bytes, mtime in ns), as listed.
        cache_dir: holds ``imagefolder/verified.npy``, the keys of the files known to decode.
        workers: decoding threads (PIL releases the GIL while it decodes).

    Raises:
        DataError: a file does not decode: one line naming the first such file (and how many more).
    """
    store = cache_dir / "imagefolder" / "verified.npy"
    try:
        known = np.load(store, allow_pickle=False)
    except (OSError, ValueError):
        known = np.zeros(0, dtype=np.uint64)
    keys = np.array([_key(p, *stats[p]) for p in paths], dtype=np.uint64)
    todo = [p for p, seen in zip(paths, np.isin(keys, known)) if not seen]
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(_check_image, todo))
    bad = [(p, r) for p, r in zip(todo, reasons) if r is not None]
    good = np.array([_key(p, *stats[p]) for p, r in zip(todo, reasons) if r is None], dtype=np.uint64)
    if good.size:
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f".{store.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, np.union1d(known, good))
            os.replace(tmp, store)
        except OSError:
            pass  # an unwritable cache only means verifying again next time
    if bad:
        path, reason = bad[0]
        more = f" (and {len(bad) - 1} more damaged image(s))" if len(bad) > 1 else ""
        raise DataError(f"damaged image {path}: {reason}{more}; remove or replace it", path)
