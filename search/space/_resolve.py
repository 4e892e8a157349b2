"""Resolve once: a validated space file -> the frozen bundle every part of the search runs on.

:func:`resolve` turns a :class:`SearchSpace` (the file, schema-checked) into a
:class:`ResolvedSpace`: the parameter space over the architecture's layers, the trainer config with
every field resolved, the data geometry, and the facts derived from them (identity, fidelity). The
driver builds it once and hands it to the trials as it is (Ray ships it to the workers); nothing
downstream re-validates or re-resolves, and the study records what it says (:meth:`study_meta`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.record import StudyMeta
from ._params import ENCODING, ParamSpace, build_param_space
from ._schema import DataConfig, SearchSpace, SpaceError

if TYPE_CHECKING:
    from deeproots import CostTable
    from deeproots.training import TrainConfig

__all__ = ["ResolvedSpace", "resolve", "EXECUTION_FIELDS"]

#: TrainConfig fields that say how a run executes, not what it computes: a change of them is not a
#: changed space (a resume may use more threads or another device) and not a changed fidelity.
EXECUTION_FIELDS = ("threads", "device", "eval_batch_size", "finite_check_every", "gpu_resident")


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ResolvedSpace:
    """A space resolved once: what the driver, the trials, the study record and the export share.

    Attributes:
        spec: the validated space file (after overrides).
        params: its searchable parameters over the architecture's layers.
        train: the trainer config, every field resolved (threads from ``resources`` on CPU).
        input_size: (C, H, W) networks are built and costed at.
        num_classes: network outputs.
        data: data-set facts as far as known before loading (name, image counts, classes).
        costs: exact per-layer cost table of the architecture at ``input_size``
            (:class:`deeproots.CostTable`): FLOPs and parameters of any schedule without a model.

    Example:
        >>> from search import load_space
        >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=4"])
        >>> space.params.size, space.input_size, space.train.epochs
        (36, (3, 32, 32), 15)
    """

    spec: SearchSpace
    params: ParamSpace
    train: TrainConfig
    input_size: tuple[int, int, int]
    num_classes: int
    data: dict[str, Any]
    costs: CostTable

    # ------------------------------------------------------------------ shortcuts
    @property
    def name(self) -> str:
        """The run name (``runs/<name>``)."""
        return self.spec.name

    @property
    def arch(self) -> str:
        """The architecture."""
        return self.spec.model.arch

    @property
    def objectives(self) -> tuple[str, ...]:
        """Objective names, in the study's order."""
        return tuple(self.spec.objectives)

    @property
    def limits(self) -> dict[str, float | None]:
        """Constraint key -> limit."""
        return self.spec.limits

    @property
    def measures_latency(self) -> bool:
        """Whether trials measure latency (an objective or a constraint)."""
        return self.spec.measures_latency

    # ------------------------------------------------------------------ cost
    def cost(self, values: dict[str, int]) -> dict[str, int]:
        """``{"flops": ..., "params": ...}`` of the schedule of parameter ``values``, exactly (paper convention)."""
        groups = self.params.groups_of(values)
        return {"flops": self.costs.flops(groups), "params": self.costs.params(groups)}

    def cost_range(self) -> dict[str, tuple[int, int]]:
        """``{"flops": (min, max), "params": (min, max)}`` over every schedule of the space.

        Per layer cost only falls as groups rise and layers add up independently, so the extremes
        are the all-fewest and all-most groups corners.
        """
        lo, hi = self.params.extremes()
        most, least = self.cost(lo), self.cost(hi)
        return {k: (least[k], most[k]) for k in ("flops", "params")}

    # ------------------------------------------------------------------ identity
    def _train_fidelity(self) -> dict[str, Any]:
        return {k: v for k, v in self.train.to_dict().items() if k not in EXECUTION_FIELDS}

    def identity(self) -> dict[str, Any]:
        """The part of the space a study is bound to: all but budget, resources, storage, description.

        Rerunning a run with a space that differs here is refused (``--fresh`` starts a new study);
        ``search.trials`` may grow or shrink, and resources may change, between runs.
        """
        d = self.spec.model_dump(mode="json")
        for key in ("resources", "storage", "description"):
            d.pop(key)
        d["search"].pop("trials")
        d["trainer"] = self._train_fidelity()  # resolved: a changed TrainConfig default is a changed space
        return d

    def fidelity(self) -> dict[str, Any]:
        """What a trained result depends on: model, data, trainer (and the latency protocol).

        Two studies with the same fidelity can share results (DESIGN: a schedule already evaluated
        at the same fidelity is not trained again).
        """
        d = self.spec.model_dump(mode="json")
        out: dict[str, Any] = {"model": d["model"], "data": d["data"], "trainer": self._train_fidelity()}
        out["data"].pop("root")  # the same images wherever they sit
        if self.measures_latency:
            out["latency"] = d["latency"]
        return out

    def fidelity_key(self) -> str:
        """Short hash of :meth:`fidelity`."""
        return _hash(self.fidelity())

    def study_meta(self, run_name: str, provenance: dict[str, Any]) -> StudyMeta:
        """The run record a new study gets (:class:`search.engine.record.StudyMeta`)."""
        return StudyMeta(
            run_name=run_name, arch=self.arch, input_size=self.input_size, num_classes=self.num_classes,
            objectives=self.objectives, train_config=self.train.to_dict(), space=self.spec.model_dump(mode="json"),
            identity=self.identity(), fidelity=self.fidelity(), fidelity_key=self.fidelity_key(), data=dict(self.data),
            param_encoding=ENCODING, model_options=dict(self.spec.model.options), provenance=dict(provenance),
        )  # fmt: skip


