"""deeproots.data: CIFAR-format reading and caching, splits, subset, batched augmentation.

CIFAR tests write tiny batches in the official on-disk format into tmp_path, so the real loader
code path runs with no network and no shared data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from deeproots.data import (
    DataBundle,
    TensorSplit,
    load_data,
    normalize,
    random_crop_flip,
)
from deeproots.data import _cifar

CLASSES = [f"c{i}" for i in range(10)]
PER_BATCH = 40  # images per data_batch_N (4 per class)
N_TRAIN = 5 * PER_BATCH
N_TEST = 20


def _image(index: int, label: int) -> np.ndarray:
    """A 3072-byte CIFAR row (R plane, G plane, B plane) that encodes its index and label."""
    rng = np.random.default_rng(index)
    row = rng.integers(0, 256, 3072, dtype=np.uint8)
    row[0], row[1], row[2] = index // 256, index % 256, label  # first pixels of the R plane
    return row


def _index_of(images: torch.Tensor) -> list[int]:
    """Recover each image's global index from the pixels written by ``_image``."""
    flat = images.reshape(len(images), -1).to(torch.int64)
    return (flat[:, 0] * 256 + flat[:, 1]).tolist()


def _write_cifar(folder: Path) -> dict[str, np.ndarray]:
    """Write data_batch_1..5, test_batch and batches.meta like the official archive does."""
    folder.mkdir(parents=True)
    train_labels = np.array([(i * 7) % 10 for i in range(N_TRAIN)])  # balanced, shuffled order
    test_labels = np.array([i % 10 for i in range(N_TEST)])
    train = np.stack([_image(i, int(train_labels[i])) for i in range(N_TRAIN)])
    test = np.stack([_image(N_TRAIN + i, int(test_labels[i])) for i in range(N_TEST)])
    for b in range(5):
        part = slice(b * PER_BATCH, (b + 1) * PER_BATCH)
        entry = {
            "batch_label": f"training batch {b + 1} of 5",
            "labels": train_labels[part].tolist(),
            "data": train[part],
            "filenames": [f"img{i}.png" for i in range(PER_BATCH)],
        }
        with (folder / f"data_batch_{b + 1}").open("wb") as f:
            pickle.dump(entry, f, protocol=2)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({"labels": test_labels.tolist(), "data": test}, f, protocol=2)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": PER_BATCH}, f, protocol=2)
    return {"train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels}


@pytest.fixture()
def cifar(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path / "data"
    written = _write_cifar(root / "cifar-10-batches-py")
    return root, tmp_path / "cache", written


def _load(root: Path, cache: Path, **kw) -> DataBundle:
    with pytest.warns(UserWarning, match="md5"):
        return load_data("cifar10", root, cache_dir=cache, download=False, **kw)


def test_cifar_reads_pickles_and_warns_on_checksums(cifar) -> None:
    root, cache, written = cifar
    data = _load(root, cache, val_size=20)
    assert data.name == "cifar10" and data.num_classes == 10 and data.classes == tuple(CLASSES)
    assert data.input_size == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (N_TRAIN - 20, 20, N_TEST)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.info["checksums_match"] is False
    # Pixels: row layout R(1024) G(1024) B(1024) becomes C x H x W, labels stay aligned.
    expected = torch.from_numpy(written["test"]).reshape(-1, 3, 32, 32)
    assert torch.equal(data.test.images, expected)
    assert data.test.labels.tolist() == written["test_labels"].tolist()
    for split in (data.train, data.val):
        idx = _index_of(split.images)
        assert split.labels.tolist() == written["train_labels"][idx].tolist()
        assert split.labels.tolist() == split.images[:, 0, 0, 2].tolist()  # label pixel


def test_cifar_decoded_once_then_cached(cifar, monkeypatch) -> None:
    root, cache, _ = cifar
    first = _load(root, cache, val_size=20)
    assert len(list((cache / "cifar10").glob("*.pt"))) == 1

    def no_decode(folder: Path) -> None:
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(_cifar, "_decode", no_decode)
    second = _load(root, cache, val_size=20)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.val.labels, second.val.labels)


def test_cifar_root_may_be_the_batches_folder(cifar) -> None:
    root, cache, _ = cifar
    data = _load(root / "cifar-10-batches-py", cache, val_size=10)
    assert len(data.test) == N_TEST


def test_missing_root_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data("cifar10", tmp_path / "nope", download=False)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_data("cifar10", tmp_path, download=False, cache_dir=tmp_path)


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_data("mnist")
    with pytest.raises(ValueError, match="unknown option.*colour"):
        load_data("synthetic", colour=True)
    with pytest.raises(ValueError, match="subset"):
        load_data("synthetic", subset=0)
    with pytest.raises(ValueError, match="val_size=5000 needs 500 images"):
        load_data("synthetic", num_train=200)


def test_validation_split_seeded_balanced_and_disjoint(cifar) -> None:
    root, cache, _ = cifar
    a = _load(root, cache, val_size=30, seed=1)
    b = _load(root, cache, val_size=30, seed=1)
    c = _load(root, cache, val_size=30, seed=2)
    assert _index_of(a.val.images) == _index_of(b.val.images)
    assert _index_of(a.val.images) != _index_of(c.val.images)
    assert a.val.labels.bincount(minlength=10).tolist() == [3] * 10
    train, val = set(_index_of(a.train.images)), set(_index_of(a.val.images))
    assert not train & val and len(train | val) == N_TRAIN


def test_subset_is_first_balanced_images_and_keeps_validation(cifar) -> None:
    root, cache, written = cifar
    full = _load(root, cache, val_size=30, seed=0)
    sub = _load(root, cache, val_size=30, seed=0, subset=50)
    assert torch.equal(full.val.images, sub.val.images)  # same validation at every fidelity
    assert sub.train.labels.bincount(minlength=10).tolist() == [5] * 10
    sub_idx, val_idx = _index_of(sub.train.images), set(_index_of(sub.val.images))
    assert not set(sub_idx) & val_idx
    remaining = [i for i in range(N_TRAIN) if i not in val_idx]
    expected = sorted(
        i for c in range(10) for i in [j for j in remaining if written["train_labels"][j] == c][:5]
    )
    assert sub_idx == expected
    with pytest.raises(ValueError, match="subset=1000 needs 100 images of class 'c0'"):
        _load(root, cache, val_size=30, subset=1000)


def test_synthetic_is_seeded_and_balanced() -> None:
    a = load_data("synthetic", num_train=300, num_test=50, val_size=100, subset=100)
    b = load_data("synthetic", num_train=300, num_test=50, val_size=100, subset=100)
    other = load_data("synthetic", num_train=300, num_test=50, val_size=100, data_seed=1)
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.test.images, other.test.images)
    assert a.train.labels.bincount().tolist() == [10] * 10
    assert a.val.labels.bincount().tolist() == [10] * 10
    assert load_data("synthetic", input_size=(1, 8, 8), num_classes=3, val_size=3).input_size == (
        1,
        8,
        8,
    )


