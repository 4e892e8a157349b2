"""deeproots.data: CIFAR-format reading and caching, splits, subset, batched augmentation.

CIFAR tests write tiny batches in the official on-disk format into tmp_path, so the real loader
code path runs with no network and no shared data.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from deeproots.data import (
    DataBundle,
    DataError,
    TensorSplit,
    dataset_info,
    load_data,
    normalize,
    random_crop_flip,
)
from deeproots.data import _cifar, _folder

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


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's $DEEPROOTS_DATA or writes into their cache."""
    monkeypatch.delenv("DEEPROOTS_DATA", raising=False)
    monkeypatch.setenv("DEEPROOTS_CACHE", str(tmp_path / "default-cache"))


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
    with pytest.raises(DataError, match="does not exist"):
        load_data("cifar10", tmp_path / "nope", download=False)
    with pytest.raises(DataError, match="no cifar-10-batches-py folder in"):
        load_data("cifar10", tmp_path, download=False, cache_dir=tmp_path)
    with pytest.raises(DataError) as e:  # no root, nothing in $DEEPROOTS_DATA or the cache, no download
        dataset_info("cifar10", download=False, cache_dir=tmp_path / "cache")
    assert "CIFAR-10 not found (DEEPROOTS_DATA unset" in str(e.value)
    assert "data.root" in str(e.value) and "set DEEPROOTS_DATA" in str(e.value) and "\n" not in str(e.value)


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_data("mnist")
    with pytest.raises(ValueError, match="unknown option.*colour"):
        load_data("synthetic", colour=True)
    with pytest.raises(ValueError, match="subset"):
        load_data("synthetic", subset=0)
    with pytest.raises(DataError, match="val_size=5,000 leaves none of the 200 training images of synthetic"):
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
    with pytest.raises(DataError, match=r"subset=1,000 \+ val_size=30 exceeds the 200 training images of cifar10 .*at most 170"):
        load_data("cifar10", root, cache_dir=cache, download=False, val_size=30, subset=1000)


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
    data = load_data("imagefolder", tmp_path, val_size=4, subset=6, image_size=32, workers=0, cache_dir=tmp_path / "c")
    assert data.classes == ("cat", "dog") and data.input_size == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 4, 4)
    assert data.train.labels.bincount().tolist() == [3, 3]
    assert not {p for p, _ in data.train.samples} & {p for p, _ in data.val.samples}
    (x, y), = list(data.train.batches(8, train=True))  # fmt: skip
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and len(y) == 6
    assert [len(y) for _, y in data.test.batches(3)] == [3, 1]
    with pytest.raises(DataError, match="has no train/ folder"):
        load_data("imagefolder", tmp_path / "train", val_size=0)


# ------------------------------------------------------------------ damaged and misplaced data


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_truncate, "not a readable pickle"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("<html>Service unavailable</html>"), "not a readable pickle"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4})), "expected N x 3072"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3})), "3 labels for 4 images"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})), "label 10 but 10 classes"),
    ],
    ids=["truncated", "empty", "html", "shape", "labels", "label-range"],
)
def test_a_damaged_cifar_batch_is_one_line_naming_the_file(cifar, damage, why: str) -> None:
    root, cache, _ = cifar
    bad = root / "cifar-10-batches-py" / "data_batch_3"
    damage(bad)
    for call in (lambda: dataset_info("cifar10", root, cache_dir=cache), lambda: _load_quiet(root, cache)):
        with pytest.raises(DataError) as e:
            call()
        message = str(e.value)
        assert message.startswith(f"CIFAR-10 file {bad} is damaged (") and why in message, message
        assert "download it again" in message and "\n" not in message
        assert e.value.path == str(bad)


def _load_quiet(root: Path, cache: Path, **kw) -> DataBundle:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the md5 warning of hand-made batches
        return load_data("cifar10", root, cache_dir=cache, download=False, **kw)


