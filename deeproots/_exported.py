"""Exported models: one YAML per schedule with its weights beside it as safetensors.

The search's export step (``python -m search.export RUN``) writes, for every Pareto-optimal
schedule, ``<id>.yaml`` (architecture, full schedule and id, objective values, the training config,
the data it was trained on, provenance) and ``<id>.safetensors`` (the trained ``state_dict``).
:func:`load_exported` rebuilds the network from these two files with :func:`deeproots.build_model`
and loads the tensors with safetensors -- nothing is unpickled -- then checks that the network's
parameters and FLOPs are the ones the YAML records, so a model that loads is the model that was
measured. Plain PyTorch: no Ray, no Optuna.

Example:
    >>> import deeproots
    >>> model = deeproots.load_exported("runs/nin/export/nin_1-1-1-8-1-1-4-1-1.yaml")  # doctest: +SKIP
    >>> model.schedule.name, model.export_info["metrics"]["test_accuracy"]  # doctest: +SKIP
    ('root-8', 0.61)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_exported", "read_exported", "EXPORT_FORMAT"]

#: Value of the ``format`` key of an exported YAML (bumped when the layout changes).
EXPORT_FORMAT = "deeproots-export/1"

_REQUIRED = ("arch", "schedule", "num_classes", "input_size", "weights")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded next to the weights; checked on load)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_exported(path: str | Path) -> dict[str, Any]:
    """The record of an exported model: the YAML as plain data, with ``path`` (the YAML file) added.

    Args:
        path: the ``<id>.yaml`` file, or the ``<id>.safetensors`` beside it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an exported-model YAML (naming the missing key or the wrong format).
    """
    import yaml  # noqa: PLC0415

    p = Path(path)
    if p.suffix == ".safetensors":
        p = p.with_suffix(".yaml")
    if not p.is_file():
        raise FileNotFoundError(f"no exported model at {p}")
    try:
        record = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{p}: not an exported model (expected a mapping with format: {EXPORT_FORMAT})")
    fmt = record.get("format")
    if fmt != EXPORT_FORMAT:
        raise ValueError(f"{p}: format {fmt!r} is not {EXPORT_FORMAT!r} (written by search.export?)")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{p}: exported model lacks key(s) {', '.join(missing)}")
    record["path"] = str(p)
    return record


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
        path: ``RUN/export/<id>.yaml`` (or the ``.safetensors`` beside it).
        device: where the weights are loaded.
        check_cost: recount parameters and FLOPs (:func:`deeproots.count_cost`, of the network as
            it was trained and measured: auxiliary classifiers included) and require the recorded
            values.
        aux: keep the auxiliary classifiers (``model.aux_heads``); their weights must be in the file.

    Returns:
        The network in eval mode, with ``model.arch``, ``model.schedule`` (as from
        :func:`deeproots.build_model`) and ``model.export_info`` (the YAML record).

    Raises:
        FileNotFoundError: the YAML or its weights are missing.
        ValueError: not an exported model; the weights do not match the recorded checksum or the
            network; the recounted parameters or FLOPs differ from the recorded ones; ``aux=True``
            but the file holds no auxiliary-classifier weights.

    Example:
        >>> import deeproots
        >>> model = deeproots.load_exported("runs/nin/export/nin_1-1-1-8-1-1-4-1-1.yaml")  # doctest: +SKIP
        >>> cost = deeproots.count_cost(model, model.export_info["input_size"])  # doctest: +SKIP
        >>> cost.params == model.export_info["objectives"]["params"]  # doctest: +SKIP
        True
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    from ._cost import count_cost  # noqa: PLC0415
    from .models import aux_heads, build_model, drop_aux  # noqa: PLC0415
    from .schedules import resolve_schedule  # noqa: PLC0415

    record = read_exported(path)
    yaml_path = Path(record["path"])
    if not record["weights"]:
        raise FileNotFoundError(f"{yaml_path}: the export holds no weights for this model")
    weights = yaml_path.parent / record["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{yaml_path}: weights file {weights} is missing")
    expected = record.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise ValueError(f"{weights}: SHA-256 differs from the one {yaml_path.name} records (file changed?)")

    arch = record["arch"]
    sched_rec = record["schedule"]
    groups = sched_rec.get("groups") if isinstance(sched_rec, dict) else None
    num_classes = int(record["num_classes"])
    schedule = resolve_schedule(arch, dict(groups) if groups else sched_rec["id"], num_classes)
    recorded_id = sched_rec.get("id") if isinstance(sched_rec, dict) else None
    if recorded_id and recorded_id != schedule.id:
        raise ValueError(f"{yaml_path}: schedule groups give id {schedule.id}, but the file records {recorded_id}")
    with torch.device("meta"):  # build the shapes only; the tensors come from the file
        model = build_model(arch, schedule, num_classes=num_classes, **(record.get("model_options") or {}))
    if check_cost:  # the network as trained and measured (shapes only: before any tensor is loaded)
        input_size = tuple(int(v) for v in record["input_size"])
        cost = count_cost(model, input_size)
        want = {**(record.get("metrics") or {}), **(record.get("objectives") or {})}
        for what, got in (("params", cost.params), ("flops", cost.flops)):
            if what in want and want[what] is not None and int(want[what]) != got:
                raise ValueError(
                    f"{yaml_path}: the rebuilt network has {got:,} {what}, the export records {int(want[what]):,}"
                )
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
        raise ValueError(f"{weights}: does not fit {arch} {schedule.id}: {' '.join(x.strip() for x in first[:3])}") from None
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{weights}: no tensor for {', '.join(leftover[:5])}")
    model.eval()
    model.export_info = record  # type: ignore[assignment]
    return model
