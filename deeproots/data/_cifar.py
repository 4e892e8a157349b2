"""CIFAR-10: find an extracted ``cifar-10-batches-py`` folder (or download it), check it, decode it once.

torchvision's ``CIFAR10`` checks the official md5 sums on every construction and refuses a folder
whose files differ (such as a copy rebuilt from another lossless source). Here the pickles are read
directly; differing checksums give a warning, not an error. torchvision is still used to download.

Every file is checked before use -- a readable pickle holding ``N x 3072`` uint8 images and ``N``
labels below the number of classes -- and a damaged one (truncated, empty, foreign) is a
:class:`DataError` naming the file. The check, the SHA-256 of each file and the image counts are
cached by file size and modification time, so :func:`inspect` is instant after its first call.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._cache import DATA_ENV, _save_atomic, cached_file_facts, default_cache_dir, env_data_root
from ._errors import DataError

FOLDER = "cifar-10-batches-py"
MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50,000 training images, [0, 1] units
STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the 50,000 training images, [0, 1] units
# CIFAR-10 as published (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009):
# the sizes checks can use before the data is at hand. A copy's own counts come from inspect().
NUM_TRAIN = 50_000  # training images (data_batch_1..5)
NUM_TEST = 10_000  # test images (test_batch)
NUM_CLASSES = 10
INPUT_SIZE = (3, 32, 32)  # C, H, W
_PIXELS = 3 * 32 * 32  # bytes per image row: 1024 R, then 1024 G, then 1024 B
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILES = ("test_batch",)
_META_FILE = "batches.meta"
_ALL_FILES = (*_TRAIN_FILES, *_TEST_FILES, _META_FILE)
_CACHE_VERSION = 1
_FIX = "download it again (delete the folder; load_data downloads when allowed) or copy it again from an intact copy"


def _official_md5() -> dict[str, str]:
    from torchvision.datasets import CIFAR10

    sums = dict(CIFAR10.train_list + CIFAR10.test_list)
    sums[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return sums


def _damaged(path: Path, why: str) -> DataError:
    return DataError(f"CIFAR-10 file {path} is damaged ({why}); {_FIX}", path)


def _unpickle(raw: bytes, path: Path) -> Any:
    if not raw:
        raise _damaged(path, "empty file")
    try:
        return pickle.loads(raw, encoding="latin1")
    except Exception as e:  # truncated (EOFError, UnpicklingError), foreign bytes (anything pickle raises)
        reason = str(e).splitlines()[0] if str(e) else ""
        raise _damaged(path, f"not a readable pickle: {type(e).__name__}{': ' + reason if reason else ''}") from None


def _parse_batch(raw: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N x 3072 uint8 images, N int64 labels)`` of one batch file, or :class:`DataError`."""
    entry = _unpickle(raw, path)
    key = "labels" if isinstance(entry, dict) and "labels" in entry else "fine_labels"
    if not isinstance(entry, dict) or "data" not in entry or key not in entry:
        raise _damaged(path, "not a CIFAR batch: no 'data' and 'labels' entries")
    data = np.asarray(entry["data"])
    if data.ndim != 2 or data.shape[1] != _PIXELS or data.dtype.kind not in "ui":
        raise _damaged(path, f"'data' is {data.dtype} {tuple(data.shape)}, expected N x {_PIXELS} bytes")
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise _damaged(path, "'data' holds values outside 0..255")
        data = data.astype(np.uint8)
    try:
        labels = np.asarray(entry[key], dtype=np.int64)
    except (TypeError, ValueError):
        raise _damaged(path, "labels are not integers") from None
    if labels.shape != (len(data),):
        raise _damaged(path, f"{labels.size} labels for {len(data)} images")
    if labels.size and labels.min() < 0:
        raise _damaged(path, "negative labels")
    return data, labels