def test_no_validation_split() -> None:
    data = load_data("synthetic", num_train=100, num_test=10, val_size=0)
    assert data.val is None and len(data.train) == 100


def _by_index(n: int) -> torch.Tensor:
    """Images whose every pixel is 1 + their position in the batch."""
    return (torch.arange(n, dtype=torch.uint8) + 1).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()


def test_random_crop_flip_keeps_shape_dtype_and_alignment() -> None:
    x = _by_index(64)
    out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(64):
        values = out[i].unique().tolist()
        assert set(values) <= {0, i + 1}  # padding zeros or the image's own pixels
        assert (out[i] == i + 1).sum() >= 3 * 28 * 28  # at most 4 pixels shifted away
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)


def test_random_crop_flip_matches_per_image_crop_and_flip() -> None:
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # replay the draws in the same order
    dy = torch.randint(0, 5, (32,), generator=gen)
    dx = torch.randint(0, 5, (32,), generator=gen)
    flip = torch.randint(0, 2, (32, 1), generator=gen).bool().flatten()
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(32):
        crop = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert 0 < int(flip.sum()) < 32 and len(set(dx.tolist())) > 1


def test_normalize_and_memory_format() -> None:
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    out = normalize(x, mean, std, memory_format=torch.channels_last)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, ref, atol=1e-5)


def test_training_batches_shuffle_augment_and_stay_aligned() -> None:
    n = 100
    images = _by_index(n)
    split = TensorSplit(images, torch.arange(n), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    batches = list(split.batches(32, train=True, seed=5))
    assert [len(y) for _, y in batches] == [32, 32, 32]  # last partial batch dropped
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == 96 and seen.tolist() != sorted(seen.tolist())
    for x, y in batches:
        pixels = (x * 255).round().long()
        for img, label in zip(pixels, y):
            assert set(img.unique().tolist()) <= {0, int(label) + 1}
    again = torch.cat([y for _, y in split.batches(32, train=True, seed=5)])
    assert torch.equal(seen, again)  # a seed replays the epoch
    ordered = list(split.batches(32))  # evaluation: in order, all images, no augmentation
    assert [len(y) for _, y in ordered] == [32, 32, 32, 4]
    assert torch.equal(torch.cat([y for _, y in ordered]), torch.arange(n))
    assert torch.equal((ordered[0][0] * 255).round().to(torch.uint8), images[:32])
    tiny = TensorSplit(images[:10], torch.arange(10), (0.0,) * 3, (1.0,) * 3)
    assert [len(y) for _, y in tiny.batches(32, train=True)] == [10]  # never zero steps


def test_imagefolder_splits_and_batches(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / part / cls / f"{i}.png")
    data = load_data("imagefolder", tmp_path, val_size=4, subset=6, image_size=32, workers=0)
    assert data.classes == ("cat", "dog") and data.input_size == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 4, 4)
    assert data.train.labels.bincount().tolist() == [3, 3]
    assert not {p for p, _ in data.train.samples} & {p for p, _ in data.val.samples}
    (x, y), = list(data.train.batches(8, train=True))  # fmt: skip
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and len(y) == 6
    assert [len(y) for _, y in data.test.batches(3)] == [3, 1]
    with pytest.raises(FileNotFoundError, match="has no train/ folder"):
        load_data("imagefolder", tmp_path / "train", val_size=0)
