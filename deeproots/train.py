"""Train one schedule from the command line: ``python -m deeproots.train``.

Builds the network, counts its cost, trains it with :func:`deeproots.fit` under a live progress bar
(epoch, loss, validation accuracy, images/s) and reports validation and test accuracy. With
``--json`` the last line of stdout is one JSON object (``val_accuracy``, ``test_accuracy``,
``images_per_second``, ``params``, ``flops``, the history, the resolved config and provenance);
the progress bar goes to stderr.

Bad input (unknown architecture, schedule or data set, a missing folder, a damaged data file or
image, sizes the data cannot meet, numbers out of range) ends with one line on stderr naming what
is wrong and exit status 2.

``--config RUN/export/<id>.yaml`` retrains a configuration exported by ``python -m search.export``:
architecture, schedule, data set, validation split and trainer recipe come from the file (flags
given explicitly override it). A search trains at low fidelity, so this is the full-budget run: on
the whole training split unless ``--subset`` is given, for ``--epochs``. ``--seeds K`` trains K
times (training seeds ``seed`` .. ``seed + K - 1``, the same validation split) and reports the mean
± standard deviation of validation and test accuracy.

Example:
    python -m deeproots.train --arch nin --schedule root-8 --data-root ../shared/data \\
        --subset 10000 --epochs 1 --json
    python -m deeproots.train --config runs/nin/export/nin_1-1-1-8-1-1-4-1-1.yaml --epochs 30 --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import statistics
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
from .training import check_checkpoint_path, checkpoint_history
from .training import (
    EpochResult,
    SEED_LIMIT,
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
            bound = "2**64" if below == SEED_LIMIT else f"{below:g}"
            raise argparse.ArgumentTypeError(f"must be < {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_PROG, description=__doc__.split("\n")[0])
    model = p.add_argument_group("model")
    model.add_argument("--arch", help="architecture, e.g. nin, resnet50_cifar (or --config)")
    model.add_argument(
        "--schedule", default="orig",
        help="paper name (orig, root-8, col-4, tree-2), canonical id, or comma-separated groups",
    )  # fmt: skip
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="cifar10", choices=DATASETS)
    data.add_argument(
        "--data-root", type=Path, default=None,
        help="cifar10: folder with cifar-10-batches-py; imagefolder: folder with train/ and val/ "
        "(default: $DEEPROOTS_DATA; cifar10 then downloads into the cache dir)",
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
    train.add_argument("--lr-schedule", choices=("onecycle", "cosine", "triangular"), default=d.lr_schedule,
                       help=f"[{d.lr_schedule}]")  # fmt: skip
    train.add_argument("--warmup-fraction", type=_number(float, 0, below=1),
                       default=d.warmup_fraction, help=f"[{d.warmup_fraction}]")  # fmt: skip
    train.add_argument("--momentum", type=_number(float, 0, strict=True, below=1),
                       default=d.momentum, help=f"Nesterov SGD momentum [{d.momentum}]")  # fmt: skip
    train.add_argument("--weight-decay", type=_number(float, 0), default=d.weight_decay,
                       help=f"[{d.weight_decay}]")  # fmt: skip
    train.add_argument("--label-smoothing", type=_number(float, 0, below=1),
                       default=d.label_smoothing, help=f"[{d.label_smoothing}]")  # fmt: skip
    train.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d.precision,
                       help="autocast precision; auto: bf16 where the CUDA device or CPU computes "
                       f"it natively [{d.precision}]")  # fmt: skip
    train.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                       default=d.memory_format, help=f"[{d.memory_format}]")  # fmt: skip
    train.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ... [auto]")
    train.add_argument("--seed", type=_number(int, 0, below=SEED_LIMIT), default=d.seed,
                       help="seed of model init, validation split, data order [0]")  # fmt: skip
    train.add_argument("--threads", type=_number(int, 1), default=None,
                       help="CPU threads (default: PyTorch's)")  # fmt: skip
    exported = p.add_argument_group("retrain an exported configuration")
    exported.add_argument(
        "--config", type=str, default=None,
        help="RUN/export/<id>.yaml written by python -m search.export (a path or a URI: s3://, gs://): arch, schedule, data and recipe "
        "from the file (flags given override it); trains on the whole training split unless --subset",
    )  # fmt: skip
    exported.add_argument("--seeds", type=_number(int, 1), default=1,
                          help="train K times (seeds seed .. seed+K-1), report mean ± std [1]")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--checkpoint", type=Path, default=None,
                     help="epoch-end checkpoint file (written every epoch)")  # fmt: skip
    out.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    out.add_argument("--no-test", action="store_true", help="skip the test-set evaluation")
    out.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return p


@dataclass
class _RunSpec:
    """Everything one training run needs; built from flags or from an exported config."""

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
    model_options: dict[str, Any] = field(default_factory=dict)  # extra build_model keywords
    data_seed: int | None = None  # seed of the validation draw; None: the training seed


def _spec_from_args(args: argparse.Namespace) -> _RunSpec:
    if args.resume and args.checkpoint is None:
        raise _UsageError("--resume needs --checkpoint")
    if args.arch is None:
        raise _UsageError("one of --arch or --config is required")
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
        precision=args.precision,
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


def _explicit(argv: Sequence[str] | None) -> set[str]:
    """Destinations of the flags given on the command line (not left at their defaults)."""
    parser = _build_parser()
    for action in parser._actions:  # noqa: SLF001 (argparse has no public way to ask this)
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


#: TrainConfig fields that a flag of the same name overrides in --config mode.
_RECIPE_FLAGS = ("epochs", "batch_size", "lr", "lr_schedule", "warmup_fraction", "momentum", "weight_decay",
                 "label_smoothing", "precision", "memory_format", "device", "seed", "threads")  # fmt: skip


def _spec_from_config(args: argparse.Namespace, explicit: set[str]) -> _RunSpec:
    """The run an exported YAML describes, at full budget, with the flags given applied on top."""
    from ._exported import ExportedConfig

    if args.resume and args.checkpoint is None:
        raise _UsageError("--resume needs --checkpoint")
    if explicit & {"arch", "schedule"}:
        raise _UsageError("--config gives the architecture and schedule; drop --arch/--schedule")
    cfg = ExportedConfig.read(args.config)
    data = cfg.data
    overrides = {k: getattr(args, k) for k in _RECIPE_FLAGS if k in explicit}
    options: dict[str, Any] = dict(data.get("options") or {})
    options["subset"] = args.subset  # full budget: the whole training split unless --subset
    options["val_size"] = args.val_size if "val_size" in explicit else int(data.get("val_size", 5000))
    for key in ("image_size", "workers"):
        if key in explicit:
            options[key] = getattr(args, key)
    root = data.get("root")
    config = cfg.train_config(**overrides)
    metrics = cfg.metrics
    return _RunSpec(
        arch=cfg.arch,
        schedule=dict(cfg.groups) or cfg.schedule_id,
        dataset=args.dataset if "dataset" in explicit else data.get("name", "cifar10"),
        data_root=args.data_root if "data_root" in explicit else (Path(root) if root else None),
        data_options=options,
        config=config,
        cache_dir=args.cache_dir,
        checkpoint=args.checkpoint,
        resume=args.resume,
        test=not args.no_test,
        model_options=dict(cfg.model_options),
        data_seed=int(data.get("seed", 0)),
        extra={"exported": {
            "config": str(args.config), "schedule": cfg.schedule_id, "name": cfg.schedule_name,
            "val_accuracy": metrics.get("val_accuracy"), "test_accuracy": metrics.get("test_accuracy"),
            "epochs": metrics.get("epochs_trained", cfg.training.get("epochs")), "subset": data.get("subset"),
            "params": metrics.get("params"), "flops": metrics.get("flops"),
        }},  # fmt: skip
    )


def _with_seed(spec: _RunSpec, seed: int) -> _RunSpec:
    """``spec`` with training seed ``seed`` (its own checkpoint file, the same validation split)."""
    ckpt = spec.checkpoint
    if ckpt is not None:
        ckpt = ckpt.with_name(f"{ckpt.stem}.seed{seed}{ckpt.suffix}")
    data_seed = spec.data_seed if spec.data_seed is not None else spec.config.seed
    return dataclasses.replace(spec, config=dataclasses.replace(spec.config, seed=seed), checkpoint=ckpt,
                               data_seed=data_seed)  # fmt: skip


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
    if spec.checkpoint is not None:
        check_checkpoint_path(spec.checkpoint)  # a folder or an unwritable place: before an epoch is spent
        if spec.resume:
            checkpoint_history(spec.checkpoint)  # a damaged file: before the data loads
    data_seed = config.seed if spec.data_seed is None else spec.data_seed
    data: DataBundle = load_data(
        spec.dataset, spec.data_root, seed=data_seed, cache_dir=spec.cache_dir,
        **spec.data_options,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = build_model(spec.arch, schedule=schedule, num_classes=data.num_classes, **spec.model_options)
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
        **spec.extra,
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
    exported = record.get("exported")
    if exported:
        table.add_row(f"search ({exported.get('epochs')} ep.) val / test",
                      f"{pct(exported.get('val_accuracy'))} / {pct(exported.get('test_accuracy'))}")  # fmt: skip
    Console().print(table)


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of the accuracies."""
    out: dict[str, Any] = {"seeds": [r["config"]["seed"] for r in records]}
    for key in ("val_accuracy", "test_accuracy"):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key] = {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}
    return out