def _parse_meta(raw: bytes, path: Path) -> list[str]:
    entry = _unpickle(raw, path)
    names = entry.get("label_names") if isinstance(entry, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise _damaged(path, "no list of 'label_names'")
    return list(names)


def _file_facts(path: Path) -> dict[str, Any]:
    """SHA-256 and contents summary of one file, after the same checks decoding makes."""
    raw = path.read_bytes()
    facts: dict[str, Any] = {"sha256": hashlib.sha256(raw).hexdigest()}
    if path.name == _META_FILE:
        facts["classes"] = _parse_meta(raw, path)
    else:
        data, labels = _parse_batch(raw, path)
        facts["images"] = len(data)
        facts["max_label"] = int(labels.max()) if labels.size else -1
    return facts


def _holds(folder: Path) -> Path | None:
    """The ``cifar-10-batches-py`` folder in (or at) ``folder``, if there is one."""
    if folder.name == FOLDER and (folder / _META_FILE).exists():
        return folder
    if (folder / FOLDER).is_dir():
        return folder / FOLDER
    return None


def find_folder(root: Path | None, *, download: bool, cache_dir: Path) -> Path:
    """The extracted ``cifar-10-batches-py`` folder to read, downloading it when allowed.

    Looked for in ``root`` when given; else in ``$DEEPROOTS_DATA``, then in ``<cache_dir>/data``
    (where a download goes).

    Raises:
        DataError: ``root`` (or ``$DEEPROOTS_DATA``) is not a folder; no copy and ``download=False``;
            the download failed. The message says where to put the data.
    """
    where = f"pass root= (data.root in a space, --data-root on the command line) or set {DATA_ENV} to a folder that holds {FOLDER}"
    if root is not None:
        if not root.is_dir():
            raise DataError(f"data root {str(root)!r} does not exist or is not a folder; {where}", root, key="root")
        found = _holds(root)
        if found is not None:
            return found
        if not download:
            raise DataError(f"no {FOLDER} folder in {root} (and download=False); put the extracted folder there", root, key="root")
        return _download(root, where)
    env = env_data_root()
    if env is not None:
        if not env.is_dir():
            raise DataError(f"{DATA_ENV}={env} is not a folder; point it at the folder that holds {FOLDER} or unset it", env)
        found = _holds(env)
        if found is not None:
            return found
    target = cache_dir / "data"
    found = _holds(target)
    if found is not None:
        return found
    if not download:
        looked = f"{DATA_ENV}={env}, " if env is not None else f"{DATA_ENV} unset, "
        raise DataError(f"CIFAR-10 not found ({looked}none in {target}) and download=False; {where}", target, key="root")
    return _download(target, where)


def _download(root: Path, where: str) -> Path:
    from torchvision.datasets import CIFAR10

    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network or disk trouble: one clear line
        reason = str(e).splitlines()[0] if str(e) else ""
        raise DataError(
            f"could not download CIFAR-10 into {root} ({type(e).__name__}{': ' + reason if reason else ''}); "
            f"without internet, {where}",
            root,
        ) from e
    found = _holds(root)
    if found is None:
        raise DataError(f"the CIFAR-10 download into {root} left no {FOLDER} folder; {where}", root)
    return found


def inspect(folder: Path, cache_dir: Path) -> dict[str, Any]:
    """Check every file of ``folder`` and summarise it, without decoding to tensors (cached per file).

    Returns:
        dict with ``classes``, ``num_train``, ``num_test``, ``fingerprint`` (``"sha256:<hex>"`` over
        the files' SHA-256 sums: the data's identity, wherever it sits) and ``folder``.

    Raises:
        DataError: a missing or damaged file, naming it.
    """
    facts: dict[str, dict[str, Any]] = {}
    for name in _ALL_FILES:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 folder {folder} has no {name!r}; copy the whole {FOLDER} folder again or download it", folder)
        facts[name] = cached_file_facts(path, "cifar10", _file_facts, cache_dir)
    classes = facts[_META_FILE]["classes"]
    for name in (*_TRAIN_FILES, *_TEST_FILES):
        if facts[name]["max_label"] >= len(classes):
            raise _damaged(folder / name, f"label {facts[name]['max_label']} but {len(classes)} classes in {_META_FILE}")
    digest = hashlib.sha256("".join(f"{n} {facts[n]['sha256']}\n" for n in sorted(facts)).encode()).hexdigest()
    return {
        "classes": classes,
        "num_train": sum(facts[n]["images"] for n in _TRAIN_FILES),
        "num_test": sum(facts[n]["images"] for n in _TEST_FILES),
        "fingerprint": f"sha256:{digest}",
        "folder": str(folder),
    }


def _read_batches(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    data, labels, md5 = [], [], {}
    for name in names:
        raw = (folder / name).read_bytes()
        md5[name] = hashlib.md5(raw).hexdigest()
        images, targets = _parse_batch(raw, folder / name)
        data.append(images)
        labels.append(targets)
    images = torch.from_numpy(np.concatenate(data).reshape(-1, *INPUT_SIZE))  # N x 3 x 32 x 32
    return images, torch.from_numpy(np.concatenate(labels)), md5


def _decode(folder: Path) -> dict[str, Any]:
    """Read every batch and check the files against the official md5 sums."""
    train_images, train_labels, md5 = _read_batches(folder, _TRAIN_FILES)
    test_images, test_labels, md5_test = _read_batches(folder, _TEST_FILES)
    raw_meta = (folder / _META_FILE).read_bytes()
    md5.update(md5_test, **{_META_FILE: hashlib.md5(raw_meta).hexdigest()})
    classes = _parse_meta(raw_meta, folder / _META_FILE)
    official = _official_md5()
    return {
        "version": _CACHE_VERSION,
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "classes": classes,
        "mismatched": [n for n in sorted(official) if md5.get(n) != official[n]],
    }


def _cache_key(folder: Path) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{folder.resolve()}".encode())
    for name in _ALL_FILES:
        st = (folder / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_cifar10(
    root: str | Path | None, *, download: bool = True, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Return CIFAR-10 as uint8/int64 tensors, decoding the pickles only on the first call.

    Args:
        root: folder holding ``cifar-10-batches-py`` (or that folder itself); None: ``$DEEPROOTS_DATA``,
            then ``<cache dir>/data``, downloading there when needed.
        download: download through torchvision when no copy is found.
        cache_dir: where the decoded tensors (and a default download) are kept; :func:`default_cache_dir`
            when None.

    Returns:
        dict with ``train_images`` (N x 3 x 32 x 32 uint8, N = 50,000 for the published set),
        ``train_labels``, ``test_images``, ``test_labels``, ``classes``, ``mismatched`` (files whose
        md5 differs from the official), ``source`` (the folder read) and ``fingerprint``.

    Raises:
        DataError: no copy (and no download possible), a missing or damaged file -- one line naming
            it and the fix.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = find_folder(Path(root).expanduser() if root is not None else None, download=download, cache_dir=cache)
    facts = inspect(folder, cache)
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
    data["fingerprint"] = facts["fingerprint"]
    return data