# ----------------------------------------------------------------------------------- checks


def _train_config(spec: SearchSpace) -> TrainConfig:
    """The trainer config of ``trainer:``, every field resolved; SpaceError naming a bad key."""
    from deeproots.training import TrainConfig  # noqa: PLC0415

    trainer = spec.trainer
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in trainer:
        if key not in fields:
            raise SpaceError(f"trainer.{key}", f"unknown key; allowed: {', '.join(fields)}")
    try:
        cfg = TrainConfig(**trainer)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = next((k for k in trainer if k in msg), None)
        raise SpaceError(f"trainer.{key}" if key else "trainer", msg) from None
    cpus = max(1, int(spec.resources.cpus_per_trial))
    if cfg.threads is None and spec.resources.gpus_per_trial == 0:
        cfg = dataclasses.replace(cfg, threads=cpus)  # a CPU trial computes on the CPUs it was given
    return cfg


_DATA_OPTIONS = {
    "cifar10": {"augment"},
    "synthetic": {"num_train", "num_test", "input_size", "num_classes", "data_seed", "augment"},
    "imagefolder": {"image_size", "workers"},
}


def _check_data(data: DataConfig, exists: bool = True) -> None:
    allowed = _DATA_OPTIONS[data.name]
    for key in data.options:
        if key not in allowed:
            raise SpaceError(f"data.options.{key}", f"unknown option for {data.name}; allowed: {', '.join(sorted(allowed))}")
    num_train, what = _training_images(data, exists)
    if num_train is not None:
        check_data_sizes(data, num_train, what)


def _training_images(data: DataConfig, exists: bool) -> tuple[int | None, str]:
    """(training images, how to name the data) of the space's data set, without decoding it.

    Counted in the copy when it is at hand (``deeproots.data.dataset_info``; ``exists``), else
    CIFAR-10 as published (a copy that is absent now is downloaded by the trials), else unknown.
    A copy that cannot be used (a missing root, a damaged file) is a SpaceError on ``data.root``.
    """
    from deeproots.data import CIFAR10_PUBLISHED, DataError, dataset_info  # noqa: PLC0415

    try:
        if data.name == "synthetic":
            info = dataset_info("synthetic", **data.options)
            return info.num_train, "synthetic"
        if exists:
            try:
                info = dataset_info(data.name, data.root, download=False, **data.options)
                return info.num_train, f"{data.name} in {info.root}"
            except DataError as e:
                if not (data.name == "cifar10" and data.root is None and e.key == "root"):
                    raise SpaceError("data.root", str(e)) from None
    except SpaceError:
        raise
    except DataError as e:
        raise SpaceError(f"data.{e.key}" if e.key else "data", str(e)) from None
    except ValueError as e:  # an option's value (num_train: -1, image_size: 4)
        raise SpaceError("data.options", str(e).splitlines()[0]) from None
    if data.name == "cifar10":
        return CIFAR10_PUBLISHED["num_train"], "CIFAR-10"
    return None, data.name


