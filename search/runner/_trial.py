"""What one Ray Tune trial runs on a worker: schedule -> model -> train, reporting every epoch with a checkpoint.

The trial only *reports* (``ray.tune.report``); it never writes the study -- the driver alone does,
so SQLite sees one writer -- and it keeps no file anywhere the driver would have to look: every
report carries a checkpoint (:class:`search.engine.record.TrialFiles`) that Tune copies into its
storage (``storage_path``: a local folder, NFS, ``s3://``, ``gs://``) from whichever node the trial
runs on, and the driver records that checkpoint's URI in the study. Constraints were decided before
the trial started (a breach never gets one). Each report carries the schedule id, every objective
and a ``status``:

* ``"training"`` -- after each epoch but the last, with the epoch's checkpoint (``STATE``, ``RESULT``);
* ``"done"`` -- after the last epoch, with the final checkpoint (``WEIGHTS``, ``RESULT`` and any extra
  file: :func:`write_final_checkpoint`);
* ``"failed"`` -- a deterministic error (``NonFiniteLossError``, ``DataError``)
  is reported, not raised, so Tune does not restart a trial that would fail the same way again; the
  driver records it FAIL at once and never retries the schedule.

Anything else a trial raises -- out of memory, the worker or its node killed -- is Tune's to restart
from the trial's last checkpoint (``FailureConfig``, ``resources.max_failures`` times).

Where a trial starts: ``ray.tune.get_checkpoint()`` when Tune restarted it; else
``config["__resume_from"]``, the checkpoint URI an interrupted predecessor reached (a rerun of the
driver starts a new Tuner, which knows nothing of the old one's checkpoints); else from scratch. A
starting checkpoint that is already final (the predecessor finished, its driver died before
recording it) is reported again without training (``recovered``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..engine._study import weights_filename
from ..engine.record import TrialFiles

if TYPE_CHECKING:
    from ..space import ResolvedSpace

__all__ = ["TrialContext", "train_trial", "write_final_checkpoint", "weights_filename"]

#: Data sets already loaded in this worker process (Tune reuses actors between trials).
_DATA_CACHE: dict[str, Any] = {}


def _deterministic_errors() -> tuple[type[BaseException], ...]:
    """Errors that training the same schedule again would raise again (the searcher's ``DETERMINISTIC_ERRORS``)."""
    from deeproots.data import DataError  # noqa: PLC0415
    from deeproots.training import NonFiniteLossError  # noqa: PLC0415

    return (NonFiniteLossError, DataError)


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its parameters; shipped once through Ray's object store.

    Attributes:
        space: the space, resolved once by the driver (nothing is re-validated on the worker).
        study_name: recorded in the weights' metadata.
    """

    space: ResolvedSpace
    study_name: str


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


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def write_final_checkpoint(
    folder: str | Path,
    model: Any,
    result: dict[str, Any],
    metadata: dict[str, str],
    extras: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a trial's final checkpoint into ``folder`` (then reported with ``ray.tune.report``).

    Holds ``TrialFiles.WEIGHTS`` (the ``state_dict`` as safetensors, with ``metadata``),
    ``TrialFiles.RESULT`` (``result``: schedule id, epochs, history, metrics) and one file per entry of
    ``extras`` -- the place for more per-trial outputs (per-image validation results, ...): name each
    in :class:`search.engine.record.TrialFiles`; the export reads them back from the checkpoint
    (:func:`search.outputs._locate.final_checkpoint`).

    Args:
        folder: a local folder (made if missing).
        model: the trained network.
        result: plain data for ``result.json``.
        metadata: strings stored in the safetensors header (schedule id, architecture, ...).
        extras: file name -> contents.

    Returns:
        ``folder``.

    Raises:
        ValueError: an extra file would replace ``WEIGHTS`` or ``RESULT``, or names a sub-folder.
    """
    from safetensors.torch import save_file  # noqa: PLC0415

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / TrialFiles.WEIGHTS), metadata=metadata)
    _write_json(out / TrialFiles.RESULT, result)
    for name, blob in (extras or {}).items():
        if name in (TrialFiles.WEIGHTS, TrialFiles.RESULT, TrialFiles.STATE) or "/" in name or name.startswith("."):
            raise ValueError(f"extra checkpoint file {name!r}: a plain file name other than the checkpoint's own files")
        (out / name).write_bytes(blob)
    return out


def _read_result(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / TrialFiles.RESULT).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _starting_checkpoint(config: dict[str, Any]) -> Any:
    """Tune's own checkpoint of this trial (it restarted it), else the one the driver handed over, else None."""
    from ray import tune  # noqa: PLC0415

    from ..engine._trial_storage import checkpoint_at  # noqa: PLC0415

    ckpt = tune.get_checkpoint()
    if ckpt is None and config.get("__resume_from"):
        ckpt = checkpoint_at(str(config["__resume_from"]))
    return ckpt


