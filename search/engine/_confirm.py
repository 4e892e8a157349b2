"""The confirmation stage's study side: which schedules to retrain, the companion study, the confirmed front.

A search scores each schedule once, with one training seed, at a cheap fidelity; its front is picked
on that noise. The confirmation (the space's ``confirm`` block) retrains the front plus its tied
band (:func:`search.engine.noise.tied_band`), best validation accuracy first and at most
``confirm.max_schedules``, with ``confirm.seeds`` training seeds at the fidelity ``confirm.overrides``
makes. Its results live in a *companion study* ``<study>-confirm`` in the same storage (the search
study names it, :data:`StudyAttr.CONFIRM_STUDY`), one COMPLETE trial per (schedule, fidelity with
its seed) -- so the search study keeps one trial per schedule and its samplers never read a
confirmation result. A result recorded there is never trained again. A training runs as a RUNNING
trial there, each Tune checkpoint it reaches recorded on it (``Attr.CHECKPOINT``, a URI in the run's
Tune storage); one that did not finish is FAIL, and a rerun resumes from its checkpoint.

The *confirmed front* is the non-dominated set of the confirmed schedules on their mean accuracy
over the seeds and their costs; Kendall's tau between the search-fidelity accuracies and the
confirmation's mean accuracies says whether the search's fidelity ordered them as the higher one does.

No Ray and no torch here: :mod:`search.runner._confirm` trains, this module decides and records.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .noise import RankAgreement, ScoredSchedule, TiedBand, rank_agreement, tied_band
from .record import Attr, Outcome, StudyAttr, TrialView

if TYPE_CHECKING:
    import optuna

__all__ = ["Candidate", "ConfirmedSchedule", "Confirmation", "confirm_study_name", "select_candidates",
           "open_confirm_study", "find_confirm_study", "confirmed_trials", "start_confirmed", "finish_confirmed",
           "fail_confirmed", "close_abandoned", "resume_points", "summarize",
           "confirmed_front"]  # fmt: skip


def confirm_study_name(study_name: str) -> str:
    """The companion study of search study ``study_name``: ``<study>-confirm``."""
    return f"{study_name}-confirm"


@dataclass(frozen=True)
class Candidate:
    """A schedule of the search chosen for confirmation.

    Attributes:
        schedule_id: its canonical id.
        name: paper name (``root-4``) or None.
        number: the search trial that trained it.
        params: the search trial's parameters, with their distributions (the companion study's trials reuse them).
        distributions: Optuna distributions of ``params``.
        values: objective name -> the search's value (``val_accuracy`` at the search's fidelity, costs).
        on_front: a member of the search's front (else of its tied band).
    """

    schedule_id: str
    name: str | None
    number: int
    params: Mapping[str, Any]
    distributions: Mapping[str, Any]
    values: Mapping[str, float]
    on_front: bool


def _completed(study: optuna.Study) -> dict[str, Any]:
    """Schedule id -> the COMPLETE trial that trained (or imported) it, first one wins."""
    from optuna.trial import TrialState  # noqa: PLC0415

    out: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        view = TrialView(t)
        if view.outcome in (Outcome.EVALUATED, Outcome.IMPORTED) and t.values is not None:
            out.setdefault(view.schedule_id, t)
    return out


def select_candidates(
    study: optuna.Study,
    *,
    alpha: float,
    max_schedules: int,
    correct_of: Callable[[Any], Any] | None,
    paper: Mapping[str, str] | None = None,
) -> tuple[list[Candidate], TiedBand | None, list[str]]:
    """The front of ``study`` plus its tied band, best validation accuracy first, at most ``max_schedules``.

    Args:
        study: the search study.
        alpha: significance level of the tie test (``confirm.alpha``).
        max_schedules: M.
        correct_of: FrozenTrial -> its per-image validation flags (None when its weights are gone);
            None: no tie test, the front alone.
        paper: schedule id -> paper name.

    Returns:
        ``(candidates, tied band or None, notes)``.
    """
    from ..outputs._tables import pareto_rows  # noqa: PLC0415

    names = list(study.metric_names or [])
    costs = [n for n in names if n != "val_accuracy"]
    done = _completed(study)
    front_ids = [r["schedule_id"] for r in pareto_rows(study) if r["schedule_id"] in done]
    notes: list[str] = []
    band: TiedBand | None = None
    order = front_ids
    if correct_of is not None and front_ids:

        def scored(sid: str) -> ScoredSchedule | None:
            t = done[sid]
            flags = correct_of(t)
            return None if flags is None else ScoredSchedule(sid, {c: float(t.values[names.index(c)]) for c in costs}, flags)

        front = [scored(s) for s in front_ids]
        if any(f is None for f in front):
            notes.append("weights of a front member are missing: no tie test, the front alone is confirmed")
        else:
            others = [s for s in (scored(sid) for sid in done if sid not in front_ids) if s is not None]
            band = tied_band(front, others, alpha)  # type: ignore[arg-type]
            order = band.schedules()
    acc = {sid: float(done[sid].values[names.index("val_accuracy")]) for sid in done}
    if band is None:
        order = sorted(order, key=lambda s: (-acc[s], s))
    if len(order) > max_schedules:
        notes.append(f"{len(order) - max_schedules} of {len(order)} schedules of the front and its tied band left out "
                     f"(confirm.max_schedules: {max_schedules})")  # fmt: skip
    out = []
    for sid in order[:max_schedules]:
        t = done[sid]
        label = (paper or {}).get(sid) or TrialView(t).seed_label
        label = None if label == sid else label  # a schedule enqueued by its id (python -m search.fidelity) has no name
        out.append(Candidate(sid, label, t.number, dict(t.params),
                             dict(t.distributions), dict(zip(names, map(float, t.values))), sid in front_ids))  # fmt: skip
    return out, band, notes


def find_confirm_study(storage: Any, search_study: optuna.Study) -> optuna.Study | None:
    """The companion study the search study names, or None (no confirmation ran)."""
    import optuna  # noqa: PLC0415

    name = search_study.user_attrs.get(StudyAttr.CONFIRM_STUDY)
    if not name:
        return None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def open_confirm_study(storage: Any, search_study: optuna.Study, block: Mapping[str, Any]) -> optuna.Study:
    """Create (or load) ``<study>-confirm``; link it from the search study; record the block it runs with."""
    import optuna  # noqa: PLC0415

    name = confirm_study_name(search_study.study_name)
    study = optuna.create_study(study_name=name, storage=storage, directions=search_study.directions, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler())  # every trial's parameters are enqueued
    if not study.metric_names and search_study.metric_names:
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(search_study.metric_names))
    study.set_user_attr(StudyAttr.CONFIRM, {**dict(block), "search_study": search_study.study_name,
                                            "updated": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    if search_study.user_attrs.get(StudyAttr.CONFIRM_STUDY) != name:
        search_study.set_user_attr(StudyAttr.CONFIRM_STUDY, name)
    return study


def confirmed_trials(study: optuna.Study) -> dict[tuple[str, str], Any]:
    """(schedule id, fidelity key) -> the COMPLETE trial of the companion study that holds it."""
    from optuna.trial import TrialState  # noqa: PLC0415

    out: dict[tuple[str, str], Any] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        out.setdefault((t.user_attrs.get(Attr.SCHEDULE_ID), t.user_attrs.get(Attr.FIDELITY_KEY)), t)
    return out


def start_confirmed(study: optuna.Study, cand: Candidate, *, seed: int, fidelity_key: str) -> optuna.Trial:
    """A RUNNING trial of the companion study for one (schedule, seed) training, its parameters the
    search trial's; the driver records its checkpoints on it (``Attr.CHECKPOINT``) and finishes it
    with :func:`finish_confirmed` (or FAIL, keeping its checkpoint for the rerun that resumes it)."""
    user_attrs = {
        Attr.SCHEDULE_ID: cand.schedule_id, Attr.TRAINING_SEED: int(seed), Attr.FIDELITY_KEY: fidelity_key,
        Attr.SEARCH_TRIAL: cand.number, **({Attr.SEED: cand.name} if cand.name else {}),
    }  # fmt: skip
    for _ in range(100):
        study.enqueue_trial(dict(cand.params), user_attrs=user_attrs)
        trial = study.ask(fixed_distributions=dict(cand.distributions))
        got = trial.user_attrs
        if got.get(Attr.SCHEDULE_ID) == cand.schedule_id and got.get(Attr.FIDELITY_KEY) == fidelity_key:
            return trial
        # a trial enqueued by a driver killed before it asked for it: never run, closed here
        trial.set_user_attr(Attr.FAIL_REASON, "enqueued by a confirmation that stopped before it started")
        study.tell(trial, state=_fail_state())
    raise RuntimeError(f"study {study.study_name!r}: could not start a trial for {cand.schedule_id} (waiting trials keep coming)")


def _fail_state() -> Any:
    from optuna.trial import TrialState  # noqa: PLC0415

    return TrialState.FAIL


def finish_confirmed(study: optuna.Study, trial: optuna.Trial, cand: Candidate, *, accuracy: float,
                     attrs: Mapping[str, Any]) -> None:  # fmt: skip
    """Finish one confirmation training: its result attributes, then COMPLETE with the search's costs."""
    names = list(study.metric_names or cand.values)
    values = [accuracy if n == "val_accuracy" else float(cand.values[n]) for n in names]
    for k, v in {Attr.OUTCOME: Outcome.CONFIRMED, Attr.VAL_ACCURACY: accuracy, **dict(attrs)}.items():
        trial.set_user_attr(k, v)
    study.tell(trial, values)


