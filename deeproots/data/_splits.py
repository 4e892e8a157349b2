"""Training/validation/test splits, class-balanced index selection, and batch iteration.

Two kinds of split share one interface (``len``, ``labels``, ``batches``):

* :class:`TensorSplit` -- the whole split as one uint8 ``N x C x H x W`` tensor (CIFAR-sized data).
  It can live on the GPU; shuffling, augmentation and normalisation happen there, in batches.
* :class:`FolderSplit` -- image files decoded by DataLoader workers (ImageNet-sized data).

``batches`` yields float32 normalised images and int64 labels on the requested device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ._augment import normalize, random_crop_flip

__all__ = ["TensorSplit", "FolderSplit", "Split"]


def _num_batches(n: int, batch_size: int, train: bool) -> int:
    """Batches per pass: training drops the last partial batch unless it is the only one."""
    if n == 0:
        return 0
    if train:
        return max(1, n // batch_size)
    return -(-n // batch_size)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


@dataclass(frozen=True, eq=False)
class TensorSplit:
    """A split held as whole tensors, decoded once.

    Attributes:
        images: ``N x C x H x W`` uint8 images.
        labels: ``N`` int64 class indices, aligned with ``images``.
        mean: per-channel mean used for normalisation, in [0, 1] units.
        std: per-channel standard deviation used for normalisation, in [0, 1] units.
        padding: zero padding (pixels per side) of the random crop when training; 0 disables it.
        flip: random horizontal flips when training.
    """

    images: Tensor
    labels: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be an N x C x H x W uint8 tensor, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must hold one entry per image: {tuple(self.labels.shape)} labels "
                f"for {self.images.shape[0]} images"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.images.shape[1:])
        return f"TensorSplit({len(self)} images {shape} uint8 on {self.device})"

    @property
    def device(self) -> torch.device:
        """Device that holds the images."""
        return self.images.device

    def to(self, device: torch.device | str) -> TensorSplit:
        """Return this split with its tensors on ``device`` (itself when already there)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def num_batches(self, batch_size: int, *, train: bool = False) -> int:
        """Number of batches :meth:`batches` yields (training drops a last partial batch)."""
        return _num_batches(len(self), batch_size, train)

    def batches(
        self,
        batch_size: int,
        *,
        train: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)`` batches ready for a model.

        With ``train=True`` the order is shuffled, each batch is augmented (random crop + flip),
        and a last partial batch is dropped unless it is the only one; all randomness comes from
        ``seed``, so an epoch can be replayed exactly. Otherwise the split is read in order.

        Args:
            batch_size: images per batch.
            train: shuffle and augment.
            device: where batches are produced; the split's own device when None. Keep the split
                on the GPU (``split.to("cuda")``) so that nothing crosses PCIe per batch.
            seed: seed of the shuffle and augmentation of this pass.
            memory_format: memory format of the yielded images.

        Yields:
            ``B x C x H x W`` float32 normalised images and ``B`` int64 labels on ``device``.
        """
        _check_batch_size(batch_size)
        device = torch.device(device) if device is not None else self.device
        n = len(self)
        gen = None
        if train:
            gen = torch.Generator(device=self.device).manual_seed(seed)
            order = torch.randperm(n, device=self.device, generator=gen)
        for i in range(self.num_batches(batch_size, train=train)):
            if train:
                idx = order[i * batch_size : (i + 1) * batch_size]
                images, labels = self.images[idx], self.labels[idx]
                images = random_crop_flip(
                    images, padding=self.padding, flip=self.flip, generator=gen
                )
            else:
                images = self.images[i * batch_size : (i + 1) * batch_size]
                labels = self.labels[i * batch_size : (i + 1) * batch_size]
            if images.device != device:  # uint8 over the bus: 4x less than float32
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
            yield normalize(images, self.mean, self.std, memory_format=memory_format), labels


class _FileDataset(Dataset):
    """Images of an ImageFolder picked by index, decoded and transformed to uint8 tensors."""

    def __init__(self, samples: Sequence[tuple[str, int]], loader: Any, transform: Any) -> None:
        self.samples = samples
        self.loader = loader
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        return self.transform(self.loader(path)), label


@dataclass(frozen=True, eq=False)
class FolderSplit:
    """A split of image files read by DataLoader workers (ImageNet-style class folders).

    Workers decode, resize and crop (random-resized crop + flip for training, resize + centre crop
    otherwise) and hand over uint8 tensors; normalisation happens on the target device.

    Attributes:
        samples: ``(path, class index)`` pairs.
        loader: function that opens a path as a PIL image.
        labels: ``N`` int64 class indices, aligned with ``samples``.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation, in [0, 1] units.
        image_size: side of the square crop fed to the model, in pixels.
        workers: DataLoader worker processes.
    """

    samples: tuple[tuple[str, int], ...]
    loader: Any
    labels: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int = 224
    workers: int = 4

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"FolderSplit({len(self)} image files, {self.image_size}px crops)"

    @property
    def device(self) -> torch.device:
        """Files are decoded on the host."""
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> FolderSplit:
        """Files stay on disk: batches are moved when they are produced."""
        return self

    def num_batches(self, batch_size: int, *, train: bool = False) -> int:
        """Number of batches :meth:`batches` yields (training drops a last partial batch)."""
        return _num_batches(len(self), batch_size, train)

    def _transform(self, train: bool) -> Any:
        from torchvision import transforms as T

        if train:
            return T.Compose(
                [T.RandomResizedCrop(self.image_size), T.RandomHorizontalFlip(), T.PILToTensor()]
            )
        resize = round(self.image_size / 0.875)  # 256 for 224, the usual ImageNet evaluation
        return T.Compose([T.Resize(resize), T.CenterCrop(self.image_size), T.PILToTensor()])

    def batches(
        self,
        batch_size: int,
        *,
        train: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)`` batches ready for a model; see :meth:`TensorSplit.batches`.

        The workers' augmentation is seeded through the DataLoader (``seed``), the shuffle too.
        """
        _check_batch_size(batch_size)
        device = torch.device(device) if device is not None else torch.device("cpu")
        n_batches = self.num_batches(batch_size, train=train)
        if n_batches == 0:
            return
        loader = DataLoader(
            _FileDataset(self.samples, self.loader, self._transform(train)),
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(self) >= batch_size,
            num_workers=self.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(seed),
        )
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            yield normalize(images, self.mean, self.std, memory_format=memory_format), labels


