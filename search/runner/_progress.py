"""Progress of a running search on the console: one line per epoch and per finished trial, the front as it moves."""

from __future__ import annotations

from typing import Any, Callable

from ray.tune.callback import Callback

from ..outputs._tables import pareto_line, pareto_rows

__all__ = ["Progress"]


class Progress(Callback):
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