def fail_confirmed(study: optuna.Study, trial: optuna.Trial, outcome: str, reason: str) -> None:
    """Close a confirmation training that did not finish: FAIL, its checkpoint kept (a rerun resumes from it)."""
    trial.set_user_attr(Attr.OUTCOME, outcome)
    trial.set_user_attr(Attr.FAIL_REASON, reason)
    study.tell(trial, state=_fail_state())


def close_abandoned(storage: Any, study: optuna.Study, reason: str) -> int:
    """FAIL every trial of the companion study left RUNNING by a driver that stopped (its checkpoint
    kept, ``reason`` recorded); how many. Only the holder of the run's driver lock calls this, so no
    other driver runs them."""
    from optuna.trial import TrialState  # noqa: PLC0415

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name) if running else None
    for t in running:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, Attr.OUTCOME, Outcome.INTERRUPTED)
        storage.set_trial_user_attr(trial_id, Attr.FAIL_REASON, reason)
        study.tell(t.number, state=TrialState.FAIL)
    return len(running)


def resume_points(study: optuna.Study) -> dict[tuple[str, str], str]:
    """(schedule id, fidelity key) -> the checkpoint the latest unfinished training of it reached
    (as recorded: a URI, or a path relative to the run folder)."""
    from optuna.trial import TrialState  # noqa: PLC0415

    out: dict[tuple[str, str], str] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.RUNNING)):
        ckpt = t.user_attrs.get(Attr.CHECKPOINT)
        if ckpt:
            out[(t.user_attrs.get(Attr.SCHEDULE_ID), t.user_attrs.get(Attr.FIDELITY_KEY))] = str(ckpt)
    return out


