"""Before a search trains: the run-time estimate from one timed batch, and the dry run that describes a space."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any, Callable

from .._text import duration, format_count
from ..space._params import describe

if TYPE_CHECKING:
    from ..engine._study import RunPlan
    from ..space import ResolvedSpace

__all__ = ["estimate_time", "dry_run", "concurrency", "console"]


def console() -> Any:
    """A rich console for progress output (wide when not a terminal: log files keep their tables)."""
    from rich.console import Console  # noqa: PLC0415

    c = Console(highlight=False, soft_wrap=True)
    if not c.is_terminal:
        c = Console(highlight=False, soft_wrap=True, width=160)
    return c


def _train_images(space: ResolvedSpace) -> tuple[int, int]:
    """(training images per epoch, validation images), from the data facts the space resolved."""
    d = space.spec.data
    if d.subset is not None:
        return d.subset, d.val_size
    total = space.data.get("num_train") or 0
    return max(0, total - d.val_size), d.val_size


def estimate_time(space: ResolvedSpace, concurrency: int, budget: int | None = None) -> dict[str, Any]:
    """Estimate the search's wall time from one timed training batch (run here, on the trial's device).

    The first schedule to be trained (the first seed, else the fewest-groups corner) trains a few
    batches of random images with the trial's thread count; the time per image, scaled to the
    training and validation images of every epoch of every trial and divided by the trials that run
    at once, is the estimate. Duplicates cost nothing, so it is an upper bound as long as the timed
    schedule is among the costlier ones (fewer groups = more FLOPs).

    Returns:
        ``{"seconds": total, "epoch_seconds": per trial epoch, "images_per_second": ..., "device": ..., "schedule": id}``.
    """
    import torch  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    pspace = space.params
    budget = budget if budget is not None else space.spec.search.trials
    cfg = space.train
    values = pspace.seeds[0][1] if pspace.seeds else pspace.extremes()[0]
    schedule = pspace.schedule(values)
    use_cuda = space.spec.resources.gpus_per_trial > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    threads = cfg.threads or max(1, int(space.spec.resources.cpus_per_trial))
    batch = min(cfg.batch_size, 256 if use_cuda else 32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = deeproots.build_model(space.arch, schedule, num_classes=pspace.num_classes, **space.spec.model.options)
        fmt = torch.channels_last if cfg.memory_format == "channels_last" else torch.contiguous_format
        model = model.to(device=device, memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, *pspace.input_size, device=device).to(memory_format=fmt)
        y = torch.randint(0, pspace.num_classes, (batch,), device=device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else _null()

        def step() -> None:
            with autocast:
                out = model(x)  # (logits, aux1, aux2) for a model with auxiliary classifiers (GoogLeNet)
                loss = sum(torch.nn.functional.cross_entropy(o.float(), y) for o in (out if isinstance(out, tuple) else (out,)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up (allocations, kernel selection)
        if use_cuda:
            torch.cuda.synchronize()
        reps = 3
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        if use_cuda:
            torch.cuda.synchronize()
        per_image = (time.perf_counter() - t0) / (reps * batch)
    finally:
        torch.set_num_threads(before)
    n_train, n_val = _train_images(space)
    epoch = per_image * n_train + per_image / 3 * n_val  # an inference pass is ~1/3 of a training step
    startup = 5.0  # seconds per trial: worker start, data from the cache, cost count
    total = (epoch * cfg.epochs + startup) * budget / max(1, concurrency)
    return {"seconds": total, "epoch_seconds": epoch, "images_per_second": 1 / per_image, "device": str(device),
            "schedule": schedule.name or schedule.id, "threads": threads, "concurrency": concurrency}  # fmt: skip


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def concurrency(space: ResolvedSpace, cpus: float, gpus: float) -> int:
    """Trials that run at once with ``cpus`` CPUs and ``gpus`` GPUs and the space's resources per trial."""
    r = space.spec.resources
    n = math.floor(cpus / r.cpus_per_trial) if r.cpus_per_trial else 1
    if r.gpus_per_trial > 0:
        n = min(n, math.floor(gpus / r.gpus_per_trial + 1e-9))
    if r.max_concurrent:
        n = min(n, r.max_concurrent)
    return max(1, n)


