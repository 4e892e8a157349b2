"""Exported models: one YAML per schedule with its weights beside it as safetensors.

deeproots owns this format; the search's export step (``python -m search.export RUN``) only fills an
:class:`ExportedConfig` per Pareto-optimal schedule and calls :meth:`ExportedConfig.write`. The YAML
holds the architecture, full schedule and id, objective values, the training config, the data it
was trained on, where it came from (study, trial) and provenance; ``<id>.safetensors`` beside it
holds the trained ``state_dict``. :func:`load_exported` rebuilds the network from these two files
with :func:`deeproots.build_model` and loads the tensors with safetensors -- nothing is unpickled --
then checks that the network's parameters and FLOPs are the ones the YAML records, so a model that
loads is the model that was measured. ``python -m deeproots.train --config`` reads the same class.
Plain PyTorch: no Ray, no Optuna. The YAML may also be named by URI (``s3://``, ``gs://``, ``file://``):
both files are then read through ``pyarrow.fs`` (:mod:`deeproots._uri`).

Example:
    >>> import deeproots
    >>> model = deeproots.load_exported("runs/nin/export/nin_1-1-1-8-1-1-4-1-1.yaml")  # doctest: +SKIP
    >>> model.schedule.name, model.exported.metrics["test_accuracy"]  # doctest: +SKIP
    ('root-8', 0.61)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .training import TrainConfig

__all__ = ["ExportedConfig", "load_exported", "EXPORT_FORMAT", "sha256_file"]

#: Value of the ``format`` key of an exported YAML (bumped when the layout changes).
EXPORT_FORMAT = "deeproots-export/2"
#: Formats :meth:`ExportedConfig.read` accepts (1: written before the format had a class; same keys).
_READABLE = ("deeproots-export/1", EXPORT_FORMAT)
_REQUIRED = ("arch", "schedule", "num_classes", "input_size")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded next to the weights; checked on load)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain(value: Any) -> Any:
    """Plain YAML/JSON-safe data: nan -> None, tuples -> lists, numpy/torch scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__) are not plain YAML
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):
        return plain(value.item())
    return str(value)


