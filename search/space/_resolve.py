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
import re
from pathlib import Path
from dataclasses import dataclass
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
        profile: the hardware profile applied (``profiles:`` of the file), or None.

    Example:
        >>> from search import load_space
        >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=4"], check_data=False)
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
    profile: str | None = None

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

    def with_data(self) -> ResolvedSpace:
        """This space with its data at hand: CIFAR-10 downloaded if no copy is found, the content
        fingerprint known (the data's identity in a study). Call it once every check that needs no
        data has passed (the driver does, before Ray starts).

        Raises:
            SpaceError: on ``data.root`` (or ``data.val_size``/``data.subset``), naming the fix
                (``data.root``, ``DEEPROOTS_DATA``, a download), when the data cannot be had.
        """
        if self.data.get("fingerprint"):
            return self
        spec, facts = self.spec, _data_facts(self.spec.data, load=True)
        params, costs = self.params, self.costs
        if (facts["input_size"], facts["num_classes"]) != (self.data["input_size"], self.data["num_classes"]):
            params = build_param_space(spec, tuple(facts["input_size"]), facts["num_classes"])
            costs = _cost_table(spec, params)
        space = dataclasses.replace(self, params=params, costs=costs, input_size=params.input_size,
                                    num_classes=params.num_classes, data=facts)  # fmt: skip
        _check_feasible(space)
        return space

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
        """The part of the space a study is bound to: all but budget, resources, storages, description, confirm.

        Rerunning a run with a space that differs here is refused (``--fresh`` starts a new study);
        ``search.trials`` may grow or shrink, and resources and the ``confirm`` block (what is
        reported and retrained after the search) may change, between runs.
        """
        d = self.spec.model_dump(mode="json")
        for key in ("resources", "storage", "storage_path", "description", "profiles", "confirm"):
            d.pop(key, None)
        d["search"].pop("trials")
        d["trainer"] = self._train_fidelity()  # resolved: a changed TrainConfig default is a changed space
        d["data"] = self._data_identity(d["data"])
        return d

    def _data_identity(self, data: dict[str, Any]) -> dict[str, Any]:
        """The ``data:`` block with the folder replaced by the content fingerprint (when known)."""
        out = dict(data)
        out.pop("root", None)  # the same images wherever they sit; another copy is another fingerprint
        if self.data.get("fingerprint"):
            out["fingerprint"] = self.data["fingerprint"]
        return out

    def fidelity(self) -> dict[str, Any]:
        """What a trained result depends on: model, data, trainer (and the latency protocol).

        Two studies with the same fidelity can share results (DESIGN: a schedule already evaluated
        at the same fidelity is not trained again).
        """
        d = self.spec.model_dump(mode="json")
        out: dict[str, Any] = {"model": d["model"], "data": self._data_identity(d["data"]), "trainer": self._train_fidelity()}
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
    for name, items in spec.profiles.items():  # the profiles not in use too: a typo there is found today
        for key, value in items.items():
            head, _, field = str(key).partition(".")
            # "trainer.lr: 0.1", or a nested "trainer: {lr: 0.1}" (merged key by key)
            given = [field.split(".")[0]] if field else list(value) if head == "trainer" and isinstance(value, dict) else []
            for name_ in given:
                if head == "trainer" and name_ not in fields:
                    raise SpaceError(f"profiles.{name}", f"trainer.{name_}: unknown key; allowed: {', '.join(fields)}")
    try:
        cfg = TrainConfig(**trainer)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = next((k for k in trainer if k in msg), None)
        raise SpaceError(f"trainer.{key}" if key else "trainer", msg) from None
    if str(cfg.device).startswith("cuda") and spec.resources.gpus_per_trial == 0:
        raise SpaceError("trainer.device", f"{cfg.device!r} needs resources.gpus_per_trial > 0: Ray hides every GPU from a "
                                           "trial that asks for none (e.g. resources.gpus_per_trial: 1, or 0.25 to share one)")  # fmt: skip
    cpus = max(1, int(spec.resources.cpus_per_trial))
    if cfg.threads is None and spec.resources.gpus_per_trial == 0:
        cfg = dataclasses.replace(cfg, threads=cpus)  # a CPU trial computes on the CPUs it was given
    return dataclasses.replace(cfg, precision=_precision(cfg.precision, spec.resources.gpus_per_trial > 0))


