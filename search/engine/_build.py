"""Assemble the engine of one search: the study with its sampler, the Tune searcher and the rung scheduler.

The driver (:mod:`search.runner._driver`) and the search benchmark (``experiments/bench_search.py``)
both build the engine here, so the benchmark judges exactly the code a search runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ._scheduler import RungScheduler
from ._searcher import ScheduleSearch
from ._study import make_sampler

if TYPE_CHECKING:
    import optuna

    from ..space import ResolvedSpace

__all__ = ["Engine", "make_engine", "make_scheduler"]


@dataclass
class Engine:
    """The parts of one search that decide.

    Attributes:
        study: the Optuna study, loaded with the sampler.
        searcher: the Tune searcher over it.
        scheduler: the early-stopping scheduler, or None (``search.early_stopping: none``).
    """

    study: optuna.Study
    searcher: ScheduleSearch
    scheduler: RungScheduler | None


def make_scheduler(space: ResolvedSpace) -> RungScheduler | None:
    """The rung scheduler of ``search.early_stopping`` (None for ``none``, or when no rung fits the budget)."""
    s = space.spec.search
    if s.early_stopping == "none":
        return None
    scheduler = RungScheduler(
        space.objectives, max_epochs=space.train.epochs, grace_period=s.grace_period,
        reduction_factor=s.reduction_factor, ranking="pareto" if s.early_stopping == "moasha" else "accuracy",
    )  # fmt: skip
    return scheduler if scheduler.rungs else None


def make_engine(
    space: ResolvedSpace,
    storage: optuna.storages.BaseStorage | str,
    study_name: str,
    *,
    budget: int | None = None,
    run_dir: str = ".",
    provenance: dict[str, Any] | None = None,
    latency_fn: Callable[[Any], float] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    driver: str | None = None,
) -> Engine:
    """Load the (prepared) study with its sampler and build the searcher and scheduler over it.

    The sampler is seeded with ``search.seed`` plus the number of trials already in the study, so a
    resumed search does not replay its earlier proposals; the scheduler's rungs are rebuilt from the
    study's finished trials.

    Args:
        space: the resolved space.
        storage: the study's storage (made by :func:`search.engine._study.prepare_study`).
        study_name: the study.
        budget: ``search.trials`` (default: the space's).
        run_dir: checkpoints under it are recorded relative to it.
        provenance: user attributes every trial gets.
        latency_fn: schedule -> latency (ms), when latency is an objective or a constraint.
        sampler: another sampler than the space's (the benchmark's configurations).
        driver: who runs the trials (``pid 123 on host``); with a storage opened with heartbeats
            (``open_storage(url, heartbeat=True)``) the searcher records Optuna heartbeats for them.
    """
    import optuna  # noqa: PLC0415

    budget = space.spec.search.trials if budget is None else budget
    n_before = len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    sampler = sampler or make_sampler(space, budget, offset=n_before)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    scheduler = make_scheduler(space)
    if scheduler is not None:
        scheduler.rebuild(study)
    searcher = ScheduleSearch(
        space, study, budget, scheduler, run_dir=run_dir, provenance=provenance, latency_fn=latency_fn,
        storage=None if isinstance(storage, str) else storage, driver=driver,
    )  # fmt: skip
    return Engine(study, searcher, scheduler)