Split = Union[TensorSplit, FolderSplit]


def _per_class_counts(total: int, num_classes: int) -> list[int]:
    """Split ``total`` into ``num_classes`` counts that differ by at most one."""
    base, extra = divmod(total, num_classes)
    return [base + (1 if c < extra else 0) for c in range(num_classes)]


def _class_names(classes: Sequence[str] | None, c: int) -> str:
    return repr(classes[c]) if classes is not None and c < len(classes) else str(c)


def _balanced_random(
    labels: Tensor,
    size: int,
    num_classes: int,
    *,
    seed: int,
    what: str,
    classes: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``size`` indices, class-balanced and seeded; return ``(rest, drawn)``, both sorted."""
    gen = torch.Generator().manual_seed(seed)
    drawn = []
    for c, k in enumerate(_per_class_counts(size, num_classes)):
        idx = (labels == c).nonzero().flatten()
        if k > len(idx):
            raise ValueError(
                f"{what}={size} needs {k} images of class {_class_names(classes, c)}, "
                f"only {len(idx)} available"
            )
        drawn.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    taken = torch.cat(drawn).sort().values if drawn else torch.empty(0, dtype=torch.long)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[taken] = False
    return keep.nonzero().flatten(), taken


def _balanced_head(
    labels: Tensor,
    size: int,
    num_classes: int,
    *,
    what: str,
    classes: Sequence[str] | None = None,
) -> Tensor:
    """Positions of the first ``size`` entries of ``labels`` taken class by class, sorted."""
    taken = []
    for c, k in enumerate(_per_class_counts(size, num_classes)):
        idx = (labels == c).nonzero().flatten()
        if k > len(idx):
            raise ValueError(
                f"{what}={size} needs {k} images of class {_class_names(classes, c)}, "
                f"only {len(idx)} available"
            )
        taken.append(idx[:k])
    return torch.cat(taken).sort().values
