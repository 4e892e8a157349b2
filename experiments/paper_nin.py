"""Reproduce the paper's NIN study on CIFAR-10: the 13 named grouping schedules, one recipe.

Ioannou et al., "Deep Roots", CVPR 2017 (arXiv 1605.06489), Table 1 / Fig. 6: NIN with its spatial
convs (conv2a, conv3a) split into filter groups -- ``root-N`` (1-N-N/2), ``col-N`` (1-N-N),
``tree-N`` (1-N-2N) for N in 2, 4, 8, 16 -- against the ungrouped ``orig``.

Every schedule is trained with the same :class:`deeproots.training.TrainConfig` recipe and budget
(epochs, training subset) from the command line, on the real CIFAR-10. Nothing is selected on the
test split: the reported validation accuracy is the final epoch's (no early stopping, no choice of
epoch), and test accuracy is measured once, after training. Per schedule and seed one result JSON
is written under ``<out>/runs/<budget>/`` and the weights (safetensors, with the schedule id in the
metadata) under ``<out>/weights/<budget>/``; a rerun at the same budget skips what is done, and a run
cut mid-schedule resumes from the trainer's epoch checkpoint. ``<budget>`` names the epochs,
subset, validation/test sizes and a hash of the whole recipe.

At the end, CPU latency of all schedules is measured in one interleaved run
(:func:`deeproots.compare_latency`: BN folded, faster memory format, batch 1 unless
``--latency-batch``, median of repeats; threads and load average recorded), on CUDA too when
present, and the table (``paper_nin.md`` / ``.csv``) and the accuracy-vs-cost plot
(``paper_nin.png``) are written to ``<out>``.

Usage::

    # the committed CPU-sized run (lr 0.1: the trainer's default when it was made)
    python experiments/paper_nin.py --epochs 2 --subset 4000 --val-size 1000 --test-size 2000 --lr 0.1
    # tiny smoke run while developing
    python experiments/paper_nin.py --epochs 1 --subset 2000 --schedules orig root-8 --no-latency
    # more seeds, and root-32 on top of the 13
    python experiments/paper_nin.py --epochs 30 --seeds 0 1 2 --schedules paper root-32
    # tables, plot and latency again from the stored results, no training
    python experiments/paper_nin.py --epochs 2 --subset 4000 --val-size 1000 --test-size 2000 --lr 0.1 --report-only
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

import deeproots
from deeproots.data import DataBundle, load_data
from deeproots.training import TrainConfig, evaluate, fit

ARCH = "nin"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
FAMILIES = ("orig", "root", "col", "tree")  # plot series, in legend order


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, else the error ``expected <what>, got '...'``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python experiments/paper_nin.py --epochs 1 --subset 2000 --schedules orig root-8",
    )  # fmt: skip
    g = p.add_argument_group("budget and recipe")
    g.add_argument("--epochs", type=_positive_int, default=2, help="passes over the training subset (default 2)")
    g.add_argument("--subset", type=_positive_int, help="training images, class-balanced (default: all 45,000)")
    g.add_argument("--val-size", type=_positive_int, default=5000, help="validation images carved from train (5000)")
    g.add_argument("--test-size", type=_positive_int, help="first N test images (default: all 10,000)")
    g.add_argument("--seeds", type=_non_negative_int, nargs="+", default=[0], help="model-init / data-order seeds")
    g.add_argument("--batch-size", type=_positive_int, default=TrainConfig.batch_size)
    g.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate per batch")
    g.add_argument("--threads", type=_positive_int, help=f"CPU threads (default torch's: {torch.get_num_threads()})")
    g.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    p.add_argument(
        "--schedules", nargs="+", default=["paper"],
        help="schedules to train; 'paper' stands for the 13 named ones (default). E.g. paper root-32",
    )  # fmt: skip
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding cifar-10-batches-py")
    p.add_argument("--dataset", choices=("cifar10", "synthetic"), default="cifar10", help="synthetic: smoke tests only")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default experiments/results)")
    p.add_argument("--report-only", action="store_true", help="no training: report the stored results")
    lat = p.add_argument_group("latency")
    lat.add_argument("--no-latency", action="store_true", help="skip timing; reuse a stored latency.json if any")
    lat.add_argument("--latency-batch", type=_positive_int, default=1, help="images per forward (1 = deployment)")
    lat.add_argument("--latency-repeats", type=_positive_int, default=30, help="timed forwards per schedule")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- schedules, budget
def resolve_names(requested: list[str]) -> dict[str, deeproots.Schedule]:
    """Expand ``paper`` and validate every name; keep the order, drop repeats."""
    paper = deeproots.paper_schedules(ARCH)
    names: list[str] = []
    for item in requested:
        names.extend(paper if item == "paper" else [item])
    out: dict[str, deeproots.Schedule] = {}
    for name in names:
        try:
            schedule = deeproots.resolve_schedule(ARCH, name)
        except ValueError as exc:
            raise UsageError(f"schedule {name!r}: {exc}") from None
        out.setdefault(name, schedule)
    return out


def family(name: str) -> str:
    """Plot series of a schedule name: orig, root, col, tree, or other."""
    head = name.split("-")[0]
    return head if head in FAMILIES else "other"


def groups_text(schedule: deeproots.Schedule) -> str:
    """Groups of the spatial convs in the paper's notation, e.g. ``1-8-4`` for root-8."""
    g = schedule.groups
    return f"{g['conv1a']}-{g['conv2a']}-{g['conv3a']}"


