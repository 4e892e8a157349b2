"""A search run: plan -> study -> Ray Tune ``Tuner`` with :class:`ScheduleSearch` -> summary -> export."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray.tune.callback import Callback

from ._config import SearchSpace, SpaceError, format_count, make_train_config
from ._report import outcome_counts, pareto_line, pareto_rows, pareto_table, state_counts
from ._space import ParamSpace, build_param_space, describe
from ._study import RunPaths, RunPlan, make_sampler, open_storage, plan_run, prepare_study

__all__ = ["SearchResult", "run_search", "dry_run", "estimate_time"]

_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class SearchResult:
    """What a finished (or interrupted) search reports.

    Attributes:
        paths: the run's files (folder, storage URL, study name).
        budget: distinct schedules asked for.
        evaluated: distinct schedules evaluated at the run's fidelity (COMPLETE or early-stopped).
        space_size: distinct schedules in the space.
        exhausted: the space had fewer schedules than the budget and all were evaluated.
        interrupted: stopped by Ctrl-C.
        wall_seconds: wall time of this invocation.
        states: trials per Optuna state.
        outcomes: trials per ``outcome`` user attribute.
        pareto: the Pareto set, one row per schedule (:func:`search._report.pareto_rows`).
    """

    paths: RunPaths
    budget: int
    evaluated: int
    space_size: int
    exhausted: bool = False
    interrupted: bool = False
    wall_seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    pareto: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dashboard_command(self) -> str:
        """``optuna-dashboard <storage URL>``."""
        return self.paths.dashboard_command()


def _console() -> Any:
    from rich.console import Console  # noqa: PLC0415

    return Console(highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------- estimate


def _train_images(space: SearchSpace) -> tuple[int, int]:
    """(training images per epoch, validation images) without loading the data."""
    d = space.data
    total = {"cifar10": 50_000, "synthetic": int(d.options.get("num_train", 2000))}.get(d.name)
    if d.subset is not None:
        return d.subset, d.val_size
    if total is None:  # imagefolder: count the files
        root = Path(d.root or ".") / "train"
        total = sum(1 for p in root.rglob("*") if p.is_file())
    return max(0, total - d.val_size), d.val_size


def estimate_time(space: SearchSpace, pspace: ParamSpace, concurrency: int, budget: int | None = None) -> dict[str, Any]:
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

    budget = budget if budget is not None else space.search.trials
    cfg = make_train_config(space.trainer)
    values = pspace.seeds[0][1] if pspace.seeds else pspace.extremes()[0]
    schedule = pspace.schedule(values)
    use_cuda = space.resources.gpus_per_trial > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    threads = cfg.threads or max(1, int(space.resources.cpus_per_trial))
    batch = min(cfg.batch_size, 256 if use_cuda else 32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = deeproots.build_model(space.model.arch, schedule, num_classes=pspace.num_classes, **space.model.options)
        fmt = torch.channels_last if cfg.memory_format == "channels_last" else torch.contiguous_format
        model = model.to(device=device, memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, *pspace.input_size, device=device).to(memory_format=fmt)
        y = torch.randint(0, pspace.num_classes, (batch,), device=device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda and cfg.bf16 else _null()

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


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _concurrency(space: SearchSpace, cpus: float, gpus: float) -> int:
    r = space.resources
    n = math.floor(cpus / r.cpus_per_trial) if r.cpus_per_trial else 1
    if r.gpus_per_trial > 0:
        n = min(n, math.floor(gpus / r.gpus_per_trial + 1e-9))
    if r.max_concurrent:
        n = min(n, r.max_concurrent)
    return max(1, n)


# --------------------------------------------------------------------------------- dry run


def _cost_of(space: SearchSpace, pspace: ParamSpace, values: dict[str, int]) -> tuple[int, int]:
    import torch  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    with torch.device("meta"):  # shapes only: costing a schedule allocates nothing
        model = deeproots.build_model(space.model.arch, pspace.schedule(values), num_classes=pspace.num_classes, **space.model.options)
    cost = deeproots.count_cost(model, pspace.input_size)
    return cost.flops, cost.params


def dry_run(space: SearchSpace, plan: RunPlan, *, estimate: bool = True, print_fn: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Validate and describe the space: parameters, size, cost range, seeds' costs, time estimate.

    Trains nothing and writes nothing.

    Example:
        >>> from search import load_space, dry_run
        >>> from search._study import plan_run
        >>> space = load_space("spaces/nin-spatial.yaml")
        >>> info = dry_run(space, plan_run(space), estimate=False, print_fn=lambda *_: None)
        >>> info["size"]
        36
    """
    from rich.table import Table  # noqa: PLC0415

    out = print_fn or _console().print
    pspace = build_param_space(space)
    lo, hi = pspace.extremes()
    (fmax, pmax), (fmin, pmin) = _cost_of(space, pspace, lo), _cost_of(space, pspace, hi)
    out(f"space {space.name!r}: {space.model.arch} {list(pspace.input_size)}, {pspace.num_classes} classes"
        + (f" -- {space.description}" if space.description else ""))  # fmt: skip
    table = Table(title="searched parameters", title_justify="left")
    for col in ("parameter", "layers", "group choices"):
        table.add_column(col)
    for row in describe(pspace):
        table.add_row(*row)
    out(table)
    if pspace.fixed and any(g != 1 for g in pspace.fixed.values()):
        out(f"fixed layers: {', '.join(f'{k}={v}' for k, v in pspace.fixed.items() if v != 1)} (others 1)")
    size = pspace.size
    out(f"distinct schedules: {size:,}" + (f"  (fewer than the budget of {space.search.trials}: the search stops after all)"
                                           if size < space.search.trials else ""))  # fmt: skip
    out(f"FLOPs {format_count(fmin)} .. {format_count(fmax)}   params {format_count(pmin)} .. {format_count(pmax)}")
    seeds = Table(title="seeds (evaluated first)", title_justify="left")
    for col in ("seed", "schedule", "FLOPs", "params"):
        seeds.add_column(col, justify="right" if col in ("FLOPs", "params") else "left")
    seed_costs = []
    for label, values in pspace.seeds:
        f, p = _cost_of(space, pspace, values)
        seed_costs.append({"seed": label, "flops": f, "params": p})
        seeds.add_row(label, pspace.schedule(values).id, format_count(f), format_count(p))
    if pspace.seeds:
        out(seeds)
    else:
        out("seeds: none")
    c = space.constraints
    limits = [f"{k} {format_count(v)}" for k, v in (("max FLOPs", c.max_flops), ("max params", c.max_params)) if v]
    if c.max_latency_ms:
        limits.append(f"max latency {c.max_latency_ms} ms")
    trainer = make_train_config(space.trainer)
    n_train, n_val = _train_images(space)
    asha = space.search.asha
    out(f"objectives: {', '.join(space.objectives)}" + (f"; constraints: {', '.join(limits)}" if limits else ""))
    out(f"search: {space.search.sampler}, {space.search.trials} schedules, seed {space.search.seed}"
        + (f", ASHA (grace {asha.grace_period} epochs, reduction {asha.reduction_factor:g})" if asha.enabled else ""))  # fmt: skip
    out(f"data: {space.data.name}, {n_train:,} training + {n_val:,} validation images; trainer: {trainer.epochs} epochs, "
        f"batch {trainer.batch_size}")  # fmt: skip
    r = space.resources
    out(f"per trial: {r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU" + (f", at most {r.max_concurrent} at once" if r.max_concurrent else ""))
    verb = {"new": "would start", "resume": "would resume", "fresh": "would start a new study in"}[plan.mode]
    out(f"run: {verb} {plan.paths.root}/ (study {plan.paths.study_name!r} in {plan.paths.storage_url})")
    info: dict[str, Any] = {"size": size, "flops": (fmin, fmax), "params": (pmin, pmax), "seeds": seed_costs}
    if estimate:
        import torch  # noqa: PLC0415

        cpus = float(os.cpu_count() or 1)
        gpus = float(torch.cuda.device_count())
        est = estimate_time(space, pspace, _concurrency(space, cpus, gpus), min(size, space.search.trials))
        out(f"estimated run time: ~{_duration(est['seconds'])} on this machine ({est['concurrency']} trial(s) at once; "
            f"timed {est['images_per_second']:.0f} training images/s for {est['schedule']} on {est['device']}, "
            f"{est['threads']} thread(s); ~{_duration(est['epoch_seconds'])} per trial epoch)")  # fmt: skip
        info["estimate"] = est
    return info


