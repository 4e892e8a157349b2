"""Tiny studies for the export and dashboard tests, written by the search's own code.

:func:`make_run` creates a run folder exactly as ``search.run`` lays it out -- ``plan_run``,
``open_storage`` (SQLite in WAL mode), ``prepare_study`` (metric names, the space, seeds enqueued),
``run.json`` -- and fills it through the search's driver-side writer, :class:`ScheduleSearch`:
proposals from the sampler, each schedule trained for one epoch on a few synthetic 16x16 images
in this process (no Ray workers), its final checkpoint written as the trial writes it
(``write_final_checkpoint``) where Tune would persist it (``runs/exp/ray/<experiment>/trial_<id>/``),
and the result and checkpoint told to the searcher as Ray Tune would. Duplicates, user attributes and
checkpoint paths are therefore the real ones.

``python -m tests.search.export_support URL STUDY STOP_FILE`` is a second writer process: it keeps
adding finished trials to the study through ``open_storage`` until ``STOP_FILE`` exists, printing
``ready`` once its first trial is committed (the concurrency test).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: NIN at 16x16 on a few synthetic images; conv2a/conv3a and the 1x1 convs after them searched.
SPACE: dict[str, Any] = {
    "name": "exp",
    "model": {"arch": "nin"},
    "groups": [
        {"layers": ["conv2a", "conv3a"], "choices": [1, 2, 4, 8]},
        {"layers": ["conv2b", "conv3b"], "choices": [1, 2, 4]},
    ],
    "seeds": ["orig", "root-8"],
    "data": {
        "name": "synthetic",
        "subset": 16,
        "val_size": 32,
        "options": {"num_train": 64, "num_test": 40, "input_size": [3, 16, 16]},
    },
    "trainer": {"epochs": 1, "batch_size": 16, "lr": 0.05},
    "search": {"sampler": "random", "trials": 5, "seed": 0},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
}


def make_run(runs_dir: Path, name: str = "exp", trials: int = 5, space: dict[str, Any] | None = None) -> Path:
    """Create ``runs_dir/name`` with a study of ``trials`` distinct schedules; returns the run folder."""
    import optuna
    import torch

    import deeproots
    from deeproots.data import load_data
    from deeproots.training import fit
    from search import load_space
    from search.engine._build import make_engine
    from search.engine._study import open_storage, plan_run, prepare_study
    from search.runner._driver import _write_run_file
    from search.runner._trial import _init_seed, write_final_checkpoint

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    doc = json.loads(json.dumps(space or SPACE))
    doc["search"]["trials"] = trials
    sp = load_space(doc, name=name)
    pspace = sp.params
    plan = plan_run(sp, runs_dir=runs_dir)
    paths = plan.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    storage = open_storage(paths.storage_url)
    prov = deeproots.provenance()
    provenance = {"deeproots_version": prov["deeproots"], "git_revision": prov["git_revision"], "torch": prov["torch"]}
    prepare_study(plan, sp, storage, provenance)
    _write_run_file(paths)
    d = sp.spec.data
    data = load_data(d.name, d.root, subset=d.subset, val_size=d.val_size, seed=d.seed, **d.options)
    cfg = sp.train
    searcher = make_engine(sp, storage, paths.study_name, budget=trials, run_dir=str(paths.root.resolve()),
                           provenance=provenance).searcher  # fmt: skip
    for i in range(trials * 20):
        tid = f"t{i:04d}"
        config = searcher.suggest(tid)
        if not isinstance(config, dict):
            break
        schedule = pspace.schedule({p.name: int(config[p.name]) for p in pspace.params})
        torch.manual_seed(_init_seed(schedule.id, cfg.seed))
        model = deeproots.build_model("nin", schedule, num_classes=pspace.num_classes)
        cost = deeproots.count_cost(model, pspace.input_size)
        final = (paths.ray_dir / "exp-support" / f"trial_{tid}" / "checkpoint_000000").resolve()
        assert (cost.flops, cost.params) == (config["__costs"]["flops"], config["__costs"]["params"])
        base = {"schedule_id": schedule.id, **config["__costs"], "host": "test", "device": "cpu"}
        reports: list[dict[str, Any]] = []

        def on_epoch(r: Any, base: dict = base, model: Any = model, final: Path = final,  # noqa: B008
                     schedule: Any = schedule, tid: str = tid) -> None:  # fmt: skip
            status = "done" if r.epoch == cfg.epochs else "training"
            reports.append({**base, "status": status, "epoch": r.epoch, "epochs": cfg.epochs,
                            "val_accuracy": float(r.val_accuracy), "images_per_second": float(r.images_per_second),
                            "epoch_seconds": float(r.seconds), "train_seconds_total": float(r.seconds)})  # fmt: skip
            if status == "done":
                write_final_checkpoint(final, model, {"schedule_id": schedule.id, "epochs": cfg.epochs, "status": "done",
                                                      "history": [float(r.val_accuracy)]},
                                       {"schedule_id": schedule.id, "arch": "nin"})  # fmt: skip
            searcher.on_trial_result(tid, reports[-1])
            if status == "done":
                searcher.record_checkpoint(tid, str(final))  # Tune's on_checkpoint comes after the result

        fit(model, data, cfg, on_epoch=on_epoch)
        searcher.on_trial_complete(tid, reports[-1])
    return paths.root


_TEMPLATES: dict[str, Path] = {}


def template_run(tmp_path_factory: Any) -> Path:
    """The 5-schedule run shared by every test module of the session (made on first use)."""
    if "exp" not in _TEMPLATES:
        _TEMPLATES["exp"] = make_run(tmp_path_factory.mktemp("template") / "runs", name="exp", trials=5)
    return _TEMPLATES["exp"]


def clone_run(src: Path, dst: Path) -> Path:
    """Copy a run folder and point its ``run.json`` at the copy's own ``study.db``."""
    shutil.copytree(src, dst)
    run_file = dst / "run.json"
    doc = json.loads(run_file.read_text())
    doc["storage"] = f"sqlite:///{(dst / 'study.db').as_posix()}"
    run_file.write_text(json.dumps(doc, indent=1))
    return dst


def _writer(url: str, study_name: str, stop_file: str) -> int:
    """Keep committing finished trials until ``stop_file`` exists (at most 900 s: a guard, the test stops it).

    Imports no torch: the study's own parameter distributions are reused, so the process is
    writing within a couple of seconds.
    """
    import optuna

    from search.engine._study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)  # exactly as the search's driver opens it
    study = optuna.load_study(study_name=study_name, storage=storage)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    distributions = done[0].distributions
    worst = [max(t.values[i] for t in done) for i in (1, 2)]
    n, deadline = 0, time.time() + 900
    while not Path(stop_file).exists() and time.time() < deadline:
        trial = study.ask(fixed_distributions=distributions)
        trial.set_user_attr("schedule_id", f"writer:{n}")
        trial.set_user_attr("outcome", "evaluated")
        # Worse than every real trial in every objective: never on the front.
        study.tell(trial, [0.0, worst[0] * 2, worst[1] * 2])
        n += 1
        if n == 1:
            print("ready", flush=True)
    print(f"wrote {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_writer(sys.argv[1], sys.argv[2], sys.argv[3]))
