"""The search-space file as a typed schema (pydantic): every key, its type, its default.

A space names the architecture, which layers are searched and with which group counts, the paper
schedules to evaluate first, the objectives and constraints, the data, the trainer config, the
search algorithm and budget, the resources per trial and the storage. ``spaces/README.md`` documents
every key. This module checks only what the file itself can say (types, ranges, unknown keys);
:mod:`search.space._load` adds the checks that need the domain (layers, data, trainer) and
:mod:`search.space._resolve` turns the result into the frozen bundle the search runs on.
No torch, no Ray, no Optuna here: a schema error is reported before anything heavy is imported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..engine.record import Objective

__all__ = ["SpaceError", "SearchSpace", "RUN_NAME_PATTERN"]

#: A run name (``runs/<name>/``, the study's name): letters, digits, ``_``, ``.``, ``-``; a letter or digit first.
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class SpaceError(ValueError):
    """An invalid space or override: one line naming the key and what is allowed.

    Attributes:
        key: dotted path of the offending key (``"search.sampler"``), or ``""`` for the whole file.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def _refuses_bool(annotation: Any) -> bool:
    """Whether a field of this annotation holds numbers (``int``, ``float``, ``int | None``) and no ``bool``."""
    if annotation is bool or annotation is Any:
        return False
    if annotation in (int, float):
        return True
    args = [a for a in (getattr(annotation, "__args__", None) or ()) if a is not type(None)]
    return bool(args) and getattr(annotation, "__origin__", None) not in (dict, Literal) and all(
        _refuses_bool(a) or a is Ellipsis for a in args
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """``true`` is not a count: pydantic's lax mode would read it as 1 (``search.trials: true``
        a budget of one, ``choices: [true, 2]`` the counts 1 and 2)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not _refuses_bool(field.annotation):
            return v
        items = v if isinstance(v, (list, tuple)) else [v]
        if any(isinstance(x, bool) for x in items):
            raise ValueError("expected a number; true/false is not one here")
        return v


class ModelConfig(_Strict):
    """Which network: ``model.*`` keys."""

    arch: str  # a registered architecture (deeproots.list_architectures())
    num_classes: int | None = Field(None, ge=2)  # default: the data set's
    input_size: tuple[int, int, int] | None = None  # (C, H, W); default: the data set's
    options: dict[str, Any] = Field(default_factory=dict)  # extra build_model keyword arguments


class GroupRule(_Strict):
    """One ``groups:`` entry: which layers are searched, over which group counts, tied how."""

    layers: str | list[str] = "*"  # glob(s) on layer names ("conv2a", "layer3.*", "*")
    kind: Literal["any", "spatial", "pointwise"] = "any"  # filter on the kernel: k > 1 or 1x1
    stages: str | list[str] = "*"  # glob(s) on stage names ("conv2", "layer3", "inception4")
    tie: Literal["layer", "stage", "all"] = "layer"  # one choice per layer / per stage / for all
    choices: list[int] = Field(min_length=1)  # group counts; invalid ones are dropped per layer
    name: str | None = None  # parameter name when tie: all (default "groups<i>")

    @field_validator("choices")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(c < 1 for c in v):
            raise ValueError("group counts must be positive integers")
        return sorted(set(v))


class DataConfig(_Strict):
    """``data.*``: passed to :func:`deeproots.data.load_data`."""

    name: Literal["cifar10", "imagefolder", "synthetic"] = "cifar10"
    root: str | None = None  # cifar10: folder holding cifar-10-batches-py; imagefolder: train/ + val/
    subset: int | None = Field(None, ge=1)  # training images kept (class-balanced); None = all
    val_size: int = Field(5000, ge=1)  # validation images carved from the training set
    seed: int = Field(0, ge=0, le=2**63 - 1)  # seed of the validation draw (a torch.Generator seed)
    options: dict[str, Any] = Field(default_factory=dict)  # per data set (see load_data)


class ConstraintsConfig(_Strict):
    """``constraints.*``: hard limits, checked before training (a breach is PRUNED, untrained)."""

    max_flops: float | None = Field(None, gt=0)
    max_params: float | None = Field(None, gt=0)
    max_latency_ms: float | None = Field(None, gt=0)


class LatencyConfig(_Strict):
    """``latency.*``: the measurement protocol when latency is an objective or a constraint."""

    device: str = "cpu"  # "cpu" or "cuda"
    batch_size: int = Field(1, ge=1)  # images per forward (1 = deployment latency)
    threads: int | None = Field(None, ge=1)  # CPU threads; None = the trial's CPUs


class SearchConfig(_Strict):
    """``search.*``: the algorithm and the budget."""

    sampler: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    trials: int = Field(ge=1)  # budget: full-fidelity trials (trials x trainer.epochs epochs; see spaces/README.md)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # sampler seed (Optuna's samplers take 32-bit seeds)
    sampler_options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the sampler
    early_stopping: Literal["none", "asha", "moasha"] = "none"  # stop weak trials at rungs (PRUNED, never on the front)
    grace_period: int = Field(1, ge=1)  # epochs every trial trains before it may be stopped (the first rung)
    reduction_factor: float = Field(3.0, gt=1)  # keep the best 1/reduction_factor at each rung
    max_retries: int = Field(2, ge=0)  # a schedule whose trial raised is retried at most this often

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "asha" in data:
            raise ValueError(
                "search.asha was replaced by search.early_stopping: none | asha | moasha, with "
                "search.grace_period and search.reduction_factor (asha.enabled: true -> early_stopping: moasha)"
            )
        return data


class ConfirmConfig(_Strict):
    """``confirm.*``: how a front is judged against noise. Not part of the search's identity: it
    changes what is reported and retrained after the search, never a result the search recorded."""

    alpha: float = Field(0.05, gt=0, lt=1)  # tie test: p >= alpha (exact McNemar) is tied (search.engine.noise)
    seeds: int = Field(0, ge=0)  # K training seeds per confirmed schedule; 0: no confirmation (the front is unconfirmed)
    max_schedules: int = Field(8, ge=1)  # M: front + tied band, best validation accuracy first, at most this many
    overrides: dict[str, Any] = Field(default_factory=dict)  # data.* / trainer.* key -> value: the confirmation's fidelity

    @field_validator("overrides")
    @classmethod
    def _fidelity_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            head, _, rest = str(key).partition(".")
            if head not in ("data", "trainer") or not rest or any(not p for p in rest.split(".")):
                raise ValueError(f"{key!r} is not a data.* or trainer.* key (e.g. trainer.epochs: 10): "
                                 "a confirmation changes only the data and the training")  # fmt: skip
        return v


class ResourcesConfig(_Strict):
    """``resources.*``: what one trial gets."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)  # fractional shares a GPU (0.25: four trials per GPU)
    max_concurrent: int | None = Field(None, ge=1)  # None: as many as the resources allow
    max_failures: int = Field(2, ge=0)  # Tune restarts of a trial whose worker or node died, from its last checkpoint


class SearchSpace(_Strict):
    """A whole search-space file, validated (the ``spec`` of what :func:`load_space` returns).

    Example:
        >>> from search import load_space
        >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=4"], check_data=False)
        >>> space.spec.search.trials, space.spec.model.arch
        (4, 'nin')
    """

    name: str = Field(pattern=RUN_NAME_PATTERN)  # run name: runs/<name>/
    description: str = ""
    model: ModelConfig
    base: str = "orig"  # schedule of every layer no rule searches
    groups: list[GroupRule] = Field(min_length=1)
    seeds: Literal["paper"] | list[str] = Field(default_factory=list)  # evaluated first
    objectives: list[Objective] = Field(default_factory=lambda: ["val_accuracy", "flops", "params"])
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: dict[str, Any] = Field(default_factory=dict)  # deeproots TrainConfig fields
    search: SearchConfig
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    confirm: ConfirmConfig = Field(default_factory=ConfirmConfig)  # noise: the tie test (not identity)
    storage: str | None = None  # SQLAlchemy URL; None: sqlite:///runs/<name>/study.db
    storage_path: str | None = None  # Ray Tune's storage (checkpoints): a path every node sees, s3://, gs://; None: runs/<name>/ray
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> {"key.path": value}: hardware profiles

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("objectives must not repeat")
        if "val_accuracy" not in v:
            raise ValueError("objectives must include val_accuracy (what training measures)")
        if len(v) < 2:
            raise ValueError("a multi-objective search needs val_accuracy and at least one cost")
        return v

    @property
    def measures_latency(self) -> bool:
        """Whether trials measure latency (an objective or a constraint)."""
        return "latency_ms" in self.objectives or self.constraints.max_latency_ms is not None

    @property
    def limits(self) -> dict[str, float | None]:
        """Constraint key -> limit (``max_flops``, ``max_params``, ``max_latency_ms``)."""
        return self.constraints.model_dump()
