"""Progress of a running search on the console: one line per epoch and per finished trial, the front as it moves."""

from __future__ import annotations

import time
from typing import Any, Callable

from ray.tune.callback import Callback

from .._text import duration
from ..outputs._tables import pareto_line, pareto_rows

__all__ = ["Progress"]


class Progress(Callback):
    """Tune callback printing the budget spent, an ETA, running trials with their epoch, the front.

    The ETA comes from the epochs trained per wall-clock second since the search (re)started, so it
    holds everything a trial costs on this machine (start-up, data, training, validation).
    """

    def __init__(self, searcher: Any, study: Any, objectives: list[str], out: Callable[[str], None]) -> None:
        self._searcher = searcher
        self._study = study
        self._objectives = objectives
        self._out = out
        self._front: list[str] = []
        self._start = time.monotonic()
        self._epochs = 0  # epochs reported since the start

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

    def eta(self) -> float | None:
        """Seconds left at the rate measured so far (None before the first epoch)."""
        s = self._searcher
        if self._epochs == 0:
            return None
        in_flight = sum(ep for _, ep in s.running().values())
        left = max(0, s.budget_epochs - s.epochs_spent - in_flight)
        return left * (time.monotonic() - self._start) / self._epochs

    def _status(self) -> str:
        s = self._searcher
        running = s.running()
        parts = [f"{sid.split(':', 1)[-1]} e{ep}" for sid, ep in running.values()]
        eta = self.eta()
        stopped = s.counted - s.evaluated
        return (f"[{s.epochs_spent}/{s.budget_epochs} epochs, {s.evaluated} evaluated"
                + (f", {stopped} stopped early" if stopped else "")
                + (f", ETA ~{duration(eta)}" if eta is not None else "")
                + f"] running: {', '.join(parts) or '-'}")  # fmt: skip

    def _result(self, trial: Any, result: dict) -> None:
        status = result.get("status")
        if status in ("training", "done"):
            self._epochs += 1
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


