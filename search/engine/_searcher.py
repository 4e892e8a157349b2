"""The schedule searcher: a Ray Tune ``Searcher`` of our own over Optuna's public ask/tell API.

Only the driver writes the study. Each Tune trial is one ``study.ask`` whose parameters the sampler
chose (or a seed enqueued before); what the sampler then learns from is kept clean:

* **no clones** -- a proposal of a schedule already answered at this fidelity (evaluated, stopped
  early, infeasible, imported) or still training is not trained again and never becomes a second
  COMPLETE trial: the asked trial ends FAIL with ``outcome=duplicate`` (Optuna cannot delete a trial;
  samplers ignore FAIL) and the searcher enqueues the nearest unseen schedule (one step in one
  ordered parameter, then two, three) -- the region the sampler asked for, without a clone; when
  none is near, it asks again, and after a streak of duplicates enqueues any schedule never
  proposed. Duplicate FAILs do not count as failures.
* **seeds are observations** -- the paper seeds (and results imported from other studies) are
  ordinary trials; with NSGA-II the seeds belong to generation 0 (:meth:`NSGAIISampler.get_trial_generation`
  at ask time -- a fully enqueued trial never reaches ``sample_relative``, which would otherwise set it).
  An imported result is finished before any sampler sees it and Optuna 5 refuses to tag a finished
  trial: it answers its schedule and sits on the front, outside NSGA-II's populations.
* **infeasible at ask time** -- FLOPs and parameters come from the exact cost table when a trial is
  asked (latency from one measurement by the driver, cached); a breach never starts a Ray trial: it is
  told PRUNED with its ``set_constraint`` values and ``outcome=infeasible`` (TPE learns from those;
  NSGA-II and GP simply never see a breach trained). No made-up accuracy anywhere.
* **failure streaks end the search** -- consecutive trials failing with the same reason (a data set
  that cannot be loaded, a learning rate that diverges) stop it after :data:`FAILURE_STREAK` with
  that reason; deterministic failures (non-finite loss, damaged data) are not retried.
* **budget in epochs** -- ``search.trials`` full-fidelity trials, i.e. ``trials x epochs`` epochs:
  a schedule trained to the end spends its epochs, one stopped early (MO-ASHA) only those it
  trained, so early stopping buys more schedules for the same compute. Without early stopping this
  is exactly ``trials`` distinct schedules evaluated.
* **checkpoints and heartbeats** -- every checkpoint a trial reports is recorded as its URI
  (``checkpoint``) the moment Tune has persisted it (:class:`TrialRecorder`); a trial queued again
  after its driver stopped (Optuna's ``RetryHeartbeatStaleTrialCallback`` copies it with its user
  attributes, or Ctrl-C queues it) gets that URI in its config (``__resume_from``) and resumes from it.
  The driver records Optuna heartbeats for the trials it runs (:meth:`ScheduleSearch.heartbeat`).
  Tune's own restarts of a trial whose worker or node died (``FailureConfig``) resume from its last
  checkpoint and are counted (``recoveries``); a trial that fails deterministically reports
  ``status: failed`` instead of raising, so Tune does not restart it.

Everything goes through public Optuna calls (``Study.ask``/``tell``/``enqueue_trial``/``get_trials``,
``Trial.set_user_attr``/``set_constraint``) and the public Tune ``Searcher`` interface; the study is
the whole state, so the searcher is rebuilt from it on resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.callback import Callback
from ray.tune.search import Searcher

from .._text import format_count, one_line
from .record import ANSWERABLE, COUNTED, Attr, Outcome, TrialView, constraint_values

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["ScheduleSearch", "TrialRecorder", "DUPLICATE_STREAK", "FAILURE_STREAK", "INFEASIBLE_STREAK"]

logger = logging.getLogger(__name__)

#: Consecutive duplicate proposals after which a schedule never proposed is enqueued.
DUPLICATE_STREAK = 8
#: Consecutive trials failing with the same reason after which the search stops.
FAILURE_STREAK = 3
#: Consecutive infeasible proposals after which the search stops (the sampler cannot find the feasible region).
INFEASIBLE_STREAK = 1000
#: Error types that repeat identically when the same schedule is trained again: never retried.
DETERMINISTIC_ERRORS = ("NonFiniteLossError", "DataError")
_DETERMINISTIC = re.compile(r"^(?:[\w.]*\.)?(?:" + "|".join(DETERMINISTIC_ERRORS) + r")\b")


def deterministic(reason: str) -> bool:
    """Whether a failure reason (``module.ErrorType: message``) is one that retrying cannot cure."""
    return bool(_DETERMINISTIC.match(reason or ""))


@dataclass
class _InFlight:
    tune_id: str
    trial: optuna.Trial
    key: tuple[int, ...]
    schedule_id: str
    costs: dict[str, float]
    epochs: list[dict[str, float]] = field(default_factory=list)
    before: list[float] = field(default_factory=list)
    storage_id: int | None = None  # the storage's trial id (heartbeats)
    recoveries: int = 0  # Tune restarts after its worker or node died
    checkpoint: str | None = None  # latest checkpoint, as recorded

    @property
    def accuracies(self) -> list[float]:
        return self.before + [e["val_accuracy"] for e in self.epochs]


def _standard_error(accuracy: float, images: int) -> float | None:
    """Binomial standard error of an accuracy measured on ``images`` validation images (None if not a fraction)."""
    from deeproots import accuracy_se  # noqa: PLC0415

    try:
        return accuracy_se(accuracy, images)
    except ValueError:
        return None


def _reason_kind(reason: str) -> str:
    """A failure reason without its numbers (two NaN losses at different steps are the same failure)."""
    return re.sub(r"[-+]?\d[\d.,e+-]*", "#", reason)


class ScheduleSearch(Searcher):
    """The Tune searcher of a schedule search (see the module docstring for its rules).

    Args:
        space: the resolved space (:func:`search.load_space`).
        study: the study, loaded with ``sampler`` (see :mod:`search.engine._study`).
        budget: ``search.trials``: full-fidelity trials (``budget x epochs`` epochs).
        stopper: the early-stopping scheduler (it records which trials it stopped), or None.
        run_dir: checkpoints under it are recorded relative to it.
        provenance: user attributes every trial gets (package version, git revision).
        latency_fn: schedule -> measured latency (ms) when latency is an objective or a constraint;
            called once per new schedule at ask time (the driver measures and caches it).
        storage: the study's storage; when it has Optuna heartbeats (``open_storage(heartbeat=True)``),
            every trial this searcher runs gets one at once and at each :meth:`heartbeat`.
        driver: who runs the trials (``pid 123 on host``), recorded per trial; a trial with this
            attribute has heartbeats.

    Example:
        >>> searcher = ScheduleSearch(space, study, budget=20)  # doctest: +SKIP
        >>> config = searcher.suggest("trial_1")  # {param: index, ..., "__costs": {...}}  # doctest: +SKIP
    """

    def __init__(
        self,
        space: ResolvedSpace,
        study: optuna.Study,
        budget: int,
        stopper: Any = None,
        run_dir: str = ".",
        provenance: dict[str, Any] | None = None,
        latency_fn: Callable[[Any], float] | None = None,
        storage: optuna.storages.BaseStorage | None = None,
        driver: str | None = None,
    ) -> None:
        super().__init__(metric=None, mode=None)
        self._space = space
        self._pspace = space.params
        self._study = study
        self._sampler = study.sampler
        self._dists = space.params.distributions()
        self._objectives = list(space.objectives)
        self._budget = budget
        self._max_epochs = space.train.epochs
        self._stopper = stopper
        self._run_dir = run_dir
        self._provenance = dict(provenance or {})
        self._latency_fn = latency_fn
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)() if storage is not None else None
        self._beats = storage if interval is not None else None  # heartbeats only
        self._study_id = storage.get_study_id_from_name(study.study_name) if self._beats is not None else None
        self._driver = driver
        self._beat_lock = threading.Lock()
        self._rng = random.Random(space.spec.search.seed)
        self._inflight: dict[str, _InFlight] = {}
        self._awaiting: dict[str, _InFlight] = {}  # errored, waiting for TrialRecorder's reason
        self._records: dict[tuple[int, ...], FrozenTrial] = {}
        self._failures: Counter[tuple[int, ...]] = Counter()
        self._dead: set[tuple[int, ...]] = set()
        self._failure_streak: tuple[str, int] = ("", 0)
        self._infeasible_streak = 0
        self.epochs_spent = 0
        self.duplicates = 0
        self.infeasible = 0
        self.interrupted = False
        #: Why the search stopped before its budget (a failure streak, an infeasible region), or None.
        self.stop_reason: str | None = None
        #: Progress bookkeeping: Tune trial id -> (Optuna number, schedule id), outcome, detail.
        self.numbers: dict[str, tuple[int, str]] = {}
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}
        #: Called with one-line messages (unseen schedules enqueued, the search stopping).
        self.on_event: Callable[[str], None] | None = None
        self._load_ledger()

    # ------------------------------------------------------------------ Tune plumbing
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:  # noqa: D102
        return True  # objectives and space come from the resolved space

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher with its experiment state; a search resumes from the study,
        # so the study (and its database connections) stay behind.
        state = dict(self.__dict__)
        for k in ("_study", "_sampler", "on_event", "_latency_fn", "_stopper", "_inflight", "_awaiting", "_records",
                  "_beats", "_beat_lock"):  # fmt: skip
            state[k] = None
        return state

    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102 (the study is the checkpoint)
        return None

    def restore_from_dir(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        return None

    # ------------------------------------------------------------------ ledger
    def _load_ledger(self) -> None:
        """Rebuild the bookkeeping from the study (a resumed search continues where it stopped)."""
        nsga = isinstance(self._sampler, optuna.samplers.NSGAIISampler)
        for t in self._study.get_trials(deepcopy=False):
            try:
                key = self._pspace.key(t.params)
            except KeyError:
                continue
            view = TrialView(t)
            if t.state.is_finished() and view.outcome in ANSWERABLE and key not in self._records:
                self._records[key] = t
                self.epochs_spent += self._epochs_of(view)
                if nsga and t.state == TrialState.COMPLETE:
                    try:
                        self._sampler.get_trial_generation(self._study, t)  # imported results: generation 0
                    except optuna.exceptions.UpdateFinishedTrialError:
                        # A result imported from another study is finished before a sampler sees it, and
                        # Optuna 5 refuses to tag a finished trial: it stays out of NSGA-II's populations
                        # (it still answers its schedule and sits on the front like any result).
                        pass
            elif t.state == TrialState.FAIL and view.outcome == Outcome.FAILED:
                self._failures[key] += 1
                if deterministic(view.reason or ""):
                    self._dead.add(key)
        limit = self._space.spec.search.max_retries
        self._dead |= {k for k, n in self._failures.items() if n > limit and k not in self._records}

    def _epochs_of(self, view: TrialView) -> int:
        """Epochs a finished trial spent of the budget."""
        if view.outcome == Outcome.EVALUATED:
            return self._max_epochs
        if view.outcome == Outcome.EARLY_STOPPED:
            return len(view.accuracy_per_epoch) or int(view.get(Attr.EPOCHS_TRAINED, 0))
        return 0

    # ------------------------------------------------------------------ heartbeats
    def heartbeat(self) -> int:
        """Record an Optuna heartbeat for every trial this searcher runs (the driver calls it every
        ``HEARTBEAT_SECONDS``, from its own thread); returns how many. Without heartbeats: 0."""
        if self._beats is None:
            return 0
        with self._beat_lock:
            ids = [f.storage_id for f in (*self._inflight.values(), *self._awaiting.values()) if f.storage_id is not None]
        for trial_id in ids:
            try:
                self._beats.record_heartbeat(trial_id)
            except Exception as e:  # noqa: BLE001 (a trial told meanwhile; a heartbeat is never fatal)
                logger.debug("heartbeat of trial %s: %s", trial_id, e)
        return len(ids)

    # ------------------------------------------------------------------ budget
    @property
    def counted(self) -> int:
        """Distinct schedules that spent the budget (trained to the end or stopped early)."""
        return sum(1 for t in self._records.values() if t.user_attrs.get(Attr.OUTCOME) in COUNTED)

    @property
    def evaluated(self) -> int:
        """Distinct schedules trained to the end."""
        return sum(1 for t in self._records.values() if t.user_attrs.get(Attr.OUTCOME) == Outcome.EVALUATED)

    @property
    def budget(self) -> int:
        """``search.trials``: full-fidelity trials."""
        return self._budget

    @property
    def budget_epochs(self) -> int:
        """The budget in epochs (``trials x epochs``)."""
        return self._budget * self._max_epochs

    def _committed(self) -> int:
        """Epochs spent plus those a running trial may still take (counted at the full budget)."""
        return self.epochs_spent + len(self._inflight) * self._max_epochs

    @property
    def spent(self) -> bool:
        """Whether the budget is spent (nothing more will be asked)."""
        return self.epochs_spent >= self.budget_epochs

    def _unresolved(self) -> int:
        """Schedules neither answered, given up on, nor in flight."""
        taken = set(self._records) | self._dead | {f.key for f in self._inflight.values()}
        return self._pspace.size - len(taken)

    @property
    def exhausted(self) -> bool:
        """Whether every schedule of the space is answered or given up on."""
        return self._unresolved() <= 0 and not self._inflight

    def running(self) -> dict[str, tuple[str, int]]:
        """Tune trial id -> (schedule id, last epoch reported)."""
        return {tid: (f.schedule_id, f.epochs[-1]["epoch"] if f.epochs else len(f.before)) for tid, f in self._inflight.items()}

    # ------------------------------------------------------------------ suggest
    def _wait_or_finish(self) -> str | None:
        return Searcher.FINISHED if not self._inflight else None

    def suggest(self, trial_id: str) -> dict | str | None:  # noqa: D102 (Searcher API)
        if self.interrupted or self.stop_reason is not None:
            return self._wait_or_finish()
        if self._committed() >= self.budget_epochs or self._unresolved() <= 0:
            return self._wait_or_finish()  # a running trial may stop early or fail and free budget
        streak = 0
        while True:
            with warnings.catch_warnings():
                # Optuna records heartbeats itself only inside Study.optimize; with ask/tell this
                # searcher records them (``heartbeat``), so its warning about that does not apply.
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
                trial = self._study.ask(self._dists)
            config = self._consider(trial, trial_id)
            if config is not None:
                return config
            if self.stop_reason is not None:
                return self._wait_or_finish()
            streak += 1
            if trial.user_attrs.get(Attr.OUTCOME) == Outcome.DUPLICATE and self._enqueue_neighbour(trial):
                continue  # the next ask is an unseen schedule next to the one the sampler wanted
            if streak % DUPLICATE_STREAK == 0 and not self._enqueue_unseen():
                return self._wait_or_finish()

    def _consider(self, trial: optuna.Trial, tune_id: str) -> dict[str, Any] | None:
        """Decide one asked trial: train it (returns its Tune config) or answer it here (None)."""
        frozen = next(t for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number == trial.number)
        if isinstance(self._sampler, optuna.samplers.NSGAIISampler):
            self._sampler.get_trial_generation(self._study, frozen)  # an enqueued seed never samples: set it here
        values = {p.name: int(trial.params[p.name]) for p in self._pspace.params}
        key = self._pspace.key(values)
        schedule = self._pspace.schedule(values)
        trial.set_user_attr(Attr.SCHEDULE_ID, schedule.id)
        trial.set_user_attr(Attr.SCHEDULE, dict(schedule.groups))
        if key in self._records:
            return self._duplicate(trial, self._records[key].number, self._records[key].user_attrs.get(Attr.OUTCOME))
        inflight = next((f for f in self._inflight.values() if f.key == key), None)
        if inflight is not None:
            return self._duplicate(trial, inflight.trial.number, "running")
        if key in self._dead:
            trial.set_user_attr(Attr.OUTCOME, Outcome.SKIPPED)
            trial.set_user_attr(Attr.FAIL_REASON, f"not retried: its trials failed {self._failures[key]} time(s)")
            self._study.tell(trial, state=TrialState.FAIL)
            return None
        costs: dict[str, float] = dict(self._space.cost(values))
        if self._latency_fn is not None:
            costs["latency_ms"] = float(self._latency_fn(schedule))
        for k, v in costs.items():
            trial.set_user_attr(k, v)
        constraints = constraint_values(self._space.limits, costs)
        known = trial.constraints  # a retry copied from a stale trial carries them already
        for name, value in constraints.items():
            if name not in known:
                trial.set_constraint(name, value)  # > 0: breached, relative (Optuna's convention)
        broken = [k for k, v in constraints.items() if v > 0]
        if broken:
            return self._infeasible(trial, key, costs)
        self._infeasible_streak = 0
        f = _InFlight(tune_id, trial, key, schedule.id, costs)
        if self._beats is not None:  # a heartbeat first: from now on a stopped driver leaves it stale
            f.storage_id = self._beats.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
            self._beats.record_heartbeat(f.storage_id)
        if self._driver:
            trial.set_user_attr(Attr.DRIVER, self._driver)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)
        if history:  # queued again by Optuna's heartbeat check: its driver stopped while it ran
            trial.set_user_attr(Attr.RETRY_OF, history[-1])
        trial.set_user_attr(Attr.TUNE_TRIAL_ID, tune_id)
        trial.set_user_attr(Attr.EPOCHS, self._max_epochs)
        for k, v in self._provenance.items():
            trial.set_user_attr(k, v)
        recorded = trial.user_attrs.get(Attr.CHECKPOINT)  # a retry's: the checkpoint its predecessor reached
        resume_from = None
        if recorded:
            from ._trial_storage import resolve_checkpoint_uri  # noqa: PLC0415

            resume_from = resolve_checkpoint_uri(str(recorded), [self._run_dir])
            f.checkpoint = str(recorded)
        with self._beat_lock:
            self._inflight[tune_id] = f
        self.numbers[tune_id] = (trial.number, schedule.id)
        return {**values, "__costs": costs, "__resume_from": resume_from}

    def _duplicate(self, trial: optuna.Trial, original: int, what: Any) -> None:
        trial.set_user_attr(Attr.OUTCOME, Outcome.DUPLICATE)
        trial.set_user_attr(Attr.DUPLICATE_OF, original)
        trial.set_user_attr(Attr.FAIL_REASON, f"schedule already {what} in trial #{original}: answered from it, not trained")
        self._study.tell(trial, state=TrialState.FAIL)
        self.duplicates += 1
        return None

    def _infeasible(self, trial: optuna.Trial, key: tuple[int, ...], costs: dict[str, float]) -> None:
        from .record import breaches  # noqa: PLC0415

        reason = "; ".join(breaches(self._space.limits, costs))
        trial.set_user_attr(Attr.OUTCOME, Outcome.INFEASIBLE)
        trial.set_user_attr(Attr.PRUNE_REASON, f"constraint: {reason}")
        self._records[key] = self._study.tell(trial, state=TrialState.PRUNED)
        self.infeasible += 1
        self._infeasible_streak += 1
        if self._infeasible_streak >= INFEASIBLE_STREAK:
            self._stop(f"{self._infeasible_streak} proposals in a row broke the constraints "
                       f"(last: {reason}); relax constraints.* or narrow the space")  # fmt: skip
        return None

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self._event(f"stopping the search: {reason}")

    def _taken(self) -> set[tuple[int, ...]]:
        return set(self._records) | self._dead | {f.key for f in self._inflight.values()}

    def _enqueue_neighbour(self, trial: optuna.Trial) -> bool:
        """Enqueue an unseen schedule as close as possible to a duplicate proposal; False when none is near.

        Parameters are ordered (indices into sorted group counts), so the neighbours of a point are
        the points one step away in one parameter; among the unseen ones at the smallest distance
        (up to 3 steps) one is drawn with the searcher's seeded generator. The sampler asked for
        this region: its next trial lands there instead of on a schedule already answered.
        """
        taken = self._taken()
        point = {p.name: int(trial.params[p.name]) for p in self._pspace.params}
        frontier = [point]
        seen = {self._pspace.key(point)}
        for _ in range(3):
            ring = []
            for q in frontier:
                for p in self._pspace.params:
                    for step in (-1, 1):
                        v = q[p.name] + step
                        if 0 <= v < len(p.choices):
                            r = {**q, p.name: v}
                            k = self._pspace.key(r)
                            if k not in seen:
                                seen.add(k)
                                ring.append(r)
            unseen = [r for r in ring if self._pspace.key(r) not in taken]
            if unseen:
                choice = unseen[self._rng.randrange(len(unseen))]
                self._study.enqueue_trial(choice, user_attrs={Attr.ENQUEUED: f"unseen neighbour of duplicate proposal #{trial.number}"})
                return True
            frontier = ring
        return False

    def _enqueue_unseen(self) -> bool:
        """Enqueue a schedule never proposed; False when there is none."""
        taken = self._taken()
        for _ in range(2000):
            values = self._pspace.random_values(self._rng)
            if self._pspace.key(values) not in taken:
                self._study.enqueue_trial(values, user_attrs={Attr.ENQUEUED: "unseen after duplicates"})
                return True
        if not self._pspace.enumerable:
            return False
        for values in self._pspace.all_values():
            if self._pspace.key(values) not in taken:
                self._study.enqueue_trial(values, user_attrs={Attr.ENQUEUED: "unseen after duplicates"})
                return True
        return False

    def _event(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    # ------------------------------------------------------------------ results
    def on_trial_result(self, trial_id: str, result: dict) -> None:  # noqa: D102
        self._note_epoch(self._inflight.get(trial_id), result)

    def _note_epoch(self, f: _InFlight | None, result: dict | None) -> None:
        if f is None or not result or result.get("status") not in ("training", "done"):
            return
        before = [float(v) for v in result.get("history_before") or []]
        if before and before != f.before:  # an attempt resumed from a checkpoint: it holds these epochs
            f.before = before
            f.epochs = [e for e in f.epochs if e["epoch"] > len(before)]
        epoch = int(result["epoch"])
        while f.epochs and f.epochs[-1]["epoch"] >= epoch:  # a repeated report: the latest wins
            f.epochs.pop()
        f.epochs.append({
            "epoch": epoch, "val_accuracy": float(result["val_accuracy"]),
            "images_per_second": float(result.get("images_per_second", math.nan)),
        })  # fmt: skip

    def record_checkpoint(self, trial_id: str, location: str) -> None:
        """Record a checkpoint Tune has just persisted for a trial (a URI or an absolute path), so a
        retry after its driver stopped resumes from it (called by :class:`TrialRecorder`)."""
        f = self._inflight.get(trial_id) or self._awaiting.get(trial_id)
        if f is None:
            return
        from ._trial_storage import record_location  # noqa: PLC0415

        f.checkpoint = record_location(location, self._run_dir)
        f.trial.set_user_attr(Attr.CHECKPOINT, f.checkpoint)

    def record_recovery(self, trial_id: str, raised: str | None = None) -> None:
        """Tune restarts a trial, from its last checkpoint, whose worker or node died (``raised`` None)
        or whose code raised ``raised`` (an error that is not known to be deterministic: out of memory,
        a file system hiccup); called by :class:`TrialRecorder`."""
        f = self._inflight.get(trial_id)
        if f is None:
            return
        f.recoveries += 1
        done = f.epochs[-1]["epoch"] if f.epochs else len(f.before)
        what = f"it raised {raised}" if raised else "its worker or node died"
        self._event(f"#{f.trial.number} {f.schedule_id}: {what} during epoch {done + 1}; Ray Tune "
                    f"restarts it from {'its epoch-' + str(done) + ' checkpoint' if done else 'the start'} "
                    f"(restart {f.recoveries})")  # fmt: skip

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:  # noqa: D102
        with self._beat_lock:
            f = self._inflight.pop(trial_id, None)
            if f is not None and error:
                self._awaiting[trial_id] = f  # TrialRecorder.on_trial_error brings the reason next
        if f is None or error:
            return
        if not result or "status" not in result:
            self._fail(f, Outcome.INTERRUPTED, "stopped before it reported a result")
            return
        if result["status"] == "failed":  # a deterministic error, reported instead of raised: not restarted
            self._fail(f, Outcome.FAILED, str(result.get("error") or "the trial failed"))
            return
        self._note_epoch(f, result)
        t = f.trial
        self._set_result_attrs(t, f, result)
        stopped = getattr(self._stopper, "stopped", {})
        if result["status"] == "done":
            t.set_user_attr(Attr.OUTCOME, Outcome.EVALUATED)
            values = [float(result["val_accuracy"]) if m == "val_accuracy" else float(f.costs[m]) for m in self._objectives]
            if any(math.isnan(v) for v in values):
                self._fail(f, Outcome.FAILED, f"an objective is not a number: {dict(zip(self._objectives, values))}")
                return
            self._tell(f, values, TrialState.COMPLETE, self._max_epochs)
        elif trial_id in stopped:
            epoch = len(f.accuracies)
            t.set_user_attr(Attr.OUTCOME, Outcome.EARLY_STOPPED)
            t.set_user_attr(Attr.PRUNE_REASON, f"early stopping ({getattr(self._stopper, 'name', 'scheduler')}) "
                                               f"at epoch {epoch}/{self._max_epochs}")  # fmt: skip
            partial = {m: (f.accuracies[-1] if m == "val_accuracy" else f.costs[m]) for m in self._objectives}
            t.set_user_attr(Attr.PARTIAL_VALUES, partial)
            self._tell(f, None, TrialState.PRUNED, epoch)
        else:
            self._fail(f, Outcome.INTERRUPTED, f"stopped after epoch {len(f.accuracies)}/{self._max_epochs}")

    def record_error(self, trial_id: str, reason: str) -> None:
        """Finish a trial that raised, with the reason (called by :class:`TrialRecorder`)."""
        with self._beat_lock:
            f = self._awaiting.pop(trial_id, None)
        if f is not None:
            self._fail(f, Outcome.FAILED, reason)

    def _set_result_attrs(self, t: optuna.Trial, f: _InFlight, result: dict) -> None:
        attrs: dict[str, Any] = {
            Attr.HOST: result.get("host"),
            Attr.NODE_ID: result.get("node_id"),
            Attr.DEVICE: result.get("device"),
        }
        if f.epochs or f.before:
            attrs[Attr.VAL_ACCURACY_PER_EPOCH] = f.accuracies
            attrs[Attr.VAL_ACCURACY] = f.accuracies[-1]
            attrs[Attr.VAL_ACCURACY_SE] = _standard_error(f.accuracies[-1], self._space.spec.data.val_size)
            ips = [e["images_per_second"] for e in f.epochs if not math.isnan(e["images_per_second"])]
            attrs[Attr.IMAGES_PER_SECOND] = sum(ips) / len(ips) if ips else None
            attrs[Attr.EPOCHS_TRAINED] = len(f.accuracies)
            attrs[Attr.TRAIN_SECONDS] = result.get("train_seconds_total")
            if f.before:
                attrs[Attr.RESUMED_FROM_EPOCH] = len(f.before)
        if result.get("recovered"):
            attrs[Attr.RECOVERED] = "the final checkpoint of an earlier attempt, whose driver stopped before recording it"
        if f.recoveries:
            attrs[Attr.RECOVERIES] = f.recoveries
        for k, v in attrs.items():
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                t.set_user_attr(k, v)

    def _tell(self, f: _InFlight, values: list[float] | None, state: TrialState, epochs: int) -> None:
        frozen = self._study.tell(f.trial, values, state=state)
        self.outcomes[f.tune_id] = frozen.user_attrs.get(Attr.OUTCOME, "")
        if values is not None:
            self.details[f.tune_id] = ", ".join(
                f"{m} {v:.4f}" if m == "val_accuracy" else f"{m} {format_count(v) if m != 'latency_ms' else f'{v:.3f}'}"
                for m, v in zip(self._objectives, values)
            )
        else:
            self.details[f.tune_id] = frozen.user_attrs.get(Attr.PRUNE_REASON, "")
        self._records[f.key] = frozen
        self.epochs_spent += epochs
        self._failure_streak = ("", 0)

    def _fail(self, f: _InFlight, outcome: str, reason: str) -> None:
        self.outcomes[f.tune_id] = f"FAIL ({outcome})"
        self.details[f.tune_id] = reason
        f.trial.set_user_attr(Attr.OUTCOME, outcome)
        f.trial.set_user_attr(Attr.FAIL_REASON, reason)
        if f.accuracies:
            f.trial.set_user_attr(Attr.VAL_ACCURACY_PER_EPOCH, f.accuracies)
        if f.recoveries:
            f.trial.set_user_attr(Attr.RECOVERIES, f.recoveries)
        self._study.tell(f.trial, state=TrialState.FAIL)
        if outcome != Outcome.FAILED:
            return
        self._failures[f.key] += 1
        if deterministic(reason) or self._failures[f.key] > self._space.spec.search.max_retries:
            self._dead.add(f.key)
        kind = _reason_kind(reason)
        n = self._failure_streak[1] + 1 if self._failure_streak[0] == kind else 1
        self._failure_streak = (kind, n)
        if n >= FAILURE_STREAK:
            self._stop(f"{n} trials in a row failed with: {reason}")

    def abandon(self, reason: str) -> int:
        """Finish every trial still open (Ctrl-C): FAIL, outcome interrupted, and queue each schedule
        again with the checkpoint it reached, so the rerun resumes it. Returns how many."""
        with self._beat_lock:
            open_ = list(self._inflight.values())
            awaiting = list(self._awaiting.values())
            self._inflight.clear()
            self._awaiting.clear()
        for f in open_:
            self._fail(f, Outcome.INTERRUPTED, reason)
            if f.key not in self._records:
                seed = f.trial.user_attrs.get(Attr.SEED)
                attrs = {Attr.RETRY_OF: f.trial.number, **({Attr.SEED: seed} if seed else {}),
                         **({Attr.CHECKPOINT: f.checkpoint} if f.checkpoint else {})}  # fmt: skip
                self._study.enqueue_trial(dict(zip((p.name for p in self._pspace.params), f.key)), user_attrs=attrs)
        for f in awaiting:
            self._fail(f, Outcome.INTERRUPTED, "the trial raised; its reason was lost when the search stopped")
        return len(open_) + len(awaiting)

    def lose(self, reason: str) -> None:
        """Another driver took the study over: ask nothing more (trials running finish and are recorded)."""
        self._stop(reason)


class TrialRecorder(Callback):
    """Tune callback handing the searcher what its ``Searcher`` API does not: the reason a trial
    raised, every checkpoint Tune persisted (as a URI), and Tune's restarts of a trial.

    Args:
        searcher: the search's :class:`ScheduleSearch`.
        uri_of: path of a persisted checkpoint on the storage filesystem -> its URI
            (:meth:`search.engine._trial_storage.TrialStorage.uri_of`).
    """

    def __init__(self, searcher: ScheduleSearch, uri_of: Callable[[str], str] | None = None) -> None:
        self._searcher = searcher
        self._uri_of = uri_of or (lambda path: path)

    def __getstate__(self) -> dict[str, Any]:  # see ScheduleSearch.__getstate__
        return {}

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:  # noqa: D102
        self._searcher.record_checkpoint(trial.trial_id, self._uri_of(checkpoint.path))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        text = self._error_text(trial)
        # Code that raised leaves a Python traceback; a dead worker or node leaves Ray's own account
        # ("The actor died unexpectedly ...", no traceback) or one of Ray's death errors.
        died = "Traceback (most recent call last)" not in text or any(kind in text for kind in _DEATHS)
        self._searcher.record_recovery(trial.trial_id, None if died else _raised(text))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:  # noqa: D102
        text = self._error_text(trial)
        self._searcher.record_error(trial.trial_id, one_line(text) if text else "the trial raised (no error recorded)")

    @staticmethod
    def _error_text(trial: Any) -> str:
        """What Tune recorded of the trial's last error ("" when nothing could be read)."""
        try:
            # Tune has just written the error to the trial's local folder (synced to storage later).
            path = trial.error_file
            text = open(path).read() if path and os.path.exists(path) else trial.get_error()
            return str(text or "")
        except Exception as e:  # noqa: BLE001 (a reason is nice to have, never fatal)
            return f"the trial raised ({type(e).__name__} while reading the error)"


#: Ray's errors for a worker, actor or node that is gone (not an exception of the training code).
_DEATHS = ("ActorDiedError", "RayActorError", "NodeDiedError", "WorkerCrashedError", "ActorUnavailableError",
           "OutOfMemoryError", "ObjectLostError", "OwnerDiedError")  # fmt: skip


def _raised(text: str) -> str:
    """The exception line of a recorded traceback (``ValueError: ...``), the last line not indented."""
    lines = [line for line in text.splitlines() if line.strip() and not line[0].isspace()]
    return one_line(lines[-1] if lines else text)