# --------------------------------------------------------------------------------- progress


class _Progress(Callback):
    """Tune callback printing trials done / budget, running trials with their epoch, the front."""

    def __init__(self, searcher: Any, study: Any, objectives: list[str], out: Callable[[str], None]) -> None:
        self._searcher = searcher
        self._study = study
        self._objectives = objectives
        self._out = out
        self._front: list[str] = []

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its config (tuner.pkl); nothing to keep
        return {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:  # noqa: D102
        self._result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        self._finished(trial)

    def _label(self, trial: Any) -> str:
        number, sid = self._searcher.numbers.get(trial.trial_id, (None, "?"))
        return f"#{number} {sid}"

    def _status(self) -> str:
        running = self._searcher.running()
        parts = [f"{sid.split(':', 1)[-1]} e{ep}" for sid, ep in running.values()]
        return f"[{self._searcher.counted}/{self._searcher.budget} evaluated] running: {', '.join(parts) or '-'}"

    def _result(self, trial: Any, result: dict) -> None:
        status = result.get("status")
        if status in ("training", "done"):
            self._out(
                f"  {self._label(trial)} epoch {result['epoch']}/{result['epochs']} val_accuracy {result['val_accuracy']:.4f} "
                f"({result.get('epoch_seconds', 0):.0f} s, {result.get('images_per_second', 0):.0f} img/s)"
            )

    def _finished(self, trial: Any) -> None:
        outcome = self._searcher.outcomes.get(trial.trial_id, "failed")
        detail = self._searcher.details.get(trial.trial_id, "")
        self._out(f"{self._status()} | {self._label(trial)} {outcome}{': ' + detail if detail else ''}")
        rows = pareto_rows(self._study)
        ids = [r["schedule_id"] for r in rows]
        if ids != self._front and rows:
            self._front = ids
            self._out(f"  Pareto set ({len(rows)}): {pareto_line(rows)}")


# --------------------------------------------------------------------------------- run


def _export_step(paths: RunPaths, out: Callable[[Any], None]) -> None:
    """The hook for the export step (``python -m search.export RUN``), run when a search finishes."""
    try:
        from . import export as _export  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return
    run = getattr(_export, "export_run", None)
    if run is None:
        return
    out(f"exporting the Pareto set to {paths.export_dir}/ ...")
    run(paths.root)


def _ray_init(address: str | None) -> bool:
    """Start (or join) Ray unless it is up already; True when this call started it."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        return False
    pythonpath = os.pathsep.join(p for p in (_PROJECT_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )  # fmt: skip
    return True


def run_search(
    space: SearchSpace,
    *,
    runs_dir: str | Path = "runs",
    storage: str | None = None,
    address: str | None = None,
    fresh: bool = False,
    estimate: bool = True,
    export: bool = True,
    print_fn: Callable[[Any], None] | None = None,
) -> SearchResult:
    """Run (or resume) the search a space describes; returns when the budget is met or on Ctrl-C.

    Steps: plan the run (refusing a changed space unless ``fresh``); open the study (seeds enqueued,
    or trials of a killed driver marked FAIL and retried); estimate the time from a timed batch;
    start Ray (or join ``address``); run a Tune ``Tuner`` whose searcher is :class:`ScheduleSearch`
    (Optuna sampler, study in RDB storage, only this process writes it) with ASHA if enabled; print
    progress; at the end the Pareto table, the dashboard command, and the export step.

    Args:
        space: the validated space (:func:`search.load_space`).
        runs_dir: parent folder of run folders.
        storage: SQLAlchemy URL overriding ``space.storage`` and the default
            ``sqlite:///runs/<name>/study.db``.
        address: an existing Ray cluster (``ray start --head``); None starts a local one.
        fresh: start a new study when the existing one was made with another space.
        estimate: time a batch and print the estimated run time first.
        export: run the export step at the end.
        print_fn: where progress goes (default: a rich console).

    Returns:
        The :class:`SearchResult`.

    Example:
        >>> from search import load_space, run_search
        >>> space = load_space("spaces/nin-spatial.yaml", ["data.name=synthetic", "trainer.epochs=1",
        ...                    "search.trials=2", "data.subset=200", "data.val_size=100"])
        >>> result = run_search(space, runs_dir="/tmp/runs", estimate=False)  # doctest: +SKIP
        >>> result.evaluated  # doctest: +SKIP
        2
    """
    import optuna  # noqa: PLC0415

    start = time.time()
    out = print_fn or _console().print
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pspace = build_param_space(space)
    plan = plan_run(space, runs_dir=runs_dir, storage=storage, fresh=fresh)
    make_sampler(space, space.search.trials)  # validate sampler options before writing anything
    paths = plan.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    lock = _lock_run(paths)
    try:
        return _run_locked(space, pspace, plan, address, estimate, export, out, start)
    finally:
        lock.close()  # releases the lock (the OS releases it too when the process dies)


def _lock_run(paths: RunPaths) -> Any:
    """Hold ``runs/<name>/.lock`` for this driver's lifetime; refuse a second driver on the same run."""
    import fcntl  # noqa: PLC0415

    f = open(paths.root / ".lock", "a+")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise SpaceError("", f"run {paths.root.name!r} is being searched by another process (pid {holder}); wait for it or stop it") from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


def _run_locked(
    space: SearchSpace, pspace: ParamSpace, plan: RunPlan, address: str | None, estimate: bool, export: bool,
    out: Callable[[Any], None], start: float,
) -> SearchResult:  # fmt: skip
    import optuna  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    from ._searcher import EarlyStopper, ScheduleSearch  # noqa: PLC0415

    paths = plan.paths
    prov = deeproots.provenance()
    provenance = {"deeproots_version": prov["deeproots"], "git_revision": prov["git_revision"], "torch": prov["torch"]}
    storage_obj = open_storage(paths.storage_url)
    info = prepare_study(plan, space, pspace, storage_obj, provenance)
    _write_run_file(paths, space, plan)
    study = optuna.load_study(study_name=paths.study_name, storage=storage_obj)
    n_before = len(study.trials)
    sampler = make_sampler(space, space.search.trials, offset=n_before)
    budget = space.search.trials

    if info["created"]:
        out(f"run {space.name!r}: new study {paths.study_name!r} in {paths.storage_url}"
            + (f" ({info['imported']} results imported from studies at the same fidelity)" if info["imported"] else ""))  # fmt: skip
    else:
        out(f"run {space.name!r}: resuming study {paths.study_name!r} in {paths.storage_url}")
        if info["recovered"]:
            out(f"  {info['recovered']} trial(s) left RUNNING by a stopped driver marked FAIL; "
                f"{len(info['retry'])} schedule(s) queued again" + (f" ({len(info['checkpoints'])} from a checkpoint)" if info["checkpoints"] else ""))  # fmt: skip

    stopper = None
    trainer = make_train_config(space.trainer)
    if space.search.asha.enabled:
        a = space.search.asha
        stopper = EarlyStopper(max_t=trainer.epochs, grace_period=min(a.grace_period, trainer.epochs), reduction_factor=a.reduction_factor)
    searcher = ScheduleSearch(space, pspace, paths.study_name, storage_obj, sampler, budget, stopper,
                              run_dir=str(paths.root.resolve()), provenance=provenance)  # fmt: skip
    searcher.resume_from_checkpoint(set(info["checkpoints"]))
    size = pspace.size
    out(f"{searcher.counted} of {budget} schedules evaluated; the space holds {size:,} distinct schedules"
        + (" -- fewer than the budget: the search stops after evaluating all of them" if size < budget else ""))  # fmt: skip

    result = SearchResult(paths, budget, searcher.counted, size)
    if searcher.counted < budget and not searcher.exhausted:
        started_ray = _ray_init(address)
        try:
            result.interrupted = _tune(space, pspace, paths, searcher, stopper, study, out, estimate)
        finally:
            if started_ray:
                import ray  # noqa: PLC0415

                ray.shutdown()
    result.evaluated = searcher.counted
    result.exhausted = searcher.exhausted and searcher.counted < budget
    result.wall_seconds = time.time() - start
    result.states = state_counts(study)
    result.outcomes = outcome_counts(study)
    result.pareto = pareto_rows(study)
    _summary(result, space, searcher, out)
    if export and not result.interrupted and result.pareto:
        _export_step(paths, out)
    return result


def _tune(
    space: SearchSpace, pspace: ParamSpace, paths: RunPaths, searcher: Any, stopper: Any, study: Any,
    out: Callable[[Any], None], estimate: bool,
) -> bool:  # fmt: skip
    """Run the Tune experiment; True when it was interrupted."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from ._searcher import FailureRecorder  # noqa: PLC0415
    from ._trainable import TrialContext, train_trial  # noqa: PLC0415

    res = ray.cluster_resources()
    concurrency = _concurrency(space, res.get("CPU", 1), res.get("GPU", 0))
    remaining = max(0, min(searcher.budget, pspace.size) - searcher.counted)
    if estimate and remaining:
        est = estimate_time(space, pspace, concurrency, remaining)
        out(f"estimated time for {remaining} schedule(s): ~{_duration(est['seconds'])} if nothing else loads the machine "
            f"({concurrency} trial(s) at once; timed batch: {est['images_per_second']:.0f} training images/s for "
            f"{est['schedule']} on {est['device']} with {est['threads']} thread(s), ~{_duration(est['epoch_seconds'])} per epoch)")  # fmt: skip
    ctx = TrialContext(
        space=space.model_dump(mode="json"), weights_dir=str(paths.weights_dir.resolve()),
        checkpoint_dir=str(paths.checkpoint_dir.resolve()), latency_cache=str(paths.latency_cache.resolve()),
        study_name=paths.study_name,
    )  # fmt: skip
    r = space.resources
    trainable = tune.with_resources(tune.with_parameters(train_trial, ctx=ctx), {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})
    progress = _Progress(searcher, study, list(space.objectives), out)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=stopper, num_samples=-1, max_concurrent_trials=r.max_concurrent,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}", reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{paths.study_name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(paths.ray_dir.resolve()),
            verbose=0, callbacks=[FailureRecorder(searcher), progress],
            failure_config=tune.FailureConfig(max_failures=0), log_to_file=True,
        ),
    )  # fmt: skip
    searcher.on_event = lambda msg: out(f"  {msg}")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then really prints nothing; progress is ours
    # A trial's error is recorded in the study (fail_reason) and its folder (error.txt); Tune's
    # tracebacks and its "resume with Tuner.restore" hints would only bury the progress lines.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        tune_logger.setLevel(level)
        open_trials = searcher.abandon("the search was stopped (Ctrl-C) while this trial ran; its schedule is retried on rerun")
        interrupted = interrupted or open_trials > 0 or searcher.interrupted
    return interrupted


def _summary(result: SearchResult, space: SearchSpace, searcher: Any, out: Callable[[Any], None]) -> None:
    out("")
    if result.interrupted:
        out(f"stopped: {result.evaluated} of {result.budget} schedules evaluated; rerun the same command to resume")
    elif result.exhausted:
        out(f"the space holds only {result.space_size} distinct schedules: all were answered "
            f"({result.evaluated} evaluated, fewer than the budget of {result.budget})")  # fmt: skip
    else:
        out(f"done: {result.evaluated} of {result.budget} schedules evaluated")
    states = ", ".join(f"{k} {v}" for k, v in sorted(result.states.items()))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    out(f"trials in study {result.paths.study_name!r}: {states} (outcomes: {outcomes}); wall time {_duration(result.wall_seconds)}")
    if result.pareto:
        out(pareto_table(result.pareto, list(space.objectives), title=f"Pareto set ({len(result.pareto)} schedules)"))
    out(f"dashboard: {result.dashboard_command}")


def _write_run_file(paths: RunPaths, space: SearchSpace, plan: RunPlan) -> None:
    import json  # noqa: PLC0415

    doc = {
        "name": space.name,
        "storage": paths.storage_url,
        "study_name": paths.study_name,
        "weights_dir": str(paths.weights_dir.relative_to(paths.root)),
        "space": space.model_dump(mode="json"),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    tmp = paths.run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, paths.run_file)

