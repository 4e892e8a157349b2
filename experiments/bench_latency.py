"""Per-image forward latency of named schedules, orig and root-N measured side by side.

The reference is the paper's own speed-ups (Ioannou et al., CVPR 2017, Tables 1 and 3):
NIN root-8 1.60x on CPU / 1.29x on GPU; ResNet-50 root-64 1.46x on CPU / 1.14x on GPU. Each row is
measured in the deployment form that ``deeproots.compare_latency`` uses (eval + inference mode, BN
folded into the convs, the faster memory format per model, median of interleaved repeats), and with
``--forms`` also under each single form, so the gain of every deployment step is visible.

Usage::

    python experiments/bench_latency.py --arch nin
    python experiments/bench_latency.py --arch resnet50 --schedules orig root-16 root-64 --json
    python experiments/bench_latency.py --arch nin --forms --threads 2 --batch-size 1

On a machine with CUDA, the same schedules are also measured on the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

import deeproots

# The paper's measured speed-ups of one schedule over orig: (arch, schedule) -> {device: ratio}.
PAPER_SPEEDUPS: dict[tuple[str, str], dict[str, float]] = {
    ("nin", "root-8"): {"cpu": 1.60, "cuda": 1.29},
    ("resnet50", "root-64"): {"cpu": 1.46, "cuda": 1.14},
}
DEFAULT_SCHEDULES = {"nin": ["orig", "root-4", "root-8", "root-16"], "resnet50": ["orig", "root-16", "root-64"]}
# (label, memory_format, fold_bn) for --forms
FORMS = [("NCHW", "contiguous", False), ("NCHW+fold", "contiguous", True), ("NHWC+fold", "channels_last", True)]


def _measure(arch: str, names: list[str], device: str, args: argparse.Namespace, memory_format: str, fold: bool) -> dict[str, deeproots.Latency]:
    models = {n: deeproots.build_model(arch, n) for n in names}
    spec_size = models[names[0]].default_input_size
    size = tuple(args.input_size) if args.input_size else spec_size
    return deeproots.compare_latency(
        models, size, device=device, batch_size=args.batch_size, threads=args.threads if device == "cpu" else None,
        memory_format=memory_format, fold_bn=fold, warmup=args.warmup, repeats=args.repeats,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="nin", help=f"one of {', '.join(deeproots.list_architectures())}")
    p.add_argument("--schedules", nargs="+", help="default: orig and the paper's root-N that it timed")
    p.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"))
    p.add_argument("--batch-size", type=int, default=1, help="images per forward (1 = deployment latency)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's, here %d)" % torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=50, help="timed forwards per schedule; the median is kept")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--devices", nargs="+", help="default: cpu, and cuda when available")
    p.add_argument("--forms", action="store_true", help="also time each single deployment form")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        names = args.schedules or DEFAULT_SCHEDULES.get(args.arch) or ["orig", "root-8"]
        if "orig" not in names:
            names = ["orig", *names]
        for n in names:
            deeproots.resolve_schedule(args.arch, n)
        if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
            raise ValueError("--batch-size and --repeats must be at least 1, --warmup at least 0")
        devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        for device in devices:
            kind = device.split(":")[0]
            if kind not in ("cpu", "cuda"):
                raise ValueError(f"--devices {device}: use cpu, cuda or cuda:N")
            if kind == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"--devices {device}: CUDA is not available on this machine")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    results: list[dict[str, Any]] = []
    for device in devices:
        runs = [("best", "auto", True)] + (FORMS if args.forms else [])
        for label, fmt, fold in runs:
            lat = _measure(args.arch, names, device, args, fmt, fold)
            for n in names:
                paper = PAPER_SPEEDUPS.get((args.arch, n), {}).get(torch.device(device).type)
                results.append({
                    "device": device, "device_name": lat[n].protocol["device_name"], "form": label,
                    "memory_format": lat[n].protocol["memory_format"], "bn_folded": fold, "schedule": n,
                    "ms_per_image": lat[n].ms, "speedup": lat["orig"].ms / lat[n].ms, "paper_speedup": paper,
                    "batch_size": args.batch_size, "threads": lat[n].protocol["threads"], "repeats": args.repeats,
                })  # fmt: skip
    if args.json:
        print(json.dumps({"arch": args.arch, "provenance": deeproots.provenance(), "results": results}, indent=2))
        return 0
    print(f"{args.arch}: batch {args.batch_size}, median of {args.repeats} interleaved repeats, torch {torch.__version__}")
    header = f"{'device':<6} {'form':<10} {'schedule':<9} {'ms/img':>9} {'speed-up':>9} {'paper':>7}  memory format"
    print(header)
    print("-" * len(header))
    for r in results:
        paper = f"{r['paper_speedup']:.2f}x" if r["paper_speedup"] else "-"
        print(
            f"{r['device']:<6} {r['form']:<10} {r['schedule']:<9} {r['ms_per_image']:>9.3f} {r['speedup']:>8.2f}x "
            f"{paper:>7}  {r['memory_format']}"
        )
    names_seen = {r["device_name"] for r in results}
    print("devices: " + "; ".join(sorted(names_seen)) + f"; threads {results[0]['threads']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
