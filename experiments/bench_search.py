"""Benchmark of the search itself: the project's searcher, scheduler and study, with a surrogate in place of training.

HPO methods are compared on benchmarks at equal budgets over repetitions (Syne Tune's simulator
backend -- ``BlackboxRepositoryBackend`` with ``SimulatorCallback`` -- runs its real schedulers on
tabulated learning curves in simulated time, 4 workers in its NAS-Bench-201 example; NAS-Bench-201/301
and YAHPO Gym are tabular and surrogate benchmarks). This is that for deeproots (DESIGN.md, "Measuring the search
itself"): it says whether a sampler or an early-stopping rule finds more of the true front than random
search at the same number of epochs.

Usage::

    python experiments/bench_search.py --space spaces/nin.yaml [--surrogate MODULE:FUNCTION]
        [--trials 200] [--repeats 5] [--configs random/none nsga2/asha tpe/asha ...]
        [--concurrency 4] [--gp-trials N] [--gp-repeats K] [--seed 0] [--jobs 1] [--json]

What one repetition does (:func:`simulate`):

* **the same code path in simulated time**: the searcher, the scheduler and the study bookkeeping that
  ``python -m search.run`` uses (built by :func:`make_engine`, the one place that imports ``search``),
  driven only through Ray Tune's public interfaces (``Searcher.suggest`` / ``on_trial_result`` /
  ``on_trial_complete``; ``TrialScheduler.on_trial_add`` / ``on_trial_result`` / ``on_trial_complete``
  / ``choose_trial_to_run``) in the order Tune's controller calls them, with stand-in trial and
  controller objects; Optuna's in-memory storage; no Ray workers. ``--concurrency`` trials run at once
  (default 4, the GPU default of the shipped spaces); each trains one epoch per
  ``0.5 + 0.5 * FLOPs / FLOPs(orig)`` simulated time units (an ungrouped epoch is 1; grouped convs do
  not speed up in proportion to their FLOPs), so results arrive out of order, as on a cluster, and
  every decision is reproducible.
* **the surrogate** (``experiments/_surrogate.py``, or ``--surrogate``) gives the accuracy after each
  epoch; repetition k reports its noisy draws (seed k) to the search; the scoring uses the noiseless
  truth.
* **equal epoch budgets**: every configuration may train ``trials x max_epochs`` epochs. A trial starts
  only while the budget still holds all its epochs (spent + the remaining epochs of the running trials
  + ``max_epochs``), so no trial is cut off by the budget and none overshoots it; without early
  stopping that is exactly ``trials`` schedules, with it more. The searcher's own budget (distinct
  schedules) is set out of the way; the search stops when the epochs are spent or the space is
  exhausted.

Scores of one repetition (:func:`score`), against the **true front**: every schedule of the space
(or, where a space has more than :data:`ENUMERATE_LIMIT`, a uniform sample of :data:`SAMPLE_SIZE`,
stated in the output) costed exactly with :class:`deeproots.CostTable`, its true accuracy at
``max_epochs`` from the noiseless surrogate, and the non-dominated set of (accuracy max, FLOPs min,
params min) (``moocore.is_nondominated``, Kung et al.'s O(n log n) sweep for 3 objectives; ties kept):

* ``hv_ratio``: hypervolume of the search's reported front (the study's Pareto set as the search
  reports it, each schedule at its *true* accuracy) divided by the true front's. Hypervolume
  (Zitzler & Thiele 1998): the volume of objective space that a set dominates up to a reference point;
  here in (accuracy, log10 FLOPs, log10 params), computed by ``moocore.hypervolume`` (HV3D+, Guerreiro
  & Fonseca 2017). **Reference point**: FLOPs and params 1.1x the ungrouped network's (the largest in
  the space); accuracy 5 points below the ungrouped network's true value, or 1 point below the least
  accurate true-front schedule if that is lower (so the cheap end of the front counts). 1.0 = the
  whole true front found.
* ``recall``: share of the true front's schedules on the reported front.
* ``cheapest_flops``: FLOPs of the cheapest schedule on the reported front (the true front's cheapest
  is printed beside it).
* ``epochs``: epochs trained; ``completed``: schedules trained to ``max_epochs``; ``started``:
  schedules whose training started; ``front_stopped``: true-front schedules that were started but
  stopped early.

Per configuration: mean and sample s.d. over the repetitions, and the hypervolume-ratio difference to
``random/none`` paired per repetition (same seed: same noise draws and the same paper seeds first).
``random/none`` is always run, as the reference. GP costs seconds per proposal and may be limited with
``--gp-trials`` / ``--gp-repeats``: the table marks such rows, and their paired difference is taken
against a ``random/none`` run at the same smaller budget (added automatically).

Early stopping: ``none`` (Tune's FIFO scheduler), ``asha`` (the project's ASHA on ``val_accuracy``,
with the space's grace period and reduction factor), ``moasha`` (MO-ASHA, Schmucker et al. 2021,
"Multi-objective multi-fidelity hyperparameter optimization with application to fairness": rungs
ranked by non-dominated sorting on every objective -- the project's ``RungScheduler``).

Example:
    >>> import subprocess, sys
    >>> cmd = [sys.executable, "experiments/bench_search.py", "--space", "spaces/nin.yaml", "--trials", "20",
    ...        "--repeats", "2", "--configs", "random/none", "nsga2/asha"]
    >>> subprocess.run(cmd, check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import importlib.util
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:  # run as a script from anywhere: deeproots and search importable
    sys.path.insert(0, str(_HERE.parent))

SAMPLERS = ("random", "nsga2", "tpe", "gp")
EARLY_STOPPING = ("none", "asha", "moasha")
REFERENCE = ("random", "none")
#: Spaces with at most this many schedules are enumerated for the true front.
ENUMERATE_LIMIT = 2_000_000
#: Schedules sampled (uniformly, seed 0) for the true front of a larger space.
SAMPLE_SIZE = 200_000
DEFAULT_SURROGATE = "experiments._surrogate:default_surrogate"
#: Reference point: accuracy this far below the ungrouped network's true value ...
REF_ACC_BELOW_ORIG = 0.05
#: ... or this far below the least accurate true-front schedule, whichever is lower.
REF_ACC_BELOW_FRONT = 0.01
#: Reference point: FLOPs and params this many times the ungrouped network's.
REF_COST_FACTOR = 1.1


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# ====================================================================================== adapter
@dataclass(frozen=True)
class SpaceInfo:
    """What the benchmark needs to know about a space (plain data, no ``search`` types).

    Attributes:
        name: the space's name.
        arch, num_classes, input_size, model_options: the network (``deeproots.CostTable.build`` args).
        layers: every conv, forward order.
        params: ``(name, choices, layers)`` per searched parameter.
        fixed: layer -> group count of the layers not searched.
        max_epochs: the trainer's epochs.
        grace_period, reduction_factor: the space's early-stopping settings.
        shipped: ``(sampler, early_stopping)`` the space ships with.
        seeds: number of paper seeds evaluated first.
    """

    name: str
    arch: str
    num_classes: int
    input_size: tuple[int, int, int]
    model_options: Mapping[str, Any]
    layers: tuple[str, ...]
    params: tuple[tuple[str, tuple[int, ...], tuple[str, ...]], ...]
    fixed: Mapping[str, int]
    max_epochs: int
    grace_period: int
    reduction_factor: float
    shipped: tuple[str, str]
    seeds: int

    @property
    def size(self) -> int:
        """Distinct schedules in the space."""
        return math.prod(len(c) for _, c, _ in self.params)


@dataclass
class Engine:
    """One configuration's search, ready to be driven.

    Attributes:
        searcher: a ``ray.tune.search.Searcher``.
        scheduler: a ``ray.tune.schedulers.TrialScheduler``.
        schedule_of: the searcher's config -> the schedule (every conv -> groups).
        front: the reported front: the schedules the search reports as Pareto-optimal.
        outcomes: finished trials per outcome (``evaluated``, ``duplicate``, ...), for the record.
    """

    searcher: Any
    scheduler: Any
    schedule_of: Callable[[Mapping[str, Any]], dict[str, int]]
    front: Callable[[], list[dict[str, int]]]
    outcomes: Callable[[], dict[str, int]]


def make_engine(
    space_path: str, sampler: str | None = None, early_stopping: str | None = None, *,
    seed: int = 0, trials: int = 200, max_schedules: int = 10**9,
) -> tuple[SpaceInfo, Engine | None]:  # fmt: skip
    """The adapter: every import from ``search`` lives here, so the search's internals can move.

    Builds the stack a search runs (``search.engine._build.make_engine``): the own ``ScheduleSearch``
    over an Optuna study in in-memory storage, created and seeded by ``prepare_study`` exactly as a new
    run's; the sampler from ``make_sampler`` with the settings a real run with ``search.trials = trials``
    gets; the ``RungScheduler`` of ``search.early_stopping`` (``asha``: accuracy, ``moasha``: all
    objectives), or Tune's ``FIFOScheduler`` for ``none``. The searcher's own budget is lifted: the
    benchmark spends exactly ``trials x max_epochs`` epochs for every configuration.

    Args:
        space_path: a space file.
        sampler, early_stopping: the configuration; None for the description only.
        seed: the sampler seed (``search.seed``).
        trials: ``search.trials`` (sizes NSGA-II's default population).
        max_schedules: the searcher's own budget in full trials (the benchmark stops on epochs).

    Returns:
        ``(SpaceInfo, Engine)``; the engine is None without a configuration.

    Raises:
        UsageError: an invalid space, or a configuration this checkout does not have.
    """
    import optuna  # noqa: PLC0415
    from ray.tune.schedulers import FIFOScheduler  # noqa: PLC0415

    from search import SpaceError, load_space, outcome_counts, pareto_rows  # noqa: PLC0415
    from search.engine._build import make_engine as build_engine  # noqa: PLC0415
    from search.engine._study import RunPaths, RunPlan, make_sampler, prepare_study  # noqa: PLC0415

    sets = [f"search.trials={trials}", f"search.seed={seed}", "constraints.max_flops=null",
            "constraints.max_params=null", "constraints.max_latency_ms=null"]  # fmt: skip
    try:
        shipped = load_space(space_path, check_data=False).spec
        if sampler is not None:
            options = dict(shipped.search.sampler_options) if sampler == shipped.search.sampler else {}
            sets += [f"search.sampler={sampler}", f"search.sampler_options={json.dumps(options)}"]
        if early_stopping is not None:
            sets.append(f"search.early_stopping={early_stopping}")
        space = load_space(space_path, sets, check_data=False)
    except (SpaceError, OSError) as e:
        raise UsageError(f"--space {space_path}: {e}") from None
    pspace = space.params
    s = space.spec.search
    info = SpaceInfo(
        name=space.name, arch=pspace.arch, num_classes=pspace.num_classes, input_size=tuple(pspace.input_size),
        model_options=dict(space.spec.model.options), layers=tuple(layer.name for layer in pspace.layers),
        params=tuple((p.name, tuple(p.choices), tuple(p.layers)) for p in pspace.params), fixed=dict(pspace.fixed),
        max_epochs=space.train.epochs, grace_period=int(s.grace_period), reduction_factor=float(s.reduction_factor),
        shipped=(shipped.search.sampler, shipped.search.early_stopping), seeds=len(pspace.seeds),
    )  # fmt: skip
    if sampler is None:
        return info, None
    storage = optuna.storages.InMemoryStorage()
    plan = RunPlan(RunPaths(Path("bench-in-memory"), "in-memory", "bench"), "new")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        prepare_study(plan, space, storage, {})
        engine = build_engine(space, storage, "bench", budget=max_schedules, sampler=make_sampler(space, trials))
    study = engine.study

    def front() -> list[dict[str, int]]:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        return [dict(by_number[r["number"]].user_attrs["schedule"]) for r in pareto_rows(study)]

    return info, Engine(
        searcher=engine.searcher,
        scheduler=engine.scheduler if engine.scheduler is not None else FIFOScheduler(),
        schedule_of=lambda config: pspace.groups_of({p.name: config[p.name] for p in pspace.params}),
        front=front,
        outcomes=lambda: outcome_counts(study),
    )


# ====================================================================================== surrogate
Surrogate = Callable[[dict[str, int], int, int, int, int, "int | None"], float]


def load_surrogate(spec: str) -> Surrogate:
    """``MODULE:FUNCTION`` (a dotted module importable from the project root, or a ``.py`` file).

    Raises:
        UsageError: malformed, not importable, or not callable.
    """
    module_name, sep, func = spec.partition(":")
    if not sep or not module_name or not func:
        raise UsageError(f"--surrogate {spec}: expected MODULE:FUNCTION (e.g. {DEFAULT_SURROGATE})")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or not path.is_file():
                raise ImportError(f"no file {path}")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules.setdefault(path.stem, module)
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 (any import failure is a usage error here)
        raise UsageError(f"--surrogate {spec}: cannot import {module_name}: {type(e).__name__}: {e}") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise UsageError(f"--surrogate {spec}: {module_name} has no callable {func!r}")
    return fn


# ====================================================================================== truth
@dataclass(frozen=True)
class Truth:
    """The true front of a space and the hypervolume set-up.

    Attributes:
        schedules: number of schedules the truth covers; ``sampled``: whether they are a sample.
        space_size: schedules in the space.
        front_keys: the true front's schedules (group counts in ``layers`` order).
        front_points: ``(len(front_keys), 3)`` -- accuracy, FLOPs, params.
        reference: the hypervolume reference point (accuracy, FLOPs, params).
        hv: the true front's hypervolume.
        orig: the ungrouped network's (accuracy, FLOPs, params).
        cheapest_flops: the true front's cheapest FLOPs.
        seconds: time taken.
    """

    schedules: int
    sampled: bool
    space_size: int
    front_keys: frozenset[tuple[int, ...]]
    front_points: np.ndarray
    reference: tuple[float, float, float]
    hv: float
    orig: tuple[float, int, int]
    cheapest_flops: int
    seconds: float


def space_groups(info: SpaceInfo, rng_seed: int = 0) -> tuple[np.ndarray, bool]:
    """Every schedule of the space as an int array ``(N, len(layers))``, or a uniform sample.

    Returns:
        ``(groups, sampled)``.
    """
    shape = [len(c) for _, c, _ in info.params]
    sampled = info.size > ENUMERATE_LIMIT
    if sampled:
        rng = np.random.default_rng(rng_seed)
        idx = np.stack([rng.integers(0, n, SAMPLE_SIZE) for n in shape], axis=1)
    else:
        idx = np.indices(shape).reshape(len(shape), -1).T
    col = {name: i for i, name in enumerate(info.layers)}
    groups = np.ones((idx.shape[0], len(info.layers)), dtype=np.int64)
    for j, (_, choices, layers) in enumerate(info.params):
        values = np.asarray(choices, dtype=np.int64)[idx[:, j]]
        for layer in layers:
            groups[:, col[layer]] = values
    for layer, g in info.fixed.items():
        groups[:, col[layer]] = g
    return groups, sampled


def true_accuracy(surrogate: Surrogate, groups: np.ndarray, layers: Sequence[str], flops: np.ndarray,
                  params: np.ndarray, max_epochs: int) -> np.ndarray:  # fmt: skip
    """Noiseless final accuracy of many schedules: ``surrogate.batch`` if it has one, else one call each."""
    batch = getattr(surrogate, "batch", None)
    if batch is not None:
        return np.asarray(batch(groups, list(layers), flops, params, max_epochs, max_epochs), dtype=np.float64)
    return np.array([
        surrogate(dict(zip(layers, map(int, row))), int(f), int(p), max_epochs, max_epochs, None)
        for row, f, p in zip(groups, flops, params)
    ], dtype=np.float64)  # fmt: skip


def _hv_points(points: np.ndarray) -> np.ndarray:
    """(accuracy, FLOPs, params) -> minimisation coordinates (-accuracy, log10 FLOPs, log10 params)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.column_stack([-p[:, 0], np.log10(p[:, 1]), np.log10(p[:, 2])])


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume of (accuracy, FLOPs, params) points: accuracy linear, FLOPs and params in log10.

    Points that do not strictly dominate ``reference`` add nothing. Dominated points are allowed.

    Args:
        points: ``(N, 3)`` -- accuracy (max), FLOPs (min), params (min); N may be 0.
        reference: (accuracy, FLOPs, params).

    Returns:
        The volume in (accuracy) x (decades of FLOPs) x (decades of params); 0 for no point.
    """
    import moocore  # noqa: PLC0415

    pts = _hv_points(points)
    ref = _hv_points(np.asarray(reference, dtype=np.float64))[0]
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref))


def nondominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the (accuracy max, FLOPs min, params min) points no other point dominates (ties kept)."""
    import moocore  # noqa: PLC0415

    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return moocore.is_nondominated(np.column_stack([-p[:, 0], p[:, 1], p[:, 2]]), keep_weakly=True)


def true_front(info: SpaceInfo, table: Any, surrogate: Surrogate) -> Truth:
    """The true front of the space (or of a stated sample) and the hypervolume reference point."""
    t0 = time.perf_counter()
    groups, sampled = space_groups(info)
    flops, params = table.flops_many(groups), table.params_many(groups)
    acc = true_accuracy(surrogate, groups, info.layers, flops, params, info.max_epochs)
    points = np.column_stack([acc, flops, params])
    mask = nondominated(points)
    orig_groups = np.ones((1, len(info.layers)), dtype=np.int64)
    orig_acc = float(true_accuracy(surrogate, orig_groups, info.layers, np.array([table.base_flops]),
                                   np.array([table.base_params]), info.max_epochs)[0])  # fmt: skip
    ref_acc = min(orig_acc - REF_ACC_BELOW_ORIG, float(acc[mask].min()) - REF_ACC_BELOW_FRONT)
    reference = (ref_acc, REF_COST_FACTOR * table.base_flops, REF_COST_FACTOR * table.base_params)
    return Truth(
        schedules=len(groups), sampled=sampled, space_size=info.size,
        front_keys=frozenset(tuple(int(v) for v in row) for row in groups[mask]),
        front_points=points[mask], reference=reference, hv=hypervolume(points[mask], reference),
        orig=(orig_acc, table.base_flops, table.base_params), cheapest_flops=int(flops[mask].min()),
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


# ====================================================================================== simulation
@dataclass
class SimTrial:
    """A stand-in for Tune's ``Trial`` as schedulers read it: ``trial_id``, ``config``, ``status``, ``last_result``."""

    trial_id: str
    config: dict[str, Any]
    schedule: dict[str, int]
    flops: int
    params: int
    epoch_time: float
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0  # epochs trained

    def __hash__(self) -> int:
        return hash(self.trial_id)


class SimController:
    """A stand-in for Tune's controller as schedulers see it (``get_trials``, ``get_live_trials``)."""

    def __init__(self) -> None:
        self.trials: list[SimTrial] = []

    def get_trials(self) -> list[SimTrial]:
        return list(self.trials)

    def get_live_trials(self) -> list[SimTrial]:
        return [t for t in self.trials if t.status not in ("TERMINATED", "ERROR")]


@dataclass
class Repetition:
    """What one simulated search did (raw; :func:`score` turns it into figures).

    Attributes:
        front: the reported front's schedules, as group counts in ``layers`` order.
        epochs: epochs trained; started: schedules whose training started; completed: trained to
        the end; stopped: keys of the schedules stopped early; sim_time: simulated time at the end;
        seconds: wall time; outcomes: study outcome counts; ended: why the loop ended.
    """

    front: list[tuple[int, ...]]
    epochs: int
    started: int
    completed: int
    stopped: set[tuple[int, ...]]
    sim_time: float
    seconds: float
    outcomes: dict[str, int]
    ended: str


def simulate(
    engine: Engine, info: SpaceInfo, table: Any, surrogate: Surrogate, *, seed: int, trials: int, concurrency: int = 4
) -> Repetition:
    """Drive one search in simulated time until ``trials x max_epochs`` epochs are spent.

    The calls mirror Ray Tune's controller (``ray/tune/execution/tune_controller.py``): a new trial is
    suggested (``Searcher.suggest``) and added (``TrialScheduler.on_trial_add``), the scheduler picks
    what runs (``choose_trial_to_run``); every epoch's result goes to ``scheduler.on_trial_result``
    first and, unless the decision is STOP, to ``searcher.on_trial_result``; a STOP or the last epoch
    (Tune's ``done``) ends the trial: ``scheduler.on_trial_complete`` then ``searcher.on_trial_complete``
    with the last result. PAUSE frees the slot; a paused trial resumes where it was when chosen again.
    Simultaneous events are ordered by start order, so a seed gives one history.

    Args:
        engine: the configuration (:func:`make_engine`).
        info: the space.
        table: its ``deeproots.CostTable``.
        surrogate: the accuracy model; called with ``seed``.
        seed: the repetition (noise draws).
        trials: the epoch budget in trials (``trials x max_epochs`` epochs).
        concurrency: trials at once.

    Returns:
        The :class:`Repetition`.
    """
    from ray.tune.schedulers import TrialScheduler  # noqa: PLC0415
    from ray.tune.search import Searcher  # noqa: PLC0415

    t0 = time.perf_counter()
    epochs_max = info.max_epochs
    budget = trials * epochs_max
    searcher, scheduler = engine.searcher, engine.scheduler
    ctrl = SimController()
    running: dict[str, SimTrial] = {}
    events: list[tuple[float, int, str]] = []
    order = 0
    spent = 0
    now = 0.0
    searcher_done = False
    ended = "budget spent"
    stopped: set[tuple[int, ...]] = set()
    col = list(info.layers)

    def key_of(schedule: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(int(schedule[name]) for name in col)

    def reserved() -> int:
        return sum(epochs_max - t.epoch for t in ctrl.trials if t.status in ("RUNNING", "PAUSED", "PENDING"))

    while True:
        # ---- fill free slots, as Tune does between events
        while len(running) < concurrency:
            pending = [t for t in ctrl.trials if t.status == "PENDING"]
            if not pending and not searcher_done:
                if spent + reserved() + epochs_max > budget:
                    break
                trial_id = f"{len(ctrl.trials):05d}"
                config = searcher.suggest(trial_id)
                if config == Searcher.FINISHED:
                    searcher_done = True
                elif config is not None:
                    schedule = engine.schedule_of(config)
                    flops, params = table.flops(schedule), table.params(schedule)
                    trial = SimTrial(trial_id, dict(config), schedule, flops, params,
                                     0.5 + 0.5 * flops / table.base_flops)  # fmt: skip
                    ctrl.trials.append(trial)
                    scheduler.on_trial_add(ctrl, trial)
            chosen = scheduler.choose_trial_to_run(ctrl)
            if chosen is None:
                break
            chosen.status = "RUNNING"
            running[chosen.trial_id] = chosen
            heapq.heappush(events, (now + chosen.epoch_time, order, chosen.trial_id))
            order += 1
        if not running:
            if searcher_done:
                ended = "searcher finished (space exhausted)"
            elif spent + epochs_max <= budget and not any(t.status in ("PENDING", "PAUSED") for t in ctrl.trials):
                ended = "searcher proposed nothing with no trial running"
            break
        # ---- the next epoch to finish
        now, _, trial_id = heapq.heappop(events)
        trial = running[trial_id]
        trial.epoch += 1
        spent += 1
        acc = surrogate(dict(trial.schedule), trial.flops, trial.params, trial.epoch, epochs_max, seed)
        result = {
            "trial_id": trial_id, "schedule_id": "-".join(map(str, key_of(trial.schedule))),
            "training_iteration": trial.epoch, "epoch": trial.epoch, "epochs": epochs_max,
            "status": "done" if trial.epoch == epochs_max else "training", "val_accuracy": float(acc),
            "flops": float(trial.flops), "params": float(trial.params), "latency_ms": math.nan,
            "epoch_seconds": trial.epoch_time, "time_total_s": trial.epoch * trial.epoch_time, "done": False,
        }  # fmt: skip
        decision = scheduler.on_trial_result(ctrl, trial, result)
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial_id, result)
        trial.last_result = result
        if decision == TrialScheduler.STOP or trial.epoch == epochs_max:
            result["done"] = True  # Tune marks the last result done (a STOP, or the function returning)
            trial.status = "TERMINATED"
            del running[trial_id]
            scheduler.on_trial_complete(ctrl, trial, result)
            searcher.on_trial_complete(trial_id, result=result)
            if trial.epoch < epochs_max:
                stopped.add(key_of(trial.schedule))
        elif decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
            del running[trial_id]
        else:
            heapq.heappush(events, (now + trial.epoch_time, order, trial_id))
            order += 1
    front = [key_of(s) for s in engine.front()]
    return Repetition(
        front=front, epochs=spent, started=sum(1 for t in ctrl.trials if t.epoch > 0),
        completed=sum(1 for t in ctrl.trials if t.epoch == epochs_max), stopped=stopped, sim_time=now,
        seconds=time.perf_counter() - t0, outcomes=engine.outcomes(), ended=ended,
    )  # fmt: skip


# ====================================================================================== scoring
def score(rep: Repetition, truth: Truth, info: SpaceInfo, table: Any, surrogate: Surrogate) -> dict[str, float]:
    """One repetition's figures against the truth (module docstring: hv_ratio, recall, cheapest FLOPs, ...)."""
    if rep.front:
        groups = np.array(rep.front, dtype=np.int64)
        flops, params = table.flops_many(groups), table.params_many(groups)
        acc = true_accuracy(surrogate, groups, info.layers, flops, params, info.max_epochs)
        hv = hypervolume(np.column_stack([acc, flops, params]), truth.reference)
        cheapest = float(flops.min())
    else:
        hv, cheapest = 0.0, math.nan
    found = set(rep.front) & truth.front_keys
    return {
        "hv_ratio": hv / truth.hv if truth.hv > 0 else math.nan,
        "recall": len(found) / len(truth.front_keys),
        "cheapest_flops": cheapest,
        "front_size": float(len(rep.front)),
        "epochs": float(rep.epochs),
        "started": float(rep.started),
        "completed": float(rep.completed),
        "front_stopped": float(len(rep.stopped & truth.front_keys)),
        "duplicates": float(rep.outcomes.get("duplicate", 0)),
        "seconds": rep.seconds,
    }


# ====================================================================================== driver
@dataclass(frozen=True)
class Config:
    """One configuration: sampler x early stopping, with its budget."""

    sampler: str
    early_stopping: str
    trials: int
    repeats: int

    @property
    def label(self) -> str:
        return f"{self.sampler}/{self.early_stopping}"


def parse_configs(items: Sequence[str]) -> list[tuple[str, str]]:
    """``sampler/early_stopping`` items -> pairs; ``random/none`` first (the reference), no repeats.

    Raises:
        UsageError: a malformed item or an unknown name.
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        sampler, sep, stopping = item.partition("/")
        if not sep:
            raise UsageError(f"--configs {item}: expected SAMPLER/EARLY_STOPPING, e.g. nsga2/asha")
        if sampler not in SAMPLERS:
            raise UsageError(f"--configs {item}: unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        if stopping not in EARLY_STOPPING:
            raise UsageError(f"--configs {item}: unknown early stopping {stopping!r}; choose from {', '.join(EARLY_STOPPING)}")
        if (sampler, stopping) not in pairs:
            pairs.append((sampler, stopping))
    if REFERENCE in pairs:
        pairs.remove(REFERENCE)
    return [REFERENCE, *pairs]


def run_repetition(space: str, config: Config, k: int, base_seed: int, surrogate_spec: str, concurrency: int) -> Repetition:
    """One repetition in a fresh engine (also the unit of work for ``--jobs``)."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = base_seed + k
    info, engine = make_engine(space, config.sampler, config.early_stopping, seed=seed, trials=config.trials)
    table = _table(info)
    surrogate = load_surrogate(surrogate_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return simulate(engine, info, table, surrogate, seed=seed, trials=config.trials, concurrency=concurrency)


_TABLES: dict[Any, Any] = {}


def _table(info: SpaceInfo) -> Any:
    import deeproots  # noqa: PLC0415

    key = (info.arch, info.input_size, info.num_classes, json.dumps(dict(info.model_options), sort_keys=True))
    if key not in _TABLES:
        _TABLES[key] = deeproots.CostTable.build(info.arch, info.input_size, info.num_classes, **info.model_options)
    return _TABLES[key]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan


def summarise(config: Config, scores: list[dict[str, float]], reference: list[dict[str, float]],
              info: SpaceInfo, truth: Truth, args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Mean and s.d. over repetitions; the hypervolume-ratio difference to random/none at the same epoch
    budget, paired per repetition (repetition k of both: the same seed, so the same noise draws)."""
    row: dict[str, Any] = {
        "space": info.name, "sampler": config.sampler, "early_stopping": config.early_stopping,
        "default": (config.sampler, config.early_stopping) == info.shipped,
        "trials": config.trials, "max_epochs": info.max_epochs, "epoch_budget": config.trials * info.max_epochs,
        "repeats": len(scores), "concurrency": args.concurrency, "surrogate": args.surrogate,
    }  # fmt: skip
    for name in ("hv_ratio", "recall", "cheapest_flops", "epochs", "completed", "started", "front_size",
                 "front_stopped", "duplicates", "seconds"):  # fmt: skip
        row[f"{name}_mean"], row[f"{name}_sd"] = _mean_sd([s[name] for s in scores])
    diffs = [s["hv_ratio"] - r["hv_ratio"] for s, r in zip(scores, reference)]
    row["hv_ratio_diff_vs_random_mean"], row["hv_ratio_diff_vs_random_sd"] = _mean_sd(diffs)
    row["hv_ratio_diff_vs_random_se"] = row["hv_ratio_diff_vs_random_sd"] / math.sqrt(len(diffs))
    row["true_cheapest_flops"] = truth.cheapest_flops
    row["true_front_size"] = len(truth.front_keys)
    return row


def _fmt_count(n: float) -> str:
    if math.isnan(n):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f}"


def _pm(mean: float, sd: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:{fmt}} ± {sd:{fmt.lstrip('+')}}" if not math.isnan(sd) else f"{mean:{fmt}}"


def format_table(rows: list[dict[str, Any]], truth: Truth, info: SpaceInfo, args: argparse.Namespace, wall: float) -> str:
    """The human-readable report: a header on the set-up and one Markdown table row per configuration."""
    ref = truth.reference
    what = f"a uniform sample of {truth.schedules:,} of {truth.space_size:,}" if truth.sampled else f"all {truth.schedules:,}"
    lines = [
        f"space {info.name} ({info.arch}): {truth.space_size:,} schedules, {info.max_epochs} epochs; "
        f"{info.seeds} paper seeds first; shipped: {'/'.join(info.shipped)}",
        f"budget: {args.trials} trials x {info.max_epochs} epochs = {args.trials * info.max_epochs:,} epochs per repetition; "
        f"{args.concurrency} trials at once; ASHA grace {info.grace_period}, reduction {info.reduction_factor:g}",
        f"surrogate: {args.surrogate}; repetitions seeded {args.seed}..{args.seed + args.repeats - 1}",
        f"true front: {len(truth.front_keys)} schedules of {what} ({truth.seconds:.1f} s); "
        f"cheapest {_fmt_count(truth.cheapest_flops)} FLOPs; ungrouped: accuracy {truth.orig[0]:.4f}, "
        f"{_fmt_count(truth.orig[1])} FLOPs, {_fmt_count(truth.orig[2])} params",
        f"hypervolume: accuracy linear, log10 FLOPs, log10 params; reference point accuracy {ref[0]:.4f}, "
        f"{_fmt_count(ref[1])} FLOPs, {_fmt_count(ref[2])} params; true front's hypervolume {truth.hv:.5f}",
        "",
        "| config | default | reps | HV ratio | Δ HV vs random/none (paired) | recall | cheapest FLOPs | epochs "
        "| trained to end | started | true-front stopped | s / rep |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = f"{r['sampler']}/{r['early_stopping']}"
        if r["trials"] != args.trials:
            label += f" ({r['trials']} trials)"
        diff = "(reference)"
        if (r["sampler"], r["early_stopping"]) != REFERENCE:
            diff = _pm(r["hv_ratio_diff_vs_random_mean"], r["hv_ratio_diff_vs_random_sd"], "+.3f")
            se = r["hv_ratio_diff_vs_random_se"]
            if se > 0:
                diff += f" ({r['hv_ratio_diff_vs_random_mean'] / se:+.1f} s.e.)"
        lines.append(
            f"| {label} | {'yes' if r['default'] else ''} | {r['repeats']} | {_pm(r['hv_ratio_mean'], r['hv_ratio_sd'], '.3f')} "
            f"| {diff} | {_pm(r['recall_mean'], r['recall_sd'], '.3f')} "
            f"| {_fmt_count(r['cheapest_flops_mean'])}{'' if math.isnan(r['cheapest_flops_sd']) else ' ± ' + _fmt_count(r['cheapest_flops_sd'])} "
            f"(true {_fmt_count(r['true_cheapest_flops'])}) "
            f"| {r['epochs_mean']:,.0f} | {_pm(r['completed_mean'], r['completed_sd'], '.1f')} | {r['started_mean']:.1f} "
            f"| {_pm(r['front_stopped_mean'], r['front_stopped_sd'], '.1f')} | {r['seconds_mean']:.1f} |"
        )  # fmt: skip
    lines.append("")
    lines.append("mean ± s.d. over repetitions; HV ratio: the reported front's true hypervolume / the true front's; "
                 "Δ: paired per repetition, in standard errors (s.d. / sqrt(reps)) in brackets; "
                 f"recall: share of the true front on the reported front; wall time {wall:.0f} s")  # fmt: skip
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: ...``, exit 2), like every other usage error here."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python experiments/bench_search.py",
        description="Benchmark the search (sampler x early stopping) on a space with a learning-curve surrogate.",
    )
    parser.add_argument("--space", required=True, help="a space file, e.g. spaces/nin.yaml")
    parser.add_argument("--surrogate", default=DEFAULT_SURROGATE, help=f"MODULE:FUNCTION (default {DEFAULT_SURROGATE})")
    parser.add_argument("--trials", type=int, default=200, help="epoch budget in trials: trials x max_epochs epochs (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per configuration (default 5)")
    parser.add_argument(
        "--configs", nargs="+", default=[f"{s}/{e}" for s in ("random", "nsga2", "tpe") for e in EARLY_STOPPING],
        help="SAMPLER/EARLY_STOPPING items (samplers: random nsga2 tpe gp; early stopping: none asha moasha); "
             "random/none is always run (default: random, nsga2, tpe x none, asha, moasha)",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once (default 4)")
    parser.add_argument("--gp-trials", type=int, help="epoch budget in trials for gp (default: --trials)")
    parser.add_argument("--gp-repeats", type=int, help="repetitions for gp (default: --repeats)")
    parser.add_argument("--seed", type=int, default=0, help="repetition k uses seed + k (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="repetitions run in parallel processes (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration and line")
    args = parser.parse_args(argv)
    for name in ("trials", "repeats", "concurrency", "jobs", "gp_trials", "gp_repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the benchmark that ``args`` describe; returns the rows (one per configuration)."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    surrogate = load_surrogate(args.surrogate)
    pairs = parse_configs(args.configs)
    info, _ = make_engine(args.space)
    configs = []
    for sampler, stopping in pairs:
        is_gp = sampler == "gp"
        trials = (args.gp_trials or args.trials) if is_gp else args.trials
        repeats = min(args.gp_repeats or args.repeats, args.repeats) if is_gp else args.repeats
        make_engine(args.space, sampler, stopping, trials=trials)  # refuses what this checkout lacks, before any work
        configs.append(Config(sampler, stopping, trials, repeats))
    for trials in sorted({c.trials for c in configs} - {args.trials}):  # a smaller GP budget gets its own reference
        repeats = max(c.repeats for c in configs if c.trials == trials)
        configs.insert(1, Config(*REFERENCE, trials, repeats))
    table = _table(info)
    truth = true_front(info, table, surrogate)
    if not args.json:
        out(f"true front ready ({truth.seconds:.1f} s): {len(truth.front_keys)} schedules; running "
            f"{sum(c.repeats for c in configs)} repetitions of {len(configs)} configurations ...")  # fmt: skip
    reps: dict[Config, list[Repetition]] = {}
    jobs = [(c, k) for c in configs for k in range(c.repeats)]
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        with ProcessPoolExecutor(args.jobs) as pool:
            futures = {(c, k): pool.submit(run_repetition, args.space, c, k, args.seed, args.surrogate, args.concurrency)
                       for c, k in jobs}  # fmt: skip
            for c, k in jobs:
                reps.setdefault(c, []).append(futures[(c, k)].result())
    else:
        for c, k in jobs:
            reps.setdefault(c, []).append(run_repetition(args.space, c, k, args.seed, args.surrogate, args.concurrency))
            if not args.json:
                r = reps[c][-1]
                print(f"  {c.label} #{k}: {r.epochs} epochs, {r.started} started, {r.completed} to the end, "
                      f"front {len(r.front)}, {r.seconds:.1f} s", file=sys.stderr)  # fmt: skip
    scores = {c: [score(r, truth, info, table, surrogate) for r in reps[c]] for c in configs}
    references = {c.trials: scores[c] for c in configs if (c.sampler, c.early_stopping) == REFERENCE}
    rows = [summarise(c, scores[c], references[c.trials], info, truth, args) for c in configs]
    for c, row in zip(configs, rows):
        row["ended"] = sorted({r.ended for r in reps[c]})
        row["reference_point"] = list(truth.reference)
        row["true_hv"] = truth.hv
    wall = time.perf_counter() - start
    if args.json:
        for row in rows:
            out(json.dumps({**row, "wall_seconds": wall}))
    else:
        out(format_table(rows, truth, info, args, wall))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(argv)
        run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
