"""The search-space file: a typed, validated config (pydantic) loaded from YAML plus ``--set`` overrides.

A space names the architecture, which layers are searched and with which group counts, the paper
schedules to evaluate first, the objectives and constraints, the data, the trainer config, the
search algorithm and budget, the resources per trial and the storage. ``spaces/README.md`` documents
every key. Everything that can be checked before training is checked here or in :mod:`search._space`
and reported as one :class:`SpaceError` line naming the key -- nothing is written before that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "SpaceError",
    "SearchSpace",
    "load_space",
    "OBJECTIVES",
    "DIRECTIONS",
]

#: Objective names (DESIGN.md "Names used everywhere") -> Optuna direction.
DIRECTIONS: dict[str, str] = {
    "val_accuracy": "maximize",
    "flops": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
}
OBJECTIVES = tuple(DIRECTIONS)
Objective = Literal["val_accuracy", "flops", "params", "latency_ms"]


class SpaceError(ValueError):
    """An invalid space or override: one line naming the key and what is allowed.

    Attributes:
        key: dotted path of the offending key (``"search.sampler"``), or ``""`` for the whole file.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    seed: int = Field(0, ge=0)  # seed of the validation draw
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


class AshaConfig(_Strict):
    """``search.asha.*``: early stopping of weak trials (they end PRUNED, never on the front)."""

    enabled: bool = False
    grace_period: int = Field(1, ge=1)  # epochs every trial trains before it may be stopped
    reduction_factor: float = Field(3.0, gt=1)  # keep the best 1/reduction_factor at each rung


class SearchConfig(_Strict):
    """``search.*``: the algorithm and the budget."""

    sampler: Literal["nsga2", "tpe", "gp", "random"] = "nsga2"
    trials: int = Field(ge=1)  # distinct schedules evaluated (duplicates, failures, breaches don't count)
    seed: int = 0  # sampler seed
    sampler_options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the sampler
    asha: AshaConfig = Field(default_factory=AshaConfig)
    max_retries: int = Field(2, ge=0)  # a schedule whose trial raised is retried at most this often


