"""Overhead of the search machinery itself: Ray + Tune + Optuna + storage, with trials that train nothing.

A real search on a tiny synthetic space (NIN at 16x16) whose trial function reports one finished
result at once (:func:`noop_trial`), so every second measured is the search's own:

* **start-up**: from ``run_search`` to the first trial running (plan, study, Ray start, Tuner);
* **per trial**: wall time between the first trial's start and the search's end, per trial, with
  ``--concurrency`` trials at once (Tune's event loop, the searcher's ask/tell in SQLite, the
  scheduler, result files, progress output).

Goals (issue 14): per-trial overhead <= 0.5 s, start-up <= 10 s. Wall times vary between machines;
the load average is printed beside them.

    python experiments/bench_overhead.py [--trials 40] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

def _stamp(study_name: str) -> Path:
    """When the first trial started: written by the worker (same machine), read by the driver."""
    return Path(tempfile.gettempdir()) / f"deeproots-{study_name}-first-trial"


def noop_trial(config: dict[str, Any], ctx: Any) -> None:
    """A Tune trial that trains nothing: one final report with the costs the searcher decided."""
    from ray import tune  # noqa: PLC0415

    stamp = _stamp(ctx.study_name)
    if not stamp.exists():
        stamp.write_text(repr(time.time()))
    values = {p.name: int(config[p.name]) for p in ctx.space.params.params}
    schedule = ctx.space.params.schedule(values)
    epochs = ctx.space.train.epochs
    tune.report({"status": "done", "epoch": epochs, "epochs": epochs, "val_accuracy": 0.5,
                 "schedule_id": schedule.id, **config["__costs"], "images_per_second": 0.0, "device": "cpu"})  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)
    from search import load_space  # noqa: PLC0415
    from search.runner._driver import run_search  # noqa: PLC0415

    space = load_space({
        "name": f"overhead-{os.getpid()}", "model": {"arch": "nin", "input_size": [3, 16, 16]},
        "groups": [{"layers": "*", "choices": [1, 2, 4, 8]}], "seeds": ["orig"],
        "data": {"name": "synthetic", "val_size": 64, "options": {"num_train": 256, "num_test": 64, "input_size": [3, 16, 16]}},
        "trainer": {"epochs": 1}, "search": {"sampler": "random", "trials": args.trials},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent": args.concurrency},
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        result = run_search(space, runs_dir=tmp, estimate=False, export=False, print_fn=lambda *_: None, trial_fn=noop_trial)
        t1 = time.time()
        first = float(_stamp(result.paths.study_name).read_text())
        _stamp(result.paths.study_name).unlink()
    startup = first - t0
    per_trial = (t1 - first) / max(1, result.evaluated)
    print(f"load average {os.getloadavg()[0]:.2f}; {result.evaluated} no-op trials, {args.concurrency} at once")
    print(f"start-up (run_search -> first trial running): {startup:.2f} s   (goal <= 10 s)")
    print(f"per trial (first trial -> end, / trials):     {per_trial:.3f} s   (goal <= 0.5 s)")
    print(f"whole search: {t1 - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
