"""Throughput of the deeproots trainer against a compute-only loop and the textbook loader.

In one run, on the same model, batch size and memory format, images per second of:

  (a) ``deeproots.fit`` with its defaults -- the trainer as a search trial runs it (here with no
      validation split), in the precision ``TrainConfig()`` resolves to on this machine (bf16
      autocast on CPUs with native bf16, see ``deeproots.resolve_precision``); its own figure,
      which times the whole training phase of the epoch (drawing, augmenting, normalising and
      moving batches, forward, backward, optimiser and scheduler steps, weight averaging, loss
      checks); its CPU time is that of the whole ``fit`` call;
  (b) a compute-only loop in the trainer's precision, layout and recipe (optimiser, schedule,
      BatchNorm settings, loss) over the trainer's own batches made (augmented, normalised, laid
      out) before the clock starts: forward, loss, backward, optimiser and scheduler steps,
      nothing else -- the ceiling;
  (c) the textbook loop in float32: a Dataset handing out PIL images through torchvision
      ``transforms`` (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) and a
      ``DataLoader`` with worker processes (their start-up is inside the clock, as it is every
      epoch), plus the usual ``loss.item()`` per step.

The three run interleaved, ``--repeats`` times each, each from a fresh copy of one initial model;
the median is reported, in images per second (wall clock) and in CPU seconds per 1000 images
(this process's threads plus the DataLoader workers) -- on a shared machine other processes skew
the wall clock, and CPU time is the steadier comparison. Every row names its precision. Goals on a
2-core CPU with native bf16: (a) within 5 % of (b), and (a)/(c) >= 2.0 (issue 14).

Usage:
    python experiments/bench_trainer.py [--data-root /work/shared/data] [--images N]
        [--repeats R] [--arch nin --schedule orig] [--batch-size 128] [--workers 2]
        [--precision auto|bf16|fp32] [--json]

Uses the real CIFAR-10 under ``--data-root`` and falls back to synthetic images when it is absent.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deeproots  # noqa: E402
from deeproots import training as _tr  # noqa: E402
from deeproots.data import DataBundle, TensorSplit, load_data  # noqa: E402

_DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


class _TextbookCIFAR(Dataset):
    """What ``torchvision.datasets.CIFAR10.__getitem__`` does: HWC uint8 -> PIL -> transform."""

    def __init__(self, split: TensorSplit, transform: Any) -> None:
        self.images = split.images.permute(0, 2, 3, 1).contiguous().numpy()  # N x H x W x C
        self.labels = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its reaped children (DataLoader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _load(args: argparse.Namespace, images: int) -> tuple[DataBundle, str]:
    val = 0  # no validation split: fit then runs only its training phase
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the offline copy's checksum warning
            data = load_data("cifar10", args.data_root, subset=images, val_size=val, download=False)
        return data, f"cifar10 ({data.info['source']})"
    except OSError as e:
        print(f"real data unavailable ({e}); using synthetic images", file=sys.stderr)
        data = load_data("synthetic", num_train=images, num_test=10, val_size=val)
        return data, "synthetic"


def _bench_fit(model: nn.Module, data: DataBundle, config: _tr.TrainConfig) -> dict[str, float]:
    cpu, start = _cpu_seconds(), time.perf_counter()
    result = _tr.fit(model, data, config)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    epoch = result.history[-1]
    return {
        "images_per_second": epoch.images_per_second,
        "seconds": epoch.train_seconds,
        "fit_wall_seconds": wall,  # + moving the model to its memory format, building the optimiser
        "cpu_seconds_per_1000": 1000 * cpu / epoch.images,  # the whole fit call
    }


def _step_fn(
    model: nn.Module, config: _tr.TrainConfig, device: torch.device, steps: int
) -> Any:
    _tr._apply_batchnorm_settings(model, config)  # the recipe's BatchNorm momentum / weight
    optimizer = _tr._optimizer(model, config)
    scheduler = _tr._scheduler(optimizer, config, steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with _tr._autocast(config, device):
            loss = _tr._training_loss(criterion, model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss

    return step


def _bench_compute(
    model: nn.Module, data: DataBundle, config: _tr.TrainConfig, device: torch.device
) -> dict[str, float]:
    train = data.train.to(device) if device.type == "cuda" else data.train
    # the trainer's own epoch-1 batches (its flip rule included), made before the clock starts
    batches = list(_tr._train_batches(train, config, 1, device, _tr._memory_format(config)))
    step = _step_fn(model, config, device, len(batches))
    _tr._sync(device)
    cpu, start = _cpu_seconds(), time.perf_counter()
    for x, y in batches:
        step(x, y)
    _tr._sync(device)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    images = sum(len(y) for _, y in batches)
    return {
        "images_per_second": images / seconds,
        "seconds": seconds,
        "cpu_seconds_per_1000": 1000 * cpu / images,
    }


def _bench_textbook(
    model: nn.Module,
    data: DataBundle,
    config: _tr.TrainConfig,
    device: torch.device,
    workers: int,
) -> dict[str, float]:
    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(data.train.mean, data.train.std),
        ]
    )
    loader = DataLoader(
        _TextbookCIFAR(data.train, transform),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    step = _step_fn(model, config, device, len(loader))
    memory_format = _tr._memory_format(config)
    images, running_loss = 0, 0.0
    _tr._sync(device)
    cpu, start = _cpu_seconds(), time.perf_counter()
    for x, y in loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        running_loss += step(x, y).item()
        images += len(y)
    _tr._sync(device)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu  # workers joined by now
    return {
        "images_per_second": images / seconds,
        "seconds": seconds,
        "cpu_seconds_per_1000": 1000 * cpu / images,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the three figures and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=_DEFAULT_ROOT)
    parser.add_argument("--arch", default="nin")
    parser.add_argument("--schedule", default="orig")
    parser.add_argument(
        "--images", type=int, default=None,
        help="training images per measurement (default: 1024 on CPU, 45000 on CUDA)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each loop")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of (c)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"),
        help="TrainConfig.precision of (a) and (b); (c) is always float32",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args(argv)

    config = _tr.TrainConfig(
        epochs=1, batch_size=args.batch_size, device=args.device, threads=args.threads,
        precision=args.precision,
    )  # fmt: skip
    textbook = dataclasses.replace(config, precision="fp32")
    device = _tr._resolve_device(config.device)
    precision = _tr.resolve_precision(config.precision, device)
    images = args.images or (45000 if device.type == "cuda" else 1024)
    data, source = _load(args, images)
    torch.manual_seed(0)
    base = deeproots.build_model(args.arch, schedule=args.schedule, num_classes=data.num_classes)
    threads = args.threads or torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)

    loops = {
        "a_trainer": lambda m: _bench_fit(m, data, config),
        "b_compute_only": lambda m: _bench_compute(m, data, config, device),
        "c_textbook": lambda m: _bench_textbook(m, data, textbook, device, args.workers),
    }
    # Warm-up: allocator, kernels, thread pool (not measured).
    warm = copy.deepcopy(base).to(device=device, memory_format=_tr._memory_format(config))
    x, y = next(iter(data.train.batches(config.batch_size, train=True, device=device,
                                             memory_format=_tr._memory_format(config))))  # fmt: skip
    step = _step_fn(warm, config, device, 2)
    for _ in range(2):
        step(x, y)
    _tr._sync(device)

    load_start = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in loops}
    names = list(loops)
    for r in range(args.repeats):
        for k in names[r % 3 :] + names[: r % 3]:  # rotate the order between repeats
            model = copy.deepcopy(base).to(device=device, memory_format=_tr._memory_format(config))
            runs[k].append(loops[k](model))
            print(f"  repeat {r + 1} {k:15s} {runs[k][-1]['images_per_second']:9.1f} img/s",
                  file=sys.stderr, flush=True)  # fmt: skip

    med = {k: statistics.median(x["images_per_second"] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x["cpu_seconds_per_1000"] for x in v) for k, v in runs.items()}
    a, b, c = med["a_trainer"], med["b_compute_only"], med["c_textbook"]
    ca, cb, cc = cpu["a_trainer"], cpu["b_compute_only"], cpu["c_textbook"]
    if device.type == "cuda":
        dev_name = torch.cuda.get_device_name(device)
    else:
        caps = torch.cpu.get_capabilities()
        native = [k for k in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16") if caps.get(k)]
        dev_name = f"cpu ({caps.get('cpu_name', '?')}; native bf16: {', '.join(native) or 'none'})"
    print(
        f"bench_trainer: {args.arch} {args.schedule}, {source}, {images} training images per run, "
        f"batch {config.batch_size}, {config.memory_format}, device {dev_name}, "
        f"{threads} threads, median of {args.repeats} interleaved repeats, torch {torch.__version__}"
    )
    fit_wall = statistics.median(x["fit_wall_seconds"] for x in runs["a_trainer"])
    print(f"{'':27s}{'precision':>9s}{'img/s':>10s}  {'CPU s / 1000 img':>17s}")
    print(f"(a) deeproots fit          {precision:>9s}{a:10.1f}  {ca:17.1f}   (fit's own figure: "
          f"training phase; whole fit call {fit_wall:.1f} s wall)")  # fmt: skip
    print(f"(b) compute-only loop      {precision:>9s}{b:10.1f}  {cb:17.1f}")
    print(f"(c) textbook DataLoader    {'fp32':>9s}{c:10.1f}  {cc:17.1f}   ({args.workers} workers, "
          f"their CPU time included)")  # fmt: skip
    print(f"(a)/(b) = {a / b:.3f}   (goal >= 0.95)   by CPU time (b)/(a) = {cb / ca:.3f}")
    print(f"(a)/(c) = {a / c:.3f}   (goal >= 2.00)   by CPU time (c)/(a) = {cc / ca:.3f}")
    print(f"load average at the start: {', '.join(f'{x:.2f}' for x in load_start)}; at the end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (other processes skew wall-clock figures)")
    epoch_images = 45000
    print(
        f"extrapolated seconds per {epoch_images}-image epoch: (a) {epoch_images / a:.1f}  "
        f"(b) {epoch_images / b:.1f}  (c) {epoch_images / c:.1f}"
    )
    if args.json:
        print(json.dumps({
            "arch": args.arch, "schedule": args.schedule, "data": source, "images": images,
            "batch_size": config.batch_size, "device": dev_name, "threads": threads,
            "precision": {"a_trainer": precision, "b_compute_only": precision, "c_textbook": "fp32"},
            "config": config.to_dict(),
            "repeats": args.repeats, "runs": runs, "median_images_per_second": med,
            "median_cpu_seconds_per_1000": cpu, "a_over_b": a / b, "a_over_c": a / c,
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
