"""A test-only architecture, ``nin_faulty``: NIN whose forward misbehaves for chosen schedules.

Registered in the test driver and, through Ray's ``worker_process_setup_hook``, in every worker, so
a search can meet a trial that raises (non-finite loss) or one that cannot learn (ASHA fodder).

* ``conv2a`` with 4 groups: the logits are NaN -> the trainer raises ``NonFiniteLossError``;
* ``conv3a`` with 4 groups: the logits are constant -> chance accuracy;
* ``conv2a`` with 2 groups and ``conv3a`` with 1, when :data:`DAMAGED_ENV` is set: the first training
  batch raises ``DataError`` (a damaged image), as a broken data set would;
* ``conv3a`` with 2 groups, when the environment names a folder in :data:`STALL_ENV`: the first
  training batch after the model was first evaluated (epoch 2's first batch, the epoch-1 checkpoint
  already reported) writes ``stalled-<pid>.json`` (PID and Ray node) into that folder and waits
  until ``release`` exists there. A test then knows, without timing, that this worker is mid-epoch:
  it can kill the worker, remove its node, start a second driver, and let it go.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

NAME = "nin_faulty"
#: Environment variable naming the stall folder (unset: nothing stalls).
STALL_ENV = "DEEPROOTS_TEST_STALL_DIR"
#: Environment variable that makes ``conv2a`` = 2, ``conv3a`` = 1 meet a damaged image (unset: it trains).
DAMAGED_ENV = "DEEPROOTS_TEST_DAMAGED"


def _stall() -> None:
    folder = os.environ.get(STALL_ENV)
    if not folder or (Path(folder) / "release").exists():
        return
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 (outside Ray: no node)
        node = None
    tmp = Path(folder) / f".stalled-{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "node_id": node}))
    os.replace(tmp, Path(folder) / f"stalled-{os.getpid()}.json")
    while not (Path(folder) / "release").exists():
        time.sleep(0.2)


def stalled(folder: Path) -> list[dict[str, Any]]:
    """The workers stalled so far (PID, node id), in no order."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("stalled-*.json"))]


class _Faulty(nn.Module):
    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        self.inner = inner
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "stall":
            if not self.training:
                self.evaluated = True
            elif getattr(self, "evaluated", False) and not getattr(self, "stalled", False):
                self.stalled = True
                _stall()
        if self.mode == "damaged" and self.training:
            from deeproots.data import DataError

            raise DataError("damaged image train/0.png: cannot identify image file (test)", path="train/0.png")
        y = self.inner(x)
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "constant":
            return y * 0.0
        return y


def _build(groups: Mapping[str, int], num_classes: int, **kwargs: Any) -> nn.Module:
    from deeproots.models.nin import NIN

    inner = NIN(num_classes, groups, **kwargs)
    if groups.get("conv2a") == 4:
        return _Faulty(inner, "nan")
    if groups.get("conv3a") == 4:
        return _Faulty(inner, "constant")
    if groups.get("conv3a") == 2:
        return _Faulty(inner, "stall")
    if groups.get("conv2a") == 2 and groups.get("conv3a") == 1 and os.environ.get(DAMAGED_ENV):
        return _Faulty(inner, "damaged")
    return inner


def register() -> None:
    """Register ``nin_faulty`` (idempotent)."""
    from deeproots.models import get_arch, list_architectures, register_model

    if NAME in list_architectures():
        return
    spec = get_arch("nin")
    register_model(
        NAME, input_size=spec.input_size, num_classes=spec.num_classes, stage_of=spec.stage_of,
        families=spec.families, paper_n=spec.paper_n, description="test: NIN that fails on purpose",
    )(_build)



def done_at_once(config: dict[str, Any], ctx: Any) -> None:
    """A trial function (``run_search(trial_fn=...)``) that trains nothing and reports a finished
    result at once (validation accuracy 0.5)."""
    from ray import tune

    values = {p.name: int(config[p.name]) for p in ctx.space.params.params}
    epochs = ctx.space.train.epochs
    tune.report({"status": "done", "epoch": epochs, "epochs": epochs, "val_accuracy": 0.5, "images_per_second": 0.0,
                 "schedule_id": ctx.space.params.schedule(values).id, **config["__costs"], "device": "cpu"})  # fmt: skip


def fails_at_once(config: dict[str, Any], ctx: Any) -> None:
    """A trial function that reports a deterministic failure at once, as the trainer does for a
    non-finite loss (``status: failed``): never retried, counted by the searcher's failure streak."""
    from ray import tune

    values = {p.name: int(config[p.name]) for p in ctx.space.params.params}
    tune.report({"status": "failed", "error": "deeproots.training.NonFiniteLossError: training loss is nan (test)",
                 "schedule_id": ctx.space.params.schedule(values).id, **config["__costs"]})  # fmt: skip


def worker_setup_fails(config: dict[str, Any], ctx: Any) -> None:
    """A trial function that fails as a broken environment does (an error a retry may cure once the
    environment is fixed): reports ``status: failed`` with a ``ModuleNotFoundError``."""
    from ray import tune

    values = {p.name: int(config[p.name]) for p in ctx.space.params.params}
    tune.report({"status": "failed", "error": "ModuleNotFoundError: No module named 'a_module_of_the_environment'",
                 "schedule_id": ctx.space.params.schedule(values).id, **config["__costs"]})  # fmt: skip