class ResourcesConfig(_Strict):
    """``resources.*``: what one trial gets."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)  # fractional shares a GPU (0.25: four trials per GPU)
    max_concurrent: int | None = Field(None, ge=1)  # None: as many as the resources allow


class SearchSpace(_Strict):
    """A whole search-space file, validated. Build with :func:`load_space`.

    Example:
        >>> from search import load_space
        >>> space = load_space("spaces/nin-spatial.yaml", ["search.trials=4"])
        >>> space.search.trials, space.model.arch
        (4, 'nin')
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # run name: runs/<name>/
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
    storage: str | None = None  # SQLAlchemy URL; None: sqlite:///runs/<name>/study.db

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

    def identity(self) -> dict[str, Any]:
        """The part of the space a study is bound to: all but budget, resources and storage.

        Rerunning a run with a space that differs here is refused (``--fresh`` starts a new study);
        ``search.trials`` may grow or shrink, and resources may change, between runs.
        """
        d = self.model_dump(mode="json")
        d.pop("resources")
        d.pop("storage")
        d.pop("description")
        d["search"].pop("trials")
        d["trainer"] = self.train_config()  # resolved: a changed TrainConfig default is a changed space
        return d

    def fidelity(self) -> dict[str, Any]:
        """What a trained result depends on: model, data, trainer (and the latency protocol).

        Two studies with the same fidelity can share results (DESIGN: a schedule already evaluated
        at the same fidelity is not trained again).
        """
        d = self.model_dump(mode="json")
        d["trainer"] = self.train_config()
        out = {k: d[k] for k in ("model", "data", "trainer")}
        out["data"].pop("root")  # the same images wherever they sit
        if self.measures_latency:
            out["latency"] = d["latency"]
        return out

    def train_config(self) -> dict[str, Any]:
        """The trainer config the trials use, every field resolved (``TrainConfig.to_dict()``)."""
        return make_train_config(self.trainer).to_dict()

    def fidelity_key(self) -> str:
        """Short hash of :meth:`fidelity`."""
        return _hash(self.fidelity())


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# loading


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpaceError("--set", f"expected key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # a plain string that YAML cannot parse (e.g. "a: b")
    parts = key.split(".")
    if any(not p for p in parts):
        raise SpaceError("--set", f"malformed key {key!r}")
    return parts, value


def _apply_override(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpaceError(where, f"index out of range: the list has {len(node)} entries (0..{len(node) - 1})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise SpaceError(".".join(parts[:i]), f"is a value ({node!r}), it has no key {part!r}")


def _format_validation_error(err: ValidationError) -> SpaceError:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    kind = first["type"]
    msg = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if kind == "extra_forbidden":
        msg = "unknown key"
        parent_loc = first["loc"][:-1]
        model: Any = SearchSpace
        for part in parent_loc:
            if isinstance(part, int):
                continue
            field = model.model_fields.get(str(part))
            ann = getattr(field, "annotation", None) if field else None
            ann = _model_in(ann)
            if ann is None:
                model = None
                break
            model = ann
        if model is not None:
            msg += f"; allowed: {', '.join(model.model_fields)}"
    elif kind == "missing":
        msg = "required key is missing"
    elif given is not None and kind not in ("model_type", "dict_type"):
        shown = repr(given)
        msg += f" (got {shown[:60]})"
    return SpaceError(loc, msg)


def _model_in(ann: Any) -> Any:
    """The BaseModel subclass inside an annotation like ``GroupRule``, ``list[GroupRule]``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_space(
    path: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    name: str | None = None,
    check_data: bool = True,
) -> SearchSpace:
    """Read a space file (or a dict), apply ``--set`` overrides and validate it completely.

    Validation covers the file's types and values, and everything the model registry, the data
    description and the trainer config can check without training: layer names and group counts,
    seeds, trainer keys, the data folder. Nothing is written.

    Args:
        path: a YAML file, or an already parsed mapping.
        overrides: ``"key.path=value"`` items (values parsed as YAML: ``3``, ``[1, 2]``, ``null``);
            list entries by index (``groups.0.choices=[1,2]``).
        name: the run name; default: the file's ``name`` key, else the file name without ``.yaml``.
        check_data: check that the data folder exists (a dry run describes a space without it).

    Returns:
        The validated :class:`SearchSpace`.

    Raises:
        SpaceError: one line naming the key and what is allowed.

    Example:
        >>> from search import load_space
        >>> load_space("spaces/nin.yaml", ["search.sampler=tpe"]).search.sampler
        'tpe'
    """
    if isinstance(path, dict):
        doc = json.loads(json.dumps(path))  # a deep copy that is plain data
        default_name = "space"
    else:
        p = Path(path)
        doc = _read_yaml(p)
        default_name = p.name.removesuffix(".yaml").removesuffix(".yml")
    if not isinstance(doc, dict):
        raise SpaceError("", "a space file must be a mapping of keys (name, model, groups, ...)")
    for item in overrides:
        parts, value = _parse_override(item)
        _apply_override(doc, parts, value)
    if name is not None:
        doc["name"] = name
    doc.setdefault("name", default_name)
    try:
        space = SearchSpace.model_validate(doc)
    except ValidationError as e:
        raise _format_validation_error(e) from None
    _check_trainer(space.trainer)
    _check_data(space.data, exists=check_data)
    from ._space import build_param_space  # noqa: PLC0415 (imports torch; keep the schema light)

    build_param_space(space)  # layer names, group counts, seeds
    _check_storage(space.storage)
    return space


def _read_yaml(p: Path) -> Any:
    """The parsed YAML of a space file; one-line SpaceError for anything that is not readable YAML text."""
    if p.is_dir():
        raise SpaceError("", f"{p} is a folder, not a space file (e.g. spaces/nin.yaml)")
    if not p.is_file():
        raise SpaceError("", f"space file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpaceError("", f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is fine
    except UnicodeDecodeError as e:
        raise SpaceError(
            "", f"{p}: not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset {e.start}); a space file is YAML text"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        position = getattr(e, "position", None)  # a ReaderError: a character YAML does not allow
        if mark is not None:
            where = f" (line {mark.line + 1})"
        elif isinstance(position, int):
            where = f" (line {text.count(chr(10), 0, position) + 1})"
        else:
            where = ""
        reason = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise SpaceError("", f"{p}: not valid YAML{where}: {reason}") from None


# --------------------------------------------------------------------------------------------
# checks that need the domain packages


def train_config_type() -> type:
    """deeproots' trainer config dataclass."""
    from deeproots.training import TrainConfig  # noqa: PLC0415

    return TrainConfig


def make_train_config(trainer: dict[str, Any]) -> Any:
    """Build the deeproots ``TrainConfig`` from the space's ``trainer:`` mapping."""
    return train_config_type()(**trainer)


def _check_trainer(trainer: dict[str, Any]) -> None:
    cls = train_config_type()
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in trainer:
        if key not in fields:
            raise SpaceError(f"trainer.{key}", f"unknown key; allowed: {', '.join(fields)}")
    try:
        make_train_config(trainer)
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = next((k for k in trainer if k in msg), None)
        raise SpaceError(f"trainer.{key}" if key else "trainer", msg) from None


def _check_data(data: DataConfig, exists: bool = True) -> None:
    allowed = {
        "cifar10": {"augment"},
        "synthetic": {"num_train", "num_test", "input_size", "num_classes", "data_seed", "augment"},
        "imagefolder": {"image_size", "workers"},
    }[data.name]
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


def data_geometry(space: SearchSpace) -> tuple[tuple[int, int, int] | None, int | None]:
    """(input size, number of classes) of the space's data, as far as known without loading it."""
    d = space.data
    if d.name == "cifar10":
        return (3, 32, 32), 10
    if d.name == "synthetic":
        size = d.options.get("input_size", (3, 32, 32))
        return tuple(size), d.options.get("num_classes", 10)  # type: ignore[return-value]
    size = d.options.get("image_size", 224)
    root = Path(d.root or ".").expanduser() / "train"
    classes = sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else None
    return (3, size, size), classes


def _check_storage(url: str | None) -> None:
    if url is None:
        return
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        make_url(url)
    except ArgumentError:
        raise SpaceError("storage", f"not an SQLAlchemy URL: {url!r} (e.g. sqlite:///path/study.db, postgresql://user@host/db)") from None


def format_count(n: float) -> str:
    """1234567 -> '1.23M' (FLOPs, params)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"