#: A trial's scratch folder is ``<tempdir>/deeproots-trial-<worker pid>-<random>``.
SCRATCH_PREFIX = "deeproots-trial-"


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host: it exists and (where ``/proc`` tells) is no zombie
    waiting to be reaped. POSIX only; elsewhere every owner counts as alive."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:  # "pid (comm) S ...": the state follows the last ")"
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep_orphaned_scratch(root: str | os.PathLike[str] | None = None) -> int:
    """Remove the scratch folders of trials whose worker process is dead; returns how many were removed.

    A trial removes its own folder when it ends, but a worker that Ray kills -- a trial the scheduler
    stopped mid-epoch (Tune ends the actor with ``ray.kill`` when its training thread does not stop
    within ``TUNE_FUNCTION_THREAD_TIMEOUT_S``), a node lost, an out-of-memory kill -- never runs that
    cleanup, and each such folder holds a model's training state (NIN ~9 MB, ResNet-50 ~300 MB). Every
    trial sweeps its host's temporary folder (``root``, default :func:`tempfile.gettempdir`) when it
    starts, and the driver sweeps its own host when a run ends. Only folders named with a process id
    that no longer exists on this host are removed: a live worker's folder, another tool's file, or a
    name without a process id is never touched.
    """
    root = Path(root if root is not None else tempfile.gettempdir())
    removed = 0
    for folder in root.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir() or folder.is_symlink() or _process_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += not folder.exists()
    return removed


def scratch_dir() -> Path:
    """A new scratch folder for one trial, named with this worker's process id (after sweeping dead workers' ones)."""
    sweep_orphaned_scratch()
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


def _error_line(e: BaseException) -> str:
    """``deeproots.training.NonFiniteLossError: message`` (public module path, one line)."""
    from .._text import one_line  # noqa: PLC0415

    module = ".".join(part for part in type(e).__module__.split(".") if not part.startswith("_"))
    return one_line(f"{module}.{type(e).__name__}: {e}")


def train_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable. ``config`` holds the sampled parameters, ``__costs`` and ``__resume_from``."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415
    from ray.tune import Checkpoint  # noqa: PLC0415

    resolved = ctx.space
    pspace, train_cfg = resolved.params, resolved.train
    values = {p.name: int(config[p.name]) for p in pspace.params}
    schedule = pspace.schedule(values)
    epochs = train_cfg.epochs
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
    scratch = scratch_dir()  # this worker's own files, never read by the driver
    try:
        state_dir = scratch / "epoch"
        state_dir.mkdir()
        start = _starting_checkpoint(config)
        if start is not None:
            got = Path(start.to_directory(str(scratch / "start")))
            found = _read_result(got)
            if found is None or found.get("schedule_id") != schedule.id or found.get("epochs") != epochs:
                pass  # not this schedule's, or unreadable: train from scratch
            elif found.get("status") == "done" and (got / TrialFiles.WEIGHTS).is_file():
                # Trained to the end by an earlier attempt whose driver stopped before recording it.
                history = [float(v) for v in found.get("history", [])]
                metrics = {k: v for k, v in found.items() if k not in ("history", "status", "schedule_id", "epochs")}
                tune.report({**base, **metrics, "history_before": history[:-1], "status": "done", "recovered": True},
                            checkpoint=Checkpoint.from_directory(str(got)))  # fmt: skip
                return
            elif (got / TrialFiles.STATE).is_file():
                shutil.copyfile(got / TrialFiles.STATE, state_dir / TrialFiles.STATE)
        try:
            _train(config, ctx, schedule, base, scratch, state_dir)
        except _deterministic_errors() as e:
            tune.report({**base, "status": "failed", "error": _error_line(e)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train(config: dict[str, Any], ctx: TrialContext, schedule: Any, base: dict[str, Any], scratch: Path, state_dir: Path) -> None:
    """Build, train and report every epoch (resuming from ``state_dir/STATE`` when it is there)."""
    import torch  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415
    from ray.tune import Checkpoint  # noqa: PLC0415

    import deeproots  # noqa: PLC0415
    from deeproots.training import checkpoint_history, fit  # noqa: PLC0415

    resolved = ctx.space
    space, pspace, train_cfg = resolved.spec, resolved.params, resolved.train
    epochs = train_cfg.epochs
    state = state_dir / TrialFiles.STATE
    resume = state.is_file()
    before = [h.val_accuracy for h in checkpoint_history(state)] if resume else []
    base = {**base, "history_before": before}

    torch.manual_seed(_init_seed(schedule.id, train_cfg.seed))
    model = deeproots.build_model(space.model.arch, schedule, num_classes=pspace.num_classes, **space.model.options)
    data = _load_data_cached(space)
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
        record = {"schedule_id": schedule.id, "epochs": epochs, "epoch": r.epoch, "history": history}
        if r.epoch < epochs:
            # fit has just written STATE (model, optimiser, scheduler, history): the epoch's checkpoint.
            _write_json(state_dir / TrialFiles.RESULT, {**record, "status": "training"})
            tune.report({**base, **metrics, "status": "training"}, checkpoint=Checkpoint.from_directory(str(state_dir)))
            return
        final = write_final_checkpoint(
            scratch / "final", model,
            {**record, **metrics, "status": "done", "images_per_second": sum(speeds) / len(speeds)},
            {"schedule_id": schedule.id, "arch": schedule.arch, "num_classes": str(pspace.num_classes), "study": ctx.study_name},
        )  # fmt: skip
        # Reported with the final checkpoint: Tune has persisted it before the driver sees this result.
        tune.report({**base, **metrics, "status": "done"}, checkpoint=Checkpoint.from_directory(str(final)))

    fit(model, data, train_cfg, on_epoch=on_epoch, checkpoint_path=state, resume=resume)


def _device_of(model: Any) -> str:
    p = next(model.parameters(), None)
    if p is None:
        return "cpu"
    if p.device.type == "cuda":
        import torch  # noqa: PLC0415

        return f"cuda ({torch.cuda.get_device_name(p.device)})"
    return "cpu"
