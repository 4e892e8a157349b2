"""Reading a study back for the console: the Pareto set (one row per schedule), state and outcome counts, tables."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from .._text import format_count
from ..engine.record import TrialView

__all__ = ["pareto_rows", "state_counts", "pareto_table", "outcome_counts", "standard_error", "stopped_at_rungs"]


def standard_error(view: TrialView, accuracy: float | None, val_images: int | None) -> float | None:
    """The standard error of a trial's validation ``accuracy`` (a fraction): the one it recorded, else binomial.

    Trials record ``val_accuracy_se``; for studies made before they did, it is computed the same way
    (:func:`deeproots.accuracy_se`) from the accuracy and the study's ``data.val_size``. None when
    neither is known.
    """
    if view.val_accuracy_se is not None and (accuracy is None or accuracy == view.val_accuracy):
        return view.val_accuracy_se
    if accuracy is None or not val_images:
        return None
    from deeproots import accuracy_se  # noqa: PLC0415

    try:
        return accuracy_se(float(accuracy), int(val_images))
    except ValueError:
        return None


def pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's Pareto-optimal trials, one per schedule (duplicates and copies folded).

    Only COMPLETE trials that meet every constraint can be on the front (Optuna's ``best_trials``):
    early-stopped and infeasible trials are PRUNED and never appear. Sorted by accuracy, best first.

    Returns:
        Rows with ``number``, ``schedule_id``, ``seed`` (paper name or None), the objectives by name,
        ``checkpoint`` (or ``weights``, studies made before checkpoints) and ``outcome``.
    """
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    rows: dict[str, dict[str, Any]] = {}
    for t in sorted(study.best_trials, key=lambda t: t.number):
        view = TrialView(t)
        sid = view.schedule_id
        if sid in rows:  # a duplicate answered from the stored result: keep the original
            rows[sid]["seed"] = rows[sid]["seed"] or view.seed_label
            continue
        original = view.duplicate_of
        rows[sid] = {
            "number": t.number if original is None else original,
            "schedule_id": sid,
            "seed": view.seed_label,
            **dict(zip(names, t.values)),
            "checkpoint": view.checkpoint,
            "weights": view.weights,
            "outcome": view.outcome,
        }
    key = "val_accuracy" if "val_accuracy" in names else names[0]
    return sorted(rows.values(), key=lambda r: -r[key])


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per Optuna state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``)."""
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def outcome_counts(study: optuna.Study) -> dict[str, int]:
    """Finished trials per ``outcome`` user attribute (evaluated, duplicate, infeasible, ...)."""
    return dict(
        Counter(
            TrialView(t).outcome or "?"
            for t in study.get_trials(deepcopy=False)
            if t.state not in (TrialState.RUNNING, TrialState.WAITING)
        )
    )


def stopped_at_rungs(study: optuna.Study) -> dict[int, int]:
    """Epoch -> how many schedules early stopping ended after that many epochs."""
    from ..engine.record import Outcome  # noqa: PLC0415

    views = (TrialView(t) for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    return dict(Counter(len(v.accuracy_per_epoch) for v in views if v.outcome == Outcome.EARLY_STOPPED))


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "val_accuracy":
        return f"{value:.4f}"
    if name == "latency_ms":
        return f"{value:.3f}"
    return format_count(value)


def pareto_table(rows: list[dict[str, Any]], objectives: list[str], title: str = "Pareto set") -> Any:
    """A rich table of :func:`pareto_rows`."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("schedule")
    for o in objectives:
        table.add_column(o, justify="right")
    for r in rows:
        label = r["schedule_id"] + (f" ({r['seed']})" if r.get("seed") else "")
        table.add_row(str(r["number"]), label, *(_fmt(o, r.get(o)) for o in objectives))
    return table


def pareto_line(rows: list[dict[str, Any]], limit: int = 6) -> str:
    """A one-line summary of the front for progress output."""
    parts = [
        f"{r.get('seed') or r['schedule_id'].split(':', 1)[-1]} {r['val_accuracy']:.3f}/{format_count(r.get('flops'))}"
        for r in rows[:limit]
    ]
    more = f" +{len(rows) - limit}" if len(rows) > limit else ""
    return ", ".join(parts) + more