def test_dataset_info_counts_and_fingerprints_cifar_without_decoding(cifar, tmp_path: Path, monkeypatch) -> None:
    root, cache, _ = cifar
    info = dataset_info("cifar10", root, cache_dir=cache, download=False)
    assert (info.num_train, info.num_test, info.num_classes, info.input_size) == (N_TRAIN, N_TEST, 10, (3, 32, 32))
    assert info.classes == tuple(CLASSES) and info.root == str(root / "cifar-10-batches-py")
    assert info.fingerprint.startswith("sha256:") and len(info.fingerprint) == 7 + 64
    assert _load_quiet(root, cache, val_size=20).info["fingerprint"] == info.fingerprint
    monkeypatch.setattr(_cifar, "_decode", lambda folder: pytest.fail("dataset_info decoded the batches"))

    def no_reading(path: Path) -> None:
        raise AssertionError(f"{path} read again although its size and mtime did not change")

    with monkeypatch.context() as m:
        m.setattr(_cifar, "_file_facts", no_reading)
        assert dataset_info("cifar10", root, cache_dir=cache) == info  # answered from the cache
    # identity by content: the same files elsewhere give the same fingerprint, a changed file another one
    other = tmp_path / "elsewhere"
    shutil.copytree(root, other)
    assert dataset_info("cifar10", other, cache_dir=cache).fingerprint == info.fingerprint
    label_swap = other / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(label_swap.read_bytes())
    entry["labels"] = entry["labels"][::-1]
    label_swap.write_bytes(pickle.dumps(entry, protocol=2))
    assert dataset_info("cifar10", other, cache_dir=cache).fingerprint != info.fingerprint


def test_deeproots_data_names_the_folder_when_no_root_is_given(cifar, tmp_path: Path, monkeypatch) -> None:
    root, cache, _ = cifar
    monkeypatch.setenv("DEEPROOTS_DATA", str(root))
    info = dataset_info("cifar10", cache_dir=cache, download=False)
    assert info.root == str(root / "cifar-10-batches-py")
    assert len(_load_quiet(None, cache, val_size=20).test) == N_TEST  # type: ignore[arg-type]
    monkeypatch.setenv("DEEPROOTS_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"DEEPROOTS_DATA=.*missing is not a folder"):
        dataset_info("cifar10", cache_dir=cache, download=False)
    monkeypatch.setenv("DEEPROOTS_DATA", str(tmp_path))  # a folder without CIFAR-10: the cache comes next
    with pytest.raises(DataError, match=r"CIFAR-10 not found \(DEEPROOTS_DATA=.*, none in .*cache"):
        dataset_info("cifar10", cache_dir=cache / "empty", download=False)


def test_a_failed_download_is_a_data_error_naming_the_fix(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs) -> None:
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError) as e:
        load_data("cifar10", cache_dir=tmp_path)
    assert str(e.value).startswith(f"could not download CIFAR-10 into {tmp_path / 'data'} (OSError: [Errno -3]")
    assert "set DEEPROOTS_DATA" in str(e.value) and "\n" not in str(e.value)


def test_sizes_that_cannot_fit_name_the_argument(cifar) -> None:
    root, cache, _ = cifar
    info = dataset_info("cifar10", root, cache_dir=cache)
    with pytest.raises(DataError) as e:
        info.check_sizes(val_size=60_000)
    assert e.value.key == "val_size" and f"leaves none of the {N_TRAIN} training images" in str(e.value)
    with pytest.raises(DataError) as e:
        info.check_sizes(val_size=50, subset=151)
    assert e.value.key == "subset" and "subset can be at most 150" in str(e.value)
    info.check_sizes(val_size=50, subset=150)
    info.check_sizes(val_size=N_TRAIN - 1)
    with pytest.raises(DataError, match="val_size=200 leaves none"):
        _load_quiet(root, cache, val_size=N_TRAIN)


def test_data_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(DataError("damaged image x.jpg", path="x.jpg", key=None)))
    assert (str(error), error.path, error.key, isinstance(error, ValueError)) == ("damaged image x.jpg", "x.jpg", None, True)


def _image_tree(root: Path, per_class: dict[str, int] | None = None) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / part / cls / f"{i}.jpg")