def _check_latency_device(spec: SearchSpace) -> None:
    """``latency.device`` names a device latency can be timed on: ``cpu``, ``cuda`` or ``cuda:N``.
    Whether this host has that GPU is checked where latency is measured (the search's driver:
    :func:`search.runner._driver.check_resources`), not by readers of a stored space.

    Raises:
        SpaceError: on ``latency.device``.
    """
    import torch  # noqa: PLC0415

    device = spec.latency.device
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise SpaceError("latency.device", f"expected cpu, cuda or cuda:N (got {device!r})") from None
    if parsed.type not in ("cpu", "cuda"):
        raise SpaceError("latency.device", f"expected cpu, cuda or cuda:N (got {device!r}): latency is timed on a CPU or a CUDA GPU")


def _precision(precision: str, gpu: bool) -> str:
    """``TrainConfig.precision`` resolved once, for the device the trials train on.

    ``auto`` becomes ``bf16`` or ``fp32`` here, so the study records what its results were trained
    in and a bf16 study never resumes in float32 on another machine. GPU trials on a driver that has
    no GPU (a cluster's head node) are taken to be on cards that compute bf16 (Ampere and later).
    """
    import torch  # noqa: PLC0415

    from deeproots.training import resolve_precision  # noqa: PLC0415

    if gpu and not torch.cuda.is_available():
        return "bf16" if precision == "auto" else precision
    return resolve_precision(precision, "cuda" if gpu else "cpu")


_DATA_OPTIONS = {
    "cifar10": {"augment"},
    "synthetic": {"num_train", "num_test", "input_size", "num_classes", "data_seed", "augment"},
    "imagefolder": {"image_size", "workers"},
}
_DATA_OPTION_TYPES = {"augment": bool, "image_size": int, "workers": int, "num_train": int, "num_test": int,
                      "num_classes": int, "data_seed": int}  # fmt: skip


def _cost_table(spec: SearchSpace, params: Any) -> Any:
    """The exact cost table of the space's network (``model.options`` passed to its constructor).

    Raises:
        SpaceError: ``model.options`` holds a keyword the network's constructor does not take.
    """
    from deeproots import CostTable  # noqa: PLC0415

    try:
        return CostTable.build(params.arch, params.input_size, params.num_classes, **spec.model.options)
    except TypeError as e:
        if not spec.model.options:
            raise
        bad = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        what = f"{params.arch} takes no option {bad.group(1)!r}" if bad else str(e).splitlines()[0]
        raise SpaceError("model.options", f"{what} (model.options are keyword arguments of the network's constructor)") from None