@dataclass
class ExportedConfig:
    """One exported Pareto-optimal model: what ``<id>.yaml`` holds.

    Attributes:
        arch: a registered architecture.
        schedule_id: canonical schedule id (``nin:1-1-1-8-1-1-4-1-1``).
        groups: layer -> group count, every conv in forward order.
        num_classes: outputs of the network.
        input_size: (C, H, W) the network was trained and costed at.
        schedule_name: the paper's name (``root-8``) or None.
        model_options: extra :func:`deeproots.build_model` keywords.
        weights: the safetensors file, relative to the YAML's folder; None when exported without weights.
        weights_sha256: its SHA-256 (checked on load).
        objectives: objective name -> value, as the search recorded them (``val_accuracy`` in [0, 1],
            ``flops`` and ``params`` counts, ``latency_ms`` milliseconds per image).
        metrics: everything measured: objectives again, test accuracy, per-epoch validation accuracy,
            standard errors, throughput, ... (keys documented by the writer).
        training: ``TrainConfig.to_dict()`` of the recipe the weights were trained with.
        data: the data set description (``name``, ``root``, ``subset``, ``val_size``, ``seed``,
            ``options``, and ``fingerprint`` when known).
        search: where it came from (run, study, storage, trial, outcome, fidelity key, sampler).
        provenance: package versions and git revision of training and export.
        onnx: the ONNX file written beside it and its check against PyTorch, or None.
        path: the YAML file it was read from (not written).
        source: the URI it was read from when not a local file (``s3://bucket/export/<id>.yaml``), else None.
    """

    arch: str
    schedule_id: str
    groups: dict[str, int]
    num_classes: int
    input_size: tuple[int, int, int]
    schedule_name: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    weights_sha256: str | None = None
    objectives: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    onnx: dict[str, Any] | None = None
    path: Path | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """The YAML layout (plain data)."""
        return plain({
            "format": EXPORT_FORMAT,
            "arch": self.arch,
            "schedule": {"id": self.schedule_id, "name": self.schedule_name, "groups": dict(self.groups)},
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "model_options": dict(self.model_options),
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "objectives": dict(self.objectives),
            "metrics": dict(self.metrics),
            "training": dict(self.training),
            "data": dict(self.data),
            "search": dict(self.search),
            "provenance": dict(self.provenance),
            **({"onnx": dict(self.onnx)} if self.onnx else {}),
        })  # fmt: skip

    @classmethod
    def from_dict(cls, record: Any, path: str | Path | None = None) -> ExportedConfig:
        """Parse the YAML layout.

        Raises:
            ValueError: not an exported model: a wrong or missing ``format``, or a missing key (named).
        """
        where = f"{path}: " if path is not None else ""
        if not isinstance(record, dict):
            raise ValueError(f"{where}not an exported model (expected a mapping with format: {EXPORT_FORMAT})")
        fmt = record.get("format")
        if fmt not in _READABLE:
            raise ValueError(f"{where}format {fmt!r} is not one of {', '.join(_READABLE)} (written by search.export?)")
        missing = [k for k in _REQUIRED if k not in record]
        if missing:
            raise ValueError(f"{where}exported model lacks key(s) {', '.join(missing)}")
        sched = record["schedule"]
        if not isinstance(sched, dict) or "id" not in sched:
            raise ValueError(f"{where}'schedule' must be a mapping with id, name and groups")
        size = record["input_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 3):
            raise ValueError(f"{where}'input_size' must be [C, H, W], got {size!r}")
        return cls(
            arch=str(record["arch"]), schedule_id=str(sched["id"]), groups={str(k): int(v) for k, v in (sched.get("groups") or {}).items()},
            num_classes=int(record["num_classes"]), input_size=tuple(int(v) for v in size),  # type: ignore[arg-type]
            schedule_name=sched.get("name"), model_options=dict(record.get("model_options") or {}),
            weights=record.get("weights"), weights_sha256=record.get("weights_sha256"),
            objectives=dict(record.get("objectives") or {}), metrics=dict(record.get("metrics") or {}),
            training=dict(record.get("training") or {}), data=dict(record.get("data") or {}),
            search=dict(record.get("search") or {}), provenance=dict(record.get("provenance") or {}),
            onnx=record.get("onnx") or None, path=Path(path) if path is not None else None,
        )  # fmt: skip

    @classmethod
    def read(cls, path: str | Path) -> ExportedConfig:
        """Read ``<id>.yaml`` (or the YAML beside ``<id>.safetensors``), a local path or a URI.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not valid YAML, or not an exported model (naming the key or the format); a
                URI whose filesystem cannot be opened.
        """
        import yaml  # noqa: PLC0415

        from ._uri import local_path, read_bytes  # noqa: PLC0415

        location = str(path)
        local = local_path(location) if isinstance(path, str) else location
        if local is None:
            from urllib.parse import urlsplit, urlunsplit  # noqa: PLC0415

            parts = urlsplit(location)
            if parts.path.endswith(".safetensors"):
                location = urlunsplit(parts._replace(path=parts.path[: -len(".safetensors")] + ".yaml"))
        elif local.endswith(".safetensors"):
            local = location = local[: -len(".safetensors")] + ".yaml"
        if local is None:  # an object store: s3://, gs://, ...
            try:
                text = read_bytes(location).decode()
            except FileNotFoundError:
                raise FileNotFoundError(f"no exported model at {location}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{location}: not valid YAML (not UTF-8 text)") from None
        else:
            p = Path(local)
            if not p.is_file():
                raise FileNotFoundError(f"no exported model at {p}")
            text = None
        try:
            record = yaml.safe_load(text if text is not None else p.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"{location}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__})") from None
        if local is None:
            cfg = cls.from_dict(record, location)
            cfg.path, cfg.source = None, location
            return cfg
        return cls.from_dict(record, p)

    def write(self, path: str | Path) -> Path:
        """Write the YAML atomically (a reader never sees half a file), with a usage header."""
        import yaml  # noqa: PLC0415

        p = Path(path)
        header = (
            "# A Pareto-optimal schedule exported by `python -m search.export` (deeproots).\n"
            "# Load: deeproots.load_exported(this file).  Retrain at a full budget:\n"
            f"#   python -m deeproots.train --config {p.as_posix()} --epochs N --seeds K\n"
        )
        text = header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=110)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
        self.path = p
        return p

    # ------------------------------------------------------------------ use
    def train_config(self, **overrides: Any) -> TrainConfig:
        """The recorded recipe as a :class:`deeproots.TrainConfig`, with ``overrides`` applied.

        Keys of the record that this version's ``TrainConfig`` does not know are dropped (a newer
        writer); missing ones take today's defaults.

        Raises:
            ValueError: a recorded or overriding value that ``TrainConfig`` refuses (naming the field).
        """
        from .training import TrainConfig  # noqa: PLC0415

        known = {f.name for f in dataclasses.fields(TrainConfig)}
        recipe = {k: v for k, v in self.training.items() if k in known}
        if "bf16" in self.training and "precision" not in self.training:  # written before TrainConfig.precision
            recipe["precision"] = "auto" if self.training["bf16"] else "fp32"
        recipe.update(overrides)
        return TrainConfig(**recipe)

    def weights_path(self) -> Path | None:
        """Path of the weights file beside a local YAML (None when the export holds none or was read by URI)."""
        if not self.weights or self.source is not None:
            return None
        base = self.path.parent if self.path is not None else Path(".")
        return base / self.weights

    def weights_location(self) -> str | None:
        """Where the weights are: a local path, or a URI beside a YAML read by URI (None: no weights)."""
        if not self.weights:
            return None
        if self.source is not None:
            from ._uri import sibling  # noqa: PLC0415

            return sibling(self.source, self.weights)
        return str(self.weights_path())