def _print_seeds(records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = records[0]
    table = Table(title=f"{first['arch']} {first['schedule_name'] or ''} {first['schedule']}: "
                        f"{first['epochs']} epochs, {first['train_images']:,} training images")  # fmt: skip
    for col in ("seed", "val_accuracy", "test_accuracy", "seconds"):
        table.add_column(col, justify="right")

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f} %"

    for r in records:
        table.add_row(str(r["config"]["seed"]), pct(r["val_accuracy"]), pct(r["test_accuracy"]), f"{r['seconds']:.0f}")
    cells = []
    for key in ("val_accuracy", "test_accuracy"):
        s = summary.get(key)
        cells.append("-" if s is None else f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} %")
    table.add_row(f"mean ± std ({len(records)})", *cells, "", end_section=True)
    console = Console()
    console.print(table)
    exported = first.get("exported")
    if exported:
        console.print(
            f"the search's own run ({exported.get('epochs')} epochs, subset {exported.get('subset') or 'all'}): "
            f"val {pct(exported.get('val_accuracy'))}, test {pct(exported.get('test_accuracy'))}"
        )


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
        if args.config is not None:
            spec = _spec_from_config(args, _explicit(argv))
        else:
            spec = _spec_from_args(args)
        if spec.config.seed + args.seeds - 1 >= SEED_LIMIT:
            raise _UsageError(f"--seed {spec.config.seed} with --seeds {args.seeds} goes past 2**64 - 1; use a smaller --seed")
        if spec.checkpoint is not None:  # every seed's file, before the first one trains
            for i in range(args.seeds):
                check_checkpoint_path(_with_seed(spec, spec.config.seed + i).checkpoint if args.seeds > 1 else spec.checkpoint)
        if args.seeds == 1:
            records = [run(spec, progress=True)]
        else:
            records = [run(_with_seed(spec, spec.config.seed + i), progress=True) for i in range(args.seeds)]
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
    if args.seeds == 1:
        if args.json:
            print(json.dumps(records[0]))
        else:
            _print_summary(records[0])
        return 0
    summary = _summarise(records)
    if args.json:
        print(json.dumps({"summary": summary, "runs": records}))
    else:
        _print_seeds(records, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