@dataclass
class ConfirmedSchedule:
    """One confirmed schedule: the search's accuracy and the confirmation's, per seed.

    Attributes:
        schedule_id: canonical id.
        name: paper name or None.
        search_accuracy: validation accuracy at the search's fidelity (one seed).
        costs: cost objective -> value.
        accuracy: training seed -> validation accuracy at the confirmation's fidelity.
        trials: training seed -> the companion study's trial.
        on_front: a member of the search's front (else of its tied band).
    """

    schedule_id: str
    name: str | None
    search_accuracy: float
    costs: dict[str, float]
    accuracy: dict[int, float] = field(default_factory=dict)
    trials: dict[int, Any] = field(default_factory=dict)
    on_front: bool = True

    @property
    def mean(self) -> float:
        """Mean validation accuracy over the seeds."""
        return statistics.fmean(self.accuracy.values()) if self.accuracy else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation over the seeds (nan with one seed)."""
        return statistics.stdev(self.accuracy.values()) if len(self.accuracy) > 1 else math.nan


@dataclass
class Confirmation:
    """What a confirmation holds (:func:`summarize`).

    Attributes:
        study: the companion study's name.
        block: the confirm block it last ran with (``seeds``, ``max_schedules``, ``overrides``, ``alpha``,
            the seeds' ``training_seeds`` and ``fidelity_keys``, the search ``front`` and tied ``band``).
        schedules: every schedule confirmed with all seeds, best mean first.
        front: ids of the confirmed front (non-dominated on mean accuracy and costs), best mean first.
        tau: Kendall's tau between search-fidelity and confirmation-fidelity accuracies (None: < 3 schedules).
        incomplete: ids of selected schedules still missing a seed.
    """

    study: str
    block: dict[str, Any]
    schedules: list[ConfirmedSchedule]
    front: list[str]
    tau: RankAgreement | None
    incomplete: list[str] = field(default_factory=list)

    def by_id(self, schedule_id: str) -> ConfirmedSchedule:
        """The confirmed schedule ``schedule_id``."""
        return next(s for s in self.schedules if s.schedule_id == schedule_id)


def confirmed_front(schedules: Sequence[ConfirmedSchedule]) -> list[str]:
    """Ids of the schedules no other beats on mean accuracy and every cost (ties kept), best mean first."""

    def dominates(a: ConfirmedSchedule, b: ConfirmedSchedule) -> bool:
        ge = a.mean >= b.mean and all(a.costs[c] <= b.costs[c] for c in a.costs)
        gt = a.mean > b.mean or any(a.costs[c] < b.costs[c] for c in a.costs)
        return ge and gt

    keep = [s for s in schedules if not any(dominates(o, s) for o in schedules if o is not s)]
    return [s.schedule_id for s in sorted(keep, key=lambda s: (-s.mean, s.schedule_id))]


def summarize(search_study: optuna.Study, confirm_study: optuna.Study) -> Confirmation:
    """The confirmed front of a companion study, for the confirm block it last ran with."""
    block = dict(confirm_study.user_attrs.get(StudyAttr.CONFIRM) or {})
    keys: dict[str, int] = {k: int(s) for k, s in zip(block.get("fidelity_keys", []), block.get("training_seeds", []))}
    names = list(search_study.metric_names or [])
    costs = [n for n in names if n != "val_accuracy"]
    done = _completed(search_study)
    rows: dict[str, ConfirmedSchedule] = {}
    for (sid, fkey), t in confirmed_trials(confirm_study).items():
        if fkey not in keys or sid not in done:
            continue
        s = done[sid]
        label = t.user_attrs.get(Attr.SEED) or TrialView(s).seed_label
        row = rows.setdefault(sid, ConfirmedSchedule(
            sid, None if label == sid else label, float(s.values[names.index("val_accuracy")]),
            {c: float(s.values[names.index(c)]) for c in costs}, on_front=sid in block.get("front", [sid])))  # fmt: skip
        row.accuracy[keys[fkey]] = float(t.user_attrs.get(Attr.VAL_ACCURACY, t.values[names.index("val_accuracy")]))
        row.trials[keys[fkey]] = t
    complete = [r for r in rows.values() if len(r.accuracy) == len(keys)]
    complete.sort(key=lambda r: (-r.mean, r.schedule_id))
    incomplete = [sid for sid in block.get("selected", []) if sid not in {r.schedule_id for r in complete}]
    tau = None
    if len(complete) >= 3:
        try:
            tau = rank_agreement([r.search_accuracy for r in complete], [r.mean for r in complete])
        except ValueError:  # a constant column: tau undefined
            tau = None
    return Confirmation(confirm_study.study_name, block, complete, confirmed_front(complete), tau, incomplete)
