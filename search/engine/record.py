"""The run record: every fact a study holds about a search, with one home (STYLE 13).

A search writes three kinds of facts into its Optuna study, and every reader (resume, progress,
summary, export, plots, report) reads them back through this module -- never through string
literals of its own:

* **objectives** -- names and Optuna directions (:data:`DIRECTIONS`);
* **study metadata** -- written once when the study is prepared (:class:`StudyMeta`): the
  architecture, geometry, resolved trainer config, resolved space, its identity and fidelity, the
  data's content fingerprint, the parameter encoding, provenance;
* **trial attributes** -- user attributes keyed by :class:`Attr`, the trial's :class:`Outcome`
  (which of them count towards the budget: :data:`COUNTED`), and constraint values
  (:func:`constraint_values`, Optuna's convention: ``<= 0`` feasible), read through :class:`TrialView`.

Optuna itself is only imported by the functions that touch a study.

Example:
    >>> from search.engine.record import Outcome, COUNTED, constraint_values
    >>> Outcome.EARLY_STOPPED in COUNTED
    True
    >>> constraint_values({"max_params": 300_000}, {"flops": 1e8, "params": 314_954})
    {'max_params': 0.04984666666666667}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "OBJECTIVES",
    "DIRECTIONS",
    "Objective",
    "Attr",
    "StudyAttr",
    "Outcome",
    "COUNTED",
    "ANSWERABLE",
    "CONSTRAINTS",
    "constraint_values",
    "breaches",
    "StudyMeta",
    "RecordError",
    "TrialView",
    "TrialFiles",
    "RECORD_VERSION",
]

#: Objective names (DESIGN.md "Names used everywhere") -> Optuna direction.
DIRECTIONS: dict[str, str] = {
    "val_accuracy": "maximize",
    "flops": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
}
OBJECTIVES: tuple[str, ...] = tuple(DIRECTIONS)
Objective = Literal["val_accuracy", "flops", "params", "latency_ms"]

#: Constraint key -> the cost it limits (``constraints.max_flops`` limits ``flops``).
CONSTRAINTS: dict[str, str] = {"max_flops": "flops", "max_params": "params", "max_latency_ms": "latency_ms"}

#: Version of the layout of :class:`StudyMeta`; a study written with another one is refused on resume.
RECORD_VERSION = 2


class RecordError(ValueError):
    """A study that lacks the record a reader needs (made by an older deeproots, or not by a search)."""


class Attr:
    """Keys of the trial user attributes (what optuna-dashboard shows per trial)."""

    SCHEDULE_ID = "schedule_id"  # canonical schedule id (nin:1-1-1-8-1-1-4-1-1)
    SCHEDULE = "schedule"  # layer -> groups, every conv
    OUTCOME = "outcome"  # one of Outcome
    SEED = "seed"  # paper name of a seed schedule (orig, root-8, ...)
    ENQUEUED = "enqueued"  # why the driver enqueued this point (unseen after duplicates)
    RETRY_OF = "retry_of"  # number of the interrupted trial this one retries
    DUPLICATE_OF = "duplicate_of"  # number of the trial whose stored result answered this one
    IMPORTED_FROM = "imported_from"  # "<study>#<number>" of a result taken from another study
    TUNE_TRIAL_ID = "tune_trial_id"  # Ray Tune's trial id
    FLOPS = "flops"  # multiply-adds, the paper's convention (int)
    PARAMS = "params"  # conv/FC weights and biases (int)
    LATENCY_MS = "latency_ms"  # ms per image, in the space's latency protocol
    VAL_ACCURACY = "val_accuracy"  # final (or last reported) validation accuracy in [0, 1]
    VAL_ACCURACY_SE = "val_accuracy_se"  # binomial standard error of VAL_ACCURACY (a fraction, deeproots.accuracy_se)
    VAL_ACCURACY_PER_EPOCH = "val_accuracy_per_epoch"  # list, epoch 1.. (kept for stopped trials too)
    PARTIAL_VALUES = "partial_values"  # objective -> value at the epoch an early-stopped trial reached
    EPOCHS = "epochs"  # the fidelity's epoch budget
    EPOCHS_TRAINED = "epochs_trained"  # epochs this trial actually trained
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    IMAGES_PER_SECOND = "images_per_second"  # mean training throughput
    TRAIN_SECONDS = "train_seconds"  # wall time of training
    DEVICE = "device"  # "cpu" or "cuda (<card>)"
    HOST = "host"
    NODE_ID = "node_id"  # Ray node
    CHECKPOINT = "checkpoint"  # the trial's latest Tune checkpoint (a folder of TrialFiles): a URI, or a path
    #                            relative to the run folder; the final one once the trial finished
    WEIGHTS = "weights"  # studies made before trials stored checkpoints: a .safetensors path relative to the run folder
    RECOVERED = "recovered"  # the final checkpoint of an earlier attempt answered it (its driver died before recording it)
    RECOVERIES = "recoveries"  # times Ray Tune restarted the trial from its checkpoint (worker or node died)
    DRIVER = "driver"  # the driver that ran the trial and kept its heartbeat ("pid 123 on host")
    FAIL_REASON = "fail_reason"  # one line
    PRUNE_REASON = "prune_reason"  # one line: constraint or early stopping
    DEEPROOTS_VERSION = "deeproots_version"
    GIT_REVISION = "git_revision"
    TORCH = "torch"
    TRAINING_SEED = "training_seed"  # trainer.seed of a confirmation trial
    FIDELITY_KEY = "fidelity_key"  # fidelity of a confirmation trial (search.space.ResolvedSpace.fidelity_key, seed included)
    SEARCH_TRIAL = "search_trial"  # number of the search trial a confirmation trial retrains


class StudyAttr:
    """Keys of the study user attributes (:class:`StudyMeta` writes them; ``TRIALS`` is the budget)."""

    RECORD_VERSION = "record_version"
    RUN_NAME = "run_name"
    ARCH = "arch"
    GEOMETRY = "geometry"  # {"input_size": [C, H, W], "num_classes": n}
    MODEL_OPTIONS = "model_options"
    TRAIN_CONFIG = "train_config"  # TrainConfig.to_dict(), resolved
    SPACE = "space"  # the resolved space file (plain data)
    IDENTITY = "identity"  # what a resume compares
    FIDELITY = "fidelity"  # what a trained result depends on
    FIDELITY_KEY = "fidelity_key"  # short hash of FIDELITY
    DATA = "data"  # data set facts: name, sizes, content fingerprint
    PARAM_ENCODING = "param_encoding"  # how group counts are Optuna parameters
    PROVENANCE = "provenance"
    CREATED = "created"
    TRIALS = "trials"  # the budget of the latest invocation (search.trials)
    CONFIRM_STUDY = "confirm_study"  # name of the companion study of the confirmation (same storage)
    CONFIRM = "confirm"  # on the companion study: the confirm block it last ran with, and its search study


class Outcome:
    """Values of the ``outcome`` trial attribute: what happened to a proposal."""

    EVALUATED = "evaluated"  # COMPLETE: trained to the last epoch (counted)
    EARLY_STOPPED = "early_stopped"  # PRUNED: stopped at a rung (counted, never on the front)
    INFEASIBLE = "infeasible"  # PRUNED: broke a cost constraint, not trained (not counted)
    DUPLICATE = "duplicate"  # answered from an earlier trial's stored result (not counted)
    IMPORTED = "imported"  # a result of another study at the same fidelity (not counted)
    FAILED = "failed"  # FAIL: the trial raised (not counted; retried)
    INTERRUPTED = "interrupted"  # FAIL: Ctrl-C or the driver died (not counted; retried)
    SKIPPED = "skipped"  # FAIL: proposal of a schedule that failed too often
    CONFIRMED = "confirmed"  # COMPLETE, in a companion study: retrained at the confirmation's fidelity and seed


class TrialFiles:
    """Names of the files in a trial's Tune checkpoint (the folder :attr:`Attr.CHECKPOINT` points to).

    A trial reports one checkpoint per epoch with ``ray.tune.report(..., checkpoint=...)``; Tune copies
    it into its storage (``storage_path``: a local folder, NFS, ``s3://``, ``gs://``).

    * per epoch (``status: training``): ``STATE`` (model, optimiser, scheduler, history -- what
      :func:`deeproots.fit` resumes from) and ``RESULT``;
    * final (``status: done``): ``WEIGHTS`` and ``RESULT``, plus any extra file the trial adds (each one
      named here) -- what the export reads back with ``ray.tune.Checkpoint``.
    """

    STATE = "state.pt"  # deeproots.fit's epoch-end checkpoint (torch.save of tensors and plain values)
    RESULT = "result.json"  # schedule_id, epochs, epoch, status, history (validation accuracy per epoch), metrics
    WEIGHTS = "weights.safetensors"  # the final state_dict (safetensors: nothing is ever unpickled)


#: Outcomes that spend the budget (``search.trials`` counts distinct schedules evaluated).
COUNTED: tuple[str, ...] = (Outcome.EVALUATED, Outcome.EARLY_STOPPED)
#: Outcomes whose stored result answers a later proposal of the same schedule.
ANSWERABLE: tuple[str, ...] = (Outcome.EVALUATED, Outcome.EARLY_STOPPED, Outcome.INFEASIBLE, Outcome.IMPORTED)


def constraint_values(limits: Mapping[str, float | None], costs: Mapping[str, float | None]) -> dict[str, float]:
    """Relative excess of each cost over its limit: ``(value - limit) / limit``; ``<= 0`` is feasible.

    This is Optuna's constraint convention (``Trial.set_constraint``, ``constraints_func``), made
    dimensionless so FLOPs and parameters weigh alike.

    Args:
        limits: constraint key (``max_flops``, ``max_params``, ``max_latency_ms``) -> limit or None.
        costs: cost name (``flops``, ``params``, ``latency_ms``) -> value or None.

    Returns:
        Constraint key -> value, for every limit that is set and whose cost is known.

    Raises:
        KeyError: an unknown constraint key.
    """
    out: dict[str, float] = {}
    for key, limit in limits.items():
        value = costs.get(CONSTRAINTS[key])
        if limit is None or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = (float(value) - float(limit)) / float(limit)
    return out


def breaches(limits: Mapping[str, float | None], costs: Mapping[str, float | None]) -> list[str]:
    """One readable phrase per broken limit (``"params 314,954 > 283,000"``); empty when feasible."""
    out = []
    for key, excess in constraint_values(limits, costs).items():
        if excess > 0:
            cost = CONSTRAINTS[key]
            value, limit = float(costs[cost]), float(limits[key])  # type: ignore[arg-type]
            if cost == "latency_ms":
                out.append(f"latency {value:.3f} ms > {limit:.3f} ms")
            else:
                out.append(f"{cost} {value:,.0f} > {limit:,.0f}")
    return out


@dataclass(frozen=True)
class StudyMeta:
    """What a study records about its search, written once when it is prepared.

    Attributes:
        run_name: the run (``runs/<name>``).
        arch: the architecture every trial builds.
        input_size: (C, H, W) networks are built and costed at.
        num_classes: network outputs.
        objectives: objective names, in the study's order.
        train_config: ``TrainConfig.to_dict()``, resolved (every field, the precision resolved).
        space: the resolved space file as plain data.
        identity: what a resume compares (:meth:`search.space.ResolvedSpace.identity`).
        fidelity: what a trained result depends on (model, data, trainer).
        fidelity_key: short hash of ``fidelity``.
        data: data-set facts (name, training/test sizes, classes, content fingerprint).
        param_encoding: how group counts are Optuna parameters (a study made with another
            encoding cannot be resumed).
        model_options: extra ``build_model`` keywords.
        provenance: deeproots version, git revision, torch of the driver that made the study.
        created: local time the study was made.
        version: :data:`RECORD_VERSION` of the writer.
    """

    run_name: str
    arch: str
    input_size: tuple[int, int, int]
    num_classes: int
    objectives: tuple[str, ...]
    train_config: dict[str, Any]
    space: dict[str, Any]
    identity: dict[str, Any]
    fidelity: dict[str, Any]
    fidelity_key: str
    data: dict[str, Any] = field(default_factory=dict)
    param_encoding: str = "index"
    model_options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: int = RECORD_VERSION

    def write(self, study: optuna.Study) -> None:
        """Set the study's directions-independent attributes and metric names (call once, on a new study)."""
        import warnings  # noqa: PLC0415

        import optuna  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.objectives))  # optuna-dashboard shows these names
        attrs = {
            StudyAttr.RECORD_VERSION: self.version,
            StudyAttr.RUN_NAME: self.run_name,
            StudyAttr.ARCH: self.arch,
            StudyAttr.GEOMETRY: {"input_size": list(self.input_size), "num_classes": self.num_classes},
            StudyAttr.MODEL_OPTIONS: dict(self.model_options),
            StudyAttr.TRAIN_CONFIG: dict(self.train_config),
            StudyAttr.SPACE: self.space,
            StudyAttr.IDENTITY: self.identity,
            StudyAttr.FIDELITY: self.fidelity,
            StudyAttr.FIDELITY_KEY: self.fidelity_key,
            StudyAttr.DATA: dict(self.data),
            StudyAttr.PARAM_ENCODING: self.param_encoding,
            StudyAttr.PROVENANCE: dict(self.provenance),
            StudyAttr.CREATED: self.created or time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for key, value in attrs.items():
            study.set_user_attr(key, value)

    @classmethod
    def read(cls, study: optuna.Study | Any) -> StudyMeta:
        """The record of a study (anything with ``user_attrs`` and ``metric_names``).

        Studies made by deeproots 0.1 (record version 1: no ``arch``/``record_version`` keys, but
        the space, geometry and trainer config) are read from the keys they have; nothing is
        guessed from trial contents.

        Raises:
            RecordError: the study holds no search record (naming what is missing).
        """
        a = dict(study.user_attrs)
        space = a.get(StudyAttr.SPACE)
        geometry = a.get(StudyAttr.GEOMETRY)
        if not isinstance(space, dict) or not isinstance(geometry, dict):
            raise RecordError(
                f"study {getattr(study, 'study_name', '?')!r} holds no deeproots search record "
                "(no 'space'/'geometry' attributes): was it made by python -m search.run?"
            )
        arch = a.get(StudyAttr.ARCH) or (space.get("model") or {}).get("arch")
        if not arch:
            raise RecordError(f"study {getattr(study, 'study_name', '?')!r} records no architecture")
        names = list(getattr(study, "metric_names", None) or space.get("objectives") or [])
        return cls(
            run_name=str(a.get(StudyAttr.RUN_NAME) or space.get("name") or getattr(study, "study_name", "")),
            arch=str(arch),
            input_size=tuple(int(v) for v in geometry["input_size"]),  # type: ignore[arg-type]
            num_classes=int(geometry["num_classes"]),
            objectives=tuple(names),
            train_config=dict(a.get(StudyAttr.TRAIN_CONFIG) or {}),
            space=space,
            identity=dict(a.get(StudyAttr.IDENTITY) or {}),
            fidelity=dict(a.get(StudyAttr.FIDELITY) or {}),
            fidelity_key=str(a.get(StudyAttr.FIDELITY_KEY) or ""),
            data=dict(a.get(StudyAttr.DATA) or space.get("data") or {}),
            param_encoding=str(a.get(StudyAttr.PARAM_ENCODING) or "categorical"),  # record version 1: categorical
            model_options=dict(a.get(StudyAttr.MODEL_OPTIONS) or (space.get("model") or {}).get("options") or {}),
            provenance=dict(a.get(StudyAttr.PROVENANCE) or {}),
            created=str(a.get(StudyAttr.CREATED) or ""),
            version=int(a.get(StudyAttr.RECORD_VERSION) or 1),
        )

    @property
    def data_config(self) -> dict[str, Any]:
        """The space's ``data:`` block (name, root, subset, val_size, seed, options)."""
        return dict(self.space.get("data") or {})

    @property
    def sampler(self) -> str | None:
        """The space's ``search.sampler``."""
        return (self.space.get("search") or {}).get("sampler")


class TrialView:
    """Typed, read-only access to one trial's record (a ``FrozenTrial`` underneath).

    Example:
        >>> view = TrialView(frozen_trial)  # doctest: +SKIP
        >>> view.schedule_id, view.outcome, view.counted  # doctest: +SKIP
        ('nin:1-1-1-8-1-1-4-1-1', 'evaluated', True)
    """

    __slots__ = ("trial",)

    def __init__(self, trial: FrozenTrial) -> None:
        self.trial = trial

    def _get(self, key: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(key, default)

    @property
    def number(self) -> int:
        """Optuna's trial number."""
        return self.trial.number

    @property
    def schedule_id(self) -> str:
        """Canonical schedule id (``trial<N>`` for a trial that never got one)."""
        return str(self._get(Attr.SCHEDULE_ID) or f"trial{self.trial.number}")

    @property
    def groups(self) -> dict[str, int] | None:
        """Layer -> group count, or None."""
        g = self._get(Attr.SCHEDULE)
        return {str(k): int(v) for k, v in g.items()} if isinstance(g, dict) else None

    @property
    def outcome(self) -> str | None:
        """One of :class:`Outcome` (None while running).

        A FAIL trial without one was failed by Optuna's heartbeat check (``fail_stale_trials``): its
        driver stopped while it ran -- ``interrupted``.
        """
        outcome = self._get(Attr.OUTCOME)
        if outcome is None and self.trial.state.name == "FAIL":
            return Outcome.INTERRUPTED
        return outcome

    @property
    def counted(self) -> bool:
        """Whether it spent the budget (:data:`COUNTED`)."""
        return self.outcome in COUNTED

    @property
    def seed_label(self) -> str | None:
        """The paper name of a seed schedule, else None."""
        return self._get(Attr.SEED)

    @property
    def duplicate_of(self) -> int | None:
        """Number of the trial whose result answered this duplicate."""
        return self._get(Attr.DUPLICATE_OF)

    @property
    def flops(self) -> int | None:
        """Multiply-adds (paper convention)."""
        v = self._get(Attr.FLOPS)
        return None if v is None else int(v)

    @property
    def params(self) -> int | None:
        """Conv/FC weights and biases."""
        v = self._get(Attr.PARAMS)
        return None if v is None else int(v)

    @property
    def latency_ms(self) -> float | None:
        """Milliseconds per image, in the space's protocol."""
        v = self._get(Attr.LATENCY_MS)
        return None if v is None else float(v)

    @property
    def val_accuracy(self) -> float | None:
        """Final (or last reported) validation accuracy in [0, 1]."""
        v = self._get(Attr.VAL_ACCURACY)
        return None if v is None else float(v)

    @property
    def val_accuracy_se(self) -> float | None:
        """Binomial standard error of :attr:`val_accuracy` (a fraction), when the trial recorded one."""
        v = self._get(Attr.VAL_ACCURACY_SE)
        return None if v is None else float(v)

    @property
    def accuracy_per_epoch(self) -> list[float]:
        """Validation accuracy after each epoch trained (epoch 1 first)."""
        return [float(v) for v in self._get(Attr.VAL_ACCURACY_PER_EPOCH) or []]

    @property
    def partial_values(self) -> dict[str, float] | None:
        """Objective values at the epoch an early-stopped trial reached."""
        v = self._get(Attr.PARTIAL_VALUES)
        return {k: float(x) for k, x in v.items()} if isinstance(v, dict) else None

    @property
    def weights(self) -> str | None:
        """Studies made before trials stored checkpoints: the final weights file (relative to the run folder)."""
        return self._get(Attr.WEIGHTS)

    @property
    def checkpoint(self) -> str | None:
        """The trial's latest Tune checkpoint: a URI, or a path relative to the run folder (None: none yet)."""
        return self._get(Attr.CHECKPOINT)

    @property
    def reason(self) -> str | None:
        """Why it failed or was pruned (one line)."""
        reason = self._get(Attr.FAIL_REASON) or self._get(Attr.PRUNE_REASON)
        if reason is None and self._get(Attr.OUTCOME) is None and self.trial.state.name == "FAIL":
            return "its driver stopped while it ran (no heartbeat); its schedule was queued again"
        return reason

    @property
    def feasible(self) -> bool:
        """Every constraint value <= 0 (no constraints: True)."""
        return all(v <= 0 for v in (self.trial.constraints or {}).values())

    def get(self, key: str, default: Any = None) -> Any:
        """Any other attribute, by an :class:`Attr` key."""
        return self._get(key, default)
