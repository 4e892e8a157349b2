"""Shared fixtures: one Ray session for the whole test session, tiny synthetic spaces."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


#: NIN at 16x16 on 96 synthetic training images: a trial epoch takes about a second on one CPU thread.
TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"arch": "nin", "input_size": [3, 16, 16]},
    "groups": [{"layers": ["conv2a", "conv3a"], "choices": [1, 2, 4]}],
    "seeds": ["orig"],
    "data": {
        "name": "synthetic",
        "val_size": 64,
        "options": {"num_train": 160, "num_test": 32, "input_size": [3, 16, 16]},
    },
    "trainer": {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr": 0.05},
    "search": {"sampler": "random", "trials": 3, "seed": 0},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
}


def tiny(**over: Any) -> dict[str, Any]:
    """The tiny space with overrides (nested dicts merge)."""
    return merge(TINY, over)


def _own_ray() -> None:
    """(Re)start a local Ray whose workers register ``nin_faulty`` (the worker setup hook)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
        runtime_env={"worker_process_setup_hook": "tests.search.faulty.register", "env_vars": {"PYTHONPATH": pythonpath}},
    )  # fmt: skip


@pytest.fixture(scope="session")
def ray_session() -> Any:
    """One local Ray for every test that needs it (startup costs seconds on 2 cores)."""
    import ray

    from tests.search.faulty import register

    register()
    _own_ray()  # a Ray left by an earlier test lacks the worker hook that registers nin_faulty
    yield ray
    ray.shutdown()


@pytest.fixture()
def faulty() -> None:
    """Register the ``nin_faulty`` test architecture in this process and in Ray's workers.

    An earlier test may have shut down the session's Ray and started one without the worker hook that
    registers ``nin_faulty``; a Ray of our own makes the workers know it whatever ran before.
    """
    from tests.search.faulty import register

    register()
    _own_ray()


@pytest.fixture(scope="session")
def template_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a 5-schedule study (seeds orig and root-8), made once per test session."""
    from tests.search.export_support import template_run as make_template_run

    return make_template_run(tmp_path_factory)


@pytest.fixture()
def run(template_run: Path, tmp_path: Path) -> Path:
    """A private copy of the template run."""
    from tests.search.export_support import clone_run

    return clone_run(template_run, tmp_path / "runs" / "exp")
