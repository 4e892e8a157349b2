"""Command line: the cost of grouping schedules, as ratios to the ungrouped network.

Usage::

    python -m deeproots.cost nin orig root-2 root-4 root-8 --latency
    python -m deeproots.cost resnet50 orig root-16 root-64 --input-size 3 224 224
    python -m deeproots.cost nin nin:1-1-1-8-1-1-4-1-1 --json

Every schedule is compared with ``orig``, which is always measured (latencies side by side, in one
interleaved run). With no schedule, the paper's named schedules are listed. The library functions
live in :mod:`deeproots` (``count_cost``, ``compare_latency``); this module is only the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, Sequence

import torch

from . import provenance
from ._cost import compare_latency, count_cost
from ._meta import shapes_only
from ._build import build_model
from .models import get_arch, list_architectures
from .schedules import Schedule, describe_layers, paper_schedules, resolve_schedule


def _groups_summary(schedule: Schedule) -> str:
    """Spatial-conv groups: every count for small nets, one count per stage (``a|b`` if mixed) for big ones."""
    spatial = [layer for layer in describe_layers(schedule.arch) if layer.kind == "spatial"]
    extra = sorted({name for name, g in schedule.grouped.items() if name not in {s.name for s in spatial}})
    if len(spatial) <= 12:
        text = "-".join(str(schedule.groups[layer.name]) for layer in spatial)
    else:
        per_stage: dict[str, list[int]] = {}
        for layer in spatial:
            values = per_stage.setdefault(layer.stage, [])
            if schedule.groups[layer.name] not in values:
                values.append(schedule.groups[layer.name])
        text = "/".join("|".join(map(str, v)) for v in per_stage.values())
    return text + (f" (+{len(extra)} 1x1 grouped)" if extra else "")


_PROG = "python -m deeproots.cost"


class _UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise _UsageError(message)


def _whole(minimum: int) -> Any:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = "int"
    return parse


def _check_device(name: str) -> str:
    """``--device`` if latency can be measured there; else a ValueError naming it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise ValueError("--device meta holds no data and cannot be timed; use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r}: latency is measured on cpu or cuda only")
    return name


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog=_PROG,
        description="Parameters, FLOPs (paper convention) and optionally latency of grouping schedules.",
    )
    parser.add_argument("arch", help=f"architecture: {', '.join(list_architectures())}")
    parser.add_argument(
        "schedules", nargs="*",
        help="paper names (orig, root-N, col-N, tree-N), canonical ids (nin:1-1-1-8-1-1-4-1-1); default: the paper's",
    )  # fmt: skip
    parser.add_argument("--input-size", nargs=3, type=_whole(1), metavar=("C", "H", "W"), help="default: the architecture's")
    parser.add_argument("--num-classes", type=_whole(1), help="default: the architecture's (10 CIFAR, 1000 ImageNet)")
    parser.add_argument("--latency", action="store_true", help="also measure forward latency per image")
    parser.add_argument("--device", default="cpu", help="latency device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch-size", type=_whole(1), default=1, help="latency batch size (1 = deployment latency)")
    parser.add_argument("--threads", type=_whole(1), help="CPU threads for latency (default: torch's)")
    parser.add_argument("--repeats", type=_whole(1), default=50, help="timed forwards per schedule (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: bad input, reported in one line)."""
    try:
        args = _parse(argv)
        spec = get_arch(args.arch)
        input_size = tuple(args.input_size) if args.input_size else spec.input_size
        names = args.schedules or list(paper_schedules(args.arch, args.num_classes))
        if "orig" not in names:
            names = ["orig", *names]
        schedules = {name: resolve_schedule(args.arch, name, args.num_classes) for name in names}
        if args.latency:
            _check_device(args.device)
        with shapes_only():  # costing needs shapes only
            costs = {n: count_cost(build_model(args.arch, s, args.num_classes), input_size) for n, s in schedules.items()}
        latencies = {}
        if args.latency:
            models = {n: build_model(args.arch, s, args.num_classes) for n, s in schedules.items()}
            latencies = compare_latency(
                models, input_size, args.device, args.batch_size, args.threads, repeats=args.repeats
            )
    except (_UsageError, ValueError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # out of memory on the device, a full disk
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    base = costs["orig"]
    rows: list[dict[str, Any]] = []
    for name, sched in schedules.items():
        cost = costs[name]
        row: dict[str, Any] = {
            "schedule": name, "id": sched.id, "groups": _groups_summary(sched),
            "params": cost.params, "flops": cost.flops,
            "params_ratio": cost.params / base.params, "flops_ratio": cost.flops / base.flops,
        }  # fmt: skip
        if latencies:
            row["latency_ms"] = latencies[name].ms
            row["speedup"] = latencies["orig"].ms / latencies[name].ms
        rows.append(row)

    if args.json:
        out: dict[str, Any] = {"arch": args.arch, "input_size": list(input_size), "schedules": rows}
        if latencies:
            out["latency_protocol"] = {k: v for k, v in latencies["orig"].protocol.items() if k != "memory_format"}
            out["latency_protocol"]["memory_format"] = {n: lat.protocol["memory_format"] for n, lat in latencies.items()}
        out["provenance"] = provenance()
        print(json.dumps(out, indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    spatial = [layer for layer in describe_layers(args.arch) if layer.kind == "spatial"]
    stages = "/".join(dict.fromkeys(layer.stage for layer in spatial))
    table = Table(
        title=f"{args.arch} @ {'x'.join(map(str, input_size))}",
        caption="groups of the spatial convs: "
        + ("/".join(layer.name for layer in spatial) if len(spatial) <= 12 else f"per stage, {stages}"),
    )
    table.add_column("schedule", no_wrap=True)
    table.add_column("groups", no_wrap=True)
    for col in ("params", "× orig", "FLOPs", "× orig"):
        table.add_column(col, justify="right")
    if latencies:
        table.add_column("ms/img", justify="right")
        table.add_column("speed-up", justify="right")
    for row in rows:
        cells = [
            row["schedule"], row["groups"],
            f"{row['params']:,}", f"{row['params_ratio']:.3f}", f"{row['flops']:,}", f"{row['flops_ratio']:.3f}",
        ]  # fmt: skip
        if latencies:
            cells += [f"{row['latency_ms']:.3f}", f"{row['speedup']:.2f}×"]
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))  # pipes and logs: no wrapped cells
    console.print(table)
    if latencies:
        p = latencies["orig"].protocol
        formats = sorted({lat.protocol["memory_format"] for lat in latencies.values()})
        console.print(
            f"latency: {p['device_name']} ({p['device']}), batch {p['batch_size']}, threads {p['threads']}, "
            f"BN folded, {'/'.join(formats)}, {p['statistic']} ({p['repeats']} each, after {p['warmup']} warm-up), "
            f"torch {p['torch']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