def test_imagefolder_ignores_hidden_files_and_folders(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "images"
    _image_tree(root)
    (root / "train" / ".ipynb_checkpoints").mkdir()  # was refused as an empty class
    (root / "val" / ".ipynb_checkpoints").mkdir()
    (root / "train" / ".thumbnails").mkdir()  # a hidden folder holding a JPEG: was an extra class
    Image.new("RGB", (8, 8)).save(root / "train" / ".thumbnails" / "t.jpg")
    (root / "train" / "cat" / ".cache").mkdir()  # hidden folder inside a class: was extra images
    Image.new("RGB", (8, 8)).save(root / "train" / "cat" / ".cache" / "c.jpg")
    (root / "train" / "dog" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")  # crashed mid-epoch
    (root / "val" / "dog" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    info = dataset_info("imagefolder", root, cache_dir=tmp_path / "c", verify=True, image_size=64)
    assert (info.classes, info.num_train, info.num_test, info.input_size) == (("cat", "dog"), 12, 4, (3, 64, 64))
    data = load_data("imagefolder", root, val_size=4, image_size=32, workers=0, cache_dir=tmp_path / "c")
    paths = [p for split in (data.train, data.val, data.test) for p, _ in split.samples]
    assert len(paths) == 16 and not any("/." in p for p in paths)
    clean = tmp_path / "clean"
    _image_tree(clean)
    assert dataset_info("imagefolder", clean).fingerprint == info.fingerprint  # hidden entries are not data
    (clean / "train" / "cat" / "0.jpg").rename(clean / "train" / "cat" / "9.jpg")
    assert dataset_info("imagefolder", clean).fingerprint != info.fingerprint


def test_a_damaged_image_fails_before_training_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    root, cache = tmp_path / "images", tmp_path / "cache"
    _image_tree(root)
    bad = root / "train" / "dog" / "4.jpg"
    _truncate(bad)
    (root / "val" / "cat" / "1.jpg").write_text("not an image")
    with pytest.raises(DataError) as e:
        load_data("imagefolder", root, val_size=2, workers=2, cache_dir=cache)
    message = str(e.value)
    assert message.startswith(f"damaged image {bad}: OSError: ") and "\n" not in message  # PIL: "Truncated File Read"
    assert "(and 1 more damaged image(s)); remove or replace it" in message and e.value.path == str(bad)
    from PIL import Image

    Image.new("RGB", (24, 32)).save(bad)  # replaced: the other one is reported now
    with pytest.raises(DataError, match=r"^damaged image .*val/cat/1\.jpg: UnidentifiedImageError: cannot identify image file"):
        dataset_info("imagefolder", root, verify=True, cache_dir=cache)  # the listing alone does not open images
    assert dataset_info("imagefolder", root, cache_dir=cache).num_train == 12
    _image_tree(root)  # both files written again: new size / mtime
    load_data("imagefolder", root, val_size=2, workers=0, cache_dir=cache)

    def no_decoding(path: str) -> None:
        raise AssertionError(f"{path} decoded again although its size and mtime did not change")

    monkeypatch.setattr(_folder, "_check_image", no_decoding)
    load_data("imagefolder", root, val_size=2, workers=0, cache_dir=cache)  # every image verified before


def test_train_cli_reports_damaged_data_in_one_line_exit_2(cifar, tmp_path: Path, capsys) -> None:
    from deeproots.train import main

    root, cache, _ = cifar
    _truncate(root / "cifar-10-batches-py" / "test_batch")
    images = tmp_path / "images"
    _image_tree(images)
    _truncate(images / "val" / "dog" / "1.jpg")
    runs = {
        "cifar10": ["--dataset", "cifar10", "--data-root", str(root)],
        "imagefolder": ["--dataset", "imagefolder", "--data-root", str(images), "--image-size", "32", "--workers", "2"],
    }
    for dataset, args in runs.items():
        code = main(["--arch", "nin", *args, "--cache-dir", str(cache), "--val-size", "2", "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith("python -m deeproots.train: error: ")
        assert ("test_batch is damaged" if dataset == "cifar10" else "damaged image") in err
