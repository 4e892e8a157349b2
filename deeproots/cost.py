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
from typing import Any, Sequence

import torch

from . import provenance
from ._cost import compare_latency, count_cost
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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deeproots.cost",
        description="Parameters, FLOPs (paper convention) and optionally latency of grouping schedules.",
    )
    parser.add_argument("arch", help=f"architecture: {', '.join(list_architectures())}")
    parser.add_argument(
        "schedules", nargs="*",
        help="paper names (orig, root-N, col-N, tree-N), canonical ids (nin:1-1-1-8-1-1-4-1-1); default: the paper's",
    )  # fmt: skip
    parser.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"), help="default: the architecture's")
    parser.add_argument("--num-classes", type=int, help="default: the architecture's (10 CIFAR, 1000 ImageNet)")
    parser.add_argument("--latency", action="store_true", help="also measure forward latency per image")
    parser.add_argument("--device", default="cpu", help="latency device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch-size", type=int, default=1, help="latency batch size (1 = deployment latency)")
    parser.add_argument("--threads", type=int, help="CPU threads for latency (default: torch's)")
    parser.add_argument("--repeats", type=int, default=50, help="timed forwards per schedule (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        spec = get_arch(args.arch)
        input_size = tuple(args.input_size) if args.input_size else spec.input_size
        names = args.schedules or list(paper_schedules(args.arch, args.num_classes))
        if "orig" not in names:
            names = ["orig", *names]
        schedules = {name: resolve_schedule(args.arch, name, args.num_classes) for name in names}
        if args.latency and args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
        if args.batch_size < 1 or args.repeats < 1:
            raise ValueError("--batch-size and --repeats must be at least 1")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with torch.device("meta"):  # costing needs shapes only
        costs = {n: count_cost(build_model(args.arch, s, args.num_classes), input_size) for n, s in schedules.items()}
    latencies = {}
    if args.latency:
        models = {n: build_model(args.arch, s, args.num_classes) for n, s in schedules.items()}
        latencies = compare_latency(
            models, input_size, args.device, args.batch_size, args.threads, repeats=args.repeats
        )
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
