"""Ray Tune's ``OptunaSearch``, made to keep the study right for a schedule search.

Only the driver writes the study. On top of ``OptunaSearch`` (which asks Optuna for a proposal per
Tune trial and tells it the result) this class handles what the plain searcher gets wrong here:

* **budget** -- ``search.trials`` counts distinct schedules *evaluated*; the searcher returns
  ``FINISHED`` when that many are done (or the space is used up), so duplicates, failures and
  constraint breaches are replaced by new proposals;
* **duplicates** -- a proposal of a schedule already evaluated is answered from the stored result
  without training (state, values and constraints copied, ``outcome: duplicate``); one of a schedule
  still training waits for that result; after a streak of duplicates an unseen schedule is enqueued;
* **early stopping** -- ``OptunaSearch`` tells an ASHA-stopped trial COMPLETE with its partial
  values; here it becomes PRUNED (counted, never on the front);
* **constraints** -- a breach reported by the trial (before training) becomes PRUNED with the reason,
  and every finished trial carries ``Trial.set_constraint`` values (<= 0 feasible);
* **failures** -- a trial that raised becomes FAIL with the reason (via :class:`FailureRecorder`) and
  its schedule may be proposed again (up to ``search.max_retries`` times);
* **multi-objective known results** -- ``OptunaSearch(evaluated_rewards=...)`` builds single-objective
  trials; known results are added with ``study.add_trial`` instead (:func:`import_known_results`).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.callback import Callback
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .._text import format_count, one_line
from ..space import ResolvedSpace
from ._scheduler import EarlyStopper
from ._study import trial_key
from .record import ANSWERABLE, COUNTED, DIRECTIONS, Attr, Outcome, constraint_values

__all__ = ["ScheduleSearch", "FailureRecorder"]

logger = logging.getLogger(__name__)

#: Consecutive duplicate proposals after which an unseen schedule is enqueued.
_DUPLICATE_STREAK = 8


@dataclass
class _InFlight:
    tune_id: str
    ot_trial: optuna.Trial
    key: tuple[int, ...]
    schedule_id: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    before: list[float] = field(default_factory=list)


class ScheduleSearch(OptunaSearch):
    """``OptunaSearch`` with the budget, duplicate, pruning and failure rules of DESIGN.md.

    Args:
        space: the resolved space (:func:`search.load_space`).
        study_name: the Optuna study (created beforehand, see :mod:`search.engine._study`).
        storage: its storage.
        sampler: the Optuna sampler.
        budget: distinct schedules to evaluate.
        stopper: the ASHA scheduler, when early stopping is on.
        run_dir: weights paths are recorded relative to it.
        provenance: user attributes every trial gets (package version, git revision).
    """

    def __init__(
        self,
        space: ResolvedSpace,
        study_name: str,
        storage: optuna.storages.BaseStorage,
        sampler: optuna.samplers.BaseSampler,
        budget: int,
        stopper: EarlyStopper | None = None,
        run_dir: str = ".",
        provenance: dict[str, Any] | None = None,
    ) -> None:
        objectives = list(space.objectives)
        modes = ["max" if DIRECTIONS[o] == "maximize" else "min" for o in objectives]
        pspace = space.params
        self._pspace = pspace
        super().__init__(
            space=pspace.suggest, metric=objectives, mode=modes, sampler=sampler,
            study_name=study_name, storage=storage,
        )  # fmt: skip
        self._cfg = space
        self._objectives = objectives
        self._budget = budget
        self._stopper = stopper
        self._run_dir = run_dir
        self._provenance = dict(provenance or {})
        self._epochs = space.train.epochs
        self._rng = random.Random(space.spec.search.seed)
        self._inflight: dict[str, _InFlight] = {}
        self._awaiting: dict[str, _InFlight] = {}  # errored, waiting for FailureRecorder's reason
        self._waiting_dups: dict[tuple[int, ...], list[optuna.Trial]] = {}
        self._records: dict[tuple[int, ...], FrozenTrial] = {}
        self._failures: Counter[tuple[int, ...]] = Counter()
        self._resume_keys: set[tuple[int, ...]] = set()
        self.duplicates = 0
        self.interrupted = False
        #: Progress bookkeeping: Tune trial id -> (Optuna number, schedule id), outcome, detail.
        self.numbers: dict[str, tuple[int, str]] = {}
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}
        #: Called with one-line messages (duplicates answered, unseen schedules enqueued).
        self.on_event: Callable[[str], None] | None = None
        self._load_ledger()

    # ------------------------------------------------------------------ ledger
    def _load_ledger(self) -> None:
        for t in self._ot_study.get_trials(deepcopy=False):
            key = trial_key(self._pspace, t.params)
            outcome = t.user_attrs.get(Attr.OUTCOME)
            if key is None:
                continue
            if t.state.is_finished() and outcome in ANSWERABLE and key not in self._records:
                self._records[key] = t
            elif t.state == TrialState.FAIL and outcome == Outcome.FAILED:
                self._failures[key] += 1

    def resume_from_checkpoint(self, keys: set[tuple[int, ...]]) -> None:
        """Schedules whose interrupted trials left a per-epoch checkpoint to resume from."""
        self._resume_keys |= keys

    @property
    def counted(self) -> int:
        """Distinct schedules evaluated so far (the budget's unit)."""
        return sum(1 for t in self._records.values() if t.user_attrs.get(Attr.OUTCOME) in COUNTED)

    @property
    def budget(self) -> int:
        """The number of distinct schedules to evaluate."""
        return self._budget

    def _dead(self) -> set[tuple[int, ...]]:
        limit = self._cfg.spec.search.max_retries
        return {k for k, n in self._failures.items() if n > limit and k not in self._records}

    def _unresolved(self) -> int:
        """Schedules neither answered, given up on, nor in flight."""
        taken = set(self._records) | self._dead() | {f.key for f in self._inflight.values()}
        return self._pspace.size - len(taken)

    @property
    def exhausted(self) -> bool:
        """Whether every schedule of the space is answered or given up on."""
        return self._unresolved() <= 0 and not self._inflight

    def running(self) -> dict[str, tuple[str, int]]:
        """Tune trial id -> (schedule id, last epoch reported)."""
        return {tid: (f.schedule_id, f.epochs[-1]["epoch"] if f.epochs else 0) for tid, f in self._inflight.items()}

    # ------------------------------------------------------------------ suggest
    def suggest(self, trial_id: str) -> dict | str | None:  # noqa: D102 (Searcher API)
        if self.interrupted:
            return Searcher.FINISHED if not self._inflight else None
        if self.counted >= self._budget or self._unresolved() <= 0:
            return Searcher.FINISHED if not self._inflight else None
        if self.counted + len(self._inflight) >= self._budget:
            return None  # wait: a running trial may fail and need replacing
        streak = 0
        while True:
            ot_trial = self._ot_study.ask()
            values = self._suggest_from_define_by_run_func(self._space, ot_trial)
            key = trial_key(self._pspace, values)
            assert key is not None
            schedule = self._pspace.schedule(values)
            ot_trial.set_user_attr(Attr.SCHEDULE_ID, schedule.id)
            ot_trial.set_user_attr(Attr.SCHEDULE, dict(schedule.groups))
            if key in self._records:
                self._answer_duplicate(ot_trial, self._records[key])
            elif key in {f.key for f in self._inflight.values()}:
                self._waiting_dups.setdefault(key, []).append(ot_trial)
                self.duplicates += 1
            elif key in self._dead():
                ot_trial.set_user_attr(Attr.OUTCOME, Outcome.SKIPPED)
                ot_trial.set_user_attr(Attr.FAIL_REASON, f"not retried: its trials raised {self._failures[key]} times")
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            else:
                ot_trial.set_user_attr(Attr.TUNE_TRIAL_ID, trial_id)
                self._inflight[trial_id] = _InFlight(trial_id, ot_trial, key, schedule.id)
                self.numbers[trial_id] = (ot_trial.number, schedule.id)
                self._ot_trials[trial_id] = ot_trial
                return {**values, "__resume": key in self._resume_keys}
            streak += 1
            if streak % _DUPLICATE_STREAK == 0 and not self._enqueue_unseen():
                return Searcher.FINISHED if not self._inflight else None

    def _enqueue_unseen(self) -> bool:
        """Enqueue a schedule never proposed; False when there is none."""
        taken = set(self._records) | self._dead() | {f.key for f in self._inflight.values()}
        names = [p.name for p in self._pspace.params]
        for _ in range(2000):
            values = self._pspace.random_values(self._rng)
            if tuple(values.values()) not in taken:
                self._ot_study.enqueue_trial(values, user_attrs={Attr.ENQUEUED: "unseen after duplicates"})
                return True
        if not self._pspace.enumerable:
            return False
        for values in self._pspace.all_values():
            if tuple(values[n] for n in names) not in taken:
                self._ot_study.enqueue_trial(values, user_attrs={Attr.ENQUEUED: "unseen after duplicates"})
                return True
        return False

    def _answer_duplicate(self, ot_trial: optuna.Trial, original: FrozenTrial) -> None:
        skip = {Attr.SCHEDULE_ID, Attr.SCHEDULE, Attr.SEED, Attr.ENQUEUED, Attr.TUNE_TRIAL_ID, Attr.OUTCOME, Attr.DUPLICATE_OF}
        for k, v in original.user_attrs.items():
            if k not in skip:
                ot_trial.set_user_attr(k, v)
        ot_trial.set_user_attr(Attr.OUTCOME, Outcome.DUPLICATE)
        ot_trial.set_user_attr(Attr.DUPLICATE_OF, original.number)
        for k, v in original.constraints.items():
            ot_trial.set_constraint(k, v)
        values = original.values if original.state == TrialState.COMPLETE else None
        self._ot_study.tell(ot_trial, values, state=original.state)
        self.duplicates += 1
        self._event(
            f"trial #{ot_trial.number}: {original.user_attrs.get('schedule_id')} was proposed again -- "
            f"answered from trial #{original.number} ({original.state.name}), not trained"
        )

    def _event(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    # ------------------------------------------------------------------ results
    def on_trial_result(self, trial_id: str, result: dict) -> None:  # noqa: D102
        self._note_epoch(self._inflight.get(trial_id), result)

    def _note_epoch(self, f: _InFlight | None, result: dict | None) -> None:
        if f is None or not result or result.get("status") not in ("training", "done"):
            return
        if not f.before and result.get("history_before"):
            f.before = [float(v) for v in result["history_before"]]
        epoch = int(result["epoch"])
        while f.epochs and f.epochs[-1]["epoch"] >= epoch:  # a repeated report: the latest wins
            f.epochs.pop()
        f.epochs.append({
            "epoch": epoch, "val_accuracy": float(result["val_accuracy"]),
            "images_per_second": float(result.get("images_per_second", math.nan)),
            "seconds": float(result.get("epoch_seconds", math.nan)),
        })  # fmt: skip

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:  # noqa: D102
        f = self._inflight.pop(trial_id, None)
        if f is None:
            return
        self._completed_trials.add(trial_id)
        if error:
            self._awaiting[trial_id] = f  # FailureRecorder.on_trial_error brings the reason next
            return
        if not result or "status" not in result:
            self._fail(f, Outcome.INTERRUPTED, "stopped before it reported a result")
            return
        self._note_epoch(f, result)
        status = result["status"]
        t = f.ot_trial
        self._set_result_attrs(t, f, result)
        if status == "infeasible":
            t.set_user_attr(Attr.OUTCOME, Outcome.INFEASIBLE)
            t.set_user_attr(Attr.PRUNE_REASON, f"constraint: {result.get('reason', '')}")
            self._tell(f, None, TrialState.PRUNED)
        elif status == "done":
            t.set_user_attr(Attr.OUTCOME, Outcome.EVALUATED)
            values = [float(result[m]) for m in self._objectives]
            if any(math.isnan(v) for v in values):
                self._fail(f, Outcome.FAILED, f"an objective is not a number: {dict(zip(self._objectives, values))}")
                return
            self._tell(f, values, TrialState.COMPLETE)
        elif self._stopper is not None and trial_id in self._stopper.stopped:
            t.set_user_attr(Attr.OUTCOME, Outcome.EARLY_STOPPED)
            t.set_user_attr(Attr.PRUNE_REASON, f"early stopping (ASHA) after epoch {result.get('epoch')}/{self._epochs}")
            t.set_user_attr(Attr.PARTIAL_VALUES, {m: float(result[m]) for m in self._objectives})
            self._tell(f, None, TrialState.PRUNED)
        else:
            self._fail(f, Outcome.INTERRUPTED, f"stopped after epoch {result.get('epoch')}/{self._epochs}")

    def record_error(self, trial_id: str, reason: str) -> None:
        """Finish a trial that raised, with the reason (called by :class:`FailureRecorder`)."""
        f = self._awaiting.pop(trial_id, None)
        if f is not None:
            self._fail(f, Outcome.FAILED, reason)

    def _set_result_attrs(self, t: optuna.Trial, f: _InFlight, result: dict) -> None:
        attrs: dict[str, Any] = {
            Attr.FLOPS: int(result["flops"]),
            Attr.PARAMS: int(result["params"]),
            Attr.EPOCHS: self._epochs,
            Attr.HOST: result.get("host"),
            Attr.NODE_ID: result.get("node_id"),
            Attr.DEEPROOTS_VERSION: result.get("deeproots_version"),
            **self._provenance,
        }
        if not math.isnan(float(result.get("latency_ms", math.nan))):
            attrs[Attr.LATENCY_MS] = float(result["latency_ms"])
        if f.epochs:
            attrs[Attr.VAL_ACCURACY_PER_EPOCH] = f.before + [e["val_accuracy"] for e in f.epochs]
            attrs[Attr.VAL_ACCURACY] = f.epochs[-1]["val_accuracy"]
            ips = [e["images_per_second"] for e in f.epochs if not math.isnan(e["images_per_second"])]
            attrs[Attr.IMAGES_PER_SECOND] = sum(ips) / len(ips) if ips else None
            attrs[Attr.EPOCHS_TRAINED] = f.epochs[-1]["epoch"]
            attrs[Attr.TRAIN_SECONDS] = float(result.get("train_seconds_total", math.nan))
            attrs[Attr.DEVICE] = result.get("device")
            if len(f.before):
                attrs[Attr.RESUMED_FROM_EPOCH] = len(f.before)
        if result.get("recovered"):
            attrs[Attr.RECOVERED] = "trained by an earlier attempt whose driver stopped before recording it"
        if result.get("weights"):
            attrs[Attr.WEIGHTS] = os.path.relpath(result["weights"], self._run_dir)
        for k, v in attrs.items():
            if v is not None:
                t.set_user_attr(k, v)
        for name, value in constraint_values(self._cfg.limits, attrs).items():
            t.set_constraint(name, value)  # > 0: breached, relative

    def _tell(self, f: _InFlight, values: list[float] | None, state: TrialState) -> None:
        frozen = self._ot_study.tell(f.ot_trial, values, state=state)
        outcome = frozen.user_attrs.get(Attr.OUTCOME, "")
        self.outcomes[f.tune_id] = outcome
        if values is not None:
            self.details[f.tune_id] = ", ".join(
                f"{m} {v:.4f}" if m == "val_accuracy" else f"{m} {format_count(v) if m != 'latency_ms' else f'{v:.3f}'}"
                for m, v in zip(self._objectives, values)
            )
        else:
            self.details[f.tune_id] = frozen.user_attrs.get(Attr.PRUNE_REASON, "")
        self._records[f.key] = frozen
        self._resume_keys.discard(f.key)
        for waiting in self._waiting_dups.pop(f.key, []):
            self._answer_duplicate(waiting, frozen)

    def _fail(self, f: _InFlight, outcome: str, reason: str) -> None:
        self.outcomes[f.tune_id] = f"FAIL ({outcome})"
        self.details[f.tune_id] = reason
        f.ot_trial.set_user_attr(Attr.OUTCOME, outcome)
        f.ot_trial.set_user_attr(Attr.FAIL_REASON, reason)
        if f.epochs:
            f.ot_trial.set_user_attr(Attr.VAL_ACCURACY_PER_EPOCH, f.before + [e["val_accuracy"] for e in f.epochs])
        self._ot_study.tell(f.ot_trial, state=TrialState.FAIL)
        if outcome == Outcome.FAILED:
            self._failures[f.key] += 1
        for waiting in self._waiting_dups.pop(f.key, []):
            waiting.set_user_attr(Attr.OUTCOME, Outcome.INTERRUPTED)
            waiting.set_user_attr(Attr.FAIL_REASON, f"duplicate of trial {f.ot_trial.number}, which did not finish")
            self._ot_study.tell(waiting, state=TrialState.FAIL)

    def abandon(self, reason: str) -> int:
        """Finish every trial still open (Ctrl-C): FAIL, outcome interrupted. Returns how many."""
        n = len(self._inflight) + len(self._awaiting)
        for f in self._inflight.values():
            self._fail(f, Outcome.INTERRUPTED, reason)
        for f in self._awaiting.values():
            self._fail(f, Outcome.FAILED, "the trial raised; its reason was lost when the search stopped")
        self._inflight.clear()
        self._awaiting.clear()
        for waiting_list in self._waiting_dups.values():
            for waiting in waiting_list:
                waiting.set_user_attr(Attr.OUTCOME, Outcome.INTERRUPTED)
                waiting.set_user_attr(Attr.FAIL_REASON, reason)
                self._ot_study.tell(waiting, state=TrialState.FAIL)
        self._waiting_dups.clear()
        return n

    # Tune pickles its config (tuner.pkl) and checkpoints the searcher for Tuner.restore; a search
    # resumes from the study instead, so neither needs this object's state (which holds the storage).
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        return None

    def restore_from_dir(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        return None


class FailureRecorder(Callback):
    """Hands the reason of a trial that raised to the searcher (Tune gives it none)."""

    def __init__(self, searcher: ScheduleSearch) -> None:
        self._searcher = searcher

    def __getstate__(self) -> dict[str, Any]:  # see ScheduleSearch.__getstate__
        return {}

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        reason = "the trial raised (no error recorded)"
        try:
            # Tune has just written the error to the trial's local folder (synced to storage later).
            path = trial.error_file
            text = open(path).read() if path and os.path.exists(path) else trial.get_error()
            if text:
                reason = one_line(str(text))
        except Exception as e:  # noqa: BLE001 (a reason is nice to have, never fatal)
            reason = f"the trial raised ({type(e).__name__} while reading the error)"
        self._searcher.record_error(trial.trial_id, reason)