def _data_facts(data: DataConfig, load: bool) -> dict[str, Any]:
    """What the space's data set holds, from ``deeproots.data.dataset_info`` -- one home for the facts.

    Args:
        data: the ``data:`` block.
        load: a run is about to start: the data must be there (CIFAR-10 is downloaded when no copy
            is found and the network allows); a dry run describes a space without its data.

    Returns:
        ``name``, ``num_train``, ``num_test``, ``num_classes``, ``input_size`` and, when the data is at
        hand, ``root`` (the folder found) and ``fingerprint`` (its content: what identifies the data in
        a study, wherever it sits). Without the data (a dry run): CIFAR-10 as published, no fingerprint.

    Raises:
        SpaceError: an unknown option, data that cannot be found or is damaged (naming ``data.root``
            and ``DEEPROOTS_DATA``), or sizes the data cannot hold (naming ``data.val_size`` / ``data.subset``).
    """
    from deeproots.data import CIFAR10_PUBLISHED, DataError, dataset_info  # noqa: PLC0415

    allowed = _DATA_OPTIONS[data.name]
    for key, value in data.options.items():
        if key not in allowed:
            raise SpaceError(f"data.options.{key}", f"unknown option for {data.name}; allowed: {', '.join(sorted(allowed))}")
        want = _DATA_OPTION_TYPES.get(key)
        if want is bool and not isinstance(value, bool):
            raise SpaceError(f"data.options.{key}", f"expected true or false (got {value!r:.60})")
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise SpaceError(f"data.options.{key}", f"expected a whole number (got {value!r:.60})")
    facts: dict[str, Any]
    if data.root is not None and not Path(data.root).expanduser().is_dir():
        raise SpaceError("data.root", f"{data.root} is not a folder (it should hold {'cifar-10-batches-py' if data.name == 'cifar10' else 'train/ and val/'})")
    try:
        info = dataset_info(data.name, data.root, download=load, **data.options)
        facts = {"name": info.name, "num_train": info.num_train, "num_test": info.num_test,
                 "num_classes": info.num_classes, "input_size": list(info.input_size), "root": info.root,
                 "fingerprint": info.fingerprint}  # fmt: skip
        what = f"{data.name} in {info.root}" if info.root else data.name
    except DataError as e:
        if load:
            raise SpaceError(f"data.{e.key}" if e.key else "data.root", str(e)) from None
        # not fetching the data yet (a dry run, or checks before the download): the published facts
        if data.name == "cifar10":
            facts = {"name": "cifar10", **{k: CIFAR10_PUBLISHED[k] for k in ("num_train", "num_test", "num_classes")},
                     "input_size": list(CIFAR10_PUBLISHED["input_size"]), "root": None, "fingerprint": None}  # fmt: skip
        else:  # an ImageFolder not at hand: the geometry its options give; classes from model.num_classes
            size = int(data.options.get("image_size", 224))
            facts = {"name": data.name, "num_train": None, "num_test": None, "num_classes": None,
                     "input_size": [3, size, size], "root": None, "fingerprint": None}  # fmt: skip
        what = "CIFAR-10" if data.name == "cifar10" else data.name
    except ValueError as e:  # an option's value (num_train: -1, image_size: 4)
        raise SpaceError("data.options", str(e).splitlines()[0]) from None
    if facts["num_train"] is not None:
        check_data_sizes(data, facts["num_train"], what)
    return facts


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


def _check_storage(url: str | None) -> None:
    if url is None:
        return
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        make_url(url)
    except ArgumentError:
        raise SpaceError("storage", f"not an SQLAlchemy URL: {url!r} (e.g. sqlite:///path/study.db, postgresql://user@host/db)") from None


def _check_storage_path(location: str | None) -> None:
    if location is None:
        return
    from ..engine._trial_storage import TrialStorage  # noqa: PLC0415

    TrialStorage.parse(location, ".")


def resolve(spec: SearchSpace, *, check_data: bool = True, profile: str | None = None) -> ResolvedSpace:
    """Check ``spec`` against the domain and resolve it into a :class:`ResolvedSpace`.

    Args:
        spec: a schema-valid space (:func:`search.space.read_space`).
        check_data: the data must be at hand (CIFAR-10 is downloaded if need be); False describes
            a space without its data (a dry run).
        profile: the hardware profile ``spec`` was read with (recorded, not applied here).

    Raises:
        SpaceError: an unknown trainer key or bad value, bad data options or folder, an unknown
            architecture, a rule that matches no layer, choices no selected layer accepts, a seed
            outside the space, a malformed storage URL -- one line naming the key.
    """
    train = _train_config(spec)
    facts = _data_facts(spec.data, load=False)  # the copy at hand, else the published facts: no download yet
    params = build_param_space(spec, tuple(facts["input_size"]), facts["num_classes"])
    _check_storage(spec.storage)
    _check_storage_path(spec.storage_path)
    _check_latency_device(spec)
    costs = _cost_table(spec, params)
    space = ResolvedSpace(spec, params, train, params.input_size, params.num_classes, facts, costs, profile)
    _check_feasible(space)
    return space.with_data() if check_data else space
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
