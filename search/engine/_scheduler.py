"""Early stopping at rungs: asynchronous successive halving on accuracy (ASHA) or on all objectives (MO-ASHA).

A *rung* is an epoch at which trials are compared: ``grace_period * reduction_factor**k`` epochs,
below the full budget. When a trial reports at a rung, its result is recorded there and ranked
against every result recorded at that rung so far (asynchronously, as ASHA does -- Li et al., 2020,
"A System for Massively Parallel Hyperparameter Tuning"): it continues when it is among the top
``ceil(n / reduction_factor)`` of the ``n`` recorded, and is stopped otherwise. With fewer than
``reduction_factor`` results at a rung every trial continues (as Ray's ``AsyncHyperBandScheduler``).

* ``asha`` ranks on ``val_accuracy`` alone. A cheap schedule that is Pareto-optimal is stopped
  because a costlier one is a little more accurate at the rung.
* ``moasha`` ranks by non-dominated sorting on **all** the study's objectives -- accuracy at that
  epoch, FLOPs, parameters (and latency), the costs known from the start -- with ties inside a front
  broken by crowding distance (Schmucker et al., 2021, "Multi-objective multi-fidelity hyperparameter
  optimization with application to fairness", the NSGA-II selection variant; Syne Tune's ``MOASHA``).
  The cheapest schedules sit on the first front whatever their accuracy, so the cheap end of the
  front survives stopping.

Both are Ray Tune ``FIFOScheduler`` subclasses deciding in ``on_trial_result`` (public API). Tune
never saves scheduler state; :meth:`RungScheduler.rebuild` recreates the rungs from the study when
a run resumes (every trial that finished -- trained to the end or stopped -- records its per-epoch
accuracy), so the rerun takes the same decisions for the same results. Results are keyed by
schedule id, so a retried schedule replaces its earlier record instead of counting twice.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ._pareto import rank_order
from .record import COUNTED, DIRECTIONS, TrialView

__all__ = ["RungScheduler", "rung_epochs"]


def rung_epochs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Epochs at which trials are compared: ``grace * rf**k`` below ``max_epochs`` (rounded, distinct).

    Example:
        >>> rung_epochs(15, 3, 3)
        [3, 9]
    """
    out: list[int] = []
    k = 0
    while True:
        e = int(round(grace_period * reduction_factor**k))
        if e >= max_epochs:
            return out
        if not out or e > out[-1]:
            out.append(e)
        k += 1


class RungScheduler(FIFOScheduler):
    """ASHA (``ranking="accuracy"``) or MO-ASHA (``ranking="pareto"``) over epochs.

    Args:
        objectives: the study's objective names (``val_accuracy`` first or anywhere).
        max_epochs: the full budget (the last epoch is never a rung).
        grace_period: epochs every trial trains before it may be stopped.
        reduction_factor: keep the best ``1/reduction_factor`` at each rung.
        ranking: ``"accuracy"`` (ASHA) or ``"pareto"`` (MO-ASHA).

    Attributes:
        rungs: the rung epochs.
        stopped: Tune trial id -> the epoch it was stopped at.
        decisions: ``(schedule id, rung epoch, "continue" | "stop")`` in the order taken.

    Results must carry ``epoch``, ``val_accuracy``, ``schedule_id`` and every cost objective
    (``flops``, ``params``, ``latency_ms``), as the search's trials report them.
    """

    def __init__(
        self,
        objectives: list[str] | tuple[str, ...],
        max_epochs: int,
        grace_period: int = 1,
        reduction_factor: float = 3.0,
        ranking: Literal["accuracy", "pareto"] = "pareto",
    ) -> None:
        super().__init__()
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        self.objectives = list(objectives)
        self.ranking = ranking
        self.name = "MO-ASHA" if ranking == "pareto" else "ASHA"
        self.reduction_factor = float(reduction_factor)
        self.rungs = rung_epochs(max_epochs, max(1, grace_period), reduction_factor)
        self._signs = np.array([-1.0 if DIRECTIONS[o] == "maximize" else 1.0 for o in self.objectives])
        self._recorded: dict[int, dict[str, np.ndarray]] = {r: {} for r in self.rungs}
        self.stopped: dict[str, int] = {}
        self.decisions: list[tuple[str, int, str]] = []

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:  # noqa: D102
        return True  # the objectives are ours, not Tune's single metric

    # ------------------------------------------------------------------ the decision
    def _vector(self, values: dict[str, float]) -> np.ndarray:
        return np.array([float(values[o]) for o in self.objectives]) * self._signs  # all minimised

    def decide(self, schedule_id: str, epoch: int, values: dict[str, float]) -> str:
        """Record ``values`` (objective -> value at ``epoch``) and return ``"continue"`` or ``"stop"``.

        Not a rung epoch: ``"continue"`` without recording.
        """
        if epoch not in self._recorded:
            return "continue"
        rung = self._recorded[epoch]
        rung[schedule_id] = self._vector(values)
        n = len(rung)
        if n < self.reduction_factor:
            action = "continue"
        else:
            ids = list(rung)
            pts = np.stack([rung[i] for i in ids])
            if self.ranking == "accuracy":
                col = self.objectives.index("val_accuracy")
                order = np.lexsort((np.arange(n), pts[:, col]))  # best (lowest -acc) first, ties by arrival
            else:
                order = rank_order(pts)
            keep = math.ceil(n / self.reduction_factor)
            position = int(np.flatnonzero(np.array(ids)[order] == schedule_id)[0])
            action = "continue" if position < keep else "stop"
        self.decisions.append((schedule_id, epoch, action))
        return action

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:  # noqa: D102
        if result.get("status") != "training" or "epoch" not in result:
            return TrialScheduler.CONTINUE
        epoch = int(result["epoch"])
        values = {o: result[o] for o in self.objectives}
        if self.decide(str(result.get("schedule_id", trial.trial_id)), epoch, values) == "stop":
            self.stopped[trial.trial_id] = epoch
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    # ------------------------------------------------------------------ resume
    def rebuild(self, study: Any) -> int:
        """Record at each rung the results of every finished trial of ``study``; returns how many.

        Trials that spent the budget (trained to the end or stopped early) carry their validation
        accuracy per epoch and their costs; results are recorded in trial order, as they were taken.
        """
        n = 0
        for t in study.get_trials(deepcopy=False):
            view = TrialView(t)
            if view.outcome not in COUNTED:
                continue
            acc = view.accuracy_per_epoch
            costs = {o: view.get(o) for o in self.objectives if o != "val_accuracy"}
            if any(v is None for v in costs.values()):
                continue
            for r in self.rungs:
                if len(acc) >= r:
                    self._recorded[r][view.schedule_id] = self._vector({**costs, "val_accuracy": acc[r - 1]})
                    n += 1
        return n

    def recorded(self, epoch: int) -> int:
        """Results recorded at rung ``epoch``."""
        return len(self._recorded.get(epoch, {}))
