"""The search driver: plan -> lock -> study -> Ray Tune ``Tuner`` with :class:`ScheduleSearch` -> summary -> export.

Only this process writes the study (SQLite sees one writer); trials only report to it through Tune.
It holds the study's driver lock (:class:`search.engine._lock.StudyLock`, in the study's database)
for its whole life, and a heartbeat thread keeps both that lock and Optuna's heartbeats of its running
trials fresh, so a later driver can tell a stopped one's trials by their heartbeats.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .._text import duration
from ..engine._study import RunPaths, RunPlan, _sqlite_path, make_sampler, open_storage, plan_run, prepare_study
from ..outputs._tables import outcome_counts, pareto_rows, pareto_table, state_counts, stopped_at_rungs
from ..space._schema import SpaceError
from ._estimate import concurrency, console, estimate_time

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["SearchResult", "run_search"]

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class SearchResult:
    """What a finished (or interrupted) search reports.

    Attributes:
        paths: the run's files (folder, storage URL, study name).
        budget: distinct schedules asked for.
        evaluated: distinct schedules trained to the end (COMPLETE).
        counted: distinct schedules that spent the budget (trained to the end or stopped early).
        epochs_spent: epochs of the budget spent.
        stop_reason: why the search stopped before its budget (a failure streak...), or None.
        stopped_at: epoch -> schedules stopped early after that many epochs (the rungs).
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
    counted: int = 0
    epochs_spent: int = 0
    stop_reason: str | None = None
    stopped_at: dict[int, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    pareto: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dashboard_command(self) -> str:
        """``optuna-dashboard <storage URL>``."""
        return self.paths.dashboard_command()


def _export_step(paths: RunPaths, out: Callable[[Any], None]) -> None:
    """The export step (``python -m search.export RUN``), run when a search finishes."""
    from ..outputs._export import export_run  # noqa: PLC0415

    out(f"exporting the Pareto set to {paths.export_dir}/ ...")
    export_run(paths.root)


def _ray_init(address: str | None) -> bool:
    """Start a Ray of this run's own, or join the cluster at ``address``; True when this call started it.

    Without ``address`` the address is ``"local"``: ``ray.init()`` alone would join any Ray cluster
    already running on the machine (another user's, another run's) and die with it.
    """
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        return False
    pythonpath = os.pathsep.join(p for p in (_PROJECT_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )  # fmt: skip
    return True


def run_search(
    space: ResolvedSpace,
    *,
    runs_dir: str | Path = "runs",
    storage: str | None = None,
    address: str | None = None,
    fresh: bool = False,
    estimate: bool = True,
    export: bool = True,
    print_fn: Callable[[Any], None] | None = None,
    trial_fn: Callable[..., None] | None = None,
    storage_path: str | None = None,
    study: str | None = None,
) -> SearchResult:
    """Run (or resume) the search a space describes; returns when the budget is met or on Ctrl-C.

    Steps: plan the run (refusing a changed space unless ``fresh``); take the study's driver lock
    (refusing a second driver anywhere); check that the trials' storage can be written; open the
    study (seeds enqueued, or the trials of a stopped driver found by their heartbeats and queued
    again with their checkpoints); estimate the time from a timed batch; start Ray (or join
    ``address``); run a Tune ``Tuner`` whose searcher is :class:`ScheduleSearch` (Optuna sampler,
    study in RDB storage, only this process writes it) with early stopping if enabled, trials
    keeping their checkpoints in ``storage_path`` and restarted from them when their worker or node
    dies; print progress; at the end the Pareto table, the dashboard command, and the export step.

    Args:
        space: the resolved space (:func:`search.load_space`).
        runs_dir: parent folder of run folders.
        storage: SQLAlchemy URL overriding ``space.storage`` and the default
            ``sqlite:///runs/<name>/study.db``.
        address: an existing Ray cluster (``ray start --head``); None starts a local one.
        fresh: start a new study when the existing one was made with another space.
        estimate: time a batch and print the estimated run time first.
        export: run the export step at the end.
        print_fn: where progress goes (default: a rich console).
        trial_fn: what a Tune trial runs, ``f(config, ctx)`` (default: :func:`search.runner._trial.train_trial`);
            the overhead benchmark passes one that trains nothing.
        storage_path: Ray Tune's storage, overriding ``space.storage_path`` and the default
            ``runs/<name>/ray``: a path every node sees, or a URI (``s3://bucket/prefix``, ``gs://...``).
        study: search into this study of the run's storage instead of the run's own, leaving
            ``run.json`` (what resume and export read) as it is; its trials' checkpoints go to a Tune
            experiment named after it in the same Tune storage. ``python -m search.fidelity`` trains
            its schedules this way, so a later search at the same fidelity imports them.

    Returns:
        The :class:`SearchResult`.

    Raises:
        SpaceError: a changed space, another driver holding the study, an SQLite study on a network
            file system, a trial storage that cannot be written (one line each).

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
    out = print_fn or console().print
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space.with_data()  # no-op when loaded with its data (check_data=True)
    plan = plan_run(space, runs_dir=runs_dir, storage=storage, fresh=fresh, study=study, storage_path=storage_path)
    make_sampler(space, space.spec.search.trials)  # validate sampler options before writing anything
    paths = plan.paths
    trial_storage = paths.trial_storage()
    trial_storage.check_writable()
    db = _sqlite_path(paths.storage_url)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    from ..engine._lock import StudyLock  # noqa: PLC0415

    lock = StudyLock.acquire(paths.storage_url, paths.study_name)  # before anything is written
    beat = _Heartbeat(lock, out)
    beat.start()
    try:
        if lock.took_over:
            out(f"run {space.name!r}: took study {paths.study_name!r} over from a driver that is gone ({lock.took_over})")
        paths.root.mkdir(parents=True, exist_ok=True)
        return _run_locked(space, plan, address, estimate, export, out, start, trial_fn, beat, write_run_file=study is None)
    finally:
        beat.stop()
        lock.release()


class _Heartbeat(threading.Thread):
    """Every ``HEARTBEAT_SECONDS``: the driver lock's heartbeat, then Optuna's heartbeats of the trials
    the searcher runs. A lock taken over by another driver stops the search from asking more."""

    def __init__(self, lock: Any, out: Callable[[Any], None]) -> None:
        super().__init__(name="deeproots-heartbeat", daemon=True)
        self._lock = lock
        self._out = out
        self._stopped = threading.Event()
        #: Set once the engine exists.
        self.searcher: Any = None

    def run(self) -> None:  # noqa: D102
        from ..engine._lock import HEARTBEAT_SECONDS  # noqa: PLC0415

        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                if not self._lock.beat():
                    holder = self._lock.holder()
                    who = f"pid {holder.pid} on host {holder.host}" if holder else "nobody (released)"
                    msg = f"another driver took study {self._lock.study_name!r} over (held now by {who}); asking no more trials"
                    self._out(f"warning: {msg}")
                    if self.searcher is not None:
                        self.searcher.lose(msg)
                    return
                if self.searcher is not None:
                    self.searcher.heartbeat()
            except Exception as e:  # noqa: BLE001 (a database hiccup: the next beat tries again)
                logging.getLogger(__name__).warning("heartbeat failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)

    def stop(self) -> None:
        """End the thread (waits for a beat in progress)."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=30)


def _run_locked(
    space: ResolvedSpace, plan: RunPlan, address: str | None, estimate: bool, export: bool,
    out: Callable[[Any], None], start: float, trial_fn: Callable[..., None] | None, beat: _Heartbeat,
    write_run_file: bool = True,
) -> SearchResult:  # fmt: skip
    import deeproots  # noqa: PLC0415

    from ..engine._build import make_engine  # noqa: PLC0415

    pspace = space.params
    paths = plan.paths
    prov = deeproots.provenance()
    provenance = {"deeproots_version": prov["deeproots"], "git_revision": prov["git_revision"], "torch": prov["torch"]}
    storage_obj = open_storage(paths.storage_url, heartbeat=True)
    info = prepare_study(plan, space, storage_obj, provenance, say=lambda m: out(f"  {m}"))
    if write_run_file:
        _write_run_file(paths)
    budget = space.spec.search.trials

    if plan.mode == "restart":
        out(f"run {space.name!r}: the study held no finished trial and the space changed ({plan.diff}): started anew")
    if info["created"]:
        out(f"run {space.name!r}: new study {paths.study_name!r} in {paths.storage_url}"
            + (f" ({info['imported']} results imported from studies at the same fidelity)" if info["imported"] else ""))  # fmt: skip
    else:
        out(f"run {space.name!r}: resuming study {paths.study_name!r} in {paths.storage_url}")
        if info["recovered"]:
            out(f"  {info['recovered']} trial(s) left RUNNING by a stopped driver marked FAIL; "
                f"{info['retry']} schedule(s) queued again, each resuming from the checkpoint it reached")  # fmt: skip
        if info["seeds_retried"]:
            out(f"  {info['seeds_retried']} seed(s) whose trials failed with an error a retry may cure queued again "
                f"(at most search.max_retries = {space.spec.search.max_retries} retries each)")  # fmt: skip
    trial_storage = paths.trial_storage()
    out(f"trials keep their checkpoints in {trial_storage.describe()}")

    latency_fn = _latency_measurer(space, paths) if space.measures_latency else None
    engine = make_engine(space, storage_obj, paths.study_name, budget=budget, run_dir=str(paths.root.resolve()),
                         provenance=provenance, latency_fn=latency_fn,
                         driver=f"pid {os.getpid()} on {socket.gethostname()}")  # fmt: skip
    study, searcher, stopper = engine.study, engine.searcher, engine.scheduler
    beat.searcher = searcher
    size = pspace.size
    stopping = (f"; early stopping {stopper.name} at epochs {', '.join(map(str, stopper.rungs))} "
                f"(keeps 1/{stopper.reduction_factor:g} per rung)" if stopper else "")  # fmt: skip
    out(f"budget: {budget} full-fidelity trials = {searcher.budget_epochs:,} epochs, {searcher.epochs_spent:,} spent "
        f"({searcher.counted} schedules); the space holds {size:,} distinct schedules{stopping}"
        + (" -- fewer than the budget: the search stops after answering all of them" if size < budget else ""))  # fmt: skip

    result = SearchResult(paths, budget, searcher.counted, size)
    if not searcher.spent and not searcher.exhausted:
        started_ray = _ray_init(address)
        try:
            result.interrupted = _tune(space, paths, trial_storage, searcher, stopper, study, out, estimate, trial_fn)
        finally:
            if started_ray:
                import ray  # noqa: PLC0415

                ray.shutdown()
    result.evaluated = searcher.evaluated
    result.counted = searcher.counted
    result.epochs_spent = searcher.epochs_spent
    result.stop_reason = searcher.stop_reason
    result.exhausted = searcher.exhausted and not searcher.spent
    result.wall_seconds = time.time() - start
    result.states = state_counts(study)
    result.outcomes = outcome_counts(study)
    result.stopped_at = stopped_at_rungs(study)
    result.pareto = pareto_rows(study)
    _summary(result, space, searcher, out)
    if space.spec.confirm.seeds and write_run_file and result.pareto and not (result.interrupted or result.stop_reason):
        from ._confirm import run_confirm  # noqa: PLC0415 (the confirmation stage: search.runner._confirm)

        # under this driver's lock and heartbeat, its trials in the same Tune storage as the search's
        result.interrupted = run_confirm(space, paths.root, paths.storage_url, paths.study_name, address=address,
                                         print_fn=out, trial_fn=trial_fn, storage_path=paths.storage_path,
                                         beat=beat).interrupted  # fmt: skip
    if export and not result.interrupted and result.pareto:
        _export_step(paths, out)
    return result


def check_resources(space: ResolvedSpace, address: str | None = None, times_latency: bool = True) -> None:
    """Refuse a space whose trials ask for more than the machine (or the cluster at ``address``) has.

    Without this a GPU space on a GPU-less machine waits for ever, its trials PENDING.

    Raises:
        SpaceError: on ``resources.gpus_per_trial``, ``resources.cpus_per_trial`` or ``latency.device``
            (a GPU the driver, which times latency, does not have), naming the fix.
    """
    r = space.spec.resources
    if address is not None:
        import ray  # noqa: PLC0415

        _ray_init(address)
        res = ray.cluster_resources()
        cpus, gpus, where = float(res.get("CPU", 0)), float(res.get("GPU", 0)), f"the Ray cluster at {address}"
    else:
        import torch  # noqa: PLC0415

        cpus, gpus, where = float(os.cpu_count() or 1), float(torch.cuda.device_count()), "this machine"
    if r.gpus_per_trial > 0 and gpus == 0:
        hint = "--profile cpu" if "cpu" in space.spec.profiles else "--set resources.gpus_per_trial=0"
        raise SpaceError("resources.gpus_per_trial", f"{r.gpus_per_trial:g} GPU per trial, but {where} has no GPU; use {hint}")
    if r.gpus_per_trial > gpus:
        raise SpaceError("resources.gpus_per_trial", f"{r.gpus_per_trial:g} GPU per trial, but {where} has {gpus:g}")
    if r.cpus_per_trial > cpus:
        raise SpaceError("resources.cpus_per_trial", f"{r.cpus_per_trial:g} CPUs per trial, but {where} has {cpus:g}")
    device = space.spec.latency.device
    if times_latency and space.spec.measures_latency and device.startswith("cuda"):  # the driver times it, before each trial
        import torch  # noqa: PLC0415

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            have = "no CUDA GPU" if count == 0 else f"{count} GPU(s) (cuda:0..cuda:{count - 1})"
            raise SpaceError("latency.device", f"{device!r}, but this machine has {have}: the driver times latency on its "
                                               "own host; use latency.device: cpu or run the driver on a GPU host")  # fmt: skip


def _latency_measurer(space: ResolvedSpace, paths: RunPaths) -> Callable[[Any], float]:
    """Schedule -> latency (ms) in the space's protocol, measured here in the driver once per schedule.

    Measured at ask time, before a trial is started (a breach of ``constraints.max_latency_ms`` is
    never trained), and cached in ``runs/<name>/latency.json``, which only the driver writes.
    """
    import copy  # noqa: PLC0415

    import torch  # noqa: PLC0415

    import deeproots  # noqa: PLC0415

    lat = space.spec.latency
    threads = lat.threads or max(1, int(space.spec.resources.cpus_per_trial))

    def measure(schedule: Any) -> float:
        with torch.random.fork_rng(devices=[]):
            model = deeproots.build_model(space.arch, schedule, num_classes=space.num_classes, **space.spec.model.options)
        result = deeproots.measure_latency(
            copy.deepcopy(model), space.input_size, device=lat.device, batch_size=lat.batch_size, threads=threads,
            cache=paths.latency_cache,
        )  # fmt: skip
        return float(result.ms)

    return measure


def fit_quietly(tuner: Any) -> bool:
    """``tuner.fit()`` with Tune printing nothing of its own (progress is ours); True when a
    ``KeyboardInterrupt`` came through it.

    A trial's error is recorded in the study (``fail_reason``) and its folder (``error.txt``); Tune's
    tracebacks and its "resume with Tuner.restore" hints would only bury the progress lines. Tune
    catches a Ctrl-C itself and returns normally, so a caller also checks whether its work was done.
    Afterwards the scratch folders of this host's killed workers are removed
    (:func:`search.runner._trial.sweep_orphaned_scratch`).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then really prints nothing
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        return True
    finally:
        tune_logger.setLevel(level)
        from ._trial import sweep_orphaned_scratch  # noqa: PLC0415

        sweep_orphaned_scratch()  # this host's folders of trials whose worker Ray killed
    return False


def _tune(
    space: ResolvedSpace, paths: RunPaths, trial_storage: Any, searcher: Any, stopper: Any, study: Any,
    out: Callable[[Any], None], estimate: bool, trial_fn: Callable[..., None] | None = None,
) -> bool:  # fmt: skip
    """Run the Tune experiment; True when it was interrupted."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    from ..engine._searcher import TrialRecorder  # noqa: PLC0415
    from ._progress import Progress  # noqa: PLC0415
    from ._trial import TrialContext, train_trial  # noqa: PLC0415

    res = ray.cluster_resources()
    at_once = concurrency(space, res.get("CPU", 1), res.get("GPU", 0))
    remaining = max(0, min(searcher.budget, space.params.size) - searcher.epochs_spent // max(1, space.train.epochs))
    if estimate and remaining:
        est = estimate_time(space, at_once, remaining)
        out(f"estimated time for {remaining} schedule(s): ~{duration(est['seconds'])} if nothing else loads the machine "
            f"({at_once} trial(s) at once; timed batch: {est['images_per_second']:.0f} training images/s for "
            f"{est['schedule']} on {est['device']} with {est['threads']} thread(s), ~{duration(est['epoch_seconds'])} per epoch)")  # fmt: skip
    ctx = TrialContext(space=space, study_name=paths.study_name)
    r = space.spec.resources
    trainable = tune.with_resources(tune.with_parameters(trial_fn or train_trial, ctx=ctx),
                                    {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})  # fmt: skip
    progress = Progress(searcher, study, list(space.objectives), out)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=stopper, num_samples=-1, max_concurrent_trials=r.max_concurrent,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}", reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{paths.study_name}-{time.strftime('%Y%m%d-%H%M%S')}", **trial_storage.run_config(),
            verbose=0, callbacks=[TrialRecorder(searcher, trial_storage.uri_of), progress],
            # a trial whose worker or node died restarts from its last checkpoint; deterministic
            # errors never raise (the trial reports status "failed"), so they are not restarted
            failure_config=tune.FailureConfig(max_failures=r.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the study records the latest one
            log_to_file=True,
        ),
    )  # fmt: skip
    searcher.on_event = lambda msg: out(f"  {msg}")
    interrupted = False  # stays False if fit raises: the error is what the caller sees
    try:
        interrupted = fit_quietly(tuner)
    finally:
        open_trials = searcher.abandon("the search was stopped (Ctrl-C) while this trial ran; its schedule is retried on rerun")
        # Tune catches Ctrl-C itself and returns normally; when it lands between two trials no trial is
        # open. Tune ends on its own only when the searcher says FINISHED (budget spent, space
        # exhausted, or a stop reason), so an end before that is a Ctrl-C.
        unfinished = not (searcher.spent or searcher.exhausted or searcher.stop_reason is not None)
        interrupted = interrupted or open_trials > 0 or searcher.interrupted or unfinished
    return interrupted


def _summary(result: SearchResult, space: ResolvedSpace, searcher: Any, out: Callable[[Any], None]) -> None:
    out("")
    at = ", ".join(f"{n} after epoch {e}" for e, n in sorted(result.stopped_at.items()))
    spent = (f"{result.epochs_spent:,} of {searcher.budget_epochs:,} epochs spent: {result.evaluated} schedule(s) "
             f"trained to the end, {result.counted - result.evaluated} stopped early{f' ({at})' if at else ''}; "
             f"{searcher.infeasible} infeasible and {searcher.duplicates} duplicate proposal(s) answered without training")  # fmt: skip
    if result.interrupted:
        out(f"stopped: {spent}; rerun the same command to resume")
    elif result.stop_reason:
        out(f"search stopped before its budget: {result.stop_reason}")
        out(f"  {spent}")
    elif result.exhausted:
        out(f"the space holds only {result.space_size} distinct schedules: all were answered ({spent})")
    else:
        out(f"done: {spent}")
    states = ", ".join(f"{k} {v}" for k, v in sorted(result.states.items()))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    out(f"trials in study {result.paths.study_name!r}: {states} (outcomes: {outcomes}); wall time {duration(result.wall_seconds)}")
    if result.pareto:
        out(pareto_table(result.pareto, list(space.objectives), title=f"Pareto set ({len(result.pareto)} schedules)"))
    out(f"dashboard: {result.dashboard_command}")


def _write_run_file(paths: RunPaths) -> None:
    """``runs/<name>/run.json``: where the run's study lives (storage URL, study name) -- what export reads."""
    import json  # noqa: PLC0415

    from ..engine._study import run_file_doc  # noqa: PLC0415

    doc = run_file_doc(paths)
    tmp = paths.run_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, paths.run_file)