def check_data_sizes(data: DataConfig, num_train: int, what: str = "the data set") -> None:
    """``data.val_size`` and ``data.subset`` against ``num_train`` training images (the data set's).

    Raises:
        SpaceError: on ``data.val_size`` or ``data.subset``, naming the largest value that fits.
    """
    from deeproots.data import DataError, check_sizes  # noqa: PLC0415

    try:
        check_sizes(num_train, val_size=data.val_size, subset=data.subset, what=what)
    except DataError as e:
        raise SpaceError(f"data.{e.key}", str(e)) from None


def _data_facts(data: DataConfig) -> dict[str, Any]:
    """Image counts, classes and geometry of the data, as far as known without loading it."""
    if data.name == "cifar10":
        return {"name": "cifar10", "num_train": 50_000, "num_test": 10_000, "num_classes": 10, "input_size": [3, 32, 32]}
    if data.name == "synthetic":
        o = data.options
        return {"name": "synthetic", "num_train": int(o.get("num_train", 2000)), "num_test": int(o.get("num_test", 500)),
                "num_classes": int(o.get("num_classes", 10)), "input_size": list(o.get("input_size", (3, 32, 32)))}  # fmt: skip
    size = int(data.options.get("image_size", 224))
    root = Path(data.root or ".").expanduser() / "train"
    classes = sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else None
    files = sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else None
    return {"name": "imagefolder", "num_train": files, "num_test": None, "num_classes": classes, "input_size": [3, size, size]}


def _check_storage(url: str | None) -> None:
    if url is None:
        return
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        make_url(url)
    except ArgumentError:
        raise SpaceError("storage", f"not an SQLAlchemy URL: {url!r} (e.g. sqlite:///path/study.db, postgresql://user@host/db)") from None


def resolve(spec: SearchSpace, *, check_data: bool = True) -> ResolvedSpace:
    """Check ``spec`` against the domain and resolve it into a :class:`ResolvedSpace`.

    Args:
        spec: a schema-valid space (:func:`search.space.read_space`).
        check_data: check that the data folder exists (a dry run describes a space without it).

    Raises:
        SpaceError: an unknown trainer key or bad value, bad data options or folder, an unknown
            architecture, a rule that matches no layer, choices no selected layer accepts, a seed
            outside the space, a malformed storage URL -- one line naming the key.
    """
    train = _train_config(spec)
    _check_data(spec.data, exists=check_data)
    facts = _data_facts(spec.data)
    params = build_param_space(spec, tuple(facts["input_size"]), facts["num_classes"])
    _check_storage(spec.storage)
    from deeproots import CostTable  # noqa: PLC0415

    costs = CostTable.build(params.arch, params.input_size, params.num_classes, **spec.model.options)
    space = ResolvedSpace(spec, params, train, params.input_size, params.num_classes, facts, costs)
    _check_feasible(space)
    return space


def _check_feasible(space: ResolvedSpace) -> None:
    """Refuse a FLOPs or parameter limit that even the space's cheapest schedule breaks."""
    ranges = space.cost_range()
    for key, cost in (("max_flops", "flops"), ("max_params", "params")):
        limit = space.limits.get(key)
        cheapest = ranges[cost][0]
        if limit is not None and cheapest > limit:
            raise SpaceError(
                f"constraints.{key}",
                f"{limit:,.0f} is below the cheapest schedule of the space ({cheapest:,} {cost}): no schedule can meet it",
            )