def load_exported(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    check_cost: bool = True,
    aux: bool = False,
) -> nn.Module:
    """Rebuild an exported network and load its trained weights.

    The architecture, schedule, number of classes and build options come from the YAML; the
    weights from the safetensors file it names (checked against the recorded SHA-256), loaded
    strictly -- every tensor present, none extra. Nothing is unpickled. A network trained with
    auxiliary classifiers (GoogLeNet) is returned without them unless ``aux=True``; the weights
    file may hold them or not.

    Args:
        path: ``RUN/export/<id>.yaml`` (or the ``.safetensors`` beside it), a local path or a URI
            (``s3://bucket/export/<id>.yaml?endpoint_override=...``, read through ``pyarrow.fs``).
        device: where the weights are loaded.
        check_cost: recount parameters and FLOPs (:func:`deeproots.count_cost`, of the network as
            it was trained and measured: auxiliary classifiers included) and require the recorded
            values.
        aux: keep the auxiliary classifiers (``model.aux_heads``); their weights must be in the file.

    Returns:
        The network in eval mode, with ``model.arch``, ``model.schedule`` (as from
        :func:`deeproots.build_model`), ``model.exported`` (the :class:`ExportedConfig`) and
        ``model.export_info`` (the same record as plain data).

    Raises:
        FileNotFoundError: the YAML or its weights are missing.
        ValueError: a URI whose filesystem cannot be opened; not an exported model; the weights do
            not match the recorded checksum or the
            network; the recounted parameters or FLOPs differ from the recorded ones; ``aux=True``
            but the file holds no auxiliary-classifier weights.

    Example:
        >>> import deeproots
        >>> model = deeproots.load_exported("runs/nin/export/nin_1-1-1-8-1-1-4-1-1.yaml")  # doctest: +SKIP
        >>> cost = deeproots.count_cost(model, model.exported.input_size)  # doctest: +SKIP
        >>> cost.params == model.exported.objectives["params"]  # doctest: +SKIP
        True
    """
    from safetensors.torch import load as load_bytes  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    from ._build import build_model  # noqa: PLC0415
    from ._cost import count_cost  # noqa: PLC0415
    from ._uri import read_bytes  # noqa: PLC0415
    from .models import aux_heads, drop_aux  # noqa: PLC0415
    from .schedules import resolve_schedule  # noqa: PLC0415

    cfg = ExportedConfig.read(path)
    yaml_path = cfg.path or cfg.source
    yaml_name = cfg.path.name if cfg.path is not None else str(cfg.source).rsplit("/", 1)[-1].split("?")[0]
    weights = cfg.weights_location()
    if weights is None:
        raise FileNotFoundError(f"{yaml_path}: the export holds no weights for this model")
    blob: bytes | None = None
    if cfg.source is not None:  # beside a YAML read by URI: read through pyarrow.fs
        try:
            blob = read_bytes(weights)
        except FileNotFoundError:
            raise FileNotFoundError(f"{yaml_path}: weights file {weights} is missing") from None
        digest = hashlib.sha256(blob).hexdigest()
    else:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{yaml_path}: weights file {weights} is missing")
        digest = sha256_file(weights) if cfg.weights_sha256 else ""
    if cfg.weights_sha256 and digest != cfg.weights_sha256:
        raise ValueError(f"{weights}: SHA-256 differs from the one {yaml_name} records (file changed?)")

    schedule = resolve_schedule(cfg.arch, dict(cfg.groups) if cfg.groups else cfg.schedule_id, cfg.num_classes)
    if schedule.id != cfg.schedule_id:
        raise ValueError(f"{yaml_path}: schedule groups give id {schedule.id}, but the file records {cfg.schedule_id}")
    with torch.device("meta"):  # build the shapes only; the tensors come from the file
        model = build_model(cfg.arch, schedule, num_classes=cfg.num_classes, **cfg.model_options)
    if check_cost:  # the network as trained and measured (shapes only: before any tensor is loaded)
        cost = count_cost(model, cfg.input_size)
        want = {**cfg.metrics, **cfg.objectives}
        for what, got in (("params", cost.params), ("flops", cost.flops)):
            if what in want and want[what] is not None and int(want[what]) != got:
                raise ValueError(
                    f"{yaml_path}: the rebuilt network has {got:,} {what}, the export records {int(want[what]):,}"
                )
    if blob is not None:
        state = {k: v.to(device) for k, v in load_bytes(blob).items()}
    else:
        state = load_file(str(weights), device=str(device))
    heads = aux_heads(model)
    if aux:
        missing = [h for h in heads if not any(k.startswith(f"{h}.") for k in state)]
        if missing:
            raise ValueError(
                f"{weights}: holds no weights for the auxiliary classifier(s) {', '.join(missing)} "
                "(exported without them); load with aux=False"
            )
    elif heads:
        drop_aux(model)
        state = {k: v for k, v in state.items() if not k.startswith(tuple(f"{h}." for h in heads))}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise ValueError(f"{weights}: does not fit {cfg.arch} {schedule.id}: {' '.join(x.strip() for x in first[:3])}") from None
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{weights}: no tensor for {', '.join(leftover[:5])}")
    model.eval()
    model.exported = cfg  # type: ignore[assignment]
    model.export_info = cfg.to_dict()  # type: ignore[assignment]
    return model