def budget_tag(args: argparse.Namespace, config: TrainConfig) -> str:
    """Folder name for one budget: readable part + hash of everything that shapes the result."""
    recipe = {k: v for k, v in config.to_dict().items() if k not in ("seed", "threads", "device")}
    key = {
        "dataset": args.dataset, "subset": args.subset, "val_size": args.val_size,
        "test_size": args.test_size, "recipe": recipe,
    }  # fmt: skip
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:6]
    subset = args.subset if args.subset is not None else "all"
    test = args.test_size if args.test_size is not None else "all"
    prefix = "" if args.dataset == "cifar10" else f"{args.dataset}-"
    return f"{prefix}e{args.epochs}-n{subset}-v{args.val_size}-t{test}-{digest}"


def make_config(args: argparse.Namespace, seed: int) -> TrainConfig:
    try:
        return TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, threads=args.threads,
            device=args.device,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ----------------------------------------------------------------------------- data
def load(args: argparse.Namespace) -> DataBundle:
    """Load CIFAR-10 (validation split fixed by seed 0 for every schedule and seed)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*differ from the official md5.*")
            if args.dataset == "synthetic":
                data = load_data(
                    "synthetic", subset=args.subset, val_size=args.val_size, num_train=2 * (args.val_size + (args.subset or 64)),
                    num_test=args.test_size or 64,
                )  # fmt: skip
            else:
                data = load_data("cifar10", root=args.data_root, subset=args.subset, val_size=args.val_size, download=False)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        raise UsageError(f"cannot load {args.dataset}: {exc}") from None
    if args.test_size is not None:
        if args.test_size > len(data.test):
            raise UsageError(f"--test-size {args.test_size} exceeds the {len(data.test)} test images")
        test = dataclasses.replace(
            data.test, images=data.test.images[: args.test_size], labels=data.test.labels[: args.test_size]
        )
        data = dataclasses.replace(data, test=test)
    return data


# ----------------------------------------------------------------------------- training
def save_weights(model: torch.nn.Module, path: Path, schedule: deeproots.Schedule) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"arch": ARCH, "schedule": schedule.id, "name": schedule.name or ""})
    os.replace(tmp, path)


def train_one(
    name: str, schedule: deeproots.Schedule, seed: int, data: DataBundle, args: argparse.Namespace,
    run_dir: Path, weights_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """Train one schedule with one seed; write its weights and result JSON; return the result."""
    config = make_config(args, seed)
    torch.manual_seed(seed)  # model init; the data order comes from config.seed
    model = deeproots.build_model(ARCH, schedule, num_classes=data.num_classes)
    cost = deeproots.count_cost(model, data.input_size)
    checkpoint = weights_dir / f"{name}_seed{seed}.ckpt.pt"

    def report(e: Any) -> None:
        if not args.quiet:
            print(
                f"  {name} seed {seed} epoch {e.epoch}/{config.epochs}: train loss {e.train_loss:.3f}  "
                f"val acc {e.val_accuracy:.4f}  {e.images_per_second:.0f} img/s  {e.seconds:.0f} s",
                flush=True,
            )

    start = time.time()
    result = fit(model, data, config, on_epoch=report, checkpoint_path=checkpoint, resume=True)
    test_start = time.time()
    test_loss, test_acc = evaluate(model, data.test, config)
    test_seconds = time.time() - test_start
    weights = weights_dir / f"{name}_seed{seed}.safetensors"
    save_weights(model, weights, schedule)
    record = {
        "arch": ARCH,
        "schedule": name,
        "schedule_id": schedule.id,
        "groups": groups_text(schedule),
        "seed": seed,
        "budget": run_dir.name,
        "flops": cost.flops,
        "params": cost.params,
        "val_accuracy": result.val_accuracy,
        "val_loss": result.val_loss,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "train_images": len(data.train),
        "val_images": len(data.val) if data.val is not None else 0,
        "test_images": len(data.test),
        "images_per_second": result.images_per_second,
        "wall_seconds": time.time() - start,
        "test_seconds": test_seconds,
        "resumed_from_epoch": result.resumed_from,
        "history": [dataclasses.asdict(h) for h in result.history],
        "config": config.to_dict(),
        "threads": torch.get_num_threads() if config.threads is None else config.threads,
        "device": result.device,
        "data": {k: (str(v) if isinstance(v, Path) else v) for k, v in data.info.items()},
        "weights": str(weights),
        "provenance": deeproots.provenance(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = run_dir / f"{name}_seed{seed}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    checkpoint.unlink(missing_ok=True)
    return record


# ----------------------------------------------------------------------------- latency
def measure(names: list[str], schedules: dict[str, deeproots.Schedule], args: argparse.Namespace, path: Path) -> dict:
    """CPU (and CUDA) latency of all schedules, interleaved in one run; stored in ``path``."""
    models = {n: deeproots.build_model(ARCH, schedules[n]) for n in names}
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        lat = deeproots.compare_latency(
            models, (3, 32, 32), device=device, batch_size=args.latency_batch,
            threads=args.threads if device == "cpu" else None, repeats=args.latency_repeats,
        )  # fmt: skip
        out[device] = {
            "ms": {n: lat[n].ms for n in names},
            "memory_format": {n: lat[n].protocol["memory_format"] for n in names},
            "protocol": {k: v for k, v in lat[names[0]].protocol.items() if k != "memory_format"},
        }
    out["load_after"] = os.getloadavg()
    out["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.write_text(json.dumps(out, indent=1))
    return out


# ----------------------------------------------------------------------------- report
def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pct(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")


def summarise(
    names: list[str], schedules: dict[str, deeproots.Schedule], records: list[dict], latency: dict | None
) -> list[dict[str, Any]]:
    """One row per schedule: cost, ratios to orig, accuracy mean/std over seeds, latency."""
    cost = {}
    for n in names:
        with torch.device("meta"):
            model = deeproots.build_model(ARCH, schedules[n])
        cost[n] = deeproots.count_cost(model, (3, 32, 32))
    ref = cost.get("orig") or deeproots.count_cost(deeproots.build_model(ARCH, "orig"), (3, 32, 32))
    cpu = (latency or {}).get("cpu", {}).get("ms", {})
    gpu = (latency or {}).get("cuda", {}).get("ms", {})
    rows = []
    for n in names:
        mine = [r for r in records if r["schedule"] == n]
        val_m, val_s = _mean_std([r["val_accuracy"] for r in mine])
        test_m, test_s = _mean_std([r["test_accuracy"] for r in mine])
        rows.append({
            "schedule": n, "family": family(n), "groups": groups_text(schedules[n]), "schedule_id": schedules[n].id,
            "flops": cost[n].flops, "params": cost[n].params,
            "flops_ratio": cost[n].flops / ref.flops, "params_ratio": cost[n].params / ref.params,
            "seeds": len(mine), "val_acc_mean": val_m, "val_acc_std": val_s,
            "test_acc_mean": test_m, "test_acc_std": test_s,
            "cpu_ms": cpu.get(n, math.nan), "cpu_speedup": cpu["orig"] / cpu[n] if n in cpu and "orig" in cpu else math.nan,
            "gpu_ms": gpu.get(n, math.nan), "gpu_speedup": gpu["orig"] / gpu[n] if n in gpu and "orig" in gpu else math.nan,
        })  # fmt: skip
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f}"


def _x(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}x"


def write_markdown(
    rows: list[dict[str, Any]], path: Path, args: argparse.Namespace, tag: str, records: list[dict],
    latency: dict | None,
) -> str:  # fmt: skip
    r0 = records[0] if records else {}
    cfg = r0.get("config", {})
    lines = [
        f"# NIN on {'CIFAR-10' if args.dataset == 'cifar10' else args.dataset}: the paper's grouping schedules "
        "(experiments/paper_nin.py)",
        "",
        f"Budget `{tag}`: **{args.epochs} epoch(s) on {r0.get('train_images', '?')} training images**, "
        f"validation {r0.get('val_images', '?')} images (carved from the training set, seed 0), "
        f"test accuracy on {r0.get('test_images', '?')} {'CIFAR-10' if args.dataset == 'cifar10' else args.dataset} test images"
        + (" (the first N of the test batch)" if args.test_size else "")
        + f"; seeds {sorted({r['seed'] for r in records})}. The paper trained ~300 epochs on all 50,000.",
        "",
        f"Recipe (one for all): SGD lr {cfg.get('lr')} ({cfg.get('lr_schedule')}, warm-up "
        f"{cfg.get('warmup_fraction')}), Nesterov momentum {cfg.get('momentum')}, batch {cfg.get('batch_size')}, "
        f"weight decay {cfg.get('weight_decay')}, label smoothing {cfg.get('label_smoothing')}, pad-4 crop + flip; "
        f"trained on {r0.get('device', '?')} with {r0.get('threads', '?')} threads. "
        "Val acc = final epoch (nothing is selected on test).",
        "",
    ]
    if latency and "cpu" in latency:
        p = latency["cpu"]["protocol"]
        lines += [
            f"Latency: `deeproots.compare_latency`, all schedules interleaved in one run, {p['device_name']}, "
            f"{p['threads']} threads, batch {p['batch_size']}, BN folded, faster memory format per model, "
            f"median of {p['repeats']} repeats; load average before/after "
            f"{latency['load_before'][0]:.2f}/{latency['load_after'][0]:.2f} (1 min), measured {latency['measured']}."
            + (f" GPU: {latency['cuda']['protocol']['device_name']}." if "cuda" in latency else " No GPU here."),
            "",
        ]
    lines += [
        "| schedule | groups 1a-2a-3a | FLOPs | params | FLOPs / orig | params / orig | val acc % | test acc % "
        "| CPU ms/img | CPU speed-up | GPU ms/img |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['schedule']} | {r['groups']} | {r['flops']:,} | {r['params']:,} | {r['flops_ratio']:.3f} | "
            f"{r['params_ratio']:.3f} | {_pct(r['val_acc_mean'], r['val_acc_std'], r['seeds'])} | "
            f"{_pct(r['test_acc_mean'], r['test_acc_std'], r['seeds'])} | {_ms(r['cpu_ms'])} | "
            f"{_x(r['cpu_speedup'])} | {_ms(r['gpu_ms'])} |"
        )
    se = _binomial_se(rows, records)
    lines += [
        "",
        "Accuracy ± is the standard deviation over seeds (shown only with more than one seed). "
        f"Sampling noise of one accuracy figure alone (binomial standard error at orig's accuracy): "
        f"±{100 * se['test']:.2f} points on the {r0.get('test_images', '?')} test images, "
        f"±{100 * se['val']:.2f} on the {r0.get('val_images', '?')} validation images.",
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _binomial_se(rows: list[dict[str, Any]], records: list[dict]) -> dict[str, float]:
    """Standard error sqrt(p (1 - p) / n) of one accuracy figure, at orig's accuracy."""
    ref = next((r for r in rows if r["schedule"] == "orig"), rows[0])
    n_test = records[0].get("test_images", 0) if records else 0
    n_val = records[0].get("val_images", 0) if records else 0
    se = lambda p, n: math.sqrt(p * (1 - p) / n) if n and not math.isnan(p) else math.nan  # noqa: E731
    return {"test": se(ref["test_acc_mean"], n_test), "val": se(ref["val_acc_mean"], n_val)}