def dry_run(space: ResolvedSpace, plan: RunPlan, *, estimate: bool = True, print_fn: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Validate and describe the space: parameters, size, cost range, seeds' costs, time estimate.

    Trains nothing and writes nothing.

    Example:
        >>> from search import load_space, dry_run
        >>> from search.engine._study import plan_run
        >>> space = load_space("spaces/nin-spatial.yaml", check_data=False)
        >>> info = dry_run(space, plan_run(space), estimate=False, print_fn=lambda *_: None)
        >>> info["size"]
        36
    """
    from rich.table import Table  # noqa: PLC0415

    out = print_fn or console().print
    pspace = space.params
    spec = space.spec
    ranges = space.cost_range()
    (fmin, fmax), (pmin, pmax) = ranges["flops"], ranges["params"]
    out(f"space {space.name!r}: {space.arch} {list(pspace.input_size)}, {pspace.num_classes} classes"
        + (f" -- {spec.description}" if spec.description else ""))  # fmt: skip
    table = Table(title="searched parameters", title_justify="left")
    for col in ("parameter", "layers", "group choices"):
        table.add_column(col)
    for row in describe(pspace):
        table.add_row(*row)
    out(table)
    if pspace.fixed and any(g != 1 for g in pspace.fixed.values()):
        out(f"fixed layers: {', '.join(f'{k}={v}' for k, v in pspace.fixed.items() if v != 1)} (others 1)")
    size = pspace.size
    out(f"distinct schedules: {size:,}" + (f"  (fewer than the budget of {spec.search.trials}: the search stops after all)"
                                           if size < spec.search.trials else ""))  # fmt: skip
    out(f"FLOPs {format_count(fmin)} .. {format_count(fmax)}   params {format_count(pmin)} .. {format_count(pmax)}")
    seeds = Table(title="seeds (evaluated first)", title_justify="left")
    for col in ("seed", "schedule", "FLOPs", "params"):
        seeds.add_column(col, justify="right" if col in ("FLOPs", "params") else "left")
    seed_costs = []
    for label, values in pspace.seeds:
        c = space.cost(values)
        f, p = c["flops"], c["params"]
        seed_costs.append({"seed": label, "flops": f, "params": p})
        seeds.add_row(label, pspace.schedule(values).id, format_count(f), format_count(p))
    if pspace.seeds:
        out(seeds)
    else:
        out("seeds: none")
    c = spec.constraints
    limits = [f"{k} {format_count(v)}" for k, v in (("max FLOPs", c.max_flops), ("max params", c.max_params)) if v]
    if c.max_latency_ms:
        limits.append(f"max latency {c.max_latency_ms} ms")
    trainer = space.train
    n_train, n_val = _train_images(space)
    from ..engine._build import make_scheduler  # noqa: PLC0415

    rungs = make_scheduler(space)
    out(f"objectives: {', '.join(space.objectives)}" + (f"; constraints: {', '.join(limits)}" if limits else ""))
    out(f"search: {spec.search.sampler}, seed {spec.search.seed}"
        + (f", early stopping {rungs.name} at epochs {', '.join(map(str, rungs.rungs))} (keeps 1/{rungs.reduction_factor:g} per rung)"
           if rungs else ", no early stopping")
        + f"; budget {spec.search.trials} x {space.train.epochs} = {spec.search.trials * space.train.epochs:,} epochs")  # fmt: skip
    out(f"data: {spec.data.name}, {n_train:,} training + {n_val:,} validation images; trainer: {trainer.epochs} epochs, "
        f"batch {trainer.batch_size}")  # fmt: skip
    r = spec.resources
    out(f"per trial: {r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU" + (f", at most {r.max_concurrent} at once" if r.max_concurrent else ""))
    verb = {"new": "would start", "resume": "would resume", "fresh": "would start a new study in",
            "restart": "would start anew (the study holds no finished trial)", "differs": "exists with another space:"}[plan.mode]  # fmt: skip
    out(f"run: {verb} {plan.paths.root}/ (study {plan.paths.study_name!r} in {plan.paths.storage_url}); "
        f"trials keep their checkpoints in {plan.paths.trial_storage().describe()}")  # fmt: skip
    if plan.problem:
        out(f"warning: storage: {plan.problem}; a run would refuse it")
    if plan.diff:
        out(f"  the space differs from the study's: {plan.diff}"
            + ("; a run would refuse it (--fresh for a new study, --name for a new run)" if plan.mode == "differs" else ""))  # fmt: skip
    info: dict[str, Any] = {"size": size, "flops": (fmin, fmax), "params": (pmin, pmax), "seeds": seed_costs}
    if estimate:
        import torch  # noqa: PLC0415

        cpus = float(os.cpu_count() or 1)
        gpus = float(torch.cuda.device_count())
        est = estimate_time(space, concurrency(space, cpus, gpus), min(size, spec.search.trials))
        out(f"estimated run time: ~{duration(est['seconds'])} on this machine ({est['concurrency']} trial(s) at once; "
            f"timed {est['images_per_second']:.0f} training images/s for {est['schedule']} on {est['device']}, "
            f"{est['threads']} thread(s); ~{duration(est['epoch_seconds'])} per trial epoch)")  # fmt: skip
        info["estimate"] = est
    return info


