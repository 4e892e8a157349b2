"""Train one schedule from the command line: ``python -m deeproots.train``.

Builds the network, counts its cost, trains it with :func:`deeproots.fit` under a live progress bar
(epoch, loss, validation accuracy, images/s) and reports validation and test accuracy. With
``--json`` the last line of stdout is one JSON object (``val_accuracy``, ``test_accuracy``,
``images_per_second``, ``params``, ``flops``, the history, the resolved config and provenance);
the progress bar goes to stderr.

Bad input (unknown architecture, schedule or data set, a missing folder, numbers out of range)
ends with one line on stderr naming what is wrong and exit status 2.

Example:
    python -m deeproots.train --arch nin --schedule root-8 --data-root ../shared/data \\
        --subset 10000 --epochs 1 --json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import build_model, count_cost, provenance, resolve_schedule
from .data import DATASETS, DataBundle, load_data
from .training import (
    EpochResult,
    NonFiniteLossError,
    StepProgress,
    TrainConfig,
    evaluate,
    fit,
)

_PROG = "python -m deeproots.train"
_DEFAULTS = TrainConfig()


class _UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise _UsageError(message)


def _number(kind: type, minimum: float | None = None, *, strict: bool = False,
            below: float | None = None) -> Callable[[str], Any]:  # fmt: skip
    """argparse type: a number of ``kind`` with bounds, naming the bound when it is broken."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum:g}, got {text}"
            )
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be < {below:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_PROG, description=__doc__.split("\n")[0])
    model = p.add_argument_group("model")
    model.add_argument("--arch", required=True, help="architecture, e.g. nin, resnet50_cifar")
    model.add_argument(
        "--schedule", default="orig",
        help="paper name (orig, root-8, col-4, tree-2), canonical id, or comma-separated groups",
    )  # fmt: skip
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="cifar10", choices=DATASETS)
    data.add_argument(
        "--data-root", type=Path, default=None,
        help="cifar10: folder with cifar-10-batches-py (default: download into the cache dir); "
        "imagefolder: folder with train/ and val/",
    )  # fmt: skip
    data.add_argument("--cache-dir", type=Path, default=None, help="decoded-tensor cache")
    data.add_argument("--subset", type=_number(int, 1), default=None,
                      help="train on the first N class-balanced training images")  # fmt: skip
    data.add_argument("--val-size", type=_number(int, 0), default=5000,
                      help="validation images carved from the training set (default 5000)")  # fmt: skip
    data.add_argument("--image-size", type=_number(int, 8), default=None,
                      help="imagefolder: crop side in pixels (default 224)")  # fmt: skip
    data.add_argument("--workers", type=_number(int, 0), default=None,
                      help="imagefolder: DataLoader workers")  # fmt: skip
    train = p.add_argument_group("training (TrainConfig; defaults in brackets)")
    d = _DEFAULTS
    train.add_argument("--epochs", type=_number(int, 1), default=d.epochs, help=f"[{d.epochs}]")
    train.add_argument("--batch-size", type=_number(int, 1), default=d.batch_size,
                       help=f"[{d.batch_size}]")  # fmt: skip
    train.add_argument("--lr", type=_number(float, 0, strict=True), default=d.lr,
                       help=f"peak learning rate [{d.lr}]")  # fmt: skip
    train.add_argument("--lr-schedule", choices=("onecycle", "cosine"), default=d.lr_schedule,
                       help=f"[{d.lr_schedule}]")  # fmt: skip
    train.add_argument("--warmup-fraction", type=_number(float, 0, below=1),
                       default=d.warmup_fraction, help=f"[{d.warmup_fraction}]")  # fmt: skip
    train.add_argument("--momentum", type=_number(float, 0, strict=True, below=1),
                       default=d.momentum, help=f"Nesterov SGD momentum [{d.momentum}]")  # fmt: skip
    train.add_argument("--weight-decay", type=_number(float, 0), default=d.weight_decay,
                       help=f"[{d.weight_decay}]")  # fmt: skip
    train.add_argument("--label-smoothing", type=_number(float, 0, below=1),
                       default=d.label_smoothing, help=f"[{d.label_smoothing}]")  # fmt: skip
    train.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on CUDA")
    train.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                       default=d.memory_format, help=f"[{d.memory_format}]")  # fmt: skip
    train.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ... [auto]")
    train.add_argument("--seed", type=_number(int, 0), default=d.seed,
                       help="seed of model init, validation split, data order [0]")  # fmt: skip
    train.add_argument("--threads", type=_number(int, 1), default=None,
                       help="CPU threads (default: PyTorch's)")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--checkpoint", type=Path, default=None,
                     help="epoch-end checkpoint file (written every epoch)")  # fmt: skip
    out.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    out.add_argument("--no-test", action="store_true", help="skip the test-set evaluation")
    out.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return p


