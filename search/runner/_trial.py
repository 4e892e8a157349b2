"""What one Ray Tune trial runs on a worker: schedule -> model -> train, reporting every epoch.

The trial only *reports* (``ray.tune.report``); it never writes the study -- the driver alone does,
so SQLite sees one writer. Constraints were decided before the trial started (a breach never gets
one). Each report carries the schedule id, every objective and a ``status``:

* ``"training"`` -- after each epoch but the last;
* ``"done"`` -- after the last epoch, once the final weights are saved.

A trial that raises (non-finite loss, out of memory, a data error) simply raises: Tune marks it
ERROR and the driver records the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine._study import weights_filename

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["TrialContext", "train_trial"]

#: Data sets already loaded in this worker process (Tune reuses actors between trials).
_DATA_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its parameters; shipped once through Ray's object store.

    Attributes:
        space: the space, resolved once by the driver (nothing is re-validated on the worker).
        weights_dir: absolute folder for final weights (``<schedule>.safetensors``).
        checkpoint_dir: absolute folder for per-epoch checkpoints of running trials.
        study_name: recorded in the weights' metadata.
    """

    space: ResolvedSpace
    weights_dir: str
    checkpoint_dir: str
    study_name: str


def _checkpoint_filename(schedule_id: str) -> str:
    return weights_filename(schedule_id).removesuffix(".safetensors") + ".pt"


def _init_seed(schedule_id: str, seed: int) -> int:
    """A fixed initialisation seed per schedule, so a trial is reproducible."""
    return int(hashlib.sha1(f"{schedule_id}|{seed}".encode()).hexdigest()[:8], 16)


def _load_data_cached(space: Any) -> Any:
    from deeproots.data import load_data  # noqa: PLC0415

    key = space.data.model_dump_json()
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set per worker is enough
        d = space.data
        _DATA_CACHE[key] = load_data(
            d.name, d.root, subset=d.subset, val_size=d.val_size, seed=d.seed, **d.options
        )
    return _DATA_CACHE[key]


def _save_weights(model: Any, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file  # noqa: PLC0415

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)  # atomic: a killed trial never leaves half a file


def train_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable. ``config`` holds the sampled parameters (+ ``__resume``)."""
    import ray  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    import deeproots  # noqa: PLC0415
    from deeproots.training import checkpoint_history, fit  # noqa: PLC0415

    resolved = ctx.space
    space, pspace, train_cfg = resolved.spec, resolved.params, resolved.train
    resume = bool(config.get("__resume", False))
    values = {p.name: int(config[p.name]) for p in pspace.params}
    schedule = pspace.schedule(values)
    epochs = train_cfg.epochs

    torch.manual_seed(_init_seed(schedule.id, train_cfg.seed))
    model = deeproots.build_model(space.model.arch, schedule, num_classes=pspace.num_classes, **space.model.options)
    # Costs were decided at ask time (exact cost table; latency measured once by the driver): every
    # report carries them, with the schedule id, for the rung scheduler and the searcher.
    costs = {k: float(v) for k, v in dict(config.get("__costs") or resolved.cost(values)).items()}
    base: dict[str, Any] = {
        "schedule_id": schedule.id,
        **costs,
        "epochs": epochs,
        "host": os.uname().nodename,
        "node_id": ray.get_runtime_context().get_node_id(),
    }

    weights = Path(ctx.weights_dir) / weights_filename(schedule.id)
    done_file = weights.with_suffix(".json")
    recovered = _read_done(done_file, schedule.id, epochs)
    if recovered is not None and weights.exists():
        # Trained to the end by an earlier attempt whose driver died before recording it.
        scalars = {k: v for k, v in recovered.items() if k != "history"}
        tune.report({**base, **scalars, "history_before": list(recovered["history"][:-1]),
                     "status": "done", "weights": str(weights), "recovered": True})  # fmt: skip
        return

    data = _load_data_cached(space)
    ckpt = Path(ctx.checkpoint_dir) / _checkpoint_filename(schedule.id)
    if not resume and ckpt.exists():
        ckpt.unlink()  # a retry after a failure starts afresh (new init); an interrupted one resumes
    before: list[float] = []  # validation accuracies of the epochs a resumed checkpoint holds
    if resume:
        before = [h.val_accuracy for h in checkpoint_history(ckpt)]
    base["history_before"] = before
    started = time.perf_counter()
    history: list[float] = list(before)
    speeds: list[float] = []

    def on_epoch(r: Any) -> None:
        history.append(float(r.val_accuracy))
        speeds.append(float(r.images_per_second))
        metrics = {
            "epoch": r.epoch, "val_accuracy": float(r.val_accuracy), "val_loss": float(r.val_loss),
            "train_loss": float(r.train_loss), "images_per_second": float(r.images_per_second),
            "epoch_seconds": float(r.seconds), "train_seconds_total": time.perf_counter() - started,
            "device": _device_of(model),
        }  # fmt: skip
        status = "training"
        if r.epoch == epochs:
            # Weights (and the result beside them) first: a scheduler may stop the trial at this
            # very report, and a driver that dies now finds the result on the retry.
            _save_weights(model, weights, {"schedule_id": schedule.id, "arch": schedule.arch,
                                           "num_classes": str(pspace.num_classes), "study": ctx.study_name})  # fmt: skip
            _write_done(done_file, {**metrics, "schedule_id": schedule.id, "epochs": epochs, "history": history,
                                    "images_per_second": sum(speeds) / len(speeds)})  # fmt: skip
            status = "done"
            metrics["weights"] = str(weights)
        tune.report({**base, **metrics, "status": status})

    ckpt.parent.mkdir(parents=True, exist_ok=True)
    fit(model, data, train_cfg, on_epoch=on_epoch, checkpoint_path=ckpt, resume=resume)
    try:
        ckpt.unlink()
    except OSError:
        pass


def _write_done(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


def _read_done(path: Path, schedule_id: str, epochs: int) -> dict[str, Any] | None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if result.get("schedule_id") != schedule_id or result.get("epochs") != epochs:
        return None
    return {k: v for k, v in result.items() if k not in ("schedule_id", "epochs")}


def _device_of(model: Any) -> str:
    p = next(model.parameters(), None)
    if p is None:
        return "cpu"
    if p.device.type == "cuda":
        import torch  # noqa: PLC0415

        return f"cuda ({torch.cuda.get_device_name(p.device)})"
    return "cpu"