def plot(rows: list[dict[str, Any]], path: Path, title: str, test_se: float = math.nan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"orig": "o", "root": "s", "col": "D", "tree": "^", "other": "x"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, label in ((axes[0], "flops", "FLOPs (multiply-adds, millions)"), (axes[1], "params", "parameters (thousands)")):
        scale = 1e6 if key == "flops" else 1e3
        for fam in (*FAMILIES, "other"):
            pts = [r for r in rows if r["family"] == fam and not math.isnan(r["test_acc_mean"])]
            if not pts:
                continue
            pts.sort(key=lambda r: r[key])
            xs = [r[key] / scale for r in pts]
            ys = [100 * r["test_acc_mean"] for r in pts]
            es = [100 * r["test_acc_std"] for r in pts]
            ax.errorbar(xs, ys, yerr=es if any(es) else None, marker=markers[fam], linestyle="-" if fam != "orig" else "",
                        label=fam, capsize=3)  # fmt: skip
            for r, x, y in zip(pts, xs, ys):
                ax.annotate(r["schedule"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    if not math.isnan(test_se):
        axes[0].text(0.02, 0.02, f"binomial s.e. of one figure: ±{100 * test_se:.1f} points", transform=axes[0].transAxes,
                     fontsize=8, color="0.3")  # fmt: skip
    axes[0].legend(title="schedule family")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        schedules = resolve_names(args.schedules)
        if not math.isfinite(args.lr) or args.lr <= 0:
            raise UsageError(f"--lr must be a positive number, got {args.lr}")
        tag = budget_tag(args, make_config(args, 0))
        run_dir, weights_dir = args.out / "runs" / tag, args.out / "weights" / tag
        names = list(schedules)
        if "orig" not in names:  # ratios and speed-ups need the reference
            names.insert(0, "orig")
            schedules = {"orig": deeproots.resolve_schedule(ARCH, "orig"), **schedules}
        data = None
        if not args.report_only:
            data = load(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"budget {tag}: {len(names)} schedules x seeds {args.seeds}; results in {run_dir}", flush=True)

    records: list[dict[str, Any]] = []
    for name in names:
        for seed in args.seeds:
            path = run_dir / f"{name}_seed{seed}.json"
            if path.exists():
                records.append(json.loads(path.read_text()))
                print(f"{name} seed {seed}: done before (val {records[-1]['val_accuracy']:.4f}, "
                      f"test {records[-1]['test_accuracy']:.4f}); skipped", flush=True)  # fmt: skip
                continue
            if args.report_only or data is None:
                print(f"{name} seed {seed}: no result at this budget (--report-only)", flush=True)
                continue
            print(f"{name} seed {seed} ({schedules[name].id}): training", flush=True)
            rec = train_one(name, schedules[name], seed, data, args, run_dir, weights_dir)
            records.append(rec)
            print(f"{name} seed {seed}: val {rec['val_accuracy']:.4f}  test {rec['test_accuracy']:.4f}  "
                  f"{rec['wall_seconds']:.0f} s", flush=True)  # fmt: skip
    if not records:
        print(f"error: no results for budget {tag} in {run_dir}", file=sys.stderr)
        return 2

    latency_path = run_dir / "latency.json"
    latency = None
    if not args.no_latency:
        print(f"latency: {len(names)} schedules interleaved (load {os.getloadavg()[0]:.2f})", flush=True)
        latency = measure(names, schedules, args, latency_path)
    elif latency_path.exists():
        latency = json.loads(latency_path.read_text())
        if set(latency.get("cpu", {}).get("ms", {})) < set(names):
            latency = None  # stored timings do not cover these schedules: better none than mixed runs

    rows = summarise(names, schedules, records, latency)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "paper_nin.csv")
    text = write_markdown(rows, args.out / "paper_nin.md", args, tag, records, latency)
    n_train = records[0]["train_images"]
    plot(rows, args.out / "paper_nin.png",
         f"NIN on CIFAR-10, {args.epochs} epoch(s) on {n_train} images ({tag}); test accuracy vs cost",
         _binomial_se(rows, records)["test"])  # fmt: skip
    print(text)
    print(f"wrote {args.out / 'paper_nin.md'}, {args.out / 'paper_nin.csv'}, {args.out / 'paper_nin.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