@dataclass
class _RunSpec:
    """Everything one training run needs; built from flags (later also from an exported config)."""

    arch: str
    schedule: Any
    dataset: str
    data_root: Path | None
    data_options: dict[str, Any]
    config: TrainConfig
    cache_dir: Path | None = None
    checkpoint: Path | None = None
    resume: bool = False
    test: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _spec_from_args(args: argparse.Namespace) -> _RunSpec:
    if args.resume and args.checkpoint is None:
        raise _UsageError("--resume needs --checkpoint")
    schedule: Any = args.schedule
    if "," in schedule:  # "1,1,1,8,1,1,4,1,1": a full sequence of group counts
        try:
            schedule = [int(g) for g in schedule.split(",")]
        except ValueError:
            raise _UsageError(f"argument --schedule: not a list of integers: {args.schedule!r}")
    options: dict[str, Any] = {"subset": args.subset, "val_size": args.val_size}
    if args.image_size is not None:
        options["image_size"] = args.image_size
    if args.workers is not None:
        options["workers"] = args.workers
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup_fraction=args.warmup_fraction,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        bf16=not args.no_bf16,
        memory_format=args.memory_format,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
    )
    return _RunSpec(
        arch=args.arch,
        schedule=schedule,
        dataset=args.dataset,
        data_root=args.data_root,
        data_options=options,
        config=config,
        cache_dir=args.cache_dir,
        checkpoint=args.checkpoint,
        resume=args.resume,
        test=not args.no_test,
    )


class _Progress:
    """A rich progress bar on stderr: one task per epoch with loss, val accuracy and img/s."""

    def __init__(self, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.epochs = epochs
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val acc {task.fields[acc]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task: Any = None
        self.acc = "-"

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def on_step(self, s: StepProgress) -> None:
        fields = {
            "epoch": s.epoch, "epochs": self.epochs, "acc": self.acc,
            "loss": "-" if math.isnan(s.loss) else f"{s.loss:.3f}",
            "ips": f"{s.images_per_second:.0f}",
        }  # fmt: skip
        if self.task is None or self.progress.tasks[self.task].fields["epoch"] != s.epoch:
            self.task = self.progress.add_task("", total=s.steps, **fields)
        self.progress.update(self.task, completed=s.step, **fields)

    def on_epoch(self, r: EpochResult) -> None:
        self.acc = "-" if math.isnan(r.val_accuracy) else f"{100 * r.val_accuracy:.2f}%"
        if self.task is not None:
            self.progress.update(self.task, acc=self.acc, ips=f"{r.images_per_second:.0f}")


def _json_float(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def run(spec: _RunSpec, *, progress: bool = True) -> dict[str, Any]:
    """Build, cost, train and test one model; return the result record."""
    config = spec.config
    schedule = resolve_schedule(spec.arch, spec.schedule)  # fails fast, before loading data
    data: DataBundle = load_data(
        spec.dataset, spec.data_root, seed=config.seed, cache_dir=spec.cache_dir,
        **spec.data_options,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = build_model(spec.arch, schedule=schedule, num_classes=data.num_classes)
    cost = count_cost(model, data.input_size)
    start = time.perf_counter()
    bar = _Progress(config.epochs) if progress else None
    with bar if bar is not None else contextlib.nullcontext():
        result = fit(
            model, data, config,
            on_epoch=bar.on_epoch if bar else None, on_step=bar.on_step if bar else None,
            checkpoint_path=spec.checkpoint, resume=spec.resume,
        )  # fmt: skip
    test_loss, test_accuracy = (
        evaluate(model, data.test, config) if spec.test else (math.nan, math.nan)
    )
    return {
        "arch": spec.arch,
        "schedule": schedule.id,
        "schedule_name": schedule.name,
        "dataset": data.name,
        "subset": spec.data_options.get("subset"),
        "val_size": len(data.val) if data.val is not None else 0,
        "train_images": len(data.train),
        "epochs": config.epochs,
        "val_accuracy": _json_float(result.val_accuracy),
        "val_loss": _json_float(result.val_loss),
        "test_accuracy": _json_float(test_accuracy),
        "test_loss": _json_float(test_loss),
        "images_per_second": _json_float(result.images_per_second),
        "params": cost.params,
        "flops": cost.flops,
        "device": result.device,
        "seconds": time.perf_counter() - start,
        "resumed_from": result.resumed_from,
        "history": [
            {k: _json_float(v) for k, v in dataclasses.asdict(h).items()} for h in result.history
        ],
        "config": config.to_dict(),
        "data": {k: str(v) if isinstance(v, Path) else v for k, v in data.info.items()},
        "provenance": provenance(),
    }


def _print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{record['arch']} {record['schedule_name'] or ''} {record['schedule']}")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f} %"

    table.add_row("val_accuracy", pct(record["val_accuracy"]))
    table.add_row("test_accuracy", pct(record["test_accuracy"]))
    table.add_row("images_per_second", f"{record['images_per_second']:.1f}")
    table.add_row("params", f"{record['params']:,}")
    table.add_row("flops", f"{record['flops']:,}")
    table.add_row("device", record["device"])
    table.add_row("seconds", f"{record['seconds']:.1f}")
    Console().print(table)


def _one_line_warnings(message: Any, category: Any, *args: Any, **kwargs: Any) -> str:
    return f"deeproots.train: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    Example:
        >>> from deeproots.train import main
        >>> main(["--arch", "nin", "--dataset", "synthetic", "--subset", "200", "--val-size",
        ...       "100", "--epochs", "1", "--json"])  # doctest: +SKIP
        0
    """
    warnings.formatwarning = _one_line_warnings
    try:
        args = _build_parser().parse_args(argv)
        spec = _spec_from_args(args)
        record = run(spec, progress=True)
    except _UsageError as e:
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a failed download, a full disk
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(record))
    else:
        _print_summary(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
